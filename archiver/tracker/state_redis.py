"""The tracker's state in Redis, shared by every tracker process behind a load balancer.

    {T}projects                  hash  slug -> project settings (JSON)
    {T}p:<slug>:blocked          set   blocked nicks and IP addresses
    {T}p:<slug>:rate             string the rate limit's theoretical arrival time (expires once in the past)
    {T}p:<slug>:held:<nick>      zset  item -> lease end: what counts against the downloader's budget
    {T}p:<slug>:done:items       hash  downloader -> items done
    {T}p:<slug>:done:bytes       hash  downloader -> bytes reported
    {T}p:<slug>:done:domains     hash  bytes key -> bytes reported
    {T}p:<slug>:recent           list  the last RECENT_KEPT completions (JSON), newest first, for the dashboard
    {T}p:<slug>:active           zset  downloader -> time of its last done (the last ACTIVE_KEPT seconds)
    {T}p:<slug>:versions         hash  downloader -> the pipeline version of its last done
    {T}p:<slug>:rate:<t>         string items done in the RATE_BUCKET seconds from t (expires after RATE_KEPT)
    {T}p:<slug>:q:...                  the project's item queue (archiver.queue.redis)

Each of a worker's two calls per item is one Lua script, one round trip: `request` (block list, budget, rate,
claim, budget hold: HANDOUT) and `done` (claimant check, done, budget, tallies, dashboard records: FINISH), so two
tracker processes cannot both spend the last of a budget, claim one item twice, or finish half a batch. The
scripts call the item queue's own scripts (archiver.queue.redis), each wrapped as a Lua function, so the queue's
state changes are written once. From the event loop (`aio`) the same scripts go through the tracker's pipelined
client (archiver.tracker.redis_async); from threads, through valkey.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import valkey

from archiver.queue import Claim, ItemQueue, QueueError
from archiver.queue import redis as queue_scripts
from archiver.queue.redis import RedisQueue, redis_errors
from archiver.tracker.budgets import BUDGET_RETRY_AFTER, Admission, rate_burst, rate_interval
from archiver.tracker.projects import Project
from archiver.tracker.redis_async import AsyncRedis, RedisError, ReplyError, Script
from archiver.tracker.state import (
    ACTIVE_KEPT,
    NAMES_KEPT,
    RATE_BUCKET,
    RATE_KEPT,
    RECENT_KEPT,
    Activity,
    ClaimProblem,
    Completion,
    DoneTally,
    Finished,
    Handout,
    TrackerState,
    rate_bucket,
)

DEFAULT_PREFIX = "archiver:tracker:"


def _function(name: str, script: str) -> str:
    """A whole script as a local Lua function of its ARGV, so a bigger script can call it with arguments of its
    own: the parameter named ARGV shadows the global one inside it, and its `return` answers the call."""
    return f"local function {name}(ARGV)\n{script}\nend\n"


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

# ARGV: project prefix, downloader, version ('' for none), now, item count, names..., then bytes key, bytes
# pairs (whole numbers below 2^53). Tallies and the dashboard's records, each kept bounded as it is written.
_RECORD = f"""
local P, who, version, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local total = 0
for i = 7 + n, #ARGV, 2 do total = total + tonumber(ARGV[i]) end
total = string.format('%d', total)
redis.call('HINCRBY', P .. 'done:items', who, n)
redis.call('HINCRBY', P .. 'done:bytes', who, total)
for i = 6 + n, #ARGV, 2 do redis.call('HINCRBY', P .. 'done:domains', ARGV[i], ARGV[i + 1]) end
local shown = {{}}
for i = 1, math.min(n, {NAMES_KEPT}) do shown[i] = ARGV[5 + i] end
local entry = {{at = tonumber(now), downloader = who, items = n, names = shown, bytes = tonumber(total)}}
if version ~= '' then entry.version = version end
redis.call('LPUSH', P .. 'recent', cjson.encode(entry))
redis.call('LTRIM', P .. 'recent', 0, {RECENT_KEPT - 1})
redis.call('ZADD', P .. 'active', now, who)
redis.call('ZREMRANGEBYSCORE', P .. 'active', '-inf', string.format('(%.17g', tonumber(now) - {ACTIVE_KEPT}))
if version ~= '' then redis.call('HSET', P .. 'versions', who, version) else redis.call('HDEL', P .. 'versions', who) end
local bucket = P .. 'rate:' .. string.format('%d', math.floor(tonumber(now) / {RATE_BUCKET}) * {RATE_BUCKET})
redis.call('INCRBY', bucket, n)
redis.call('EXPIRE', bucket, {RATE_KEPT + 2 * RATE_BUCKET})
"""

# ARGV: project prefix, downloader, ip, n, now, budget, interval, burst (as ADMIT), queue prefix, lease seconds,
# lease end, max attempts, expiry batch, n tokens
# -> ADMIT's refusals | {'empty', items claimed in the project} | {'ok', held, name, attempts, name, attempts...}
_HANDOUT = _function("admit", _ADMIT) + _function("refund", _REFUND) + _function("queue_claim", queue_scripts._CLAIM) + """
local verdict = admit({ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]})
if verdict[1] ~= 'ok' then return verdict end
local granted, interval = verdict[2], tonumber(ARGV[7])
local args = {ARGV[9], ARGV[2], granted, ARGV[10], ARGV[5], ARGV[11], ARGV[12], ARGV[13]}
for i = 1, granted do args[8 + i] = ARGV[13 + i] end
local got = queue_claim(args)
local count = #got / 2
if count < granted and interval > 0 then
  refund({ARGV[1], string.format('%.17g', (granted - count) * interval)})
end
if count == 0 then return {'empty', redis.call('ZCARD', ARGV[9] .. 's:claimed')} end
if tonumber(ARGV[6]) > 0 then
  for i = 1, #got, 2 do redis.call('ZADD', ARGV[1] .. 'held:' .. ARGV[2], ARGV[11], got[i]) end
end
local out = {'ok', verdict[3]}
for i = 1, #got do out[#out + 1] = got[i] end
return out
"""

# ARGV: project prefix, queue prefix, downloader, now, n, tokens given ('1' or ''), outcome extra (JSON),
# budget ('1' when the project has one), version ('' for none), k, then k bytes key, bytes pairs, n names,
# n byte shares, and n claim tokens when given
# -> {'unknown_item', name} | {'not_claimed', name, state} | {'not_claimant', name} | {'ok', finished names...}
# Every name is checked before any changes: a problem with one leaves the whole batch as it was.
_FINISH = _function("queue_done", queue_scripts._DONE) + _function("record", _RECORD) + """
local P, Q, who, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local k = tonumber(ARGV[10])
local names = 10 + 2 * k
local todo = {}
for i = 1, n do
  local name = ARGV[names + i]
  local f = redis.call('HMGET', Q .. 'i:' .. name, 'state', 'claimant', 'token')
  if not f[1] then return {'unknown_item', name} end
  if f[1] ~= 'claimed' then
    if f[1] ~= 'done' or f[2] ~= who then return {'not_claimed', name, f[1]} end
  elseif f[2] ~= who or (ARGV[6] == '1' and f[3] ~= ARGV[names + 2 * n + i]) then
    return {'not_claimant', name}
  else
    todo[#todo + 1] = {i, f[3]}
  end
end
local finished = {}
for _, t in ipairs(todo) do
  local i = t[1]
  queue_done({Q, t[2], now, ARGV[names + n + i], '{}', ARGV[7], '[]'})
  finished[#finished + 1] = ARGV[names + i]
end
if #finished == 0 then return {'ok'} end
if ARGV[8] == '1' then redis.call('ZREM', P .. 'held:' .. who, unpack(finished)) end
local args = {P, who, ARGV[9], now, #finished}
for _, name in ipairs(finished) do args[#args + 1] = name end
for i = 11, 10 + 2 * k, 2 do
  args[#args + 1] = ARGV[i]
  if #finished == n then
    args[#args + 1] = ARGV[i + 1]
  else  -- a repeated done: only the share of the items it finishes now (state.scaled_bytes)
    args[#args + 1] = string.format('%d', math.floor(tonumber(ARGV[i + 1]) * #finished / n))
  end
end
record(args)
local out = {'ok'}
for _, name in ipairs(finished) do out[#out + 1] = name end
return out
"""

# ARGV: project prefix, active since, first bucket, last bucket
# -> {recent completions (JSON), {downloader, last done, ...}, {version or '', ...}, {items per bucket...}}
_ACTIVITY = f"""
local P, since = ARGV[1], ARGV[2]
local recent = redis.call('LRANGE', P .. 'recent', 0, {RECENT_KEPT - 1})
local active = redis.call('ZRANGEBYSCORE', P .. 'active', '(' .. since, '+inf', 'WITHSCORES')
local versions = {{}}
for i = 1, #active, 2 do versions[#versions + 1] = redis.call('HGET', P .. 'versions', active[i]) or '' end
local counts = {{}}
for t = tonumber(ARGV[3]), tonumber(ARGV[4]), {RATE_BUCKET} do
  counts[#counts + 1] = redis.call('GET', P .. 'rate:' .. string.format('%d', t)) or '0'
end
return {{recent, active, versions, counts}}
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
        self._scripts = {name: self.redis.register_script(source) for name, source in _SCRIPTS.items()}
        with self._errors():
            self.redis.ping()
        try:
            self.aio = _AsyncRedisState(self, AsyncRedis(self._base, timeout=30, connect_timeout=10))
        except ValueError:  # URL options only valkey understands: request and done take the thread pool instead
            self.aio = None

    def _p(self, slug: str) -> str:
        return f"{self.prefix}p:{slug}:"

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return redis_errors(self.where, "tracker")

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

    # ---- the two calls of every item ------------------------------------------------------------------------
    def handout(self, project: Project, queue: ItemQueue, downloader: str, ip: str, n: int,
                now: float) -> Handout:
        args, tokens, expires = self._handout_args(project, queue, downloader, ip, n, now)
        with self._errors():
            reply = self._scripts["handout"](args=args)
        return _handout(reply, downloader, tokens, expires)

    def finish(self, project: Project, queue: ItemQueue, downloader: str, tokens: Sequence[str],
               names: Sequence[str], shares: Sequence[int], extra: Mapping[str, Any],
               domain_bytes: Mapping[str, int], version: str | None, now: float) -> Finished:
        args = self._finish_args(project, queue, downloader, tokens, names, shares, extra, domain_bytes, version,
                                 now)
        with self._errors():
            reply = self._scripts["finish"](args=args)
        return _finished(reply)

    def _handout_args(self, project: Project, queue: ItemQueue, downloader: str, ip: str, n: int,
                      now: float) -> tuple[list[Any], list[str], float]:
        if not isinstance(queue, RedisQueue):
            raise TypeError("a Redis tracker store hands out items of its own Redis queues")
        expires = now + project.lease
        tokens = [secrets.token_hex(16) for _ in range(n)]  # as RedisQueue.claim makes them
        args = [self._p(project.slug), downloader, ip, n, _num(now), project.budget,
                repr(rate_interval(project.rate_limit)), rate_burst(project.rate_limit), queue.prefix,
                _num(project.lease), _num(expires), queue.max_attempts, queue.expiry_batch, *tokens]
        return args, tokens, expires

    def _finish_args(self, project: Project, queue: ItemQueue, downloader: str, tokens: Sequence[str],
                     names: Sequence[str], shares: Sequence[int], extra: Mapping[str, Any],
                     domain_bytes: Mapping[str, int], version: str | None, now: float) -> list[Any]:
        if not isinstance(queue, RedisQueue):
            raise TypeError("a Redis tracker store finishes items of its own Redis queues")
        args: list[Any] = [self._p(project.slug), queue.prefix, downloader, _num(now), len(names),
                           "1" if tokens else "", json.dumps(dict(extra)), "1" if project.budget > 0 else "",
                           version or "", len(domain_bytes)]
        for key, n in domain_bytes.items():
            args += [key, int(n)]
        return args + list(names) + [int(s) for s in shares] + list(tokens)

    # ---- admission -----------------------------------------------------------------------------------------
    def admit(self, project: Project, downloader: str, ip: str, n: int, now: float) -> Admission:
        with self._errors():
            reply = self._scripts["admit"](args=[self._p(project.slug), downloader, ip, n, _num(now), project.budget,
                                                 repr(rate_interval(project.rate_limit)),
                                                 rate_burst(project.rate_limit)])
        return _admission(reply)

    def refund(self, project: Project, n: int) -> None:
        interval = rate_interval(project.rate_limit)
        if interval and n > 0:
            with self._errors():
                self._scripts["refund"](args=[self._p(project.slug), repr(n * interval)])

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
    def record_done(self, slug: str, downloader: str, names: Sequence[str], domain_bytes: Mapping[str, int],
                    version: str | None, now: float) -> None:
        args: list[Any] = [self._p(slug), downloader, version or "", _num(now), len(names), *names]
        for key, n in domain_bytes.items():
            args += [key, int(n)]
        with self._errors():
            self._scripts["record"](args=args)

    def tally(self, slug: str) -> DoneTally:
        p = self._p(slug)
        with self._errors():
            pipe = self.redis.pipeline(transaction=True)
            for key in ("done:items", "done:bytes", "done:domains"):
                pipe.hgetall(p + key)
            items, nbytes, domains = pipe.execute()
        return DoneTally(*({k: int(v) for k, v in d.items()} for d in (items, nbytes, domains)))

    def activity(self, slug: str, now: float) -> Activity:
        last = rate_bucket(now)
        first = last - RATE_KEPT
        with self._errors():
            recent, active, versions, counts = self._scripts["activity"](
                args=[self._p(slug), _num(now - ACTIVE_KEPT), first, last])
        return Activity(tuple(Completion.from_mapping(json.loads(e)) for e in recent),
                        {active[i]: (float(active[i + 1]), versions[i // 2] or None) for i in range(0, len(active), 2)},
                        {first + i * RATE_BUCKET: int(c) for i, c in enumerate(counts)})


class _AsyncRedisState:
    """RedisState's handout and finish from the event loop: the same scripts and arguments, sent through the
    tracker's pipelined client (one connection per process, no thread hop)."""

    def __init__(self, state: RedisState, client: AsyncRedis) -> None:
        self.state, self.client = state, client
        self._scripts = {name: Script(_SCRIPTS[name]) for name in ("handout", "finish")}

    async def handout(self, project: Project, queue: ItemQueue, downloader: str, ip: str, n: int,
                      now: float) -> Handout:
        args, tokens, expires = self.state._handout_args(project, queue, downloader, ip, n, now)
        return _handout(await self._run("handout", args), downloader, tokens, expires)

    async def finish(self, project: Project, queue: ItemQueue, downloader: str, tokens: Sequence[str],
                     names: Sequence[str], shares: Sequence[int], extra: Mapping[str, Any],
                     domain_bytes: Mapping[str, int], version: str | None, now: float) -> Finished:
        args = self.state._finish_args(project, queue, downloader, tokens, names, shares, extra, domain_bytes,
                                       version, now)
        return _finished(await self._run("finish", args))

    async def close(self) -> None:
        await self.client.close()

    async def _run(self, name: str, args: list[Any]) -> Any:
        where = self.state.where
        try:
            return await self.client.run(self._scripts[name], args)
        except RedisError as e:
            raise QueueError(f"cannot reach Redis at {where}: {e} (is redis-server running there, and is the URL "
                             "redis://HOST:PORT/DB right?)") from None
        except ReplyError as e:
            raise QueueError(f"Redis at {where} refused a tracker operation: {e}") from None


_SCRIPTS = {"admit": _ADMIT, "refund": _REFUND, "record": _RECORD, "handout": _HANDOUT, "finish": _FINISH,
            "activity": _ACTIVITY}


def _num(value: float) -> str:
    """A float as the scripts receive it: repr round-trips, and Redis parses it as a score (as the queue's)."""
    return repr(float(value))


def _admission(reply: list[Any]) -> Admission:
    if reply[0] == "blocked":
        return Admission(refused="blocked")
    if reply[0] == "budget":
        return Admission(refused="budget", retry_after=BUDGET_RETRY_AFTER, held=int(reply[1]))
    if reply[0] == "rate":
        return Admission(refused="rate", retry_after=float(reply[1]), held=int(reply[2]))
    return Admission(granted=int(reply[1]), held=int(reply[2]))


def _handout(reply: list[Any], downloader: str, tokens: list[str], expires: float) -> Handout:
    if reply[0] == "empty":
        return Handout(Admission(), claimed=int(reply[1]))
    if reply[0] != "ok":
        return Handout(_admission(reply))
    claims = tuple(Claim(reply[i], tokens[(i - 2) // 2], downloader, expires, int(reply[i + 1]))
                   for i in range(2, len(reply), 2))
    return Handout(Admission(granted=len(claims), held=int(reply[1])), claims)


def _finished(reply: list[Any]) -> Finished:
    if reply[0] == "ok":
        return Finished(tuple(reply[1:]))
    return Finished(problem=ClaimProblem(reply[0], reply[1], reply[2] if len(reply) > 2 else None))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
