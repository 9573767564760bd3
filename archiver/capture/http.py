"""Fetch over HTTP/1.1 while recording the exact bytes on the wire.

We record ourselves instead of wrapping requests or warcio's `capture_http`, because:
- a WARC response record must hold the bytes as received (status line, headers, chunk framing, content
  coding); urllib3 de-chunks inside http.client, and `capture_http` gets at the raw bytes only by patching
  http.client process-wide, writes the response before the request, dates records at the end of the transfer,
  reuses one header dict across records and is unsafe across threads (reference/crawler-peers.md §5);
- requests costs hundreds of microseconds per request in Python (request preparation, environment merging,
  cookie jar, hooks), which alone would cap a crawl well below wget's ~1,600 small pages/s on loopback.
So this module is a small HTTP/1.1 client over sockets (keep-alive, chunked, TLS via ssl, timeouts, size
limits) that hashes as it reads: the block digest over every byte, the payload digest over the entity body with
transfer-encoding removed (ISO 28500), into a Spool. One HttpClient per worker; not shared across threads.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from archiver.capture.spool import Spool
from archiver.sites.base import HEAD_BYTES

MAX_STATUS_LINE = 16 * 1024
MAX_HEADER_LINE = 64 * 1024
MAX_HEADER_BYTES = 256 * 1024  # Chrome's limit on a response's header block
MAX_HEADER_FIELDS = 20000
READ_BLOCK = 256 * 1024
KEEP_BODY_FOR_PARSING = 16 * 1024 * 1024  # encoded payload bytes kept for link extraction

# Content types whose payload is kept (bounded) for link extraction.
PARSED_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "text/css", "application/manifest+json", "application/json",
    "image/svg+xml", "text/xml", "application/xml",
})

_SAFE_PATH = "/%:@!$&'()*+,;=-._~?[]"


class FetchError(Exception):
    """The exchange failed before a response could be recorded."""


@dataclass
class Exchange:
    """One HTTP request and what came back, ready to become WARC records."""

    url: str
    date: str  # WARC-Date: when the capture started (UTC, microseconds)
    request: bytes = b""
    ip: str | None = None
    response: Spool | None = None  # status line + headers + body, exactly as received
    head_len: int = 0  # bytes of status line and headers (including the blank line) in `response`
    http_version: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    block_digest: str = ""  # "sha1:BASE32"
    payload_digest: str = ""  # over the entity body, transfer-encoding removed
    payload_length: int = 0  # entity-body bytes (de-chunked, content coding kept)
    payload: bytes | None = None  # the entity body when it is of a parsed type and not too large
    payload_head: bytes = b""  # the first HEAD_BYTES of the entity body, always kept (for block-page checks)
    truncated: str | None = None  # WARC-Truncated: length, time, disconnect, unspecified
    error: str | None = None  # what went wrong, when something did (truncated or not)
    permanent: bool = False  # the failure will not go away by trying again now (refused, no such host)
    elapsed: float = 0.0

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in reversed(self.headers):
            if k.lower() == name:
                return v
        return None

    def header_map(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers}

    @property
    def content_type(self) -> str:
        v = self.header("content-type") or ""
        return v.split(";", 1)[0].strip().lower()

    @property
    def recordable(self) -> bool:
        return self.response is not None and self.status > 0

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> two base32 characters
_SHIFTS = tuple(range(150, -1, -10))


def sha1_b32(h) -> str:
    """"sha1:" + base32 of a hashlib sha1 object's digest. base64.b32encode is pure Python in 3.10–3.12 and
    cost ~10 µs a call, four calls a page; 160 bits are exactly 16 ten-bit pairs."""
    n = int.from_bytes(h.digest(), "big")
    pairs = _B32_PAIRS
    return "sha1:" + "".join([pairs[(n >> s) & 1023] for s in _SHIFTS])


def warc_date(ts: float | None = None) -> str:
    """W3C date with microseconds, as WARC/1.1 allows: 2026-11-26T05:04:29.123456Z."""
    if ts is None:
        ts = time.time()
    t = time.gmtime(ts)
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}.{int((ts % 1) * 1e6):06d}Z"


class _Conn:
    __slots__ = ("sock", "reader", "ip", "used")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=READ_BLOCK)
        self.ip = sock.getpeername()[0]
        self.used = 0

    def close(self) -> None:
        try:
            self.reader.close()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class _Stop(Exception):
    def __init__(self, truncated: str, error: str) -> None:
        super().__init__(error)
        self.truncated = truncated
        self.error = error


class HttpClient:
    """A keep-alive HTTP/1.1 client that records exchanges. Not thread-safe: one per worker."""

    def __init__(self, *, user_agent: str, timeout: float = 30.0, connect_timeout: float = 20.0,
                 max_time: float = 3600.0, max_size: int | None = None, verify_tls: bool = True,
                 spool_dir: str | None = None, accept_encoding: str = "gzip, deflate",
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.user_agent = user_agent
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_time = max_time
        self.max_size = max_size
        self.spool_dir = spool_dir
        self.accept_encoding = accept_encoding
        self.should_stop = should_stop
        self._pool: dict[tuple[str, str, int], _Conn] = {}
        self._tls = ssl.create_default_context()
        if not verify_tls:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    # ---- public ------------------------------------------------------------------------------------------------
    def fetch(self, url: str, *, referer: str | None = None, method: str = "GET",
              cookie: str | None = None) -> Exchange:
        """Fetch `url`, recording everything. Never raises for network faults: they end up in `.error`.

        `cookie` is the Cookie header value (the crawl's cookie jar lives in the coordinator); it is part of
        the request bytes, so the request record shows the header as sent."""
        started = time.time()
        ex = Exchange(url=url, date=warc_date(started))
        try:
            scheme, host, port, target, host_header = _split(url)
        except ValueError as e:
            ex.error = f"bad URL: {e}"
            return ex
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {self.user_agent}",
                 "Accept: */*"]
        if self.accept_encoding:
            lines.append(f"Accept-Encoding: {self.accept_encoding}")
        if referer:
            lines.append(f"Referer: {_ascii(referer)}")
        if cookie:
            lines.append(f"Cookie: {_field_value(cookie)}")
        lines.append("Connection: keep-alive")
        ex.request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        key = (scheme, host, port)
        for attempt in (0, 1):
            conn = self._pool.pop(key, None)
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._connect(scheme, host, port)
                ex.ip = conn.ip
                try:
                    conn.sock.sendall(ex.request)
                except (BrokenPipeError, ConnectionResetError):
                    if reused:
                        raise _Stale() from None
                    raise
                conn.used += 1
                keep = self._read_response(conn, ex, method, started)
            except _Stale:
                # A pooled keep-alive connection the server had already closed: the standard race, retried once
                # on a fresh connection (nothing of the response was received, so nothing is lost).
                conn.close()
                if attempt == 0 and reused:
                    continue
                ex.error = "connection closed by the server before any response"
                break
            except (OSError, ssl.SSLError, FetchError) as e:
                if conn is not None:
                    conn.close()
                ex.error = _describe(e, "before any response")
                # like wget without --retry-connrefused: a refused connection or an unknown host is not retried
                ex.permanent = isinstance(e, ConnectionRefusedError | socket.gaierror | ssl.SSLCertVerificationError)
                ex.close()
                ex.response = None
                break
            else:
                if keep:
                    self._pool[key] = conn
                else:
                    conn.close()
                break
        ex.elapsed = time.time() - started
        return ex

    def close(self) -> None:
        for conn in self._pool.values():
            conn.close()
        self._pool.clear()

    # ---- internals -------------------------------------------------------------------------------------------
    def _connect(self, scheme: str, host: str, port: int) -> _Conn:
        sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = self._tls.wrap_socket(sock, server_hostname=host)
        sock.settimeout(self.timeout)
        return _Conn(sock)

    def _read_response(self, conn: _Conn, ex: Exchange, method: str, started: float) -> bool:
        """Read one response into ex; return whether the connection can be reused."""
        reader = conn.reader
        try:
            status_line = reader.readline(MAX_STATUS_LINE)
        except ConnectionResetError:
            if conn.used == 1:
                raise
            raise _Stale() from None
        if not status_line:
            if conn.used > 1:
                raise _Stale()
            raise FetchError("connection closed before any response")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise FetchError(f"not an HTTP/1.x response: {bytes(status_line[:60])!r}")
        ex.http_version = parts[0].decode("ascii", "replace")
        ex.status = int(parts[1])
        ex.reason = parts[2].strip().decode("latin-1") if len(parts) > 2 else ""
        spool = Spool(self.spool_dir)
        ex.response = spool
        block = hashlib.sha1(status_line)
        spool.write(status_line)
        head_bytes = len(status_line)
        headers = ex.headers
        while True:
            line = reader.readline(MAX_HEADER_LINE + 1)
            if not line:
                raise FetchError("connection closed in the middle of the response headers")
            head_bytes += len(line)
            if len(line) > MAX_HEADER_LINE or head_bytes > MAX_HEADER_BYTES:
                raise FetchError(f"response headers larger than {MAX_HEADER_BYTES // 1024} KiB")
            block.update(line)
            spool.write(line)
            if line in (b"\r\n", b"\n"):
                break
            if line[0] in (32, 9) and headers:  # obsolete line folding continues the previous field
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip().decode("latin-1"))
                continue
            name, sep, value = line.partition(b":")
            if sep:
                headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
            if len(headers) > MAX_HEADER_FIELDS:
                raise FetchError(f"more than {MAX_HEADER_FIELDS} response header fields")
        ex.head_len = head_bytes

        hmap = {}
        for k, v in headers:
            hmap[k.lower()] = v
        keep_alive = ex.http_version == "HTTP/1.1"
        connection = hmap.get("connection", "").lower()
        if "close" in connection:
            keep_alive = False
        elif "keep-alive" in connection:
            keep_alive = True
        payload_hash = hashlib.sha1()
        ctype = hmap.get("content-type", "").split(";", 1)[0].strip().lower()
        keep = bytearray() if ctype in PARSED_TYPES else None
        state = _Body(ex, spool, block, payload_hash, keep, self, started)
        try:
            if method == "HEAD" or ex.status in (204, 304) or 100 <= ex.status < 200:
                pass
            elif "chunked" in hmap.get("transfer-encoding", "").lower():
                keep_alive = state.read_chunked(reader) and keep_alive
            elif "content-length" in hmap:
                try:
                    length = int(hmap["content-length"].split(",")[0].strip())
                    if length < 0:
                        raise ValueError
                except ValueError:
                    raise _Stop("unspecified", f"invalid Content-Length {hmap['content-length']!r}") from None
                state.read_length(reader, length)
            else:
                state.read_to_close(reader)
                keep_alive = False
        except _Stop as stop:
            ex.truncated = stop.truncated
            ex.error = stop.error
            keep_alive = False
        except (OSError, ssl.SSLError) as e:
            ex.truncated = "time" if isinstance(e, TimeoutError) else "disconnect"
            ex.error = _describe(e, f"after {ex.payload_length} bytes of body")
            keep_alive = False
        ex.block_digest = sha1_b32(block)
        ex.payload_digest = sha1_b32(payload_hash)
        if keep is not None and len(keep) <= KEEP_BODY_FOR_PARSING:
            ex.payload = bytes(keep)
        return keep_alive


class _Stale(Exception):
    pass


class _Body:
    """Reads a body in its framing, hashing and spooling every byte and enforcing the limits."""

    __slots__ = ("ex", "spool", "block", "payload", "keep", "client", "deadline", "max_size")

    def __init__(self, ex: Exchange, spool: Spool, block, payload, keep: bytearray | None,
                 client: HttpClient, started: float) -> None:
        self.ex, self.spool, self.block, self.payload, self.keep = ex, spool, block, payload, keep
        self.client = client
        self.deadline = started + client.max_time
        self.max_size = client.max_size

    def _raw(self, data: bytes) -> None:
        self.block.update(data)
        self.spool.write(data)

    def _entity(self, data: bytes) -> None:
        self.payload.update(data)
        ex = self.ex
        if ex.payload_length < HEAD_BYTES:
            ex.payload_head += data[:HEAD_BYTES - ex.payload_length]
        ex.payload_length += len(data)
        keep = self.keep
        if keep is not None:
            if len(keep) + len(data) > KEEP_BODY_FOR_PARSING:
                self.keep = None
            else:
                keep += data

    def _limits(self) -> None:
        if self.max_size is not None and self.ex.payload_length >= self.max_size:
            raise _Stop("length", f"body cut at --max-size {self.max_size} bytes")
        if time.time() > self.deadline:
            raise _Stop("time", f"body cut after --max-time {self.client.max_time:g} s")
        stop = self.client.should_stop
        if stop is not None and stop():
            raise _Stop("unspecified", "interrupted by the user")

    def _room(self, want: int) -> int:
        if self.max_size is None:
            return want
        return max(0, min(want, self.max_size - self.ex.payload_length))

    def read_length(self, reader, length: int) -> None:
        got = self._read_exactly(reader, length)
        if got < length:
            raise _Stop("disconnect", f"connection closed after {got} of {length} bytes of body")

    def _read_exactly(self, reader, length: int) -> int:
        """Read up to `length` body bytes as they arrive; return how many came before the connection closed.

        read1, not read: read(n) blocks for all n bytes, and if the connection dies meanwhile the bytes it had
        already received are lost with the exception; read1 hands over what has arrived, so a cut body is
        recorded up to the last byte received."""
        left = length
        while left > 0:
            n = self._room(min(left, READ_BLOCK))
            if n == 0:
                self._limits()
            data = reader.read1(n)
            if not data:
                break
            self._raw(data)
            self._entity(data)
            left -= len(data)
            if left and (len(data) >= 65536 or self.max_size is not None):
                self._limits()
        return length - left

    def read_to_close(self, reader) -> None:
        while True:
            n = self._room(READ_BLOCK)
            if n == 0:
                self._limits()
            data = reader.read1(n)
            if not data:
                return
            self._raw(data)
            self._entity(data)
            self._limits()

    def read_chunked(self, reader) -> bool:
        """Read a chunked body; return False when the framing was broken (connection unusable)."""
        while True:
            line = reader.readline(4096)
            if not line:
                raise _Stop("disconnect", f"connection closed inside chunked body after {self.ex.payload_length} bytes")
            self._raw(line)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
                if size < 0 or not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                    raise ValueError
            except ValueError:
                raise _Stop("unspecified", f"invalid chunk size line {bytes(line[:40])!r}") from None
            if size == 0:
                while True:  # trailer fields, then the final blank line
                    t = reader.readline(MAX_HEADER_LINE)
                    if not t:
                        return False
                    self._raw(t)
                    if t in (b"\r\n", b"\n"):
                        return True
            if self._read_exactly(reader, size) < size:
                raise _Stop("disconnect", f"connection closed inside a chunk after {self.ex.payload_length} bytes")
            crlf = reader.readline(4096)
            self._raw(crlf)
            if crlf not in (b"\r\n", b"\n"):
                raise _Stop("unspecified", "chunk not followed by CRLF")
            self._limits()


def _split(url: str) -> tuple[str, str, int, str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    port = parts.port or (443 if scheme == "https" else 80)
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    target = _ascii(target)
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]"
    else:
        host_header = host
    if parts.port and parts.port != (443 if scheme == "https" else 80):
        host_header += f":{port}"
    return scheme, host, port, target, host_header


def _ascii(text: str) -> str:
    """Percent-encode what may not stand in a request line (spaces, non-ASCII), keeping existing escapes."""
    if text.isascii() and " " not in text and "\t" not in text:
        return text
    return quote(text, safe=_SAFE_PATH)


def _field_value(text: str) -> str:
    """A header field value that cannot end the field early (no CR, LF or NUL): a request must not be split."""
    if "\r" in text or "\n" in text or "\0" in text:
        return text.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    return text


def _describe(e: BaseException, where: str) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return f"read timeout {where}"
    if isinstance(e, ConnectionResetError):
        return f"connection reset by the server {where}"
    if isinstance(e, socket.gaierror):
        return f"DNS lookup failed: {e.strerror or e}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ssl.SSLError):
        return f"TLS error {where}: {e.reason or e}"
    if isinstance(e, FetchError):
        return str(e)
    return f"{type(e).__name__}: {e} ({where})"
