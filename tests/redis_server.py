"""A real Redis for the tests: the one at $REDIS_URL when set, otherwise a throwaway `redis-server` of our own.

The throwaway server listens on a free loopback port, keeps nothing on disk (--save "" --appendonly no) and is
stopped when the test session ends. A Redis that merely happens to run on this machine (6379) is never used
unless REDIS_URL names it: a contributor's fresh machine has none, and tests must not touch a Redis they did
not ask for. Tests share one server and keep apart by key prefix (`unique_prefix`), deleting their keys after.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import valkey

ENV = "REDIS_URL"


class RedisUnavailable(Exception):
    """Neither REDIS_URL nor a redis-server binary: the reason says what to install or set."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """`with RedisServer() as server: server.url` — REDIS_URL's server, or a fresh one stopped on exit."""

    def __init__(self) -> None:
        self.url = os.environ.get(ENV, "")
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> RedisServer:
        if self.url:
            self._wait(deadline=time.monotonic() + 5, what=f"{ENV}={self.url}")
            return self
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(f"no Redis to test against: install redis-server (apt install redis-server) or "
                                   f"set {ENV}=redis://HOST:PORT/DB")
        self._dir = tempfile.TemporaryDirectory(prefix="archiver-redis-")
        for _try in range(3):  # the free port may be taken between choosing and binding it
            port = _free_port()
            self.url = f"redis://127.0.0.1:{port}/0"
            self.process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self._dir.name, "--logfile", str(Path(self._dir.name) / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                self._wait(deadline=time.monotonic() + 10, what=f"redis-server on port {port}")
                return self
            except RedisUnavailable:
                self._stop()
        raise RedisUnavailable(f"redis-server would not start; see {self._dir.name}/redis.log")

    def _wait(self, deadline: float, what: str) -> None:
        client = valkey.Valkey.from_url(self.url, socket_connect_timeout=1)
        try:
            while True:
                try:
                    client.ping()
                    return
                except valkey.exceptions.ConnectionError as e:
                    if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                        raise RedisUnavailable(f"{what} does not answer: {e}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def _stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self._dir is not None:
            self._dir.cleanup()

    def unique_prefix(self, label: str = "test") -> str:
        """A key prefix no other test uses."""
        return f"archiver-test:{label}:{uuid.uuid4().hex[:12]}:"

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key under `prefix` (the prefix comes from unique_prefix, so it has no glob characters)."""
        client = valkey.Valkey.from_url(self.url)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                client.unlink(*keys[i:i + 500])
        finally:
            client.close()
