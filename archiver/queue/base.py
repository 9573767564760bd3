"""The item queue interface: what a run, a worker and the tracker need from an item store.

An item moves through four states:

    todo ──claim──► claimed ──done──► done
      ▲               │  │
      │   release,    │  └──fail (no retries left, or retry=False)──► failed
      │   fail (retry)│                                                  │
      └───────────────┘◄── lease expired (noticed by the next claim)     │
      ▲                                                                  │
      └────────────────────────────── reset_failed ──────────────────────┘

A claim carries a random token and the claimant's id. Only the token of an item's current claim may heartbeat,
finish, fail or release it; anything else raises NotClaimant and changes nothing (universal-tracker accepts
`done` from anyone, which let bad data in). A token stays valid until its item is claimed again, released or
failed: an expired lease only makes the item claimable, so a slow worker whose item nobody took meanwhile can
still hand its work in. `done` is idempotent for the token that finished the item, because HTTP clients retry.

`attempts` counts the claims of an item that were not released: each one is a try. Expired leases and failures
use up a try; once `max_attempts` tries are used, the item goes to failed instead of back to todo, so an item
that crashes every worker stops being handed out.

Stores: archiver.queue.sqlite.SqliteQueue (embedded, the default for local runs) now, a Redis store for the
tracker later; both must pass tests/queue_contract.py.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from archiver.errors import ArchiverError

DEFAULT_LEASE = 15 * 60.0  # seconds; a worker heartbeats well within this (arXiv's 3 s delay makes items slow)
DEFAULT_MAX_ATTEMPTS = 3


class ItemState(str, enum.Enum):
    TODO = "todo"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class QueueError(ArchiverError):
    """Something the queue refused; the message says why."""


class UnknownItem(QueueError):
    """The queue has never held an item of that name."""


class NotClaimant(QueueError):
    """The token is not the current claim of any item: never issued, released, failed, or the item was claimed
    again after its lease expired."""


@dataclass(frozen=True)
class Claim:
    """One item handed to one claimant until `lease_expires` (epoch seconds) unless heartbeats extend it."""

    item: str
    token: str
    claimant: str
    lease_expires: float
    attempts: int  # this claim is try number `attempts` (1 for the first)


@dataclass(frozen=True)
class WarcFile:
    """A finished WARC file an item produced, as the packer and uploader will verify it."""

    name: str  # file name relative to the run directory
    size: int
    sha256: str  # hex


@dataclass(frozen=True)
class ItemOutcome:
    """What `done` records about a finished item."""

    warcs: tuple[WarcFile, ...] = ()
    bytes: int = 0  # bytes downloaded (HTTP payloads as received)
    timings: Mapping[str, float] = field(default_factory=dict)  # phase -> seconds, e.g. {"crawl": 41.2}
    extra: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable: stats a tracker shows


@dataclass(frozen=True)
class ItemRecord:
    """Everything the queue knows about one item."""

    name: str
    state: ItemState
    attempts: int
    claimant: str | None = None  # current claimant (claimed) or the one that finished it (done)
    lease_expires: float | None = None
    last_error: str | None = None
    outcome: ItemOutcome | None = None  # set once done
    updated: float | None = None


@dataclass(frozen=True)
class QueueStats:
    todo: int = 0
    claimed: int = 0
    done: int = 0
    failed: int = 0
    bytes: int = 0  # sum of ItemOutcome.bytes over done items

    @property
    def total(self) -> int:
        return self.todo + self.claimed + self.done + self.failed

    def line(self) -> str:
        return (f"{self.total} items: {self.todo} todo, {self.claimed} claimed, {self.done} done, "
                f"{self.failed} failed")


class ItemQueue(abc.ABC):
    """An item store. Safe to use from several processes at once, each with its own instance."""

    #: how another process opens this same queue with `archiver.queue.open_store`
    url: str

    @abc.abstractmethod
    def add(self, names: Iterable[str]) -> int:
        """Queue items as todo. Names already known (in any state) are left alone. Returns how many were new."""

    @abc.abstractmethod
    def claim(self, claimant: str, n: int = 1, lease: float | None = None) -> list[Claim]:
        """Atomically hand up to `n` todo items to `claimant` for `lease` seconds (default: the store's).

        Claims whose lease has expired are first returned to todo (or failed, when out of attempts), so a
        crashed worker's items come back without a separate sweeper. No item is ever handed to two claimants
        at once. An empty list means nothing is claimable now.
        """

    @abc.abstractmethod
    def heartbeat(self, token: str, lease: float | None = None) -> Claim:
        """Extend a claim's lease by `lease` seconds from now (default: the claim's own lease length)."""

    @abc.abstractmethod
    def done(self, token: str, outcome: ItemOutcome | None = None) -> None:
        """Mark the claimed item done with its outcome. Repeating it with the same token changes nothing."""

    @abc.abstractmethod
    def fail(self, token: str, reason: str, retry: bool = True) -> ItemState:
        """Give up this try. The item returns to todo while it has attempts left and `retry` is true,
        otherwise it becomes failed. `reason` is kept as the item's last error. Returns the new state."""

    @abc.abstractmethod
    def release(self, token: str) -> None:
        """Hand the item back untried (a worker shutting down): todo again, and the try is not counted."""

    @abc.abstractmethod
    def requeue_claims(self, claimant: str | None = None, reason: str = "claim requeued") -> int:
        """Return every current claim (or `claimant`'s) to todo now, as if their leases had expired: for a
        run restarted after a crash, whose old claims nobody holds any more. Returns how many."""

    @abc.abstractmethod
    def reset_failed(self) -> int:
        """Move every failed item back to todo with its attempts cleared. Returns how many."""

    @abc.abstractmethod
    def claim_of(self, name: str) -> Claim | None:
        """The current claim on an item, or None when it is not claimed (a tracker maps seesaw's
        `done(item, downloader)`, which carries no token, onto a token with this)."""

    @abc.abstractmethod
    def claim_status(self, token: str) -> tuple[str, ItemState] | None:
        """What became of the claim `token` names: (item, CLAIMED) while it is current, (item, DONE) when it
        finished the item, None when it ended any other way (released, failed, its lease ran out and the item
        was claimed again or requeued) or was never handed out. A tracker keeps a claim's uploads by this."""

    @abc.abstractmethod
    def get(self, name: str) -> ItemRecord:
        """One item's record; UnknownItem if the queue never held it."""

    @abc.abstractmethod
    def items(self, state: ItemState | str | None = None) -> Iterator[ItemRecord]:
        """Every item (or those in `state`), in the order they were added."""

    @abc.abstractmethod
    def stats(self) -> QueueStats:
        """Counts per state and bytes done."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the queue is not used afterwards."""

    def __enter__(self) -> ItemQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
