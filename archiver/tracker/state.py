"""Everything a tracker keeps besides the item queues: projects, block lists, budgets, the rate limit and the
per-downloader tallies stats.json shows. Two stores, chosen by URL like the queues (`open_state`):

- ``sqlite:///DIR`` (or a bare directory): DIR/tracker.sqlite plus one queue file per project,
  DIR/queues/<slug>.sqlite. Several tracker processes on one machine may share it.
- ``redis://HOST:PORT/DB[?prefix=P]``: keys under P (default ``archiver:tracker:``), each project's queue under
  ``P p:<slug>:q:``. Several tracker machines behind a load balancer share it.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from archiver.errors import UsageError
from archiver.queue import ItemQueue
from archiver.tracker.budgets import Admission
from archiver.tracker.projects import Project


@dataclass(frozen=True)
class DoneTally:
    """Finished work per downloader and per `bytes` key (universal-tracker's "domains"), for stats.json."""

    items: Mapping[str, int] = field(default_factory=dict)  # downloader -> items done
    bytes: Mapping[str, int] = field(default_factory=dict)  # downloader -> bytes reported
    domains: Mapping[str, int] = field(default_factory=dict)  # bytes key (e.g. "data") -> bytes reported


class TrackerState(abc.ABC):
    """The tracker's shared state. Every method is safe to call from several threads and processes."""

    url: str
    #: where uploads go when the tracker is not told (beside a SQLite store), or None (Redis: must be told)
    default_uploads: Path | None = None

    # ---- projects ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def projects(self) -> list[Project]:
        """Every project, by slug."""

    @abc.abstractmethod
    def project(self, slug: str) -> Project | None:
        """One project, or None when there is no such project."""

    @abc.abstractmethod
    def save_project(self, project: Project) -> None:
        """Create or replace a project's settings."""

    @abc.abstractmethod
    def open_queue(self, project: Project, clock: Callable[[], float] = time.time) -> ItemQueue:
        """A new handle on the project's item queue, with the project's lease and attempt limit."""

    # ---- admission -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def admit(self, project: Project, downloader: str, ip: str, n: int, now: float) -> Admission:
        """Atomically decide how many of `n` items `downloader` (from `ip`) may take now, and charge the rate
        limit for them (archiver.tracker.budgets has the rules)."""

    @abc.abstractmethod
    def refund(self, project: Project, n: int) -> None:
        """Give back rate for `n` admitted items the queue did not have."""

    @abc.abstractmethod
    def hold(self, slug: str, downloader: str, leases: Mapping[str, float]) -> None:
        """Count items (name -> lease end) against the downloader's budget until done or their leases end."""

    @abc.abstractmethod
    def let_go(self, slug: str, downloader: str, items: Iterable[str]) -> None:
        """Stop counting these items against the downloader's budget."""

    @abc.abstractmethod
    def forget_holds(self, slug: str, downloader: str | None = None) -> None:
        """Stop counting every item held by `downloader` (or everyone): their claims were requeued."""

    # ---- block lists ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def block(self, slug: str, who: str) -> bool:
        """Block a nick or an IP address from the project. True when it was not blocked before."""

    @abc.abstractmethod
    def unblock(self, slug: str, who: str) -> bool:
        """Lift a block. True when there was one."""

    @abc.abstractmethod
    def blocked(self, slug: str) -> list[str]:
        """The project's block list, sorted."""

    # ---- tallies -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def record_done(self, slug: str, downloader: str, items: int, domain_bytes: Mapping[str, int]) -> None:
        """Add finished items and the bytes they reported to the tallies."""

    @abc.abstractmethod
    def tally(self, slug: str) -> DoneTally:
        """The project's tallies."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


def open_state(url: str | Path) -> TrackerState:
    """The tracker store named by `url` (see the module docstring)."""
    text = str(url)
    if text.startswith(("redis://", "rediss://")):
        from archiver.tracker.state_redis import RedisState

        return RedisState(text)
    if text.startswith("sqlite://"):
        rest = text[len("sqlite://"):]
        if not rest.startswith("/") or rest == "/":
            raise UsageError(f"{text!r}: a SQLite tracker store is sqlite:///relative/dir or sqlite:////absolute/dir")
        text = rest[1:]
    elif "://" in text:
        raise UsageError(f"{text!r}: unknown tracker store; use sqlite:///DIR (the default) or redis://HOST:PORT/DB")
    if not text:
        raise UsageError("the tracker store needs a directory, e.g. sqlite:///tracker")
    from archiver.tracker.state_sqlite import SqliteState

    return SqliteState(text)
