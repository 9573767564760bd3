"""What an upload tells: each file's outcome, the item's report, and the listener told as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archiver.upload.plan import PlannedFile

UPLOADED, SKIPPED, FAILED, NOT_SENT = "uploaded", "skipped", "failed", "not sent"


@dataclass
class FileOutcome:
    name: str
    size: int
    md5: str
    status: str  # UPLOADED, SKIPPED (IA already held it), FAILED or NOT_SENT (an earlier file failed)
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    detail: str | None = None  # e.g. that a PUT landed although its answer was lost

    def line(self) -> str:
        rate = f", {self.size / self.seconds / 1e6:.1f} MB/s" if self.status == UPLOADED and self.seconds > 0 else ""
        tries = f", {self.attempts} attempts" if self.attempts > 1 else ""
        why = f": {self.error}" if self.error else (f" ({self.detail})" if self.detail else "")
        return f"{self.status:<8} {self.name} ({self.size:,} bytes{rate}{tries}){why}"


@dataclass
class UploadReport:
    identifier: str
    files: list[FileOutcome] = field(default_factory=list)
    verified: bool = False
    problems: list[str] = field(default_factory=list)  # what verification found
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    endpoint: str | None = None

    @property
    def ok(self) -> bool:
        return self.verified and not self.problems and all(f.status in (UPLOADED, SKIPPED) for f in self.files)

    @property
    def sent_bytes(self) -> int:
        return sum(f.size for f in self.files if f.status == UPLOADED)

    @property
    def url(self) -> str:
        return f"https://archive.org/details/{self.identifier}"

    def summary(self) -> str:
        counts = {s: sum(1 for f in self.files if f.status == s) for s in (UPLOADED, SKIPPED, FAILED, NOT_SENT)}
        where = f" via {self.endpoint}" if self.endpoint else ""
        head = (f"{self.identifier}{where}: {counts[UPLOADED]} uploaded ({self.sent_bytes:,} bytes), "
                f"{counts[SKIPPED]} already there, {counts[FAILED]} failed, {counts[NOT_SENT]} not sent; "
                + ("verified" if self.verified else "NOT verified") + f" in {self.elapsed:.1f} s")
        lines = [head] + [f"  {f.line()}" for f in self.files]
        lines += [f"  problem: {p}" for p in self.problems] + [f"  note: {n}" for n in self.notes]
        if self.ok:
            lines.append(f"  {self.url}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"identifier": self.identifier, "ok": self.ok, "verified": self.verified, "problems": self.problems,
                "notes": self.notes, "elapsed": round(self.elapsed, 3), "sent_bytes": self.sent_bytes,
                "files": [vars(f) for f in self.files]}


class UploadListener:
    """What an upload tells as it goes. These do nothing; the CLI's subclass draws a progress bar per file."""

    def file_started(self, file: PlannedFile, attempt: int) -> None:
        """A PUT of `file` begins (attempt 1, 2, ...): bytes sent count from 0 again."""

    def bytes_sent(self, file: PlannedFile, sent: int) -> None:
        """`sent` bytes of `file`'s body have been handed to the connection in this attempt."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """The file's outcome, once known."""

    def note(self, message: str) -> None:
        """Something worth telling: a retry and its wait, waiting for IA's listing."""
