"""Uploading a run: pack its finished items into megawarcs, send each pack to an item of its own, and record a
pack as uploaded in the run state only once IA's listing of the item matches it.

The run state (DIR/state.sqlite) gets a table of ours, `uploads`: one row per pack, written with the pack's
identifier *before* anything is sent, and marked verified only after verification. So a run killed anywhere
resumes right: an unverified row is uploaded again to the same item, where every file IA already holds with
the same MD5 is skipped (nothing is sent twice) and whatever is missing or different is sent; then it is
verified and marked. A pack never gets a second item, and a pack with no verified row is never forgotten.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archiver.errors import ArchiverError, UsageError
from archiver.faults import crash_point
from archiver.manifest import UploadSettings
from archiver.upload.credentials import Credentials, load_credentials
from archiver.upload.ia import RetryPolicy, upload
from archiver.upload.identifiers import run_identifier
from archiver.upload.metadata import read_run_info
from archiver.upload.plan import plan_upload
from archiver.upload.report import UploadListener, UploadReport

DEFAULT_MAX_PACK_SIZE = 5 * 1024**3  # bytes of WARCs per pack: items of a few GiB, as Archive Team's are

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    pack TEXT PRIMARY KEY,          -- the pack's name, as the packs table knows it
    identifier TEXT NOT NULL,       -- its item, chosen once, before anything is sent
    started REAL NOT NULL,
    verified_at REAL,               -- NULL until IA's listing matched every file
    files TEXT                      -- JSON [{name, size, md5}] as verified
)"""


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


@dataclass
class RunUploadReport:
    run_dir: str
    packed: list[str] = field(default_factory=list)  # packs made by this call
    uploads: list[PackUpload] = field(default_factory=list)  # packs sent (or resumed) by this call
    earlier: list[str] = field(default_factory=list)  # packs verified before this call
    held_back: int = 0  # bytes of finished WARCs left unpacked until they fill a pack (final=False)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return all(u.ok for u in self.uploads)

    def summary(self) -> str:
        done = sum(1 for u in self.uploads if u.ok)
        lines = [f"upload of {self.run_dir}: {len(self.packed)} packs made, {done} of {len(self.uploads)} packs "
                 f"uploaded and verified, {len(self.earlier)} verified earlier"
                 + (f"; {self.held_back:,} bytes wait for a full pack" if self.held_back else "")
                 + f" ({self.elapsed:.1f} s)"]
        for u in self.uploads:
            lines.append(f"  {u.line()}")
            if u.report is not None and not u.ok:
                lines += [f"    {line}" for line in u.report.summary().splitlines()]
        if not self.ok:
            lines.append("  run the same command again to resume: verified packs are not sent again, and files "
                         "IA already holds are skipped")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "ok": self.ok, "packed": self.packed, "earlier": self.earlier,
                "held_back": self.held_back, "elapsed": round(self.elapsed, 3),
                "uploads": [{"pack": u.pack, "identifier": u.identifier, "ok": u.ok, "error": u.error,
                             "report": u.report.to_dict() if u.report else None} for u in self.uploads]}


def upload_run(run_dir: str | os.PathLike[str], settings: UploadSettings, project: str, *,
               endpoint: str | None = None, max_pack_size: int | None = None, final: bool = True,
               manifest: str | os.PathLike[str] | None = None, credentials: Credentials | None = None,
               retry: RetryPolicy | None = None, listener: UploadListener | None = None,
               jobs: int | None = None) -> RunUploadReport:
    """Pack the run's finished items and upload every pack not yet verified, each to its own item named by
    `settings.identifier` ({project}, {timestamp}, {rand8}); metadata and collection from `settings`.

    Packs split at `max_pack_size` (else `settings.max_pack_size`, else DEFAULT_MAX_PACK_SIZE). With
    `final=False` (a run still going) finished WARCs are packed only once they fill a pack; with `final=True`
    (the run is over) whatever is left is packed too. `manifest` is the run's manifest file, uploaded beside
    each pack and read for the description. Stops at the first pack that fails; calling it again resumes.
    """
    from archiver.queue import STATE_FILE
    from archiver.queue.sqlite import SqliteQueue
    from archiver.warc.megawarc import pack_run

    started = time.monotonic()
    run = Path(run_dir)
    state = run / STATE_FILE
    if not state.is_file():
        raise UsageError(f"{run} is not a run directory (no {STATE_FILE}); upload its WARCs with archiver upload")
    credentials = credentials or load_credentials()  # before packing: missing keys should not wait for that
    size = max_pack_size or settings.max_pack_size or DEFAULT_MAX_PACK_SIZE
    report = RunUploadReport(str(run))

    queue = SqliteQueue(state)
    try:
        waiting = _unpacked_bytes(queue)
    finally:
        queue.close()
    if waiting and (final or waiting >= size):
        packed = pack_run(run, None, size, jobs=jobs)
        report.packed = [p.name for p in packed.packs]
    else:
        report.held_back = waiting

    queue = SqliteQueue(state)
    db = _open(state)
    try:
        info = read_run_info(run, project=project, manifest=manifest)
        for pack in queue.packs():
            row = db.execute("SELECT identifier, verified_at FROM uploads WHERE pack = ?", (pack.name,)).fetchone()
            if row is not None and row[1] is not None:
                report.earlier.append(pack.name)
                continue
            identifier = row[0] if row is not None else _choose_identifier(db, pack.name, settings, project)
            attempt = PackUpload(pack.name, identifier)
            report.uploads.append(attempt)
            try:
                files = _pack_files(run, pack.name) + ([info.manifest] if info and info.manifest else [])
                plan = plan_upload(files, identifier, settings.metadata, collection=settings.collection, jobs=jobs,
                                   run=info, items=len(pack.items) or None)
                attempt.report = upload(plan, credentials=credentials, endpoint=endpoint, retry=retry,
                                        listener=listener)
            except ArchiverError as e:
                attempt.error = str(e)
            if not attempt.ok:
                break
            crash_point("upload-run-before-mark")
            with db:
                db.execute("UPDATE uploads SET verified_at = ?, files = ? WHERE pack = ?",
                           (time.time(), json.dumps([{"name": f.name, "size": f.size, "md5": f.md5}
                                                     for f in plan.files]), pack.name))
    finally:
        db.close()
        queue.close()
    report.elapsed = time.monotonic() - started
    return report


def uploaded_packs(run_dir: str | os.PathLike[str]) -> dict[str, tuple[str, float | None]]:
    """pack -> (identifier, verified_at or None) for every pack an upload has started, from the run state."""
    from archiver.queue import STATE_FILE

    db = _open(Path(run_dir) / STATE_FILE)
    try:
        return {pack: (identifier, verified) for pack, identifier, verified in
                db.execute("SELECT pack, identifier, verified_at FROM uploads ORDER BY started, pack")}
    finally:
        db.close()


def _open(state: Path) -> sqlite3.Connection:
    """Our own connection to the run state (the queue module knows nothing of uploads): WAL is already on."""
    try:
        db = sqlite3.connect(str(state), timeout=30.0)
        with db:
            db.execute(_SCHEMA)
    except sqlite3.Error as e:
        raise ArchiverError(f"cannot record uploads in {state}: {e}") from e
    return db


def _choose_identifier(db: sqlite3.Connection, pack: str, settings: UploadSettings, project: str) -> str:
    """A fresh identifier for `pack`, recorded before anything is sent so a resumed upload uses the same one."""
    identifier = run_identifier(project, settings.identifier, now=datetime.now(timezone.utc))
    with db:
        # OR IGNORE, then read back: two uploaders of one run agree on the first identifier recorded.
        db.execute("INSERT OR IGNORE INTO uploads (pack, identifier, started) VALUES (?, ?, ?)",
                   (pack, identifier, time.time()))
        return db.execute("SELECT identifier FROM uploads WHERE pack = ?", (pack,)).fetchone()[0]


def _pack_files(run: Path, pack: str) -> list[Path]:
    from archiver.warc.megawarc import paths_of

    warc, tar, index = paths_of(run / "packs" / pack)
    if not (warc.is_file() and index.is_file()):
        raise ArchiverError(f"pack {pack} is recorded in the run state but its files are not in {run / 'packs'} "
                            "(packed with `archiver pack -o` elsewhere?); move them there and run again")
    return [warc] + ([tar] if tar.is_file() and tar.stat().st_size else []) + [index]


def _unpacked_bytes(queue: Any) -> int:
    """Bytes of WARC files done items recorded that no pack holds yet."""
    packed = queue.packed_files()
    return sum(warc.size for name, (warc, _items) in queue.warc_files().items() if name not in packed)
