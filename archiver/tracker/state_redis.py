"""The tracker's state in Redis, shared by every tracker process behind a load balancer.

    {T}projects                  hash  slug -> project settings (JSON)
    {T}p:<slug>:blocked          set   blocked nicks and IP addresses
    {T}p:<slug>:rate             string the rate limit's theoretical arrival time (expires once in the past)
    {T}p:<slug>:held:<nick>      zset  item -> lease end: what counts against the downloader's budget
    {T}p:<slug>:done:items       hash  downloader -> items done
    {T}p:<slug>:done:bytes       hash  downloader -> bytes reported
    {T}p:<slug>:done:domains     hash  bytes key -> bytes reported
    {T}p:<slug>:q:...                  the project's item queue (archiver.queue.redis)

A request's admission (block list, budget, rate) is one Lua script, so it costs one round trip and two tracker
processes cannot both spend the last of a budget or the same slot of the rate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import valkey
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError
from valkey.exceptions import ValkeyError

from archiver.queue import ItemQueue, QueueError
from archiver.queue.redis import RedisQueue
from archiver.tracker.budgets import BUDGET_RETRY_AFTER, Admission, rate_burst, rate_interval
from archiver.tracker.projects import Project
from archiver.tracker.state import DoneTally, TrackerState

DEFAULT_PREFIX = "archiver:tracker:"

# ARGV: project prefix, downloader, ip, n, now, budget, interval, burst
# -> {'blocked'} | {'budget', held} | {'rate', seconds to wait, held} | {'ok', granted, held}
# The rate arithmetic is archiver.tracker.budgets.gcra's.
_ADMIT = """
local P, who, ip = ARGV[1], ARGV[2], ARGV[3]
local n, now, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local interval, burst = tonumber(ARGV[7]), tonumber(ARGV[8])
if redis.call('SISMEMBER', P .. 'blocked', who) == 1 or redis.call('SISMEMBER', P .. 'blocked', ip) == 1 then
  return {'blocked'}
end
local held = 0
if budget > 0 then
  local key = P .. 'held:' .. who
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[5])
  held = redis.call('ZCARD', key)
  if held >= budget then return {'budget', held} end
  n = math.min(n, budget - held)
end
if interval > 0 then
  local tat = tonumber(redis.call('GET', P .. 'rate') or '0')
  if tat < now then tat = now end
  local slack = (burst - 1) * interval
  if tat - now > slack then return {'rate', string.format('%.17g', tat - slack - now), held} end
  tat = tat + n * interval
  redis.call('SET', P .. 'rate', string.format('%.17g', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
end
return {'ok', n, held}
"""

# ARGV: project prefix, seconds to give back
_REFUND = """
if redis.call('EXISTS', ARGV[1] .. 'rate') == 1 then
  redis.call('INCRBYFLOAT', ARGV[1] .. 'rate', '-' .. ARGV[2])
end
"""


class RedisState(TrackerState):
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.prefix = dict(query).get("prefix", DEFAULT_PREFIX)
        if not self.prefix:
            raise QueueError("a Redis tracker store needs a non-empty key prefix, e.g. archiver:tracker:")
        self._base = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"])))
        self.url = urlunsplit(parts._replace(query=urlencode(
            [(k, v) for k, v in query if k != "prefix"] + [("prefix", self.prefix)], quote_via=quote)))
        self.where = f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        try:
            self.redis = valkey.Valkey.from_url(self._base, decode_responses=True, socket_timeout=30,
                                                socket_connect_timeout=10, health_check_interval=30)
        except ValueError as e:
            raise QueueError(f"{self.where}: {e}") from None
        self._admit = self.redis.register_script(_ADMIT)
        self._refund = self.redis.register_script(_REFUND)
        with self._errors():
            self.redis.ping()

    def _p(self, slug: str) -> str:
        return f"{self.prefix}p:{slug}:"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (ValkeyConnectionError, ValkeyTimeoutError) as e:
            raise QueueError(f"cannot reach Redis at {self.where}: {e} (is redis-server running there, and is "
                             "the URL redis://HOST:PORT/DB right?)") from None
        except ValkeyError as e:
            raise QueueError(f"Redis at {self.where} refused a tracker operation: {e}") from None

    def close(self) -> None:
        self.redis.close()
        self.redis.connection_pool.disconnect()

    # ---- projects ------------------------------------------------------------------------------------------
    def projects(self) -> list[Project]:
        with self._errors():
            stored = self.redis.hgetall(self.prefix + "projects")
        return [Project.from_json(stored[slug]) for slug in sorted(stored)]

    def project(self, slug: str) -> Project | None:
        with self._errors():
            text = self.redis.hget(self.prefix + "projects", slug)
        return Project.from_json(text) if text else None

    def save_project(self, project: Project) -> None:
        with self._errors():
            self.redis.hset(self.prefix + "projects", project.slug, project.to_json())

    def open_queue(self, project: Project, clock: Callable[[], float] = time.time) -> ItemQueue:
        return RedisQueue(self._base, prefix=self._p(project.slug) + "q:", lease=project.lease,
                          max_attempts=project.max_attempts, clock=clock)

    # ---- admission -----------------------------------------------------------------------------------------
    def admit(self, project: Project, downloader: str, ip: str, n: int, now: float) -> Admission:
        with self._errors():
            reply = self._admit(args=[self._p(project.slug), downloader, ip, n, repr(float(now)), project.budget,
                                      repr(rate_interval(project.rate_limit)), rate_burst(project.rate_limit)])
        if reply[0] == "blocked":
            return Admission(refused="blocked")
        if reply[0] == "budget":
            return Admission(refused="budget", retry_after=BUDGET_RETRY_AFTER, held=int(reply[1]))
        if reply[0] == "rate":
            return Admission(refused="rate", retry_after=float(reply[1]), held=int(reply[2]))
        return Admission(granted=int(reply[1]), held=int(reply[2]))

    def refund(self, project: Project, n: int) -> None:
        interval = rate_interval(project.rate_limit)
        if interval and n > 0:
            with self._errors():
                self._refund(args=[self._p(project.slug), repr(n * interval)])

    def hold(self, slug: str, downloader: str, leases: Mapping[str, float]) -> None:
        if leases:
            with self._errors():
                self.redis.zadd(f"{self._p(slug)}held:{downloader}", dict(leases))

    def let_go(self, slug: str, downloader: str, items: Iterable[str]) -> None:
        names = list(items)
        if names:
            with self._errors():
                self.redis.zrem(f"{self._p(slug)}held:{downloader}", *names)

    def forget_holds(self, slug: str, downloader: str | None = None) -> None:
        with self._errors():
            if downloader is not None:
                self.redis.delete(f"{self._p(slug)}held:{downloader}")
                return
            # An admin's requeue of a whole project: the one place that lists keys, and only this project's.
            pattern = _glob_escape(f"{self._p(slug)}held:") + "*"
            for key in self.redis.scan_iter(match=pattern, count=1000):
                self.redis.delete(key)

    # ---- block lists ---------------------------------------------------------------------------------------
    def block(self, slug: str, who: str) -> bool:
        with self._errors():
            return self.redis.sadd(self._p(slug) + "blocked", who) == 1

    def unblock(self, slug: str, who: str) -> bool:
        with self._errors():
            return self.redis.srem(self._p(slug) + "blocked", who) == 1

    def blocked(self, slug: str) -> list[str]:
        with self._errors():
            return sorted(self.redis.smembers(self._p(slug) + "blocked"))

    # ---- tallies -------------------------------------------------------------------------------------------
    def record_done(self, slug: str, downloader: str, items: int, domain_bytes: Mapping[str, int]) -> None:
        p = self._p(slug)
        with self._errors():
            pipe = self.redis.pipeline(transaction=True)
            pipe.hincrby(p + "done:items", downloader, items)
            pipe.hincrby(p + "done:bytes", downloader, sum(domain_bytes.values()))
            for domain, n in domain_bytes.items():
                pipe.hincrby(p + "done:domains", domain, n)
            pipe.execute()

    def tally(self, slug: str) -> DoneTally:
        p = self._p(slug)
        with self._errors():
            pipe = self.redis.pipeline(transaction=True)
            for key in ("done:items", "done:bytes", "done:domains"):
                pipe.hgetall(p + key)
            items, nbytes, domains = pipe.execute()
        return DoneTally(*({k: int(v) for k, v in d.items()} for d in (items, nbytes, domains)))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
