"""CDXJ indexes of WARC files, through cdxj-indexer (the format pywb and the Wayback Machine tooling read).

Grab writes `<warc>.cdxj` beside each finished WARC; `archiver index` does the same for any WARC.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from cdxj_indexer.main import CDXJIndexer

from archiver.errors import ArchiverError


class IndexFailed(ArchiverError):
    """A WARC that cannot be indexed (missing, or not a WARC)."""


def write_index(warc_path: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None) -> Path:
    """Write a sorted CDXJ index of one WARC, by default to `<warc>.cdxj` beside it; returns the index path.

    The index is written to a temporary name and renamed, so a reader never sees half an index.
    """
    warc = Path(warc_path)
    out = Path(out_path) if out_path is not None else warc.with_name(warc.name + ".cdxj")
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            _index([warc], fh)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def write_entries(warc_path: str | os.PathLike[str], entries: Iterable[tuple]) -> Path:
    """Write `<warc>.cdxj` from the facts the writer kept while writing, without reading the WARC again.

    cdxj-indexer re-reads and re-parses every record (on a 2,000-page grab that is a third of the whole run);
    the writer already knows each record's URL, date, type, status, digest, offset and length. The lines are
    exactly cdxj-indexer's (same SURT keys through the `surt` package it uses, same fields in the same order,
    same sort), which a test checks against cdxj-indexer itself.

    `entries`: (url, warc_date, mime, status, digest, length, offset) per response or resource record.
    """
    import surt  # imported here: it pulls in tldextract, ~20 MiB that `archiver check` does not need

    warc = Path(warc_path)
    name = warc.name
    lines = []
    for url, date, mime, status, digest, length, offset in entries:
        try:
            key = surt.surt(url)
        except Exception:  # as cdxj-indexer: a URL surt cannot parse is its own key
            key = url
        fields = {"url": url}
        if mime:
            fields["mime"] = mime
        if status:
            fields["status"] = status
        if digest:
            fields["digest"] = digest
        fields.update(length=str(length), offset=str(offset), filename=name)
        stamp = "".join(ch for ch in date if ch.isdigit())[:14]
        lines.append(f"{key} {stamp} {json.dumps(fields)}\n")
    lines.sort()
    out = warc.with_name(name + ".cdxj")
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def index_files(paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str] | TextIO) -> None:
    """Write one sorted CDXJ index of several WARCs to a path or an open text stream."""
    warcs = [Path(p) for p in paths]
    if hasattr(out, "write"):
        _index(warcs, out)  # type: ignore[arg-type]
        return
    target = Path(out)  # type: ignore[arg-type]
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            _index(warcs, fh)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _index(warcs: list[Path], fh: TextIO) -> None:
    for warc in warcs:
        if not warc.is_file():
            raise IndexFailed(f"cannot index {warc}: no such file")
    # post_append stays off: in that mode cdxj-indexer copies every record's *decoded* content into a temp file
    # (bufferiter.buffer_record_content), so one gzip-bomb response costs gigabytes of disk and minutes; and
    # archiver only records GETs, which post_append does not change.
    indexer = CDXJIndexer(fh, [str(w) for w in warcs], sort=True, post_append=False)
    try:
        indexer.process_all()
    except Exception as e:  # warcio raises several types for a damaged file; all mean the same to the user
        raise IndexFailed(f"cannot index {', '.join(map(str, warcs))}: {e}; run `archiver check` on it") from e
