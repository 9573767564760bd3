"""Uploading megawarc packs, each to an Internet Archive item of its own, recorded in a ledger so that no pack
is lost or sent to two items, whoever uploads and however often it is interrupted.

The ledger is an SQLite table `uploads`: one row per pack, written with the pack's identifier *before* anything
is sent, and marked verified only after IA's listing of the item matched every file. So an upload killed
anywhere resumes right: an unverified row is uploaded again to the same item, where every file IA already holds
with the same MD5 is skipped (nothing is sent twice) and whatever is missing or different is sent; then it is
verified and marked. A pack never gets a second item, and a pack with no verified row is never forgotten.

Two users: a run (archiver.upload.runs: the table lives in the run's state.sqlite) and the tracker
(archiver.tracker.publish: a ledger file per project beside its packs).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from archiver.errors import ArchiverError
from archiver.faults import crash_point
from archiver.manifest import UploadSettings
from archiver.upload.credentials import Credentials
from archiver.upload.ia import RetryPolicy, upload
from archiver.upload.identifiers import run_identifier
from archiver.upload.metadata import RunInfo
from archiver.upload.plan import PlannedFile, plan_upload
from archiver.upload.report import UploadListener, UploadReport

# Between verification and the mark; named when runs were its only user (the crash tests kill there).
MARK_CRASH_POINT = "upload-run-before-mark"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    pack TEXT PRIMARY KEY,          -- the pack's name
    identifier TEXT NOT NULL,       -- its item, chosen once, before anything is sent
    started REAL NOT NULL,
    verified_at REAL,               -- NULL until IA's listing matched every file
    files TEXT                      -- JSON [{name, size, md5}] as verified
)"""


class UploadLedger:
    """The `uploads` table in the SQLite file `path` (created if missing; other tables in it are left alone)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30.0)
            with self._db:
                self._db.execute(_SCHEMA)
        except sqlite3.Error as e:
            raise ArchiverError(f"cannot record uploads in {self.path}: {e}") from e

    def __enter__(self) -> UploadLedger:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def get(self, pack: str) -> tuple[str, float | None] | None:
        """(identifier, verified_at or None) of a pack whose upload has started, else None."""
        row = self._db.execute("SELECT identifier, verified_at FROM uploads WHERE pack = ?", (pack,)).fetchone()
        return (row[0], row[1]) if row is not None else None

    def record_identifier(self, pack: str, identifier: str) -> str:
        """Record `identifier` for `pack` unless one is recorded already; the pack's identifier either way."""
        with self._db:
            # OR IGNORE, then read back: two uploaders of one pack agree on the first identifier recorded.
            self._db.execute("INSERT OR IGNORE INTO uploads (pack, identifier, started) VALUES (?, ?, ?)",
                             (pack, identifier, time.time()))
            return self._db.execute("SELECT identifier FROM uploads WHERE pack = ?", (pack,)).fetchone()[0]

    def mark_verified(self, pack: str, files: Iterable[PlannedFile]) -> None:
        with self._db:
            self._db.execute("UPDATE uploads SET verified_at = ?, files = ? WHERE pack = ?",
                             (time.time(), json.dumps([{"name": f.name, "size": f.size, "md5": f.md5}
                                                       for f in files]), pack))

    def all(self) -> dict[str, tuple[str, float | None]]:
        """pack -> (identifier, verified_at or None) for every pack an upload has started."""
        return {pack: (identifier, verified) for pack, identifier, verified in
                self._db.execute("SELECT pack, identifier, verified_at FROM uploads ORDER BY started, pack")}


@dataclass(frozen=True)
class Pack:
    """A pack to upload: its name in the ledger, the files its item gets, and how many items it holds (for the
    description; None: unknown). `files` may be a callable, called once the identifier is recorded, so that
    missing files are reported as this pack's failure."""

    name: str
    files: Sequence[Path] | Callable[[], Sequence[Path]]
    items: int | None = None


@dataclass
class PackUpload:
    pack: str
    identifier: str
    report: UploadReport | None = None
    error: str | None = None  # what stopped it before or instead of a report

    @property
    def ok(self) -> bool:
        return self.error is None and self.report is not None and self.report.ok

    def line(self) -> str:
        if self.error:
            return f"{self.pack} -> {self.identifier}: FAILED: {self.error}"
        r = self.report
        assert r is not None
        state = "verified" if r.ok else "NOT verified"
        sent = sum(1 for f in r.files if f.status == "uploaded")
        held = sum(1 for f in r.files if f.status == "skipped")
        return f"{self.pack} -> {self.identifier}: {state} ({sent} files sent, {held} already there)"

    def failure(self) -> str | None:
        """Why it is not verified, in one line (None when it is)."""
        if self.ok:
            return None
        if self.error or self.report is None:
            return self.error
        r = self.report
        failed = [f"{f.name}: {f.error}" for f in r.files if f.error]
        return "; ".join(failed + r.problems) or "not verified"


@dataclass
class PacksUploaded:
    uploads: list[PackUpload] = field(default_factory=list)  # packs sent (or resumed) by this call
    earlier: list[str] = field(default_factory=list)  # packs verified before this call

    @property
    def ok(self) -> bool:
        return all(u.ok for u in self.uploads)


def upload_packs(packs: Iterable[Pack], ledger: UploadLedger, settings: UploadSettings, project: str, *,
                 run: RunInfo | None = None, credentials: Credentials | None = None, endpoint: str | None = None,
                 retry: RetryPolicy | None = None, listener: UploadListener | None = None,
                 jobs: int | None = None) -> PacksUploaded:
    """Upload every pack the ledger does not hold as verified, each to its own item named by
    `settings.identifier` ({project}, {timestamp}, {rand8}; chosen once, then kept for every retry), with the
    metadata and collection of `settings` and a description from the WARCs (and `run`).

    Stops at the first pack that fails (IA's refusals, keys or limits, hold for the next pack too): its row
    stays unverified, and calling again resumes it in the same item. An identifier template that cannot make
    an identifier raises before anything is sent.
    """
    done = PacksUploaded()
    for pack in packs:
        row = ledger.get(pack.name)
        if row is not None and row[1] is not None:
            done.earlier.append(pack.name)
            continue
        identifier = row[0] if row is not None else ledger.record_identifier(
            pack.name, run_identifier(project, settings.identifier, now=datetime.now(timezone.utc)))
        attempt = PackUpload(pack.name, identifier)
        done.uploads.append(attempt)
        try:
            files = list(pack.files() if callable(pack.files) else pack.files)
            plan = plan_upload(files, identifier, settings.metadata, collection=settings.collection, jobs=jobs,
                               run=run, items=pack.items)
            attempt.report = upload(plan, credentials=credentials, endpoint=endpoint, retry=retry,
                                    listener=listener)
        except ArchiverError as e:
            attempt.error = str(e)
        if not attempt.ok:
            break
        crash_point(MARK_CRASH_POINT)
        ledger.mark_verified(pack.name, plan.files)
    return done


def pack_files(base: str | os.PathLike[str]) -> list[Path] | None:
    """The files of the megawarc BASE its item gets: the .warc.gz, the .tar if it holds anything, the .json.gz
    index. None when the .warc.gz or the index is missing."""
    from archiver.warc.megawarc import paths_of

    warc, tar, index = paths_of(base)
    if not (warc.is_file() and index.is_file()):
        return None
    return [warc] + ([tar] if tar.is_file() and tar.stat().st_size else []) + [index]
