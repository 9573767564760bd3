"""Per-host politeness: how many requests in flight, the delay between them, and back-off when refused.

Back-off is exponential with jitter, honours Retry-After when the server sends one (arXiv does not: a 429
"Rate exceeded." comes bare), and gives up after a bounded total so a blocked grab ends with a clear message
instead of hammering or hanging.
"""

from __future__ import annotations

import random
import time
from collections import deque
from email.utils import parsedate_to_datetime

from archiver.sites.base import HostPolicy


class HostState:
    __slots__ = ("host", "policy", "queue", "in_flight", "next_time", "backoffs", "backoff_total", "gave_up",
                 "last_refusal")

    def __init__(self, host: str, policy: HostPolicy) -> None:
        self.host = host
        self.policy = policy
        self.queue: deque = deque()
        self.in_flight = 0
        self.next_time = 0.0  # monotonic time before which no request may start
        self.backoffs = 0  # refusals in a row
        self.backoff_total = 0.0
        self.gave_up: str | None = None
        self.last_refusal = ""

    def limit(self, prefetch: int, workers: int) -> int:
        """How many tasks may be handed out at once. With no delay and no per-host cap below the number of
        workers, a few extra tasks wait inside each worker so it never idles between results."""
        p = self.policy
        if p.delay <= 0 and p.connections >= workers:
            return p.connections * prefetch
        return p.connections

    def ready(self, now: float, prefetch: int, workers: int) -> bool:
        return bool(self.queue) and now >= self.next_time and self.in_flight < self.limit(prefetch, workers)

    def finished(self, now: float) -> None:
        self.in_flight -= 1
        if self.policy.delay > 0:
            self.next_time = max(self.next_time, now + self.policy.delay)

    def succeeded(self) -> None:
        self.backoffs = 0

    def refused(self, now: float, reason: str, retry_after: str | None) -> float | None:
        """Record a block or rate-limit answer; return the wait before the next try, or None to give up."""
        p = self.policy
        wait = min(p.backoff_max, p.backoff_base * (2 ** self.backoffs)) * random.uniform(0.75, 1.25)
        asked = parse_retry_after(retry_after)
        if asked is not None:
            wait = max(asked, 0.0)
        self.backoffs += 1
        self.last_refusal = reason
        if self.backoff_total + wait > p.backoff_give_up:
            self.gave_up = (f"gave up on {self.host} after {self.backoff_total:.0f} s of back-off "
                            f"({self.backoffs} refusals, last: {reason}); wait an hour or more, then grab again "
                            "with a longer --delay")
            return None
        self.backoff_total += wait
        self.next_time = max(self.next_time, now + wait)
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable.
    Shared by the crawler (servers we grab) and the volunteer worker (the tracker)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
