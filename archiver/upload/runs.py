"""Uploading a run: pack its finished items into megawarcs, send each pack to an item of its own, and record a
pack as uploaded in the run state only once IA's listing of the item matches it.

The run state (DIR/state.sqlite) holds the ledger of archiver.upload.packs (table `uploads`): one row per pack,
written with the pack's identifier *before* anything is sent, and marked verified only after verification. So a
run killed anywhere resumes right: an unverified row is uploaded again to the same item, where every file IA
already holds with the same MD5 is skipped (nothing is sent twice) and whatever is missing or different is sent;
then it is verified and marked. A pack never gets a second item, and a pack with no verified row is never
forgotten.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.errors import ArchiverError, UsageError
from archiver.manifest import UploadSettings
from archiver.upload.credentials import Credentials, load_credentials
from archiver.upload.ia import RetryPolicy
from archiver.upload.metadata import read_run_info
from archiver.upload.packs import Pack, PackUpload, UploadLedger, pack_files, upload_packs
from archiver.upload.report import UploadListener

__all__ = ["DEFAULT_MAX_PACK_SIZE", "PackUpload", "RunUploadReport", "upload_run", "uploaded_packs"]  # PackUpload: from packs

DEFAULT_MAX_PACK_SIZE = 5 * 1024**3  # bytes of WARCs per pack: items of a few GiB, as Archive Team's are


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
    ledger = UploadLedger(state)  # the run state holds the ledger: one file to keep, back up and move
    try:
        info = read_run_info(run, project=project, manifest=manifest)
        extra = [info.manifest] if info and info.manifest else []  # the manifest goes beside every pack
        packs = [Pack(p.name, functools.partial(_pack_files, run, p.name, extra), len(p.items) or None)
                 for p in queue.packs()]
        done = upload_packs(packs, ledger, settings, project, run=info, credentials=credentials, endpoint=endpoint,
                            retry=retry, listener=listener, jobs=jobs)
        report.uploads, report.earlier = done.uploads, done.earlier
    finally:
        ledger.close()
        queue.close()
    report.elapsed = time.monotonic() - started
    return report


def uploaded_packs(run_dir: str | os.PathLike[str]) -> dict[str, tuple[str, float | None]]:
    """pack -> (identifier, verified_at or None) for every pack an upload has started, from the run state."""
    from archiver.queue import STATE_FILE

    with UploadLedger(Path(run_dir) / STATE_FILE) as ledger:
        return ledger.all()


def _pack_files(run: Path, pack: str, extra: list[Path]) -> list[Path]:
    files = pack_files(run / "packs" / pack)
    if files is None:
        raise ArchiverError(f"pack {pack} is recorded in the run state but its files are not in {run / 'packs'} "
                            "(packed with `archiver pack -o` elsewhere?); move them there and run again")
    return files + extra


def _unpacked_bytes(queue: Any) -> int:
    """Bytes of WARC files done items recorded that no pack holds yet."""
    packed = queue.packed_files()
    return sum(warc.size for name, (warc, _items) in queue.warc_files().items() if name not in packed)
