"""The Redis item store: one queue shared by several tracker processes (behind a load balancer) through one Redis.

Every state change is one Lua script, so it is atomic on the server: two processes claiming at once are
serialised by Redis itself and never pick the same item, with no WATCH retries under contention. Each call is
one round trip, and nothing a worker triggers scans the queue:

    {P}meta              hash   schema version
    {P}seq               string order counter: an item's `seq` is its place in the order items were added
    {P}i:<name>          hash   the item: seq, state, attempts, claimant, token, lease_expires, lease_seconds,
                                last_error, bytes, timings, extra, warcs (JSON), added, claimed_at, updated
    {P}all               zset   name -> seq, every item (items() pages through it in the order added)
    {P}s:<state>         zset   name -> seq, one per state (todo, claimed, done, failed): FIFO claims with
                                ZPOPMIN, counts with ZCARD, items(state) without touching other states
    {P}leases            zset   name -> lease expiry: the claim script ends the expired ones it finds first
    {P}tokens            hash   claim token -> item name (tokens of claimed and done items)
    {P}bytes             string sum of ItemOutcome.bytes over done items

Times come from the caller's clock (the contract tests need a manual one), so the tracker processes sharing one
Redis must keep their clocks in step (NTP): a lease ends when the claiming process's clock says so.

Floats cross into Lua as strings formatted with repr() and come back formatted with %.17g: both round-trip a
double exactly, so a lease read back equals the lease handed out (Lua's own tostring keeps only 14 digits).
Keys are built from a prefix inside the scripts, so this store needs one Redis, not a Redis Cluster.

The client is `valkey` (the maintained fork of redis-py, speaking to Redis and Valkey alike): pywb, a test
dependency, pins redis-py to 2.10.6, and the two cannot share the `redis` module name.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import valkey
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError
from valkey.exceptions import ValkeyError

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

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "archiver:queue:"
_PAGE = 1000  # items per round trip when adding or iterating

# Shared by the scripts below: end one claim as if its lease had expired (todo, or failed once out of tries).
_END_CLAIM = """
local function end_claim(P, name, reason, now, max_attempts)
  local key = P .. 'i:' .. name
  local f = redis.call('HMGET', key, 'seq', 'attempts', 'claimant', 'token')
  local attempts = tonumber(f[2])
  local state = 'todo'
  if attempts >= max_attempts then state = 'failed' end
  redis.call('HSET', key, 'state', state, 'updated', now,
             'last_error', reason .. ' (claimed by ' .. f[3] .. ', try ' .. attempts .. ')')
  redis.call('HDEL', key, 'token', 'claimant', 'lease_expires', 'lease_seconds')
  if f[4] then redis.call('HDEL', P .. 'tokens', f[4]) end
  redis.call('ZREM', P .. 's:claimed', name)
  redis.call('ZREM', P .. 'leases', name)
  redis.call('ZADD', P .. 's:' .. state, f[1], name)
  return state
end
"""

# ARGV: prefix, now, name...  -> how many were new
_ADD = """
local P, now, added = ARGV[1], ARGV[2], 0
for i = 3, #ARGV do
  local name = ARGV[i]
  local key = P .. 'i:' .. name
  if redis.call('EXISTS', key) == 0 then
    local seq = redis.call('INCR', P .. 'seq')
    redis.call('HSET', key, 'seq', seq, 'state', 'todo', 'attempts', 0, 'added', now, 'updated', now)
    redis.call('ZADD', P .. 'all', seq, name)
    redis.call('ZADD', P .. 's:todo', seq, name)
    added = added + 1
  end
end
return added
"""

# ARGV: prefix, claimant, n, lease seconds, now, expires, max_attempts, expiry batch, token...
# -> {name, attempts, name, attempts, ...}
# Expired leases are ended a batch at a time, oldest first; more only while the todo set cannot fill this claim,
# so a mass expiry (a tracker that was down) costs each claim a bounded amount of work.
_CLAIM = _END_CLAIM + """
local P, claimant, n, lease, now, expires = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local max_attempts, batch = tonumber(ARGV[7]), tonumber(ARGV[8])
while true do
  local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, batch)
  for _, name in ipairs(expired) do end_claim(P, name, 'lease expired', now, max_attempts) end
  if #expired < batch or redis.call('ZCARD', P .. 's:todo') >= n then break end
end
local picked = redis.call('ZPOPMIN', P .. 's:todo', n)
local out = {}
for i = 1, #picked, 2 do
  local name, seq = picked[i], picked[i + 1]
  local key = P .. 'i:' .. name
  local token = ARGV[8 + (i + 1) / 2]
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'state', 'claimed', 'token', token, 'claimant', claimant, 'lease_expires', expires,
             'lease_seconds', lease, 'claimed_at', now, 'updated', now)
  redis.call('ZADD', P .. 's:claimed', seq, name)
  redis.call('ZADD', P .. 'leases', expires, name)
  redis.call('HSET', P .. 'tokens', token, name)
  out[#out + 1] = name
  out[#out + 1] = attempts
end
return out
"""

# The token scripts answer {'notoken'} for a token that is not current, {'state', name, state} when the item is
# not in a state the call applies to, and {'ok', ...} otherwise; Python turns the first two into NotClaimant.

# ARGV: prefix, token, now, lease seconds ('' = the claim's own) -> {'ok', name, attempts, claimant, seconds}
_HEARTBEAT = """
local P, token, now = ARGV[1], ARGV[2], ARGV[3]
local name = redis.call('HGET', P .. 'tokens', token)
if not name then return {'notoken'} end
local key = P .. 'i:' .. name
local f = redis.call('HMGET', key, 'state', 'attempts', 'claimant', 'lease_seconds')
if f[1] ~= 'claimed' then return {'state', name, f[1]} end
local seconds = ARGV[4]
if seconds == '' then seconds = f[4] end
local expires = string.format('%.17g', tonumber(now) + tonumber(seconds))
redis.call('HSET', key, 'lease_expires', expires, 'lease_seconds', seconds, 'updated', now)
redis.call('ZADD', P .. 'leases', expires, name)
return {'ok', name, f[2], f[3], seconds}
"""

# ARGV: prefix, token, now, bytes, timings, extra, warcs -> {'ok', name}
_DONE = """
local P, token, now = ARGV[1], ARGV[2], ARGV[3]
local name = redis.call('HGET', P .. 'tokens', token)
if not name then return {'notoken'} end
local key = P .. 'i:' .. name
local f = redis.call('HMGET', key, 'state', 'seq')
if f[1] == 'done' then return {'ok', name} end
if f[1] ~= 'claimed' then return {'state', name, f[1]} end
redis.call('HSET', key, 'state', 'done', 'bytes', ARGV[4], 'timings', ARGV[5], 'extra', ARGV[6], 'warcs', ARGV[7],
           'updated', now)
redis.call('HDEL', key, 'lease_expires', 'lease_seconds', 'last_error')
redis.call('ZREM', P .. 's:claimed', name)
redis.call('ZREM', P .. 'leases', name)
redis.call('ZADD', P .. 's:done', f[2], name)
redis.call('INCRBY', P .. 'bytes', ARGV[4])
return {'ok', name}
"""

# ARGV: prefix, token, now, mode ('retry', 'final' or 'release'), reason, max_attempts -> {'ok', name, new state}
_GIVE_BACK = """
local P, token, now, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local name = redis.call('HGET', P .. 'tokens', token)
if not name then return {'notoken'} end
local key = P .. 'i:' .. name
local f = redis.call('HMGET', key, 'state', 'seq', 'attempts')
if f[1] ~= 'claimed' then return {'state', name, f[1]} end
local attempts, state = tonumber(f[3]), 'todo'
if mode == 'release' then
  attempts = math.max(attempts - 1, 0)
  redis.call('HSET', key, 'state', state, 'attempts', attempts, 'updated', now)
else
  if mode == 'final' or attempts >= tonumber(ARGV[6]) then state = 'failed' end
  redis.call('HSET', key, 'state', state, 'last_error', ARGV[5], 'updated', now)
end
redis.call('HDEL', key, 'token', 'claimant', 'lease_expires', 'lease_seconds')
redis.call('HDEL', P .. 'tokens', token)
redis.call('ZREM', P .. 's:claimed', name)
redis.call('ZREM', P .. 'leases', name)
redis.call('ZADD', P .. 's:' .. state, f[2], name)
return {'ok', name, state}
"""

# ARGV: prefix, claimant ('' = everyone's), reason, now, max_attempts -> how many. Admin and restart only: the
# claimed set is as large as the number of items in flight, never the queue.
_REQUEUE = _END_CLAIM + """
local P, claimant, reason, now, max_attempts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local n = 0
for _, name in ipairs(redis.call('ZRANGE', P .. 's:claimed', 0, -1)) do
  if claimant == '' or redis.call('HGET', P .. 'i:' .. name, 'claimant') == claimant then
    end_claim(P, name, reason, now, max_attempts)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, now, batch -> how many moved (the caller repeats until fewer than a batch)
_RESET_FAILED = """
local P, now = ARGV[1], ARGV[2]
local names = redis.call('ZRANGE', P .. 's:failed', 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
for i = 1, #names, 2 do
  redis.call('HSET', P .. 'i:' .. names[i], 'state', 'todo', 'attempts', 0, 'updated', now)
  redis.call('ZREM', P .. 's:failed', names[i])
  redis.call('ZADD', P .. 's:todo', names[i + 1], names[i])
end
return #names / 2
"""


def _num(value: float) -> str:
    """A float as Lua receives it: repr round-trips, and Redis parses it as a score."""
    return repr(float(value))


def _check_lease(seconds: float, asked: object) -> float:
    if not seconds > 0:
        raise QueueError(f"a lease must be a positive number of seconds, not {asked}")
    return seconds


@contextlib.contextmanager
def redis_errors(where: str, what: str) -> Iterator[None]:
    """Turn the client's exceptions into a QueueError that says where Redis was and what to check."""
    try:
        yield
    except (ValkeyConnectionError, ValkeyTimeoutError) as e:
        raise QueueError(f"cannot reach Redis at {where}: {e} (is redis-server running there, and is "
                         "the URL redis://HOST:PORT/DB right?)") from None
    except ValkeyError as e:
        raise QueueError(f"Redis at {where} refused a {what} operation: {e}") from None


class RedisQueue(ItemQueue):
    """ItemQueue on one Redis. Instances are cheap; each holds a connection pool safe across threads and forks."""

    #: leases ended per step of a claim; more only while the todo set cannot fill the claim
    expiry_batch = 1000

    def __init__(self, url: str, *, prefix: str | None = None, lease: float = DEFAULT_LEASE,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, clock: Callable[[], float] = time.time) -> None:
        _check_lease(lease, lease)
        if max_attempts < 1:
            raise QueueError(f"max_attempts must be at least 1, not {max_attempts}")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise QueueError(f"{url!r} is not a Redis URL: use redis://HOST:PORT/DB (rediss:// for TLS)")
        query = parse_qsl(parts.query, keep_blank_values=True)
        from_url = [(k, v) for k, v in query if k != "prefix"]
        self.prefix = prefix if prefix is not None else dict(query).get("prefix", DEFAULT_PREFIX)
        if not self.prefix:
            raise QueueError("a Redis queue needs a non-empty key prefix, e.g. archiver:queue:")
        self.url = urlunsplit(parts._replace(query=urlencode(from_url + [("prefix", self.prefix)], quote_via=quote)))
        self.lease = float(lease)
        self.max_attempts = int(max_attempts)
        self.clock = clock
        # Where, for messages: never the password a URL may carry.
        self.where = f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        try:
            self.redis = valkey.Valkey.from_url(urlunsplit(parts._replace(query=urlencode(from_url))),
                                                decode_responses=True, socket_timeout=30, socket_connect_timeout=10,
                                                health_check_interval=30)
        except ValueError as e:
            raise QueueError(f"{self.where}: {e}") from None
        self._scripts = {name: self.redis.register_script(src) for name, src in (
            ("add", _ADD), ("claim", _CLAIM), ("heartbeat", _HEARTBEAT), ("done", _DONE),
            ("give_back", _GIVE_BACK), ("requeue", _REQUEUE), ("reset_failed", _RESET_FAILED))}
        with self._errors():
            self.redis.hsetnx(self._key("meta"), "schema", SCHEMA_VERSION)
            schema = int(self.redis.hget(self._key("meta"), "schema"))
        if schema > SCHEMA_VERSION:
            raise QueueError(f"the queue at {self.where} (prefix {self.prefix!r}) was written by a newer archiver "
                             f"(queue schema {schema}, this one reads {SCHEMA_VERSION}); upgrade archiver")

    # ---- plumbing ------------------------------------------------------------------------------------------
    def _key(self, suffix: str) -> str:
        return self.prefix + suffix

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return redis_errors(self.where, "queue")

    def _run(self, script: str, *args: object) -> Any:
        with self._errors():
            return self._scripts[script](args=[self.prefix, *args])

    def _token_result(self, reply: list, action: str) -> list:
        if reply[0] == "notoken":
            raise NotClaimant("that claim token is not current: the item was released, failed, or claimed by "
                              "someone else after the lease expired (heartbeat more often than the lease)")
        if reply[0] == "state":
            _, name, state = reply
            if action == "heartbeat":
                raise NotClaimant(f"{name} is {state}, not claimed: there is no lease to extend")
            raise NotClaimant(f"{name} is already {state}; only a claimed item can {action}")
        return reply

    def close(self) -> None:
        self.redis.close()
        self.redis.connection_pool.disconnect()

    # ---- the queue -----------------------------------------------------------------------------------------
    def add(self, names: Iterable[str]) -> int:
        batch = list(names)  # all are checked before any is added, as one SQLite transaction would
        for name in batch:
            if not isinstance(name, str) or not name or "\0" in name or name != name.strip() or not _utf8(name):
                raise QueueError(f"{name!r} is not an item name: names are non-empty strings without NUL "
                                 "characters or surrounding spaces")
        now = _num(self.clock())
        return sum(self._run("add", now, *batch[i:i + _PAGE]) for i in range(0, len(batch), _PAGE))

    def claim(self, claimant: str, n: int = 1, lease: float | None = None) -> list[Claim]:
        if not claimant:
            raise QueueError("a claim needs a claimant id (who is working on the item)")
        if n < 1:
            return []
        seconds = _check_lease(self.lease if lease is None else float(lease), lease)
        now = self.clock()
        expires = now + seconds
        tokens = [secrets.token_hex(16) for _ in range(n)]
        reply = self._run("claim", claimant, n, _num(seconds), _num(now), _num(expires), self.max_attempts,
                          self.expiry_batch, *tokens)
        return [Claim(reply[i], tokens[i // 2], claimant, expires, int(reply[i + 1])) for i in range(0, len(reply), 2)]

    def heartbeat(self, token: str, lease: float | None = None) -> Claim:
        asked = "" if lease is None else _num(_check_lease(float(lease), lease))
        now = self.clock()
        _, name, attempts, claimant, seconds = self._token_result(
            self._run("heartbeat", token or "", _num(now), asked), "heartbeat")
        return Claim(name, token, claimant, now + float(seconds), int(attempts))

    def done(self, token: str, outcome: ItemOutcome | None = None) -> None:
        outcome = outcome or ItemOutcome()
        warcs = {w.name: [w.name, int(w.size), w.sha256] for w in outcome.warcs}  # one entry per name, the last
        self._token_result(self._run(
            "done", token or "", _num(self.clock()), int(outcome.bytes), json.dumps(dict(outcome.timings)),
            json.dumps(dict(outcome.extra)), json.dumps([warcs[k] for k in sorted(warcs)])), "finish")

    def fail(self, token: str, reason: str, retry: bool = True) -> ItemState:
        reply = self._token_result(self._run("give_back", token or "", _num(self.clock()),
                                             "retry" if retry else "final", str(reason), self.max_attempts), "fail")
        return ItemState(reply[2])

    def release(self, token: str) -> None:
        self._token_result(self._run("give_back", token or "", _num(self.clock()), "release", "", 0), "be released")

    def requeue_claims(self, claimant: str | None = None, reason: str = "claim requeued") -> int:
        return int(self._run("requeue", claimant or "", reason, _num(self.clock()), self.max_attempts))

    def reset_failed(self) -> int:
        moved, total = _PAGE, 0
        while moved == _PAGE:
            moved = int(self._run("reset_failed", _num(self.clock()), _PAGE))
            total += moved
        return total

    def claim_of(self, name: str) -> Claim | None:
        with self._errors():
            state, token, claimant, expires, attempts = self.redis.hmget(
                self._key("i:" + name), ["state", "token", "claimant", "lease_expires", "attempts"])
        if state is None:
            raise UnknownItem(f"{name!r} is not in the queue {self.where} (prefix {self.prefix!r})")
        if state != ItemState.CLAIMED:
            return None
        return Claim(name, token, claimant, float(expires), int(attempts))

    def claim_status(self, token: str) -> tuple[str, ItemState] | None:
        if not token:
            return None
        with self._errors():
            name = self.redis.hget(self._key("tokens"), token)
            if name is None:
                return None
            state, current = self.redis.hmget(self._key("i:" + name), ["state", "token"])
        # Two reads, not one script: a claim that ends between them is read as ended, which is what it is.
        if current != token or state not in (ItemState.CLAIMED, ItemState.DONE):
            return None
        return name, ItemState(state)

    def get(self, name: str) -> ItemRecord:
        with self._errors():
            fields = self.redis.hgetall(self._key("i:" + name))
        if not fields:
            raise UnknownItem(f"{name!r} is not in the queue {self.where} (prefix {self.prefix!r})")
        return _record(name, fields)

    def items(self, state: ItemState | str | None = None) -> Iterator[ItemRecord]:
        if state is None:
            index = self._key("all")
        else:
            try:
                index = self._key("s:" + ItemState(state).value)
            except ValueError:
                raise QueueError(f"{state!r} is not an item state (todo, claimed, done or failed)") from None
        low = "-inf"
        while True:
            with self._errors():
                page = self.redis.zrangebyscore(index, low, "+inf", start=0, num=_PAGE, withscores=True)
                pipe = self.redis.pipeline(transaction=False)
                for name, _seq in page:
                    pipe.hgetall(self._key("i:" + name))
                rows = pipe.execute()
            for (name, _seq), fields in zip(page, rows, strict=True):
                if fields:
                    yield _record(name, fields)
            if len(page) < _PAGE:
                return
            low = f"({int(page[-1][1])}"

    def stats(self) -> QueueStats:
        with self._errors():
            pipe = self.redis.pipeline(transaction=True)  # one consistent snapshot of the counts
            for state in ItemState:
                pipe.zcard(self._key("s:" + state.value))
            pipe.get(self._key("bytes"))
            todo, claimed, done, failed, nbytes = pipe.execute()
        return QueueStats(todo, claimed, done, failed, int(nbytes or 0))

    def destroy(self) -> int:
        """Delete every key of this queue (an admin dropping a project, tests cleaning up). Returns how many."""
        deleted = 0
        with self._errors():
            for chunk in _chunks(self.redis.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000), 500):
                deleted += self.redis.unlink(*chunk)
        return deleted


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: Redis keeps bytes, and this could not be sent
        return False
    return True


def _record(name: str, f: dict[str, str]) -> ItemRecord:
    state = ItemState(f["state"])
    outcome = None
    if state == ItemState.DONE:
        outcome = ItemOutcome(tuple(WarcFile(n, size, sha) for n, size, sha in json.loads(f.get("warcs") or "[]")),
                              int(f.get("bytes") or 0), json.loads(f.get("timings") or "{}"),
                              json.loads(f.get("extra") or "{}"))
    expires = f.get("lease_expires")
    return ItemRecord(name, state, int(f.get("attempts") or 0), f.get("claimant"),
                      float(expires) if expires is not None else None, f.get("last_error"), outcome,
                      float(f["updated"]) if "updated" in f else None)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _chunks(values: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
