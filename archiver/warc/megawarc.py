"""Megawarcs: Archive Team's upload format, written the way ArchiveTeam/megawarc's `pack` writes it.

A megawarc stands for an "imaginary tar" of the input files and is three files:

  BASE.megawarc.warc.gz   the valid WARCs, concatenated byte for byte (so it is itself a valid .warc.gz)
  BASE.megawarc.tar       every other input as a tar entry: its header, data and padding to 512 bytes,
                          the file padded to a 10240-byte tar record (0 bytes when nothing went there)
  BASE.megawarc.json.gz   one JSON line per input, in tar order, saying where it went and holding its tar
                          header, from which `restore` rebuilds the imaginary tar exactly

Every detail that restore or other megawarc tooling reads is as megawarc makes it. That includes the GNU tar
header built from os.stat (mode, uid, gid, size, float mtime, no user or group names), the key order, the
compact JSON, and `wget_at`, read from the first warcinfo record's `x-wget-at-*` lines.

Where we differ: megawarc only checks that a file gunzips. `pack_run` runs our checker on every input, and
`add` also verifies a sha256 when one was recorded; inputs that fail go to the .tar side, never into the WARC,
and the finished WARC side is checked again before it is kept. The three files are written as `.open` files
and renamed into place only when complete, the index last, so a megawarc whose index exists is whole.

`pack_run` packs a run directory: its finished `*.warc.gz` (never `.open` ones), split at a size, each item's
files kept together, and each pack recorded in the run's queue (DIR/state.sqlite) when there is one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import tarfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from archiver.errors import ArchiverError, UsageError
from archiver.faults import crash_point

WARC_SUFFIX = ".megawarc.warc.gz"
TAR_SUFFIX = ".megawarc.tar"
JSON_SUFFIX = ".megawarc.json.gz"
OPEN_SUFFIX = ".open"
_CHUNK = 1 << 20
_WARCINFO_LIMIT = 1 << 20  # decompressed bytes searched for the first record's end (a warcinfo is small)


class MegawarcError(ArchiverError):
    """A megawarc could not be written or read; the message names the file."""


@dataclass(frozen=True)
class Entry:
    """One input as packed."""

    arcname: str  # its name in the imaginary tar
    container: str  # "warc" or "tar"
    size: int
    sha256: str
    reason: str | None = None  # why it went to the tar side


def paths_of(base: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """The .warc.gz, .tar and .json.gz of the megawarc BASE."""
    b = os.fspath(base)
    return Path(b + WARC_SUFFIX), Path(b + TAR_SUFFIX), Path(b + JSON_SUFFIX)


def tar_header(path: Path, arcname: str) -> tuple[tarfile.TarInfo, bytes]:
    """The tar entry megawarc makes for a file: from os.stat, GNU format, no user or group names."""
    st = os.stat(path)
    info = tarfile.TarInfo()
    info.name = arcname.replace(os.sep, "/").lstrip("/")
    info.mode = st.st_mode  # all of st_mode, as megawarc sets it; tarfile keeps the permission bits
    info.uid, info.gid = st.st_uid, st.st_gid
    info.size = st.st_size
    info.mtime = st.st_mtime
    info.type = tarfile.REGTYPE
    return info, info.tobuf(tarfile.GNU_FORMAT)


def _padding(size: int) -> int:
    return (tarfile.BLOCKSIZE - size) % tarfile.BLOCKSIZE


class _WarcinfoSniffer:
    """megawarc's `read_metadata`: the `x-wget-at-*` lines of a leading warcinfo record, as lists per key."""

    _END = b"\n" + b"\r\n" * 2

    def __init__(self) -> None:
        self._d = zlib.decompressobj(31)
        self._data = b""
        self.done = False

    def feed(self, chunk: bytes) -> None:
        while chunk and not self.done:
            try:
                self._data += self._d.decompress(chunk, _WARCINFO_LIMIT)
            except zlib.error:
                self.done = True
                return
            chunk = self._d.unconsumed_tail
            if self._d.eof:  # next gzip member
                chunk = self._d.unused_data + chunk
                self._d = zlib.decompressobj(31)
            if self._END in self._data or len(self._data) >= _WARCINFO_LIMIT:
                self.done = True

    def result(self) -> dict[str, list[str]] | None:
        record = [s.strip() for s in self._data.split(self._END)[0].splitlines()]
        found: dict[str, list[str]] = {}
        if len(record) > 1 and record[1].lower() == b"warc-type: warcinfo":
            for line in record:
                if line.startswith(b"x-wget-at-") and b":" in line:
                    key, value = line.split(b"-", 3)[-1].split(b":", 1)
                    name = key.lower().strip().replace(b"-", b"_").decode("utf-8", "replace")
                    found.setdefault(name, []).append(value.strip().decode("utf-8", "replace"))
        return found or None


class MegawarcWriter:
    """Writes one megawarc. Use as a context manager: leaving it by an exception removes the `.open` files."""

    def __init__(self, base: str | os.PathLike[str]) -> None:
        self.base = Path(base)
        self.final = paths_of(self.base)
        for p in self.final:
            if p.exists():
                raise MegawarcError(f"{p} already exists; a megawarc is never overwritten")
        self._open = [Path(os.fspath(p) + OPEN_SUFFIX) for p in self.final]
        self.base.parent.mkdir(parents=True, exist_ok=True)
        files: list[BinaryIO] = []
        try:
            for tmp in self._open:
                files.append(open(tmp, "wb"))  # noqa: SIM115 - closed in finish/abort
        except OSError as e:
            for f, tmp in zip(files, self._open, strict=False):
                f.close()
                tmp.unlink(missing_ok=True)
            raise MegawarcError(f"cannot write {self.base}: {e.strerror or e}") from e
        self._warc, self._tar, self._json_raw = files
        # The gzip header names the final file, not the .open one.
        self._json = gzip.GzipFile(filename=self.final[2].name, mode="wb", fileobj=self._json_raw)
        self._pos = 0  # offset in the imaginary tar
        self.entries: list[Entry] = []

    def __enter__(self) -> MegawarcWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()

    @property
    def warc_size(self) -> int:
        return self._warc.tell()

    def add(self, path: str | os.PathLike[str], arcname: str, reason: str | None = None,
            sha256: str | None = None) -> Entry:
        """Add a file: to the WARC side when `reason` is None (and its sha256, if given, matches), else to the
        tar side with that reason."""
        path = Path(path)
        info, header = tar_header(path, arcname)
        entry_offset = self._pos
        block = len(header) + info.size + _padding(info.size)
        self._pos += block
        wget_at = None
        digest = ""
        if reason is None:
            start = self._warc.tell()
            sniffer = _WarcinfoSniffer()
            digest = self._copy(path, info.size, self._warc, sniffer)
            if sha256 and digest != sha256.lower():
                # Changed since it was recorded: keep it, but not as part of the WARC.
                self._warc.truncate(start)
                self._warc.seek(start)
                reason = f"sha256 {digest} differs from the {sha256} recorded when it was finished"
            else:
                wget_at = sniffer.result()
                target = OrderedDict(container="warc", offset=start, size=info.size)
        if reason is not None:
            start = self._tar.tell()
            self._tar.write(header)
            digest = self._copy(path, info.size, self._tar, None)
            self._tar.write(b"\0" * _padding(info.size))
            target = OrderedDict(container="tar", offset=start, size=block)
        fields = info.get_info()
        fields["type"] = fields["type"].decode("utf-8")
        line = OrderedDict(target=target,
                           src_offsets=OrderedDict(entry=entry_offset, data=entry_offset + len(header),
                                                   next_entry=entry_offset + block),
                           header_fields=fields,
                           header_base64=base64.b64encode(header).decode("utf-8"),
                           wget_at=wget_at)
        self._json.write(json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n")
        entry = Entry(info.name, target["container"], info.size, digest, reason)
        self.entries.append(entry)
        return entry

    @staticmethod
    def _copy(path: Path, size: int, out: BinaryIO, sniffer: _WarcinfoSniffer | None) -> str:
        h = hashlib.sha256()
        left = size
        with open(path, "rb") as f:
            while left > 0:
                chunk = f.read(min(left, _CHUNK))
                if not chunk:
                    raise MegawarcError(f"{path} ended {left} bytes early: it changed while being packed")
                h.update(chunk)
                if sniffer is not None and not sniffer.done:
                    sniffer.feed(chunk)
                out.write(chunk)
                left -= len(chunk)
        return h.hexdigest()

    @property
    def open_warc(self) -> Path:
        """The WARC side while it is being written (to check it before `finish`)."""
        self._warc.flush()
        return self._open[0]

    def finish(self) -> tuple[Path, Path, Path]:
        """Close, sync and rename the three files into place, the index last."""
        pad = (tarfile.RECORDSIZE - self._tar.tell()) % tarfile.RECORDSIZE
        if pad:
            self._tar.write(b"\0" * pad)
        self._json.close()
        for f in (self._warc, self._tar, self._json_raw):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for tmp, final in zip(self._open, self.final, strict=True):
            os.replace(tmp, final)
            crash_point("pack-mid-rename")
        _fsync_dir(self.base.parent)
        return self.final

    def abort(self) -> None:
        for f in (self._json, self._warc, self._tar, self._json_raw):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        for tmp in self._open:
            tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_index(base: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON lines of a megawarc's index."""
    index = paths_of(base)[2]
    try:
        with gzip.open(index, "rb") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, ValueError) as e:
        raise MegawarcError(f"cannot read the megawarc index {index}: {e}") from e


def restore(base: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Rebuild the imaginary tar of megawarc BASE into `out`, byte for byte as `megawarc restore` does."""
    warc, tar, index = paths_of(base)
    out = Path(out)
    if out.exists():
        raise MegawarcError(f"{out} already exists; restore never overwrites")
    tmp = Path(os.fspath(out) + OPEN_SUFFIX)
    try:
        with gzip.open(index, "rb") as lines, open(tmp, "wb") as dst:
            for n, line in enumerate(lines, 1):
                entry = json.loads(line)
                target = entry["target"]
                if target["container"] == "warc":
                    if "header_base64" in entry:
                        dst.write(base64.b64decode(entry["header_base64"]))
                    elif "header_string" in entry:  # megawarcs from the Python 2 era
                        dst.write(entry["header_string"].encode("latin-1"))
                    else:
                        raise MegawarcError(f"{index} line {n}: no header_base64 or header_string")
                    _copy_range(warc, target["offset"], target["size"], dst)
                elif target["container"] == "tar":
                    _copy_range(tar, target["offset"], target["size"], dst)
                else:
                    raise MegawarcError(f"{index} line {n}: unknown container {target['container']!r}")
                dst.write(b"\0" * _padding(target["size"]))
            pad = (tarfile.RECORDSIZE - dst.tell()) % tarfile.RECORDSIZE
            dst.write(b"\0" * pad)
        os.replace(tmp, out)
    except (OSError, EOFError, ValueError, KeyError) as e:
        tmp.unlink(missing_ok=True)
        raise MegawarcError(f"cannot restore {base}: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _copy_range(path: Path, offset: int, size: int, out: BinaryIO) -> None:
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left > 0:
            chunk = f.read(min(left, _CHUNK))
            if not chunk:
                raise MegawarcError(f"{path} ends before offset {offset + size}: the megawarc is truncated")
            out.write(chunk)
            left -= len(chunk)


# ---- packing a run directory ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackResult:
    name: str  # BASE's file name: how the run state knows the pack
    base: Path
    entries: tuple[Entry, ...]
    items: tuple[str, ...]  # the queue's items whose files it holds (empty without a queue)
    warc_size: int
    tar_size: int

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        return paths_of(self.base)


@dataclass
class PackReport:
    packs: list[PackResult]
    skipped: list[tuple[str, str]]  # (file, why it was not packed)
    open_files: int  # `.open` files of an unfinished grab, never packed


@dataclass
class _Input:
    path: Path
    arcname: str
    size: int
    sha256: str | None  # as recorded when its item was done
    items: tuple[str, ...]


def pack_run(run_dir: str | os.PathLike[str], prefix: str | os.PathLike[str] | None = None,
             max_size: int | None = None, *, verify: bool = True, jobs: int | None = None,
             progress: Callable[[PackResult], None] | None = None) -> PackReport:
    """Pack the finished WARCs of `run_dir` into megawarcs named PREFIX-YYYYmmddHHMMSS-NNNN.

    PREFIX defaults to RUN_DIR/packs/<run dir name>. With a queue (RUN_DIR/state.sqlite) only files recorded by
    done items are packed, an item's files stay in one pack, and each pack is recorded in the queue. Files
    already in a pack (recorded, or listed by an index beside PREFIX) are skipped, so packing again only packs
    what is new. `max_size` (bytes of input per pack) splits packs between items; one item larger than it
    gets a pack of its own.
    """
    from archiver.queue import STATE_FILE
    from archiver.queue.sqlite import SqliteQueue

    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"{run} is not a directory: give the output directory of a grab or run")
    if max_size is not None and max_size <= 0:
        raise UsageError(f"--max-size must be a positive size, not {max_size}")
    prefix = Path(prefix) if prefix else run / "packs" / (re.sub(r"[^A-Za-z0-9._-]+", "-", run.resolve().name)
                                                          .strip("-") or "pack")
    queue = SqliteQueue(run / STATE_FILE) if (run / STATE_FILE).exists() else None
    try:
        skipped: list[tuple[str, str]] = []
        recorded = _recorded_files(run, queue)
        _remove_unfinished_packs(prefix.parent)
        packed = _already_packed(prefix.parent, queue, recorded)
        inputs = []
        for path in sorted(run.rglob("*.warc.gz")):
            if path.name.endswith(WARC_SUFFIX) or not path.is_file():
                continue
            arcname = path.relative_to(run).as_posix()
            if arcname in packed:
                skipped.append((arcname, "already in a pack"))
                continue
            size = path.stat().st_size
            if queue is None:
                inputs.append(_Input(path, arcname, size, None, ()))
            elif arcname in recorded:
                sha, items = recorded[arcname]
                inputs.append(_Input(path, arcname, size, sha, items))
            else:
                skipped.append((arcname, "no done item recorded it (its item is still being grabbed, or it "
                                         "is left from a failed attempt)"))
        open_files = sum(1 for p in run.rglob("*" + OPEN_SUFFIX) if ".megawarc." not in p.name)

        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        packs = []
        serial = 0
        for group in _split(inputs, max_size):
            serial += 1
            # Another pack run in the same second may have taken this serial already.
            while any(p.exists() for p in paths_of(f"{prefix}-{stamp}-{serial:04d}")):
                serial += 1
            result = _write_pack(Path(f"{prefix}-{stamp}-{serial:04d}"), group, verify, jobs)
            if queue is not None:
                crash_point("pack-before-record")
                queue.record_pack(result.name, result.items, [e.arcname for e in result.entries],
                                  info=_pack_info(result))
            packs.append(result)
            if progress is not None:
                progress(result)
        return PackReport(packs, skipped, open_files)
    finally:
        if queue is not None:
            queue.close()


def _recorded_files(run: Path, queue: Any) -> dict[str, tuple[str, tuple[str, ...]]]:
    """arcname -> (sha256, items) of the WARC files done items recorded (names relative to the run dir)."""
    if queue is None:
        return {}
    out = {}
    for name, (warc, items) in queue.warc_files().items():
        p = Path(name)
        if p.is_absolute():
            try:
                p = p.relative_to(run.resolve())
            except ValueError:
                continue  # outside the run directory: not ours to pack
        out[p.as_posix()] = (warc.sha256, tuple(items))
    return out


def _remove_unfinished_packs(out_dir: Path) -> None:
    """A packer killed while renaming leaves `.open` files and pack parts without their index (renamed last):
    such a pack never finished, its inputs are still unpacked, so its parts go."""
    if not out_dir.is_dir():
        return
    for path in out_dir.glob("*.megawarc.*" + OPEN_SUFFIX):
        path.unlink(missing_ok=True)
    for suffix in (WARC_SUFFIX, TAR_SUFFIX):
        for path in out_dir.glob("*" + suffix):
            if not Path(os.fspath(path)[:-len(suffix)] + JSON_SUFFIX).exists():
                path.unlink(missing_ok=True)


def _already_packed(out_dir: Path, queue: Any, recorded: dict[str, tuple[str, tuple[str, ...]]]) -> set[str]:
    """Files some pack holds. A pack on disk that the queue does not know (the packer was killed between the
    rename and the record) is recorded now."""
    packed = set(queue.packed_files()) if queue is not None else set()
    known = {p.name for p in queue.packs()} if queue is not None else set()
    for index in sorted(out_dir.glob("*" + JSON_SUFFIX)) if out_dir.is_dir() else []:
        base = Path(os.fspath(index)[:-len(JSON_SUFFIX)])
        names = [e["header_fields"]["name"] for e in read_index(base)]
        packed.update(names)
        # Only a pack of this run's files is recorded: PREFIX may sit among other runs' packs.
        if queue is not None and base.name not in known and any(n in recorded for n in names):
            items = dict.fromkeys(i for n in names for i in recorded.get(n, ("", ()))[1])
            queue.record_pack(base.name, list(items), names, info={"recovered": True})
    return packed


def _split(inputs: list[_Input], max_size: int | None) -> list[list[_Input]]:
    """Consecutive groups of at most `max_size` input bytes, never splitting one item's files."""
    units: dict[tuple[str, ...] | str, list[_Input]] = {}
    for i in inputs:
        units.setdefault(i.items or i.arcname, []).append(i)
    groups: list[list[_Input]] = []
    size = 0
    for unit in units.values():
        unit_size = sum(i.size for i in unit)
        if not groups or (max_size is not None and size + unit_size > max_size and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].extend(unit)
        size += unit_size
    return groups


def _write_pack(base: Path, group: list[_Input], verify: bool, jobs: int | None) -> PackResult:
    reasons = _check([i.path for i in group], jobs)
    with MegawarcWriter(base) as w:
        for i in group:
            w.add(i.path, i.arcname, reasons[str(i.path)], sha256=i.sha256)
        if verify and w.warc_size:
            _verify(w.open_warc, base)
        warc, tar, _index = w.finish()
    items = tuple(dict.fromkeys(item for i in group for item in i.items))
    return PackResult(base.name, base, tuple(w.entries), items, warc.stat().st_size, tar.stat().st_size)


def _check(paths: list[Path], jobs: int | None) -> dict[str, str | None]:
    """Why each file must go to the tar side (its first check errors), or None when it checks clean. Checked as
    one set, so records that refer across an item's files resolve."""
    from archiver.warc.check import check_files

    report = check_files(paths, jobs=jobs or min(4, os.cpu_count() or 1))
    out: dict[str, str | None] = {}
    for r in report.files:
        errors = [f for f in r.findings if f.severity == "error"]
        errors += [f for f in report.findings if f.file == r.file and f.severity == "error"]
        out[r.file] = None
        if errors:
            more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
            out[r.file] = f"fails the check: {errors[0].code}: {errors[0].message}{more}"
    return out


def _verify(warc: Path, base: Path) -> None:
    from archiver.warc.check import check_file

    errors = [f for f in check_file(warc).findings if f.severity == "error"]
    if errors:
        raise MegawarcError(f"the WARC side of {base.name} does not check clean ({errors[0].code} at offset "
                            f"{errors[0].offset}: {errors[0].message}); its inputs each did, so nothing was kept. "
                            "Report this as a bug with the input files")


def _pack_info(result: PackResult) -> dict[str, Any]:
    return {"warc_size": result.warc_size, "tar_size": result.tar_size,
            "files": {e.arcname: {"container": e.container, "size": e.size, "sha256": e.sha256,
                                  **({"reason": e.reason} if e.reason else {})} for e in result.entries}}
