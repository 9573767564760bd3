"""A Redis client for the tracker's event loop: one pipelined connection that every request shares.

Redis answers the commands of one connection in the order they were sent, so concurrent coroutines can all write
to the same socket and take the answers in turn: N requests in flight cost N small writes and one read loop,
with no connection pool to wait on and no thread to hop to. The tracker sends only a few kinds of commands
(its scripts, EVALSHA), so this client does only that: connect (AUTH, SELECT), send, match answers, and
fail every waiting command at once when the connection breaks or an answer is `timeout` seconds late (the
next command reconnects). Measured on loopback, a command costs ~5 µs of the tracker's CPU here, against
~60 µs through valkey.asyncio's pooled connections; the tracker's two hot calls are one command each.

Answers are parsed by libvalkey's C reader when it is installed (`pip install valkey[libvalkey]`), else by
`RespReader` below; both give str for bulk strings (UTF-8), int, None, lists, and `ReplyError` for errors.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

try:  # the C reader, when valkey[libvalkey] is installed
    import libvalkey
except ImportError:  # pragma: no cover - depends on the environment
    libvalkey = None


class RedisError(Exception):
    """Redis could not be reached, or it broke off or stalled: every command waiting on that connection."""


class ReplyError(Exception):
    """Redis answered one command with an error (e.g. NOSCRIPT, or a script's own error)."""


class RespReader:
    """An incremental RESP2 parser: `feed` bytes as they come, `gets` a complete answer or False."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos > 65536 and self._pos * 2 > len(self._buf):  # drop what was parsed, now and then
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def gets(self) -> Any:
        try:
            value, self._pos = self._parse(self._pos)
        except _Incomplete:
            return False
        return value

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return bytes(self._buf[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        if pos >= len(self._buf):
            raise _Incomplete
        kind = self._buf[pos:pos + 1]
        line, pos = self._line(pos + 1)
        if kind == b"+":
            return line.decode("utf-8"), pos
        if kind == b"-":
            return ReplyError(line.decode("utf-8", "replace")), pos
        if kind == b":":
            return int(line), pos
        if kind == b"$":
            size = int(line)
            if size < 0:
                return None, pos
            if len(self._buf) < pos + size + 2:
                raise _Incomplete
            return bytes(self._buf[pos:pos + size]).decode("utf-8"), pos + size + 2
        if kind == b"*":
            count = int(line)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise RedisError(f"Redis sent something that is not RESP: {bytes(kind + line)[:50]!r}")


class _Incomplete(Exception):
    pass


def _reader() -> Any:
    if libvalkey is not None:
        return libvalkey.Reader(encoding="utf-8", replyError=ReplyError)
    return RespReader()


def encode(args: Sequence[Any]) -> bytes:
    """One command in RESP: an array of bulk strings (str as UTF-8, numbers as their text)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = (str(arg) if isinstance(arg, int) else repr(arg)).encode()
        else:
            raise TypeError(f"a Redis argument is text or a number, not {type(arg).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Script:
    """A Lua script, run by its SHA1 (EVALSHA) and loaded with EVAL the first time a server lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = _reader()
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.broken: Exception | None = None
        self.outgoing: list[bytes] = []  # commands of this turn of the event loop, written together

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except Exception as e:  # a protocol error: nothing after it can be matched to its command
                self.fail(RedisError(f"cannot parse Redis's answer: {e}"))
                return
            if reply is False:
                return
            if not self.waiting:
                self.fail(RedisError("Redis sent an answer to no command"))
                return
            future, _sent = self.waiting.popleft()
            if future.done():  # its caller gave up (cancelled); the answer still had to be taken in turn
                continue
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisError(f"the connection to Redis was lost: {exc}" if exc else "Redis closed the connection"))

    def fail(self, error: Exception) -> None:
        if self.broken is None:
            self.broken = error
        while self.waiting:
            future, _sent = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, args: Sequence[Any]) -> asyncio.Future[Any]:
        if self.broken is not None or self.transport is None:
            raise RedisError(str(self.broken or "not connected"))
        future = self.loop.create_future()
        self.waiting.append((future, time.monotonic()))
        if not self.outgoing:
            self.loop.call_soon(self._flush)  # once the requests of this turn have all had their say
        self.outgoing.append(encode(args))
        return future

    def _flush(self) -> None:
        """Write the turn's commands with one system call: under load many requests reach Redis each turn."""
        data, self.outgoing = b"".join(self.outgoing), []
        if self.broken is None and self.transport is not None:
            self.transport.write(data)


class AsyncRedis:
    """`await client.execute("GET", key)`, `await client.run(script, args)`: one pipelined connection per event
    loop, made on first use. `url` is redis://[[user]:password@]host[:port][/db] or rediss:// (TLS)."""

    def __init__(self, url: str, *, timeout: float = 30.0, connect_timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"{url!r}: the tracker's async Redis client speaks redis:// and rediss:// only")
        unknown = [k for k, _v in parse_qsl(parts.query)]
        if unknown:
            raise ValueError(f"{url!r}: options {unknown} are for the valkey client, not this one")
        self.host, self.port = parts.hostname or "localhost", parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        db = parts.path.strip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError(f"{url!r}: the database is a number, e.g. redis://host:6379/0")
        self.db = int(db or 0)
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def execute(self, *args: Any) -> Any:
        conn = self._conn
        if conn is None or conn.broken is not None or conn.loop is not asyncio.get_running_loop():
            conn = await self._connect()
        return await conn.send(args)

    async def run(self, script: Script, args: Sequence[Any]) -> Any:
        """EVALSHA the script with no keys (the tracker's scripts build their keys from a prefix argument)."""
        try:
            return await self.execute("EVALSHA", script.sha, 0, *args)
        except ReplyError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script.source, 0, *args)  # this also loads it for next time

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if conn is not None and conn.transport is not None and conn.broken is None:
            conn.transport.close()
            conn.broken = RedisError("the client was closed")

    # ---- plumbing ------------------------------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._connecting is not None and not self._connecting.done() and self._connecting.get_loop() is loop:
            return await asyncio.shield(self._connecting)  # one connect for every command that found none
        self._connecting = loop.create_future()
        try:
            conn = await self._open(loop)
        except BaseException as e:
            self._connecting.set_exception(e if isinstance(e, Exception) else RedisError("connecting was cancelled"))
            self._connecting.exception()  # retrieved: a connect nobody else awaited is not "never retrieved"
            self._connecting = None
            raise
        self._conn = conn
        self._connecting.set_result(conn)
        self._arm_watchdog(loop)
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        where = f"{self.host}:{self.port}"
        context = ssl.create_default_context() if self.tls else None
        try:
            _transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), self.host, self.port, ssl=context),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise RedisError(f"cannot connect to Redis at {where}: {e or 'timed out'}") from None
        setup: list[list[Any]] = []
        if self.password is not None:
            setup.append(["AUTH", self.username, self.password] if self.username else ["AUTH", self.password])
        if self.db:
            setup.append(["SELECT", self.db])
        try:
            for command in setup:
                await asyncio.wait_for(conn.send(command), self.connect_timeout)
        except (ReplyError, RedisError, asyncio.TimeoutError) as e:
            conn.fail(RedisError(str(e)))
            raise RedisError(f"Redis at {where} refused {setup[0][0] if setup else 'the connection'}: "
                             f"{e or 'timed out'}") from None
        return conn

    def _arm_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every second, break the connection when its oldest waiting command is `timeout` seconds old: answers
        come in order, so a stalled one holds up all behind it, and the next command reconnects."""
        if self._watchdog is not None:
            self._watchdog.cancel()

        def check() -> None:
            conn = self._conn
            if conn is None or conn.broken is not None or conn.loop is not loop:
                self._watchdog = None
                return
            if conn.waiting and time.monotonic() - conn.waiting[0][1] > self.timeout:
                conn.fail(RedisError(f"Redis at {self.host}:{self.port} did not answer within {self.timeout:g} s"))
                self._watchdog = None
                return
            self._watchdog = loop.call_later(1.0, check)

        self._watchdog = loop.call_later(1.0, check)
