"""Shared pytest fixtures: the local test servers every integration test uses (all offline, 127.0.0.1)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test modules import the servers as ``fixtures.arxiv_site``. pywb (a test dependency) installs a top-level
# ``tests`` package into site-packages that shadows ours, so ``tests.fixtures`` is not importable; put this
# directory on sys.path explicitly so ``fixtures`` resolves under every pytest import mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from fixtures.arxiv_site import ArxivSite  # noqa: E402
from fixtures.fault_server import FaultServer  # noqa: E402


@pytest.fixture
def arxiv_site() -> Iterator[ArxivSite]:
    """A fresh arXiv-like site per test: empty request log, no pending faults."""
    with ArxivSite() as site:
        yield site
    # A bug in the fixture itself answers 500; fail loudly rather than let it pass as crawler behaviour.
    assert not site.errors, "arxiv_site raised while serving:\n" + "\n".join(site.errors)


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    """One fault-injecting server per test module; its log is shared, so count deltas or call clear_log()."""
    with FaultServer() as server:
        yield server
    assert not server.errors, "fault_server raised while serving:\n" + "\n".join(server.errors)


# ---- Redis: REDIS_URL's server, or a throwaway redis-server per session (tests/redis_server.py) -------------
@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A real Redis shared by the session; tests keep apart by key prefix (`redis_prefix`)."""
    pytest.importorskip("valkey", reason="the Redis store needs the valkey client (pip install valkey)")
    from redis_server import RedisServer, RedisUnavailable

    server = RedisServer()
    try:
        server.__enter__()
    except RedisUnavailable as e:
        pytest.skip(str(e))
    yield server
    server.__exit__(None, None, None)


@pytest.fixture
def redis_prefix(redis_server) -> Iterator[str]:
    """A key prefix of this test's own, whose keys are deleted afterwards."""
    prefix = redis_server.unique_prefix()
    yield prefix
    redis_server.delete_prefix(prefix)


# ---- uploads: a fake Internet Archive, and no connection anywhere else --------------------------------------
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _loopback(host: object) -> bool:
    text = str(host)
    return text in _LOOPBACK_NAMES or text.startswith("127.")


@pytest.fixture
def offline(monkeypatch) -> None:
    """Refuse every connection and name lookup that is not loopback, so a test cannot reach the real
    Internet Archive (or anything else) by mistake: it fails with the address it tried instead."""
    import socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):  # type: ignore[index]
            raise OSError(f"test isolation: refused a connection to {address} (only 127.0.0.1 is allowed)")

    def connect(sock, address):
        allowed(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        allowed(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _loopback(host):
            raise socket.gaierror(f"test isolation: refused to look up {host!r} (only 127.0.0.1 is allowed)")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def fake_ia(tmp_path, offline, monkeypatch):
    """A fake Internet Archive (tests/fixtures/fake_ia.py) with its keys in the environment, the user's own IA
    config out of reach, and the network guarded."""
    from fixtures.fake_ia import ACCESS, SECRET, FakeIA

    for name in ("IA_ACCESS_KEY_ID", "IA_SECRET_ACCESS_KEY", "ARCHIVER_IA_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IA_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("IA_SECRET_KEY", SECRET)
    monkeypatch.setenv("IA_CONFIG_FILE", str(tmp_path / "no-ia.ini"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    with FakeIA(tmp_path / "fake-ia") as server:
        yield server
    assert not server.errors, "fake_ia raised while serving:\n" + "\n".join(server.errors)
