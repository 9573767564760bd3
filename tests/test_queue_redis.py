"""The Redis store: the shared queue contract on a real Redis, plus what only this store does (URLs and prefixes,
lease expiry in batches, many processes claiming from one Redis)."""

from __future__ import annotations

import multiprocessing
import random
import traceback

import pytest
from queue_contract import LEASE, ManualClock, QueueContract  # tests/ is on sys.path (conftest.py)

from archiver.errors import UsageError
from archiver.queue import ItemOutcome, ItemState, QueueError, open_store
from archiver.queue.redis import RedisQueue


class TestRedisContract(QueueContract):
    @pytest.fixture
    def make_queue(self, redis_server, redis_prefix):
        def make(**options):
            return RedisQueue(redis_server.url, prefix=redis_prefix, **options)
        return make


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def q(redis_server, redis_prefix, clock):
    queue = RedisQueue(redis_server.url, prefix=redis_prefix, lease=LEASE, clock=clock)
    yield queue
    queue.close()


def test_items_are_claimed_in_the_order_they_were_added(q):
    q.add(["c", "a", "b"])
    assert [c.item for c in q.claim("w", n=3)] == ["c", "a", "b"]


def test_open_store_opens_the_same_queue_from_its_url(redis_server, redis_prefix):
    first = open_store(f"{redis_server.url}?prefix={redis_prefix}", max_attempts=5)
    assert isinstance(first, RedisQueue)
    assert first.prefix == redis_prefix and first.max_attempts == 5
    first.add(["2108.07258"])
    again = open_store(first.url)
    assert again.prefix == redis_prefix
    assert again.get("2108.07258").state == ItemState.TODO
    first.close()
    again.close()


def test_queues_with_different_prefixes_do_not_see_each_other(redis_server, redis_prefix):
    one = RedisQueue(redis_server.url, prefix=redis_prefix + "one:")
    two = RedisQueue(redis_server.url, prefix=redis_prefix + "two:")
    one.add(["a", "b"])
    two.add(["b"])
    assert (one.stats().todo, two.stats().todo) == (2, 1)
    [c] = two.claim("w")
    with pytest.raises(QueueError):
        one.done(c.token)
    assert one.get("b").state == ItemState.TODO
    one.close()
    two.close()


def test_an_unreachable_redis_is_an_error_that_names_it_and_hides_the_password():
    port = _closed_port()
    with pytest.raises(QueueError) as e:
        RedisQueue(f"redis://:s3cret@127.0.0.1:{port}/0")
    assert f"127.0.0.1:{port}" in str(e.value) and "redis-server running" in str(e.value)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:6379/0", "not a Redis URL"),
    ("redis://127.0.0.1:6379/0?prefix=", "non-empty key prefix"),
])
def test_urls_that_cannot_name_a_queue_are_refused(url, message):
    with pytest.raises(QueueError, match=message):
        RedisQueue(url)


def test_open_store_still_refuses_unknown_schemes_and_names_redis():
    with pytest.raises(UsageError, match="redis://HOST:PORT/DB"):
        open_store("postgres://db/x")


def test_a_queue_from_a_newer_archiver_is_refused(q, redis_server, redis_prefix):
    q.redis.hset(redis_prefix + "meta", "schema", 99)
    with pytest.raises(QueueError, match="newer archiver"):
        RedisQueue(redis_server.url, prefix=redis_prefix)


@pytest.mark.parametrize("options", [{"lease": 0}, {"max_attempts": 0}])
def test_nonsense_limits_are_refused(redis_server, options):
    with pytest.raises(QueueError):
        RedisQueue(redis_server.url, **options)


def test_a_mass_expiry_is_ended_a_batch_at_a_time_but_a_claim_still_finds_work(redis_server, redis_prefix, clock):
    q = RedisQueue(redis_server.url, prefix=redis_prefix, lease=LEASE, max_attempts=2, clock=clock)
    q.expiry_batch = 5
    q.add(f"old{n:02d}" for n in range(12))
    for _ in range(2):  # two crashed tries each: the next expiry fails all twelve
        assert len(q.claim("crashed", n=12)) == 12
        clock.advance(LEASE + 1)
    q.add(["fresh"])
    assert [c.item for c in q.claim("w")] == ["fresh"]  # ended a batch or more, then found the new item
    assert q.claim("w") == []  # went on past the batches: nothing claimable is left behind in a lease
    s = q.stats()
    assert (s.failed, s.claimed, s.todo) == (12, 1, 0)
    q.close()


def test_reset_failed_moves_more_than_a_page(q):
    names = [f"f{n:04d}" for n in range(1500)]
    q.add(names)
    strict = RedisQueue(q.url, max_attempts=1, clock=q.clock)
    assert len(strict.claim("w", n=1500)) == 1500
    assert strict.requeue_claims(reason="tracker restarted") == 1500
    assert strict.stats().failed == 1500
    assert q.reset_failed() == 1500
    assert [r.name for r in q.items(ItemState.TODO)] == names
    strict.close()


def test_every_key_lives_under_the_prefix_and_destroy_removes_them(q, redis_prefix):
    q.add(["a", "b"])
    [c] = q.claim("w")
    q.done(c.token, ItemOutcome(bytes=3))
    unique = redis_prefix.split(":")[2]  # the random part of archiver-test:test:<hex>:
    keys = list(q.redis.scan_iter(match=f"*{unique}*"))
    assert keys and all(k.startswith(redis_prefix) for k in keys)
    assert q.destroy() == len(keys)
    assert list(q.redis.scan_iter(match=redis_prefix + "*")) == []


# ---- many processes on one Redis -------------------------------------------------------------------------
def _churn(url: str, seed: int, barrier, results) -> None:
    """Child process: claim random batches; finish most items, fail some (to be retried), release a few."""
    rnd = random.Random(seed)
    try:
        q = open_store(url, max_attempts=50)
        seen = []
        barrier.wait(timeout=20)
        while claims := q.claim(f"proc{seed}", n=rnd.randint(1, 8)):
            for c in claims:
                seen.append((c.item, c.attempts, c.token))
                roll = rnd.random()
                if roll < 0.1:
                    q.fail(c.token, "flaky")
                elif roll < 0.15:
                    q.release(c.token)
                    seen.pop()  # a release gives the try back: the next claim has the same attempt number
                else:
                    q.done(c.token, ItemOutcome(bytes=1))
        q.close()
        results.put((seed, seen, None))
    except BaseException:
        results.put((seed, [], traceback.format_exc()))


def test_eight_processes_churning_one_queue_never_share_a_claim(redis_server, redis_prefix):
    q = RedisQueue(redis_server.url, prefix=redis_prefix, max_attempts=50)
    names = [f"item{n:05d}" for n in range(3000)]
    q.add(names)
    ctx = multiprocessing.get_context("fork")
    workers = 8
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_churn, args=(q.url, n, barrier, results)) for n in range(workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    errors = [err for _seed, _seen, err in outcomes if err]
    assert not errors, errors[0]
    tries = [(item, attempts) for _seed, seen, _err in outcomes for item, attempts, _token in seen]
    tokens = [token for _seed, seen, _err in outcomes for _item, _attempts, token in seen]
    assert len(tries) == len(set(tries)), "one try of an item was handed to two claimants"
    assert len(tokens) == len(set(tokens))
    assert {item for item, _ in tries} == set(names)
    s = q.stats()
    assert (s.done, s.todo, s.claimed, s.failed, s.bytes) == (3000, 0, 0, 0, 3000)
    last_try: dict[str, int] = {}
    for item, attempts in tries:
        last_try[item] = max(attempts, last_try.get(item, 0))
    assert {r.name: r.attempts for r in q.items(ItemState.DONE)} == last_try  # the last try finished each item
    q.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
