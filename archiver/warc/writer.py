"""Writing WARC files: naming, warcinfo, one gzip member per record, rotation, an atomic finish.

A file is written as `<prefix>-<YYYYmmddHHMMSS>-<serial>.warc.gz.open`, and only when it is complete (its crawl
log written, flushed and fsynced) is it renamed to `.warc.gz`, so a half-written WARC is never mistaken for a
finished one. Each crawl worker owns its writer; writers never share a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from archiver import __version__
from archiver.capture.http import Exchange, sha1_b32, warc_date
from archiver.capture.records import header_block, new_record_id, safe_uri, warc_fields
from archiver.faults import crash_point

DEFAULT_MAX_SIZE = 5 * 1024**3
# Level 6 by measurement (see README): on text it compresses as well as 9 at ~90% of the time, and on
# incompressible payloads (PDFs, images) every level runs at ~50 MB/s — the cap that holds wget (-9) at
# ~36 MB/s — so incompressible bodies are detected by sampling and stored (level 0, ~480 MB/s) instead.
DEFAULT_COMPRESS_LEVEL = 6
SAMPLE_ABOVE = 128 * 1024  # bodies at least this large are sampled for compressibility
SAMPLE_SIZE = 32 * 1024
INCOMPRESSIBLE = 0.97  # a sample that level 1 shrinks by less than 3% is stored, not deflated

OPEN_SUFFIX = ".open"
_MIME_END = re.compile(r"[;\s]")  # cdxj-indexer's rule for the "mime" field
CRAWL_LOG_URI = "urn:x-archiver:crawl-log"


class RecordRef:
    """Where a record landed: for logs, indexes and completeness checks."""

    __slots__ = ("filename", "offset", "length", "record_id")

    def __init__(self, filename: str, offset: int, length: int, record_id: str) -> None:
        self.filename, self.offset, self.length, self.record_id = filename, offset, length, record_id


class WarcWriter:
    """Writes records into a series of WARC files, rotating at `max_size`."""

    def __init__(self, directory: str | os.PathLike, prefix: str, *, next_serial: Callable[[], int],
                 max_size: int = DEFAULT_MAX_SIZE, compress_level: int = DEFAULT_COMPRESS_LEVEL,
                 info: Iterable[tuple[str, str]] = ()) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.next_serial = next_serial
        self.max_size = max_size
        self.level = compress_level
        self.info = list(info)
        self.finished: list[Path] = []
        self._f = None
        self._path: Path | None = None
        self._offset = 0
        self._warcinfo_id = ""
        self._log: list[bytes] = []
        self._entries: list[tuple] = []  # index facts of the current file's response and resource records
        self.index: dict[str, list[tuple]] = {}  # finished file -> its index facts (see archiver.warc.index)
        self.records = 0

    # ---- files -------------------------------------------------------------------------------------------------
    @property
    def current(self) -> Path | None:
        return self._path

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:  # never overwrite: a name taken (a resumed run in the same second) takes the next serial
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
            name = f"{self.prefix}-{stamp}-{self.next_serial():05d}.warc.gz"
            self._path = self.directory / name
            if self._path.exists():
                continue
            try:
                self._f = open(self.directory / (name + OPEN_SUFFIX), "xb", buffering=1 << 20)
                break
            except FileExistsError:
                continue
        self._offset = 0
        self._entries = []  # not the log: lines logged before a file was open belong to this one
        self._write_warcinfo(name)

    def _write_warcinfo(self, name: str) -> None:
        self._warcinfo_id = new_record_id()
        fields = [
            ("software", f"archiver/{__version__} (Python {sys.version.split()[0]})"),
            ("format", "WARC File Format 1.1"),
            ("conformsTo", "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
            ("hostname", socket.gethostname()),
        ]
        fields += self.info
        block = warc_fields(fields)
        head = header_block([
            ("WARC-Type", "warcinfo"),
            ("WARC-Record-ID", self._warcinfo_id),
            ("WARC-Date", warc_date()),
            ("WARC-Filename", name),
            ("Content-Type", "application/warc-fields"),
            ("Content-Length", len(block)),
            ("WARC-Block-Digest", _digest(block)),
        ])
        self._write_record(head, (block,), len(block))

    def finish(self) -> Path | None:
        """Write the crawl log, flush, fsync and rename the current file to its final name."""
        if self._f is None:
            return None
        if self._log:
            self.write_resource(CRAWL_LOG_URI, b"".join(self._log), "application/x-ndjson")
            self._log = []
        f, path = self._f, self._path
        self._f = None
        f.flush()
        os.fsync(f.fileno())
        f.close()
        crash_point("warc-before-rename")
        os.replace(str(path) + OPEN_SUFFIX, path)
        _fsync_dir(path.parent)
        crash_point("warc-after-rename")
        self.finished.append(path)
        self.index[str(path)] = self._entries
        self._entries = []
        self._path = None
        return path

    close = finish

    def _ensure_open(self) -> None:
        if self._f is None:
            self._open()

    def _maybe_rotate(self) -> None:
        if self._offset >= self.max_size:
            self.finish()

    # ---- records -----------------------------------------------------------------------------------------------
    def write_exchange(self, ex: Exchange, *, outlinks: list[tuple[str, str, str]] | None = None,
                       via: str | None = None) -> RecordRef:
        """Request, response and (for pages) an outlinks metadata record, all dated at capture start."""
        self._ensure_open()
        req_id, resp_id = new_record_id(), new_record_id()
        uri = safe_uri(ex.url)
        common = [("WARC-Date", ex.date), ("WARC-Target-URI", uri)]
        if ex.ip:
            common.append(("WARC-IP-Address", ex.ip))
        common.append(("WARC-Warcinfo-ID", self._warcinfo_id))
        req_head = header_block([
            ("WARC-Type", "request"), ("WARC-Record-ID", req_id), *common,
            ("WARC-Concurrent-To", resp_id),
            ("Content-Type", "application/http;msgtype=request"),
            ("WARC-Block-Digest", _digest(ex.request)),
            ("Content-Length", len(ex.request)),
        ])
        self._write_record(req_head, (ex.request,), len(ex.request))
        spool = ex.response
        resp_fields = [
            ("WARC-Type", "response"), ("WARC-Record-ID", resp_id), *common,
            ("WARC-Concurrent-To", req_id),
            ("Content-Type", "application/http;msgtype=response"),
            ("WARC-Block-Digest", ex.block_digest),
            ("WARC-Payload-Digest", ex.payload_digest),
        ]
        if ex.truncated:
            resp_fields.append(("WARC-Truncated", ex.truncated))
        resp_fields.append(("Content-Length", spool.size))
        offset = self._offset
        level = self._level_for(ex)
        self._write_record(header_block(resp_fields), spool.chunks(), spool.size, level)
        ref = RecordRef(self._path.name, offset, self._offset - offset, resp_id)
        ctype = ex.header("content-type")
        self._entries.append((uri, ex.date, _MIME_END.split(ctype, 1)[0].strip() if ctype else None,
                              str(ex.status), ex.payload_digest, ref.length, offset))
        if outlinks:
            lines = [("via", via)] if via else []
            lines += [("outlink", f"{url} {hop} {how}") for url, hop, how in outlinks]
            block = warc_fields(lines)
            head = header_block([
                ("WARC-Type", "metadata"), ("WARC-Record-ID", new_record_id()), ("WARC-Date", ex.date),
                ("WARC-Target-URI", uri), ("WARC-Concurrent-To", resp_id),
                ("WARC-Warcinfo-ID", self._warcinfo_id),
                ("Content-Type", "application/warc-fields"), ("WARC-Block-Digest", _digest(block)),
                ("Content-Length", len(block)),
            ])
            self._write_record(head, (block,), len(block))
        self.records += 1
        self._maybe_rotate()
        return ref

    def write_resource(self, uri: str, block: bytes, content_type: str) -> None:
        self._ensure_open()
        head = header_block([
            ("WARC-Type", "resource"), ("WARC-Record-ID", new_record_id()), ("WARC-Date", warc_date()),
            ("WARC-Target-URI", uri), ("WARC-Warcinfo-ID", self._warcinfo_id),
            ("Content-Type", content_type), ("WARC-Block-Digest", _digest(block)),
            ("WARC-Payload-Digest", _digest(block)), ("Content-Length", len(block)),
        ])
        offset = self._offset
        self._write_record(head, (block,), len(block))
        if content_type != "application/warc-fields":  # as cdxj-indexer: warc-fields resources are not indexed
            self._entries.append((uri, warc_date_of(head), _MIME_END.split(content_type, 1)[0].strip(), None,
                                  _digest(block), self._offset - offset, offset))

    def log(self, entry: dict) -> None:
        """Add a line to the crawl log stored at the end of the current (or next) file."""
        self._log.append(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")

    def _level_for(self, ex: Exchange) -> int:
        level = self.level
        size = ex.response.size - ex.head_len
        if level == 0 or size < SAMPLE_ABOVE:
            return level
        spool = ex.response
        starts = (ex.head_len, ex.head_len + size // 2 - SAMPLE_SIZE // 2, ex.response.size - SAMPLE_SIZE)
        sample = b"".join(spool.read_range(s, SAMPLE_SIZE) for s in starts)
        if len(zlib.compress(sample, 1)) > INCOMPRESSIBLE * len(sample):
            return 0
        return level

    def _write_record(self, head: bytes, block: Iterable[bytes], length: int, level: int | None = None) -> None:
        c = zlib.compressobj(self.level if level is None else level, zlib.DEFLATED, 31)
        f = self._f
        if length <= 1 << 20:
            parts = [c.compress(head)]
            for chunk in block:
                parts.append(c.compress(chunk))
            parts.append(c.compress(b"\r\n\r\n"))
            parts.append(c.flush())
            data = b"".join(parts)
            f.write(data)
            self._offset += len(data)
            return
        n = f.write(c.compress(head))
        for chunk in block:
            n += f.write(c.compress(chunk))
        n += f.write(c.compress(b"\r\n\r\n"))
        n += f.write(c.flush())
        self._offset += n


def warc_date_of(head: bytes) -> str:
    start = head.index(b"WARC-Date: ") + 11
    return head[start:head.index(b"\r\n", start)].decode("ascii")


def _digest(data: bytes) -> str:
    return sha1_b32(hashlib.sha1(data))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
