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
