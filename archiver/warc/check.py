"""Check WARC files thoroughly: container, record syntax, fields, digests, cross-record links, the HTTP inside,
whether captures are what they claim to be, and (with a site module) whether an item was captured completely.

The library behind `archiver check`; the grab, the bulk run, the packer and the uploader call it too.
Codes and their meaning: docs/checks.md (and archiver.warc.check_codes).

    for finding in iter_findings("x.warc.gz"): ...          # streaming, one file
    report = check_file("x.warc.gz")                         # one file: records by type, findings, captures
    report = check_files(paths, site=get_site("arxiv"), items=items, jobs=2)   # a set; report.ok
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from archiver.errors import ArchiverError
from archiver.sites.base import Item, Site
from archiver.warc.check_codes import ERROR, severity_of
from archiver.warc.check_container import GzipEvents, plain_events, sniff
from archiver.warc.check_report import CheckReport, FileReport, Finding
from archiver.warc.check_walk import WarcWalker

__all__ = ["CheckReport", "FileReport", "Finding", "WarcUnreadable", "check_file", "check_files", "iter_findings"]

_DANGLING = frozenset({"dangling-concurrent-to", "dangling-refers-to", "dangling-warcinfo-id"})


class WarcUnreadable(ArchiverError):
    """The file cannot be read at all (missing, unreadable, or a compression the checker does not read)."""


def iter_findings(path: str | os.PathLike[str], *, site: Site | None = None) -> Iterator[Finding]:
    """Check one file, yielding findings as they are found. Raises WarcUnreadable when it cannot be read."""
    yield from _walk(path, site, keep_captures=False)


def _walk(path: str | os.PathLike[str], site: Site | None, keep_captures: bool) -> Iterator[Finding]:
    """The check of one file; the generator's return value is the finished WarcWalker."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed below, after the generator finishes
    except OSError as e:
        raise WarcUnreadable(f"cannot open {name}: {e.strerror or e}") from None
    with f:
        try:
            kind = sniff(f.read(4))
            f.seek(0)
        except OSError as e:
            raise WarcUnreadable(f"cannot read {name}: {e.strerror or e}") from None
        if kind == "zstd":
            raise WarcUnreadable(f"{name} is zstd-compressed, which archiver check does not read yet; "
                                 "recompress it with gzip (zstd -dc F | warcio recompress /dev/stdin F.warc.gz)")
        walker = WarcWalker(name, iter(()), gzip=kind == "gzip", site=site, keep_captures=keep_captures)
        walker.events = iter(GzipEvents(f, walker.container_report)) if kind == "gzip" else plain_events(f)
        if name.endswith(".gz") != (kind == "gzip") and (name.endswith((".gz", ".warc"))):
            walker.report("compression-name-mismatch", f"the file is {'gzip' if kind == 'gzip' else 'uncompressed'} "
                                                       "but its name says otherwise", 0)
        try:
            yield from walker.run()
        except OSError as e:
            raise WarcUnreadable(f"cannot read {name}: {e.strerror or e}") from None
        return walker


def check_file(path: str | os.PathLike[str], *, site: Site | None = None) -> FileReport:
    """Check one file. Never raises for a bad file: an unreadable one gives a report with `unreadable` set."""
    name = os.fspath(path)
    report = FileReport(file=name)
    started = time.perf_counter()
    findings = _walk(name, site, keep_captures=site is not None)
    try:
        while True:
            report.findings.append(next(findings))
    except StopIteration as done:
        walker: WarcWalker = done.value
        report.compression = "gzip" if walker.gzip else "plain"
        report.records = walker.records
        report.captures = walker.captures
        report.record_ids = {rid: rec.offset for rid, rec in walker.links.records.items()}
    except WarcUnreadable as e:
        report.unreadable = str(e)
        report.findings.append(Finding(ERROR, "unreadable", str(e), name, None))
    try:
        report.size = Path(name).stat().st_size
    except OSError:
        pass
    report.seconds = time.perf_counter() - started
    return report


def _check_file_job(path: str, site: Site | None) -> FileReport:
    return check_file(path, site=site)


def check_files(paths: Iterable[str | os.PathLike[str]], *, site: Site | None = None,
                items: Iterable[Item] | None = None, jobs: int = 1, strict: bool = False) -> CheckReport:
    """Check a set of files (in `jobs` processes, one file per job), then the set as a whole: record ids unique
    across files, references resolved across files and, with a site module, every item complete."""
    names = [os.fspath(p) for p in paths]
    if jobs > 1 and len(names) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(names))) as pool:
            files = list(pool.map(_check_file_job, names, [site] * len(names)))
    else:
        files = [check_file(name, site=site) for name in names]
    report = CheckReport(files=files, strict=strict)
    if len(files) > 1:
        _resolve_across_files(report)
    if site is not None:
        report.findings += _completeness(site, files, items)
    return report


def _resolve_across_files(report: CheckReport) -> None:
    """Ids used in two files are duplicates; references to a record in another file of the set resolve."""
    owner: dict[str, str] = {}
    for r in report.files:
        for record_id, offset in r.record_ids.items():
            first = owner.setdefault(record_id, r.file)
            if first != r.file:
                report.findings.append(Finding(severity_of("duplicate-record-id"), "duplicate-record-id",
                                               f"WARC-Record-ID {record_id} is also used in {first}", r.file,
                                               offset, record_id))
    for r in report.files:
        r.findings = [f for f in r.findings if not (f.code in _DANGLING and f.target in owner)]


def _completeness(site: Site, files: list[FileReport], items: Iterable[Item] | None) -> list[Finding]:
    captures = [c for r in files for c in r.captures]
    try:
        problems = site.completeness(captures, list(items) if items is not None else None)
    except Exception as e:  # a site module bug must still give a report, not a traceback
        return [Finding(ERROR, "site-error", f"{type(e).__name__} in {type(site).__name__}.completeness: {e}")]
    findings = []
    for p in problems:
        message = f"{p.item}: {p.message}" if p.item and p.item not in p.message else p.message
        findings.append(Finding(p.severity, p.code, message, None, None, None, p.url))
    return findings
