"""Who may take how many items now: block lists, per-downloader budgets and the project's rate limit.

The decision is one atomic step in the store (a Lua script on Redis, a transaction on SQLite), so tracker
processes sharing a store share the limits. This module holds the rules both stores follow:

- **blocked**: the downloader's nick or its IP address is on the project's block list: nothing, ever.
- **budget**: a downloader may hold at most `budget` items at once. What it holds is kept with each lease's end,
  so a claim that expires stops counting by itself (universal-tracker's budgets drifted and needed a
  "recalculate budgets" script). A request for more than the budget left gets what is left. Holds are recorded
  just after the claim (and only while the project has a budget), so two requests of one downloader racing each
  other may together overshoot its budget by the second one's items; the next request sees them all.
- **rate**: the project hands out at most `rate_limit` items per minute, by the generic cell rate algorithm: a
  "theoretical arrival time" (TAT) moves `interval` seconds per item handed out, and a request is let through
  while the TAT is at most `burst - 1` intervals ahead of now. A batch may run the TAT further ahead, so a
  multi=N request is never refused merely for being larger than the burst; the next requests wait it out.
  The refusal says exactly how long to wait (Retry-After), where universal-tracker said nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BUDGET_RETRY_AFTER = 30  # seconds; a worker holding its budget mostly frees a slot by finishing an item


@dataclass(frozen=True)
class Admission:
    """What a request may take: `granted` items, or a refusal (`refused` says why, `retry_after` when to ask)."""

    granted: int = 0
    refused: str | None = None  # None, "blocked", "budget" or "rate"
    retry_after: float = 0.0
    held: int = 0  # items the downloader holds now (when the project has a budget)


def rate_interval(rate_limit: float) -> float:
    """Seconds between items at `rate_limit` items per minute (0: no limit)."""
    return 60.0 / rate_limit if rate_limit > 0 else 0.0


def rate_burst(rate_limit: float) -> int:
    """Items that may go out at once: one second's worth, at least one."""
    return max(1, math.ceil(rate_limit / 60.0))


def gcra(tat: float | None, now: float, n: int, interval: float, burst: int) -> tuple[float, float]:
    """One step of the rate limit: (new TAT, 0) when `n` items may go out now, else (old TAT, seconds to wait).

    The Redis store runs the same arithmetic in Lua (archiver/tracker/state_redis.py, _ADMIT)."""
    start = now if tat is None or tat < now else tat
    slack = (burst - 1) * interval
    if start - now > slack:
        return start, start - slack - now
    return start + n * interval, 0.0


def budget_left(budget: int, held: int) -> int | None:
    """How many more items a downloader holding `held` may take (None: no budget)."""
    return None if budget <= 0 else max(budget - held, 0)
