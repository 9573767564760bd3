"""The tracker's own upload target: WARCs from workers, checked before they are kept, batched for packing.

Per project, under the uploads directory:

    <slug>/incoming/<random>/<file>    being received (a directory per upload, so the checker sees the real name)
    <slug>/held/<claim>/<file>         checked, waiting for the claim that sent it to end (claim.json says which)
    <slug>/accepted/<file>             kept: its claim finished the item; accepted.jsonl says which items and who
    <slug>/ready/<stamp>-<hex>/        a batch cut for packing (by size, or by age on the sweeper's schedule)
    <slug>/packs/                      megawarcs the default hand-off packs batches into

Archive Team's targets keep anything that gunzips (megawarc checks no more); a bad WARC found at packing time can
no longer be fetched again by its worker. Here the upload is refused at once with the checker's findings, while
the worker still holds the item and can grab it again.

An upload is held until its claim ends, because a worker can upload and then lose its claim before `done` (its
lease ran out while it uploaded; the item went to someone else). Archive Team's targets keep that upload, and the
pack gets the item twice. Here the sweep settles each held claim by the queue's word (`claim_status`): a claim
that finished its item has its files accepted; one that ended any other way has them dropped (dropped.jsonl
says which); one still running waits. Every move is a link or rename on one filesystem, so tracker processes
sharing the directory never take the same file twice (the megawarc factory's rule).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.digests import file_sha256
from archiver.errors import ArchiverError
from archiver.queue import ItemState

log = logging.getLogger(__name__)

FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
WARC_SUFFIXES = (".warc.gz",)  # what the packer takes into a megawarc
FINDINGS_SHOWN = 10  # error findings quoted in a refusal; the worker can run `archiver check` for the rest

HELD_ORPHAN_AGE = 24 * 3600.0  # seconds before a held directory without its claim.json (a crash) is dropped

Handoff = Callable[[str, Path], None]
#: (slug, claim token) -> what became of that claim (ItemQueue.claim_status); the tracker supplies it
ClaimStatus = Callable[[str, str], "tuple[str, ItemState] | None"]


class UploadRefused(ArchiverError):
    """An upload the target will not keep: `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, error: str, message: str, findings: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.findings = status, error, findings or []


@dataclass(frozen=True)
class Accepted:
    file: str
    size: int
    sha256: str
    items: tuple[str, ...]
    already: bool = False  # the same bytes were accepted before (a retried upload)


def check_file_name(name: str) -> str:
    """The file name as kept, or UploadRefused: one plain name, no directories, no dot files, a WARC suffix."""
    if not FILE_RE.match(name) or ".." in name:
        raise UploadRefused(400, "bad_file_name", f"{name!r} is not a file name the target keeps: letters, digits, "
                                                  "'.', '_' and '-', no directories, starting with a letter or digit")
    if not name.endswith(WARC_SUFFIXES):
        raise UploadRefused(400, "not_a_warc", f"{name!r} does not end in .warc.gz: the target keeps WARC files "
                                               "only (zstd WARCs are not read by the checker yet)")
    return name


class UploadTarget:
    """Receives, checks, keeps and batches the uploads of every project under `root`."""

    def __init__(self, root: str | os.PathLike[str], *, chunk_bytes: int = 10 * 1024**3,
                 chunk_age: float = 3600.0, handoff: Handoff | None = None,
                 claim_status: ClaimStatus | None = None) -> None:
        self.root = Path(root).resolve()
        self.chunk_bytes = chunk_bytes
        self.chunk_age = chunk_age
        self.handoff = handoff if handoff is not None else pack_batch
        self.claim_status = claim_status  # None: no claims to wait for, held files are accepted at the next sweep
        self._record_lock = threading.Lock()

    def _dir(self, slug: str, kind: str) -> Path:
        path = self.root / slug / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---- receiving -----------------------------------------------------------------------------------------
    def incoming(self, slug: str, file: str) -> Path:
        """Where an upload of `file` is written while it arrives (a fresh directory of its own)."""
        spool = self._dir(slug, "incoming") / secrets.token_hex(8)
        spool.mkdir()
        return spool / file

    async def receive(self, chunks: AsyncIterator[bytes], path: Path, limit: int) -> int:
        """Write the body to `path`, refusing it (and deleting what was written) past `limit` bytes."""
        size = 0
        try:
            with open(path, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise UploadRefused(413, "too_large", f"the file is larger than this project's limit of "
                                                              f"{limit} bytes")
                    out.write(chunk)  # page-cache writes: short enough to do on the event loop
        except BaseException:
            self.discard(path)
            raise
        return size

    def discard(self, path: Path) -> None:
        shutil.rmtree(path.parent, ignore_errors=True)

    def accept(self, slug: str, path: Path, items: tuple[str, ...], downloader: str,
               tokens: tuple[str, ...] = ()) -> Accepted:
        """Check a received file and hold it for the claim `tokens` (one per item), or refuse it with the
        checker's findings. Blocking (the check reads the whole file): run it off the event loop."""
        from archiver.warc.check import check_files

        try:
            report = check_files([path])
            if not report.ok:
                errors = [f"{f.code}: {f.message}" for f in report.all_findings() if f.severity == "error"]
                raise UploadRefused(422, "warc_rejected", f"{path.name} is not a sound WARC ({report.errors} errors, "
                                                          "first ones listed); it was not kept", errors[:FINDINGS_SHOWN])
            size, sha = file_sha256(path)
            accepted = self.root / slug / "accepted" / path.name
            if accepted.exists() and file_sha256(accepted) != (size, sha):
                raise _name_taken(path.name)
            held = self._dir(slug, "held") / _claim_key(tokens)
            held.mkdir(exist_ok=True)
            try:
                os.link(path, held / path.name)  # fails if the name is taken, where a rename would overwrite
            except FileExistsError:
                if file_sha256(held / path.name) == (size, sha):
                    return Accepted(path.name, size, sha, items, already=True)
                raise _name_taken(path.name) from None
            # After the file, so a sweep that finds the claim settled and empties the directory meanwhile leaves
            # this file with its claim.json for the next sweep, never an orphan.
            _write_json(held / f".{path.name}.json", {"size": size, "sha256": sha, "at": time.time()})
            _write_json(held / "claim.json", {"items": list(items), "tokens": list(tokens), "downloader": downloader})
            return Accepted(path.name, size, sha, items)
        finally:
            self.discard(path)

    # ---- settling held claims ------------------------------------------------------------------------------
    def settle(self, slug: str, *, now: float | None = None) -> tuple[list[str], list[str]]:
        """Accept the held files of claims that finished their items, drop those of claims that ended any other
        way, leave the rest. Returns (accepted, dropped) file names."""
        held = self.root / slug / "held"
        accepted: list[str] = []
        dropped: list[str] = []
        now = time.time() if now is None else now
        for entry in list(os.scandir(held)) if held.is_dir() else ():
            if not entry.is_dir():
                continue
            claim = _read_json(Path(entry.path) / "claim.json")
            if claim is None:
                if now - entry.stat().st_mtime > HELD_ORPHAN_AGE:
                    dropped += self._drop(slug, Path(entry.path), {}, "held without its claim record")
                continue
            verdict = self._verdict(slug, claim)
            if verdict == "wait":
                continue
            if verdict == "accept":
                accepted += self._promote(slug, Path(entry.path), claim)
            else:
                dropped += self._drop(slug, Path(entry.path), claim, "its claim ended without done: the item "
                                                                     "was released, failed or went to someone else")
            _remove_if_settled(Path(entry.path))
        return accepted, dropped

    def _verdict(self, slug: str, claim: dict) -> str:
        if self.claim_status is None:
            return "accept"
        tokens = [t for t in claim.get("tokens") or () if isinstance(t, str)]
        statuses = [self.claim_status(slug, t) for t in tokens]
        if any(s is not None and s[1] == ItemState.CLAIMED for s in statuses):
            return "wait"
        # One finished item of a multi-item upload is enough: the file holds its capture, and dropping it would
        # lose that for the sake of the others, which their next claimants grab again.
        return "accept" if any(s is not None for s in statuses) else "drop"

    def _held_files(self, held: Path) -> list[Path]:
        return sorted(p for p in held.iterdir() if p.is_file() and FILE_RE.match(p.name) and p.name != "claim.json")

    def _promote(self, slug: str, held: Path, claim: dict) -> list[str]:
        accepted_dir = self._dir(slug, "accepted")
        kept = []
        for path in self._held_files(held):
            facts = _read_json(held / f".{path.name}.json") or {}
            name = path.name
            target = accepted_dir / name
            try:
                os.link(path, target)
            except FileExistsError:
                if os.path.samefile(path, target) or file_sha256(target) == file_sha256(path):
                    _unlink(path, held / f".{name}.json")  # another sweep took it, or the same bytes came twice
                    continue
                # Another claim's file of the same name (workers name files by item and time; a clock gone
                # wrong could repeat one): both are kept, this one under a name of its own.
                name = f"{path.name[:-len('.warc.gz')]}-{held.name[:8]}.warc.gz"
                target = accepted_dir / name
                try:
                    os.link(path, target)
                except FileExistsError:
                    _unlink(path, held / f".{path.name}.json")
                    continue
            except FileNotFoundError:  # another sweep took it meanwhile
                continue
            self._record(slug, "accepted.jsonl", {
                "file": name, "items": claim.get("items", []), "downloader": claim.get("downloader"),
                "size": facts.get("size", target.stat().st_size), "sha256": facts.get("sha256"),
                "at": facts.get("at"), "accepted_at": time.time()})
            _unlink(path, held / f".{path.name}.json")
            kept.append(name)
        return kept

    def _drop(self, slug: str, held: Path, claim: dict, why: str) -> list[str]:
        gone = []
        for path in self._held_files(held):
            try:
                path.unlink()
            except FileNotFoundError:  # another sweep dropped it first
                continue
            _unlink(held / f".{path.name}.json")
            self._record(slug, "dropped.jsonl", {"file": path.name, "items": claim.get("items", []),
                                                 "downloader": claim.get("downloader"), "why": why,
                                                 "at": time.time()})
            gone.append(path.name)
        if gone:
            log.info("%s: dropped %d held uploads of %s: %s", slug, len(gone), claim.get("items"), why)
        return gone

    def _record(self, slug: str, log_name: str, entry: dict) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._record_lock:  # one write per line, appended: whole lines even with several processes
            fd = os.open(self.root / slug / log_name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    # ---- status --------------------------------------------------------------------------------------------
    def status(self, slug: str) -> dict[str, Any]:
        """Where the project's uploads stand, for the admin: files held for running claims, accepted and waiting
        for a batch, batches waiting to be packed, packs, and uploads dropped with their claims."""
        home = self.root / slug
        held = [p for p in (home / "held").glob("*/*.warc.gz")] if (home / "held").is_dir() else []
        accepted = [p for p in (home / "accepted").glob("*.warc.gz")] if (home / "accepted").is_dir() else []
        ready = [p for p in (home / "ready").iterdir() if p.is_dir()] if (home / "ready").is_dir() else []
        packs = list((home / "packs").glob("*.megawarc.json.gz")) if (home / "packs").is_dir() else []
        return {"held_files": len(held), "held_bytes": _sizes(held), "accepted_files": len(accepted),
                "accepted_bytes": _sizes(accepted), "batches_waiting": len(ready), "packs": len(packs),
                "dropped_files": _lines(home / "dropped.jsonl")}

    # ---- batching ------------------------------------------------------------------------------------------
    def cut(self, slug: str, *, force: bool = False, now: float | None = None) -> Path | None:
        """Move the accepted files into a new batch when they reach `chunk_bytes`, when the oldest has waited
        `chunk_age` seconds, or when forced. Returns the batch directory, or None when it is not time."""
        accepted = self.root / slug / "accepted"
        files = []
        for entry in os.scandir(accepted) if accepted.is_dir() else ():
            if entry.is_file() and entry.name.endswith(WARC_SUFFIXES):
                st = entry.stat()
                files.append((st.st_mtime, entry.name, st.st_size))
        if not files:
            return None
        now = time.time() if now is None else now
        oldest = min(m for m, _n, _s in files)
        if not (force or sum(s for _m, _n, s in files) >= self.chunk_bytes or now - oldest >= self.chunk_age):
            return None
        batch = self._dir(slug, "ready") / f"{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}-{secrets.token_hex(4)}"
        batch.mkdir()
        moved = 0
        for _mtime, name, _size in sorted(files):
            try:
                os.rename(accepted / name, batch / name)
                moved += 1
            except FileNotFoundError:  # another tracker process took it into its own batch
                pass
        if not moved:
            batch.rmdir()
            return None
        return batch

    def sweep(self, slugs: list[str], *, force: bool = False) -> list[Path]:
        """Settle held claims, cut what is due for every project and hand each batch off. A failed hand-off leaves its batch in
        ready/ (logged) for the next attempt or a person; it never stops the other projects."""
        done = []
        for slug in slugs:
            self.settle(slug)
            batches = [p for p in sorted((self.root / slug / "ready").glob("*"))
                       if p.is_dir() and not p.name.endswith(".handoff")]
            batch = self.cut(slug, force=force)
            if batch is not None and batch not in batches:
                batches.append(batch)
            for batch in batches:
                claimed = batch.with_name(batch.name + ".handoff")
                try:
                    os.rename(batch, claimed)  # one process hands a batch off
                except OSError:
                    continue
                try:
                    self.handoff(slug, claimed)
                    done.append(claimed)
                except Exception:
                    log.exception("handing off upload batch %s of %s failed; it stays in ready/", batch.name, slug)
                    if claimed.exists():
                        os.rename(claimed, batch)
        return done


def pack_batch(slug: str, batch: Path) -> None:
    """The default hand-off: pack the batch into megawarcs in <slug>/packs/ (checking every file again), then
    remove the batch, whose bytes the megawarc now holds. Sending packs to the Internet Archive follows in the
    same sweep, for projects with upload settings (archiver.tracker.publish reads <slug>/packs/)."""
    from archiver.warc.megawarc import pack_run

    packs = batch.parent.parent / "packs"
    packs.mkdir(exist_ok=True)
    report = pack_run(batch, prefix=packs / slug)
    packed = {e.arcname for pack in report.packs for e in pack.entries}
    left = {p.relative_to(batch).as_posix() for p in batch.rglob("*") if p.is_file()} - packed
    if left:
        raise ArchiverError(f"packing {batch} left {len(left)} files out of the megawarc ({sorted(left)[:3]}...); "
                            "the batch is kept")
    shutil.rmtree(batch)


def _sizes(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):  # settled or cut meanwhile
            total += p.stat().st_size
    return total


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _claim_key(tokens: tuple[str, ...]) -> str:
    """The held directory of a claim: a digest, so claim tokens never appear in paths or listings."""
    return hashlib.sha256("\0".join(tokens).encode()).hexdigest()[:32]


def _name_taken(name: str) -> UploadRefused:
    return UploadRefused(409, "file_exists", f"a different {name} was already uploaded for this project; name "
                                             "files after their item and time")


def _write_json(path: Path, data: dict) -> None:
    """Write whole or not at all (a reader never sees half a file): a private temporary file, then a rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # claim.json holds claim tokens
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_if_settled(held: Path) -> None:
    """Remove a settled claim's directory, unless an upload of that claim landed in it meanwhile."""
    if any(p.name != "claim.json" and not p.name.endswith(".tmp") for p in held.iterdir()):
        return
    _unlink(held / "claim.json")
    with contextlib.suppress(OSError):  # not empty: a file arrived after all; the next sweep sees it
        held.rmdir()




class Sweeper:
    """A background thread that sweeps every `interval` seconds until stopped (the tracker app runs one)."""

    def __init__(self, target: UploadTarget, slugs: Callable[[], list[str]], interval: float = 60.0) -> None:
        self.target, self.slugs, self.interval = target, slugs, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upload-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.target.sweep(self.slugs())
            except Exception:  # the store may be briefly unreachable; try again next time
                log.exception("upload sweep failed")
