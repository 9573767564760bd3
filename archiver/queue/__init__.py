"""Item queues: the interface (base.py) and its stores, chosen by URL with `open_store`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archiver.errors import UsageError
from archiver.queue.base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    Claim,
    ItemOutcome,
    ItemQueue,
    ItemRecord,
    ItemState,
    NotClaimant,
    QueueError,
    QueueStats,
    UnknownItem,
    WarcFile,
)

__all__ = [
    "DEFAULT_LEASE", "DEFAULT_MAX_ATTEMPTS", "Claim", "ItemOutcome", "ItemQueue", "ItemRecord", "ItemState",
    "NotClaimant", "QueueError", "QueueStats", "UnknownItem", "WarcFile", "open_store", "STATE_FILE",
]

STATE_FILE = "state.sqlite"  # the queue of a run directory: DIR/state.sqlite


def open_store(url: str | Path, **options: Any) -> ItemQueue:
    """Open the item store named by `url`.

    ``sqlite:///relative/path``, ``sqlite:////absolute/path`` (SQLAlchemy's spelling, so the usual URLs work)
    or a bare file path open the embedded SQLite store; ``redis://HOST:PORT/DB[?prefix=KEYPREFIX]`` (or
    ``rediss://`` for TLS) the Redis store. `options` go to the store: lease, max_attempts, clock (and prefix).
    """
    text = str(url)
    if text.startswith("sqlite://"):
        rest = text[len("sqlite://"):]
        if not rest.startswith("/") or rest == "/":
            raise UsageError(f"{text!r}: a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path")
        path = rest[1:]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme in ("redis", "rediss"):
            try:
                from archiver.queue.redis import RedisQueue
            except ModuleNotFoundError as e:
                raise UsageError(f"{text!r}: the Redis store needs the {e.name!r} package (pip install valkey)") from None
            return RedisQueue(text, **options)
        raise UsageError(f"{text!r}: unknown queue store {scheme!r}; use sqlite:///PATH, redis://HOST:PORT/DB "
                         "or a file path")
    else:
        path = text
    if not path:
        raise UsageError("the queue store needs a file path, e.g. sqlite:///run/state.sqlite")
    from archiver.queue.sqlite import SqliteQueue

    return SqliteQueue(path, **options)
