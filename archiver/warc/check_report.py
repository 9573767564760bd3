"""What a check found: findings, per-file reports, the report for a set of files, and how they read."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from archiver.sites.base import Capture
from archiver.warc.check_codes import ERROR, NOTICE, WARNING

LISTED_PER_CODE = 10  # findings of one code listed per file in the human summary (the rest are counted)


@dataclass(frozen=True)
class Finding:
    """One thing wrong (error), doubtful (warning) or worth knowing (notice) about a WARC file or file set."""

    severity: str  # "error", "warning" or "notice"
    code: str  # stable; see docs/checks.md
    message: str
    file: str | None = None  # None for findings about a whole file set (site completeness)
    offset: int | None = None  # where the record starts in the file (compressed offset for gzip)
    record_id: str | None = None
    url: str | None = None
    target: str | None = None  # for dangling references: the record id that is not there

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def line(self) -> str:
        where = f"@{self.offset}" if self.offset is not None else ""
        url = f" {self.url}" if self.url else ""
        return f"{self.severity:<7} {self.code}{where}{url}: {self.message}"


def _count(findings: list[Finding], severity: str) -> int:
    return sum(1 for f in findings if f.severity == severity)


@dataclass
class FileReport:
    """The check of one file."""

    file: str
    compression: str = ""  # "gzip", "plain", "zstd" or "" when the file could not be opened
    size: int = 0
    records: Counter[str] = field(default_factory=Counter)  # record type -> count
    findings: list[Finding] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)  # only collected when a site module was given
    record_ids: dict[str, int] = field(default_factory=dict)  # id -> offset, for set-level checks
    unreadable: str | None = None  # why the file could not be read at all
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return _count(self.findings, ERROR)

    @property
    def warnings(self) -> int:
        return _count(self.findings, WARNING)

    @property
    def notices(self) -> int:
        return _count(self.findings, NOTICE)

    @property
    def counts(self) -> dict[str, int]:
        """Findings by code."""
        return dict(Counter(f.code for f in self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "compression": self.compression, "size": self.size, "unreadable": self.unreadable,
            "records": dict(self.records), "record_count": sum(self.records.values()),
            "errors": self.errors, "warnings": self.warnings, "notices": self.notices, "counts": self.counts,
            "seconds": round(self.seconds, 3), "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self, verbose: bool = False) -> str:
        if self.unreadable:
            return f"{self.file}: cannot be read: {self.unreadable}"
        types = ", ".join(f"{t} {n}" for t, n in sorted(self.records.items()))
        lines = [f"{self.file}: {sum(self.records.values())} records ({types or 'none'}); "
                 f"{self.errors} errors, {self.warnings} warnings, {self.notices} notices"]
        lines += _finding_lines(self.findings, verbose)
        return "\n".join(lines)


def _finding_lines(findings: list[Finding], verbose: bool) -> list[str]:
    lines: list[str] = []
    shown: Counter[str] = Counter()
    hidden: Counter[tuple[str, str]] = Counter()
    for f in findings:
        if verbose or (f.severity != NOTICE and shown[f.code] < LISTED_PER_CODE):
            shown[f.code] += 1
            lines.append("  " + f.line())
        else:
            hidden[(f.severity, f.code)] += 1
    for (severity, code), n in sorted(hidden.items()):
        more = "more " if shown[code] else ""
        lines.append(f"  {severity:<7} {code}: {n} {more}(use -v to list them)")
    return lines


@dataclass
class CheckReport:
    """The check of a set of files, plus findings about the set as a whole."""

    files: list[FileReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # set-level: completeness, cross-file duplicates
    strict: bool = False

    def all_findings(self) -> list[Finding]:
        return [f for r in self.files for f in r.findings] + self.findings

    @property
    def errors(self) -> int:
        return _count(self.all_findings(), ERROR)

    @property
    def warnings(self) -> int:
        return _count(self.all_findings(), WARNING)

    @property
    def notices(self) -> int:
        return _count(self.all_findings(), NOTICE)

    @property
    def unreadable(self) -> list[FileReport]:
        return [r for r in self.files if r.unreadable]

    @property
    def ok(self) -> bool:
        """No errors (and with `strict`, no warnings either)."""
        return self.errors == 0 and not (self.strict and self.warnings)

    @property
    def exit_code(self) -> int:
        """2 when a file cannot be read at all, 1 when the set is not ok, else 0."""
        if self.unreadable:
            return 2
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        records: Counter[str] = Counter()
        for r in self.files:
            records.update(r.records)
        return {
            "ok": self.ok, "strict": self.strict, "exit_code": self.exit_code,
            "files": [r.to_dict() for r in self.files],
            "findings": [f.to_dict() for f in self.findings],
            "totals": {"files": len(self.files), "records": dict(records), "record_count": sum(records.values()),
                       "errors": self.errors, "warnings": self.warnings, "notices": self.notices,
                       "counts": dict(Counter(f.code for f in self.all_findings()))},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def summary(self, verbose: bool = False) -> str:
        parts = [r.summary(verbose) for r in self.files]
        if self.findings:
            parts.append("file set:\n" + "\n".join(_finding_lines(self.findings, verbose)))
        records = sum(sum(r.records.values()) for r in self.files)
        verdict = "OK" if self.ok else "NOT OK" + (" (--strict: warnings count)" if self.strict and not self.errors
                                                   else "")
        if self.unreadable:
            verdict = f"{len(self.unreadable)} file(s) unreadable"
        parts.append(f"total: {len(self.files)} files, {records} records, {self.errors} errors, "
                     f"{self.warnings} warnings, {self.notices} notices: {verdict}")
        return "\n".join(parts)
