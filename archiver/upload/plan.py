"""What an upload will send: the files (WARCs checked, sizes and MD5s), the item's identifier and metadata.

Planning reads every file once for its MD5 (and, for a WARC without a CDXJ index beside it, its record headers
for the metadata in the same pass) and runs the checker on every WARC. Nothing is sent, so `--dry-run` is a plan.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from archiver.errors import ArchiverError, UsageError
from archiver.upload.identifiers import validate_identifier
from archiver.upload.metadata import (
    CaptureFacts,
    Metadata,
    RunInfo,
    derived_by_ia,
    facts_from_cdxj,
    facts_from_warc,
    generate_metadata,
    is_warc,
    merge_metadata,
    read_run_info,
)

ITEM_LIMIT = 1 << 40  # IA refuses items over 1 TiB
ITEM_ADVISED = 400 << 30  # Archive Team keeps items below 400 GiB
_BLOCK = 1 << 20
_IA_OWN = ("_meta.xml", "_files.xml", "_meta.sqlite", "_reviews.xml")  # <identifier>_meta.xml and so on
_MEGAWARC = ".megawarc.warc.gz"
_MEGAWARC_INDEX = ".megawarc.json.gz"


class WarcRefused(ArchiverError):
    """WARC files that fail the check; the message names each one and its first errors."""


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    name: str  # its name in the item
    size: int
    md5: str
    warc: bool


@dataclass
class UploadPlan:
    identifier: str
    files: list[PlannedFile]
    metadata: Metadata
    notes: list[str] = field(default_factory=list)  # what the user should know before sending

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        """The plan as text: the item, each file with its size and MD5, the metadata sent on creation."""
        lines = [f"item {self.identifier} (https://archive.org/details/{self.identifier})",
                 f"files ({len(self.files)}, {_size(self.total_size)}):"]
        width = max((len(f.name) for f in self.files), default=0)
        for f in self.files:
            lines.append(f"  {f.name:<{width}}  {f.size:>15,} bytes  md5 {f.md5}")
        lines.append("metadata (applied when IA creates the item):")
        for key, value in self.metadata.items():
            for v in value if isinstance(value, list) else [value]:
                lines.append(f"  {key}: {v}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"identifier": self.identifier, "metadata": self.metadata, "notes": self.notes,
                "files": [{"name": f.name, "path": str(f.path), "size": f.size, "md5": f.md5} for f in self.files]}


def plan_upload(paths: Iterable[str | os.PathLike[str]], identifier: str, metadata: Mapping[str, Any] | None = None,
                *, collection: str | None = None, force: bool = False, jobs: int | None = None,
                run: RunInfo | None = None, items: int | None = None) -> UploadPlan:
    """Plan the upload of `paths` to item `identifier`.

    A path is a file, or a run's output directory: then its packs (DIR/packs: each megawarc's .warc.gz, its
    non-empty .tar and its .json.gz index), the manifest and report.json. `metadata` is the user's, on top of
    what is generated from the WARCs; `run` and `items` say which run (and how many of its items) the files
    come from, for the description. WARCs with check errors are refused unless `force`.
    """
    # Everything that can be refused cheaply is refused before hours of hashing and checking.
    validate_identifier(identifier)
    merge_metadata({}, metadata, collection)
    notes: list[str] = []
    files, found_run = _expand([Path(p) for p in paths], notes)
    run = run or found_run
    if not files:
        raise UsageError("nothing to upload: give WARC files or a run's output directory")
    names = _remote_names(files, identifier)
    total = sum(p.stat().st_size for p in files)
    if total > ITEM_LIMIT:
        raise UsageError(f"the files add up to {_size(total)}; IA refuses items over 1 TiB. Upload them as several "
                         "items (archiver run --upload splits packs by upload.max_pack_size)")
    if total > ITEM_ADVISED:
        notes.append(f"the item will hold {_size(total)}; Archive Team keeps items below 400 GiB")
    warcs = [p for p in files if is_warc(p.name)]
    forced = _check(warcs, force, jobs, notes)

    planned = []
    facts = CaptureFacts()
    for path, name in zip(files, names, strict=True):
        indexes = _indexes(path, run.directory if run else None) if is_warc(path.name) else None
        size, md5, found = _fingerprint(path, read_warc=is_warc(path.name) and indexes is None)
        for index in indexes or []:
            facts.update(facts_from_cdxj(index))
        if found is not None:
            facts.update(found)
        planned.append(PlannedFile(path, name, size, md5, is_warc(path.name)))
    if not facts.complete:
        notes.append("some WARC could not be read to its end; the capture counts and dates describe what was read")
    generated = generate_metadata(facts, warcs=len(warcs), run=run, items=items, forced=forced)
    return UploadPlan(identifier, planned, merge_metadata(generated, metadata, collection), notes)


# ---- which files ----------------------------------------------------------------------------------------------
def _expand(paths: list[Path], notes: list[str]) -> tuple[list[Path], RunInfo | None]:
    files: list[Path] = []
    run = None
    for p in paths:
        if p.is_dir():
            found, info = run_files(p, notes)
            files += found
            run = run or info
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"{p} does not exist (expected WARC files or a run's output directory)")
    return list(dict.fromkeys(files)), run


def run_files(run_dir: Path, notes: list[str] | None = None) -> tuple[list[Path], RunInfo | None]:
    """The files an upload of a run directory sends: its packs, their indexes, the manifest and report.json."""
    packs = run_dir / "packs"
    indexes = sorted(packs.glob("*" + _MEGAWARC_INDEX)) if packs.is_dir() else []
    if not indexes:
        raise UsageError(f"{run_dir} has no megawarc packs in {packs}: pack it first with `archiver pack {run_dir}` "
                         "(or give the WARC files themselves)")
    files = []
    for index in indexes:  # an index exists only once its pack is whole
        base = str(index)[:-len(_MEGAWARC_INDEX)]
        warc, tar = Path(base + _MEGAWARC), Path(base + ".megawarc.tar")
        files += [warc] if warc.is_file() else []
        files += [tar] if tar.is_file() and tar.stat().st_size > 0 else []  # an empty .tar holds nothing
        files.append(index)
    run = read_run_info(run_dir)
    if run is not None:
        if run.manifest is not None:
            files.append(run.manifest)
        elif notes is not None and run.manifest_named:
            notes.append(f"the manifest {run.manifest_named} named in report.json was not found; it is not uploaded")
        files.append(run_dir / "report.json")
    return files, run


def _remote_names(files: list[Path], identifier: str) -> list[str]:
    names: dict[str, Path] = {}
    for path in files:
        name = path.name
        if derived_by_ia(name) or name in {identifier + own for own in _IA_OWN}:
            raise UsageError(f"{path}: IA makes {name!r} itself for a web item; leave it out of the upload")
        if name in names:
            raise UsageError(f"{names[name]} and {path} would both be {name!r} in the item; rename one of them")
        names[name] = path
    return list(names)


# ---- the check ------------------------------------------------------------------------------------------------
def _check(warcs: list[Path], force: bool, jobs: int | None, notes: list[str]) -> int:
    """Check every WARC; refuse those with errors unless `force`. Returns how many were forced through."""
    if not warcs:
        return 0
    from archiver.warc.check import check_files

    report = check_files(warcs, jobs=jobs or min(4, os.cpu_count() or 1))
    bad = []
    for r in report.files:
        errors = [f for f in r.findings if f.severity == "error"]
        errors += [f for f in report.findings if f.file == r.file and f.severity == "error"]
        if errors:
            shown = "; ".join(f"{f.code}{f'@{f.offset}' if f.offset is not None else ''}: {f.message}"
                              for f in errors[:3])
            more = f" (and {len(errors) - 3} more errors)" if len(errors) > 3 else ""
            bad.append(f"{r.file}: {shown}{more}")
    if bad and not force:
        raise WarcRefused(f"{len(bad)} WARC file{'s' if len(bad) != 1 else ''} failed the check, so nothing was "
                          "uploaded:\n" + "\n".join(f"  {b}" for b in bad) + "\nRun `archiver check FILE` for every "
                          "finding; pass --force to upload them anyway")
    notes += [f"uploaded despite check errors (--force): {b}" for b in bad]
    return len(bad)


# ---- reading the files ----------------------------------------------------------------------------------------
def _indexes(path: Path, run_root: Path | None) -> list[Path] | None:
    """CDXJ indexes that describe `path` without reading it: `<warc>.cdxj`, or for a megawarc the indexes of the
    run's WARCs it holds. None when some are missing (the WARC itself is read instead)."""
    own = path.with_name(path.name + ".cdxj")
    if own.is_file():
        return [own]
    if not path.name.endswith(_MEGAWARC):
        return None
    from archiver.warc.megawarc import MegawarcError, read_index

    base = str(path)[:-len(_MEGAWARC)]
    root = run_root or (path.parent.parent if path.parent.name == "packs" else None)
    if root is None or not Path(base + _MEGAWARC_INDEX).is_file():
        return None
    try:
        entries = read_index(base)
    except MegawarcError:
        return None
    found = [root / (e["header_fields"]["name"] + ".cdxj") for e in entries
             if e.get("target", {}).get("container") == "warc"]
    return found if all(p.is_file() for p in found) else None


class _Hashing:
    """A read-only stream that feeds an MD5 with every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)  # IA lists files by MD5; not a security use
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.md5.update(data)
        self.size += len(data)
        return data


def _fingerprint(path: Path, read_warc: bool) -> tuple[int, str, CaptureFacts | None]:
    """The file's size and MD5 (of the same bytes), and with `read_warc` its capture facts, in one pass."""
    try:
        with open(path, "rb") as f:
            stream = _Hashing(f)
            facts = facts_from_warc(stream) if read_warc else None  # type: ignore[arg-type]
            while stream.read(_BLOCK):  # the rest (all of it without read_warc; after damage with it)
                pass
    except OSError as e:
        raise ArchiverError(f"cannot read {path}: {e.strerror or e}") from None
    return stream.size, stream.md5.hexdigest(), facts


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
