"""HTTP messages inside WARC records, read as a stream: headers, chunked framing, payload digests, the decoded head.

The payload digest is computed both ways at once when the body is chunked: over the raw bytes after the headers
(what wget and warcio write) and over the entity body with the chunk framing removed (what ISO 28500 defines).
Content-encoding is never removed for digests; it is removed only for the head that content checks look at.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archiver.sites.base import HEAD_BYTES

MAX_HTTP_HEADER = 1 << 20  # HTTP headers longer than this are reported as never ending
HEADER_WINDOW = 16384
_STATUS_LINE = re.compile(r"HTTP/\d(?:\.\d)? (\d{3})(?: .*)?")
_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/\d(?:\.\d)?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")
_CHUNK_SIZE_PREFIX = re.compile(rb"[0-9A-Fa-f]*[ \t]*\r?")  # the start of a size line still to be completed
MAX_CHUNK_LINE = 4096


@dataclass
class HttpResult:
    """What an HTTP block turned out to hold."""

    status: int | None = None  # responses
    method: str | None = None  # requests
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    header_length: int = 0
    raw_length: int = 0  # bytes after the headers, as stored
    entity_length: int = 0  # bytes after removing the chunk framing (== raw_length when not chunked)
    chunked: bool = False
    chunked_valid: bool = False  # the chunk framing parsed (as far as it goes)
    chunked_complete: bool = False  # the last-chunk (size 0) was seen
    raw_digest: bytes | None = None
    entity_digest: bytes | None = None  # only when chunked and the framing was valid
    head: bytes = b""  # first HEAD_BYTES of the payload, content-encoding removed when possible
    body: bytes | None = None  # the whole decoded payload when asked for and small enough
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, message)


def _header_end(data: bytes) -> tuple[int, int]:
    """(index of the empty line that ends HTTP headers, its length: 4 for CRLF CRLF, 2 for LF LF), or (-1, 0)."""
    end = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, end if end >= 0 else len(data))
    if lf >= 0:
        return lf, 2
    return (end, 4) if end >= 0 else (-1, 0)


class Dechunker:
    """Removes chunked transfer coding from a stream, passing entity bytes to `sink`."""

    SIZE, DATA, DATA_END, TRAILER, DONE = range(5)

    def __init__(self, sink: Callable[[memoryview], None]) -> None:
        self.sink = sink
        self.state = self.SIZE
        self.left = 0
        self.line = b""
        self.error: str | None = None
        self.consumed = 0  # raw bytes consumed, for error positions

    def feed(self, data: memoryview) -> None:
        i, n = 0, len(data)
        while i < n and self.error is None:
            if self.state == self.DATA:
                take = min(self.left, n - i)
                self.sink(data[i:i + take])
                i += take
                self.left -= take
                if not self.left:
                    self.state = self.DATA_END
                continue
            if self.state == self.DONE:
                return  # bytes after the last chunk: ignored as HTTP clients do
            window = bytes(data[i:i + MAX_CHUNK_LINE])
            j = window.find(b"\n")
            if j < 0:
                self.line += window
                i += len(window)
                if len(self.line) > MAX_CHUNK_LINE:
                    self.error = f"a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"
                elif self.state == self.SIZE and not _CHUNK_SIZE_PREFIX.fullmatch(self.line.split(b";", 1)[0]):
                    self.error = f"chunk-size line {self.line[:40]!r} is not hexadecimal"
                continue
            line = (self.line + window[:j]).rstrip(b"\r")
            self.line = b""
            i += j + 1
            self._line(line)
        self.consumed += n

    def _line(self, line: bytes) -> None:
        if self.state == self.SIZE:
            size = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size):
                self.error = f"chunk-size line {line[:40]!r} is not hexadecimal"
                return
            self.left = int(size, 16)
            self.state = self.DATA if self.left else self.TRAILER
        elif self.state == self.DATA_END:
            if line:
                self.error = f"chunk data is not followed by CRLF (found {line[:20]!r})"
            self.state = self.SIZE
        elif self.state == self.TRAILER and not line:
            self.state = self.DONE

    @property
    def complete(self) -> bool:
        return self.state == self.DONE


class HttpBlock:
    """Consumes an `application/http` block piece by piece."""

    def __init__(self, *, is_request: bool, digest: Callable[[], Any] | None, want_head: bool,
                 body_limit: int | None = None) -> None:
        self.is_request = is_request
        self.digest = digest
        self.want_head = want_head
        self.body_limit = body_limit
        self.result = HttpResult()
        self._header = b""  # header bytes gathered until the empty line
        self._in_header = True
        self._raw_hash: Any = None
        self._entity_hash: Any = None
        self._dechunker: Dechunker | None = None
        self._head_limit = 0
        self._head = bytearray()
        self._raw_head = bytearray()  # chunked bodies: the stored start, shown when the framing is invalid
        self._body: bytearray | None = None
        self._entity_len = 0

    # ---- feeding -------------------------------------------------------------------------------------------
    def feed(self, data: memoryview) -> None:
        if self._in_header:
            data = self._feed_header(data)
            if data is None:
                return
        if not data:
            return
        self.result.raw_length += len(data)
        if self._raw_hash is not None:
            self._raw_hash.update(data)
        if self._dechunker is not None:
            if len(self._raw_head) < self._head_limit:
                self._raw_head += data[:self._head_limit - len(self._raw_head)]
            self._dechunker.feed(data)
        else:
            self._entity(data)

    def _feed_header(self, data: memoryview) -> memoryview | None:
        """Gather header bytes; return the payload part of `data` once the headers end, else None."""
        start = len(self._header)
        window = self._header + bytes(data[:HEADER_WINDOW])  # most headers end in the first few KiB: copy little
        end, sep = _header_end(window)
        if end < 0 and len(data) > HEADER_WINDOW:
            window = self._header + bytes(data[:MAX_HTTP_HEADER])
            end, sep = _header_end(window)
        if end < 0:
            if len(window) >= MAX_HTTP_HEADER:
                self.result.problems.append(("http-header-invalid",
                                             f"the HTTP headers do not end within {MAX_HTTP_HEADER} bytes"))
                self._in_header = False
                self._header = b""
                self._start_payload({})
                return data[len(window) - start:]
            self._header = window
            return None
        self._in_header = False
        self.result.header_length = end + sep
        self._parse_header(window[:end])
        self._header = b""
        return data[end + sep - start:]

    def _parse_header(self, raw: bytes) -> None:
        text = raw.decode("latin-1")
        lines = text.replace("\r\n", "\n").split("\n")
        first = lines[0]
        result = self.result
        if self.is_request:
            m = _REQUEST_LINE.fullmatch(first)
            if m:
                result.method = m.group(1).upper()
        else:
            m = _STATUS_LINE.fullmatch(first)
            if m:
                result.status = int(m.group(1))
        if not m:
            kind = "request line" if self.is_request else "status line"
            result.problems.append(("http-status-line-invalid", f"HTTP {kind} {first[:80]!r} cannot be parsed"))
        headers: dict[str, str] = {}
        last = None
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and last is not None:  # obsolete line folding: legal in HTTP/1.1
                headers[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                result.problems.append(("http-header-invalid", f"HTTP header line {line[:80]!r} is not "
                                                               "'name: value'"))
                continue
            last = name.lower()
            value = value.strip()
            headers[last] = f"{headers[last]}, {value}" if last in headers and last != "content-type" else value
        result.headers = headers
        self._start_payload(headers)

    def _start_payload(self, headers: dict[str, str]) -> None:
        te = headers.get("transfer-encoding", "").lower()
        self.result.chunked = "chunked" in te
        if self.digest is not None:
            self._raw_hash = self.digest()
            if self.result.chunked:
                self._entity_hash = self.digest()
        if self.result.chunked:
            self._dechunker = Dechunker(self._entity)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if self.want_head:
            self._head_limit = HEAD_BYTES if encoding in ("", "identity") else 65536
        if self.body_limit is not None:
            self._body = bytearray()

    def _entity(self, data: memoryview) -> None:
        self._entity_len += len(data)
        if self._entity_hash is not None:
            self._entity_hash.update(data)
        if len(self._head) < self._head_limit:
            self._head += data[:self._head_limit - len(self._head)]
        if self._body is not None:
            self._body += data
            if len(self._body) > self.body_limit:
                self._body = None

    # ---- result --------------------------------------------------------------------------------------------
    def finish(self) -> HttpResult:
        result = self.result
        if self._in_header:
            # The block ended inside the headers: fine for a header-only revisit that lacks the final empty
            # line? No: a complete HTTP header always ends with an empty line.
            if self._header.strip():
                result.problems.append(("http-header-invalid", "the HTTP headers do not end with an empty line"))
                self._parse_header(self._header.rstrip(b"\r\n"))
            else:
                result.problems.append(("http-status-line-invalid", "the HTTP block is empty"))
            self._in_header = False
        result.entity_length = self._entity_len
        if self._raw_hash is not None:
            result.raw_digest = self._raw_hash.digest()
        dechunker = self._dechunker
        if dechunker is not None:
            if dechunker.error:
                result.problems.append(("chunked-encoding-invalid", "Transfer-Encoding is chunked but "
                                                                    f"{dechunker.error}"))
                # what a writer that stopped at the broken framing (and said so with WARC-Truncated) digested
                if self._entity_hash is not None:
                    result.entity_digest = self._entity_hash.digest()
            else:
                result.chunked_valid = True
                result.chunked_complete = dechunker.complete
                if self._entity_hash is not None:
                    result.entity_digest = self._entity_hash.digest()
        elif self._raw_hash is not None:
            result.entity_digest = result.raw_digest
        if self.want_head:
            invalid_framing = dechunker is not None and dechunker.error is not None
            result.head = self._decode(bytes(self._raw_head if invalid_framing else self._head), HEAD_BYTES)
        if self._body is not None and (dechunker is None or not dechunker.error):
            result.body = self._decode(bytes(self._body), self.body_limit or 0)
        return result

    def _decode(self, data: bytes, limit: int) -> bytes:
        """Remove content-encoding from `data` (which may be only the start of the body), up to `limit` bytes."""
        encoding = self.result.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity") or not data:
            return data[:limit]
        try:
            if encoding in ("gzip", "x-gzip"):
                return zlib.decompressobj(47).decompress(data, limit)
            if encoding == "deflate":
                try:
                    return zlib.decompressobj(15).decompress(data, limit)
                except zlib.error:
                    return zlib.decompressobj(-15).decompress(data, limit)
        except zlib.error as e:  # a partial body decodes without error, so this is real damage
            self.result.problems.append(("content-encoding-invalid", f"the body does not decode as {encoding} ({e})"))
            return data[:limit]
        if encoding == "br":
            return _brotli_head(data, limit)
        return data[:limit]


def _brotli_head(data: bytes, limit: int) -> bytes:
    """The decoded start of a brotli body, when a brotli module happens to be installed (it is optional)."""
    try:
        import brotli
    except ImportError:
        return data[:limit]
    try:
        decoder = brotli.Decompressor()
        step = getattr(decoder, "process", None) or decoder.decompress
        return step(data)[:limit]
    except Exception:  # brotli modules differ in their error types; undecodable means "keep the raw head"
        return data[:limit]
