"""Everything a tracker keeps besides the item queues: projects, block lists, budgets, the rate limit, the
per-downloader tallies stats.json shows, and what the dashboard shows besides (recent completions, the versions
downloaders run, items done per 10 seconds). Two stores, chosen by URL like the queues (`open_state`):

- ``sqlite:///DIR`` (or a bare directory): DIR/tracker.sqlite plus one queue file per project,
  DIR/queues/<slug>.sqlite. Several tracker processes on one machine may share it.
- ``redis://HOST:PORT/DB[?prefix=P]``: keys under P (default ``archiver:tracker:``), each project's queue under
  ``P p:<slug>:q:``. Several tracker machines behind a load balancer share it.

The two calls every worker makes per item, `handout` (admission, claim, budget hold) and `finish` (claimant
check, done, tallies, dashboard records), are whole steps of the store: the base class composes them from the
finer methods below, and the Redis store does each in one script, one round trip, also from an event loop
(`aio`) without a thread hop.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from archiver.errors import UsageError
from archiver.queue import Claim, ItemOutcome, ItemQueue, ItemState, NotClaimant, UnknownItem
from archiver.tracker.budgets import Admission
from archiver.tracker.projects import Project

RECENT_KEPT = 30  # completions kept for the dashboard, newest first
RATE_BUCKET = 10  # seconds per bucket of the items-done counter
RATE_KEPT = 15 * 60  # seconds of buckets kept (the dashboard shows the last 10 minutes)
ACTIVE_KEPT = 24 * 3600  # seconds a downloader counts as active after its last done
NAMES_KEPT = 5  # item names a recent completion lists (a multi=N batch names its first few)
MAX_BYTES = 2**53 - 1  # bytes a done may report per key and in all: exact as a double, so Lua counts them exactly


@dataclass(frozen=True)
class DoneTally:
    """Finished work per downloader and per `bytes` key (universal-tracker's "domains"), for stats.json."""

    items: Mapping[str, int] = field(default_factory=dict)  # downloader -> items done
    bytes: Mapping[str, int] = field(default_factory=dict)  # downloader -> bytes reported
    domains: Mapping[str, int] = field(default_factory=dict)  # bytes key (e.g. "data") -> bytes reported


@dataclass(frozen=True)
class Handout:
    """What one request got: the admission decision and, when admitted, its claims (none: the queue had no
    claimable item, and `claimed` says how many are out)."""

    admission: Admission
    claims: tuple[Claim, ...] = ()
    claimed: int = 0


@dataclass(frozen=True)
class ClaimProblem:
    """Why a name in a done (release, fail, ...) is not the caller's to report: `error` is unknown_item,
    not_claimed (then `state` is the item's) or not_claimant."""

    error: str
    name: str
    state: str | None = None


@dataclass(frozen=True)
class Finished:
    """What a done did: the names it finished now, and the first problem with the rest, if any."""

    names: tuple[str, ...] = ()
    problem: ClaimProblem | None = None


@dataclass(frozen=True)
class Completion:
    """One done call, as the dashboard lists it."""

    at: float
    downloader: str
    items: int
    names: tuple[str, ...]  # the first NAMES_KEPT of them
    bytes: int
    version: str | None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Completion:
        """From the JSON both stores keep (the Redis store writes it in Lua, with cjson)."""
        version = data.get("version")
        return cls(float(data["at"]), str(data["downloader"]), int(data["items"]),
                   tuple(str(n) for n in data.get("names") or ()), int(data["bytes"]),
                   version if isinstance(version, str) and version else None)


@dataclass(frozen=True)
class Activity:
    """What the dashboard shows besides counts and tallies."""

    recent: tuple[Completion, ...] = ()  # newest first
    active: Mapping[str, tuple[float, str | None]] = field(default_factory=dict)  # downloader -> (last done, version)
    buckets: Mapping[int, int] = field(default_factory=dict)  # bucket start (epoch s) -> items done in it


class AsyncState(Protocol):
    """`handout` and `finish` as coroutines (TrackerState.aio): for a store with a client of its own on the event
    loop, so the two hottest calls need no thread."""

    def handout(self, project: Project, queue: ItemQueue, downloader: str, ip: str, n: int,
                now: float) -> Awaitable[Handout]: ...

    def finish(self, project: Project, queue: ItemQueue, downloader: str, tokens: Sequence[str],
               names: Sequence[str], shares: Sequence[int], extra: Mapping[str, Any],
               domain_bytes: Mapping[str, int], version: str | None, now: float) -> Awaitable[Finished]: ...

    def close(self) -> Awaitable[None]: ...


def rate_bucket(now: float) -> int:
    """The start of the items-done bucket `now` falls in (the Redis store computes the same in Lua)."""
    return int(now // RATE_BUCKET) * RATE_BUCKET


def check_claims(queue: ItemQueue, downloader: str, tokens: Sequence[str], names: Sequence[str],
                 allow_done: bool = False) -> list[Claim | None] | ClaimProblem:
    """The current claim on each name when every one is the caller's (by token when it sent tokens, else by
    nick), or the first problem. With `allow_done`, an item the caller already finished gives None."""
    out: list[Claim | None] = []
    for i, name in enumerate(names):
        try:
            claim = queue.claim_of(name)
            if claim is None:
                record = queue.get(name)
        except UnknownItem:
            return ClaimProblem("unknown_item", name)
        if claim is None:
            if allow_done and record.state == ItemState.DONE and record.claimant == downloader:
                out.append(None)
                continue
            return ClaimProblem("not_claimed", name, record.state.value)
        if claim.claimant != downloader or (tokens and tokens[i] != claim.token):
            return ClaimProblem("not_claimant", name)
        out.append(claim)
    return out


def scaled_bytes(domain_bytes: Mapping[str, int], finished: int, names: int) -> dict[str, int]:
    """The share of a done's reported bytes that its `finished` of `names` items account for (a repeated done
    of a batch counts only the items it finishes now). Both stores round down alike."""
    if finished == names:
        return dict(domain_bytes)
    return {k: v * finished // names for k, v in domain_bytes.items()}


class TrackerState(abc.ABC):
    """The tracker's shared state. Every method is safe to call from several threads and processes."""

    url: str
    #: where uploads go when the tracker is not told (beside a SQLite store), or None (Redis: must be told)
    default_uploads: Path | None = None
    #: handout and finish as coroutines, when the store has an event-loop client (Redis); None otherwise
    aio: AsyncState | None = None

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

    # ---- the two calls of every item ------------------------------------------------------------------------
    def handout(self, project: Project, queue: ItemQueue, downloader: str, ip: str, n: int,
                now: float) -> Handout:
        """Admit a request for `n` items (block list, budget, rate), claim what it may take, and hold the claims
        against the downloader's budget."""
        admission = self.admit(project, downloader, ip, n, now)
        if admission.refused:
            return Handout(admission)
        claims = queue.claim(downloader, n=admission.granted, lease=project.lease)
        if len(claims) < admission.granted:
            self.refund(project, admission.granted - len(claims))
        if not claims:
            return Handout(admission, claimed=queue.stats().claimed)
        if project.budget > 0:
            self.hold(project.slug, downloader, {c.item: c.lease_expires for c in claims})
        return Handout(admission, tuple(claims))

    def finish(self, project: Project, queue: ItemQueue, downloader: str, tokens: Sequence[str],
               names: Sequence[str], shares: Sequence[int], extra: Mapping[str, Any],
               domain_bytes: Mapping[str, int], version: str | None, now: float) -> Finished:
        """Mark the caller's claimed `names` done (`shares[i]` bytes and `extra` kept with each), stop counting
        them against its budget, and add them to the tallies and the dashboard's records. A name the caller
        already finished is skipped; any other problem with any name, found before anything changes, changes
        nothing (here checked first, then applied item by item; the Redis store does both in one step)."""
        current = check_claims(queue, downloader, tokens, names, allow_done=True)
        if isinstance(current, ClaimProblem):
            return Finished(problem=current)
        finished, problem = [], None
        for name, claim, share in zip(names, current, shares, strict=True):
            if claim is None:
                continue
            try:
                queue.done(claim.token, ItemOutcome(bytes=share, extra=dict(extra)))
            except NotClaimant:  # lost a race since the check (its lease ended and another process re-claimed it)
                problem = ClaimProblem("not_claimant", name)
                break
            finished.append(name)
        if finished:  # what was finished is counted, even when a lost race stopped the batch
            if project.budget > 0:
                self.let_go(project.slug, downloader, finished)
            self.record_done(project.slug, downloader, finished,
                             scaled_bytes(domain_bytes, len(finished), len(names)), version, now)
        return Finished(tuple(finished), problem)

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
    def record_done(self, slug: str, downloader: str, names: Sequence[str], domain_bytes: Mapping[str, int],
                    version: str | None, now: float) -> None:
        """Add finished items and the bytes they reported to the tallies, and record the completion for the
        dashboard (recent completions, the downloader's version, the items-done counter)."""

    @abc.abstractmethod
    def tally(self, slug: str) -> DoneTally:
        """The project's tallies."""

    @abc.abstractmethod
    def activity(self, slug: str, now: float) -> Activity:
        """The project's recent completions, the downloaders active in the last ACTIVE_KEPT seconds with their
        versions, and the items-done buckets of the last RATE_KEPT seconds."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections (not `aio`'s: close that on its event loop)."""


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
