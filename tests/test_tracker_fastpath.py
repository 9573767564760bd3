"""The tracker's fast path for request and done: the pipelined Redis client (archiver.tracker.redis_async), the
one-script handout and finish of the Redis store from threads and from the event loop alike, the all-or-nothing
done of a batch on both stores, and the answers when Redis goes away. Real redis-server throughout
(tests/redis_server.py), nothing mocked.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time

import pytest
import requests
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from queue_contract import ManualClock
from test_tracker_api import TOKEN, VERSION, Server

from archiver.tracker.app import serving_gc
from archiver.tracker.protocol import Caller, Refusal, Tracker
from archiver.tracker.redis_async import AsyncRedis, RedisError, ReplyError, RespReader, Script, encode
from archiver.tracker.state import open_state

PAPERS = [f"2104.{n:05d}" for n in range(1, 21)]


# ---- RESP parsing ------------------------------------------------------------------------------------------
resp_values = st.recursive(
    st.none() | st.integers(min_value=-2**63, max_value=2**63 - 1) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5), max_leaves=20)


def resp(value: object) -> bytes:
    """How Redis would send `value` (str as a bulk string, None as a nil bulk)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"$%d\r\n%s\r\n" % (len(data), data)
    return b"*%d\r\n" % len(value) + b"".join(resp(v) for v in value)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(resp_values, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_the_reader_gives_each_answer_whole_however_the_bytes_arrive(values, cuts):
    data = b"".join(resp(v) for v in values)
    reader, got, start = RespReader(), [], 0
    for cut in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        reader.feed(data[start:cut])
        start = cut
        while (answer := reader.gets()) is not False:
            got.append(answer)
    assert got == values


def test_the_reader_knows_errors_status_replies_and_nil_arrays():
    reader = RespReader()
    reader.feed(b"+OK\r\n-NOSCRIPT No matching script\r\n*-1\r\n*2\r\n$1\r\na\r\n-ERR inside\r\n")
    assert reader.gets() == "OK"
    error = reader.gets()
    assert isinstance(error, ReplyError) and str(error).startswith("NOSCRIPT")
    assert reader.gets() is None
    first, second = reader.gets()
    assert first == "a" and isinstance(second, ReplyError)
    assert reader.gets() is False


def test_commands_are_encoded_as_bulk_strings():
    assert encode(["SET", "k", 5, 1.5, b"\x00"]) == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$3\r\n1.5\r\n$1\r\n\x00\r\n"
    with pytest.raises(TypeError):
        encode([None])


# ---- the client against a real Redis -----------------------------------------------------------------------
def test_the_client_pipelines_concurrent_commands_and_loads_scripts_it_lacks(redis_server, redis_prefix):
    script = Script("redis.call('INCRBY', ARGV[1], ARGV[2]); return {redis.call('GET', ARGV[1]), ARGV[3]}")

    async def main() -> None:
        client = AsyncRedis(redis_server.url)
        try:
            await client.execute("SCRIPT", "FLUSH")  # the first run finds no script: EVAL loads it
            answers = await asyncio.gather(*(client.run(script, [redis_prefix + "n", 1, f"é{i}"])
                                             for i in range(500)))
            assert sorted(int(a[0]) for a in answers) == list(range(1, 501))  # each saw its own increment
            assert [a[1] for a in answers] == [f"é{i}" for i in range(500)]  # answers matched in order
            assert await client.execute("GET", redis_prefix + "missing") is None
            with pytest.raises(ReplyError, match="WRONGTYPE|wrong kind"):
                await client.execute("HGET", redis_prefix + "n", "field")
            assert await client.execute("PING") == "PONG"  # an error answer leaves the connection usable
        finally:
            await client.close()

    asyncio.run(main())


def test_a_broken_connection_fails_what_waits_and_the_next_command_reconnects(redis_server, redis_prefix):
    async def main() -> None:
        client = AsyncRedis(redis_server.url)
        try:
            name = "archiver-test-" + redis_prefix.replace(":", "-")
            await client.execute("CLIENT", "SETNAME", name)
            waiting = asyncio.ensure_future(client.execute("BLPOP", redis_prefix + "never", 5))
            await asyncio.sleep(0.2)
            import valkey

            admin = valkey.Valkey.from_url(redis_server.url)
            try:
                for info in admin.client_list():
                    if info.get("name") == name:
                        admin.client_kill_filter(_id=info["id"])
            finally:
                admin.close()
            with pytest.raises(RedisError, match="lost|closed"):
                await waiting
            assert await client.execute("PING") == "PONG"
        finally:
            await client.close()

    asyncio.run(main())


def test_a_stalled_redis_fails_the_commands_after_the_timeout(redis_server):
    async def main() -> None:
        client = AsyncRedis(redis_server.url, timeout=0.3)
        try:
            await client.execute("PING")
            assert await client.execute("CLIENT", "PAUSE", 1800, "ALL") == "OK"  # Redis holds every command
            started = time.monotonic()
            with pytest.raises(RedisError, match="did not answer within 0.3 s"):
                await client.execute("PING")
            assert time.monotonic() - started < 1.6  # the watchdog looks once a second, not at the pause's end
            await asyncio.sleep(1.9 - (time.monotonic() - started))
            assert await client.execute("PING") == "PONG"  # a new connection once Redis answers again
        finally:
            await client.close()

    asyncio.run(main())


def test_refusals_of_the_connection_name_the_problem(redis_server):
    async def main() -> None:
        with pytest.raises(RedisError, match="cannot connect"):
            await AsyncRedis(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=2).execute("PING")
        host_port = redis_server.url.split("//", 1)[1].split("/", 1)[0]
        with pytest.raises(RedisError, match="refused AUTH"):
            await AsyncRedis(f"redis://:wrong-password@{host_port}/0").execute("PING")
        client = AsyncRedis(f"redis://{host_port}/3")
        try:
            await client.execute("SET", "archiver-test:db3", "x")
            assert await client.execute("GET", "archiver-test:db3") == "x"
            await client.execute("DEL", "archiver-test:db3")
        finally:
            await client.close()

    if "@" in redis_server.url:
        pytest.skip("REDIS_URL carries credentials; the AUTH refusal needs a Redis without a password")
    asyncio.run(main())
    for url in ("unix:///tmp/redis.sock", "redis://host/notanumber", "redis://host/0?socket_timeout=3"):
        with pytest.raises(ValueError):
            AsyncRedis(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the Redis store's scripts, from threads and from the event loop ----------------------------------------
@pytest.fixture
def redis_tracker(redis_server, redis_prefix):
    clock = ManualClock(1_700_000_000.0)
    tracker = Tracker(open_state(f"{redis_server.url}?prefix={redis_prefix}"), clock=clock)
    yield tracker
    tracker.close()


def project(tracker: Tracker, slug: str, **settings) -> str:
    from archiver.tracker.projects import Project

    tracker.save_project(Project.from_mapping(slug, {"site": "arxiv"} | settings))
    _project, queue = tracker.project(slug)
    queue.add(PAPERS)
    return slug


def test_sync_and_async_calls_run_the_same_scripts_with_the_same_outcome(redis_tracker):
    tracker = redis_tracker
    assert tracker.state.aio is not None
    loop = asyncio.new_event_loop()  # one loop for every async call, as in a server process
    for slug, asynchronous in (("sync", False), ("async", True)):
        project(tracker, slug, budget=3, rate_limit=600)
        alice, bob = Caller("alice", "10.0.0.1", version=VERSION), Caller("bob", "10.0.0.2", version=VERSION)

        def call(name: str, *args, slug=slug, asynchronous=asynchronous):
            if asynchronous:
                return loop.run_until_complete(getattr(tracker, name + "_async")(slug, *args))
            return getattr(tracker, name)(slug, *args)

        first = call("request", alice, 2)
        assert first["item_name"] == "2104.00001\x002104.00002" and first["attempts"] == [1, 1]
        assert call("request", alice, 5)["item_name"] == "2104.00003"  # 2 held + 1 more: the budget of 3
        with pytest.raises(Refusal) as budget:
            call("request", alice, 1)
        assert budget.value.error == "budget_exhausted"
        with pytest.raises(Refusal) as theirs:
            call("done", bob, first["item_name"], {"data": 10})
        assert theirs.value.error == "not_claimant"
        with pytest.raises(Refusal) as unknown:
            call("done", alice, "2104.00001\x009999.99999", {"data": 10})
        assert unknown.value.error == "unknown_item"
        call("done", alice, first["item_name"], {"data": 10}, {"id": {"x": 1}, "version": VERSION})
        call("done", alice, first["item_name"], {"data": 10})  # a repeat changes nothing
        _project, queue = tracker.project(slug)
        record = queue.get("2104.00001")
        assert (record.state.value, record.claimant, record.outcome.bytes) == ("done", "alice", 5)
        assert record.outcome.extra == {"bytes": {"data": 10}, "batch": 2, "id": {"x": 1}, "version": VERSION}
        tally = tracker.state.tally(slug)
        assert (tally.items, tally.bytes, tally.domains) == ({"alice": 2}, {"alice": 10}, {"data": 10})
        activity = tracker.state.activity(slug, tracker.clock())
        assert [(c.downloader, c.items, c.names, c.bytes, c.version) for c in activity.recent] == \
            [("alice", 2, ("2104.00001", "2104.00002"), 10, VERSION)]
        assert activity.active == {"alice": (tracker.clock(), VERSION)}
        assert sum(activity.buckets.values()) == 2
        assert call("request", alice, 1)["item_name"] == "2104.00004"  # finishing freed the budget
    loop.run_until_complete(tracker.state.aio.close())
    loop.close()
    # Both paths left the same state behind.
    states = [sorted((r.name, r.state.value, r.attempts, r.claimant) for r in tracker.project(s)[1].items())
              for s in ("sync", "async")]
    assert states[0] == states[1]


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_done_with_one_bad_name_in_the_batch_finishes_none_of_it(store, tmp_path, request):
    url = f"sqlite:///{tmp_path}/store"
    if store == "redis":
        server = request.getfixturevalue("redis_server")
        url = f"{server.url}?prefix={request.getfixturevalue('redis_prefix')}"
    with Server(url, tmp_path) as tracker:
        slug = tracker.project(PAPERS)
        mine = tracker.claim(slug, "alice", multi=2)["item_name"].split("\0")
        tracker.claim(slug, "bob")
        r = tracker.done(slug, "\0".join(mine + ["2104.00003"]), "alice")  # bob's item last
        assert r.status_code == 409 and r.json()["error"] == "not_claimant"
        assert tracker.counts(slug)["done"] == 0
        stats = tracker.http.get(f"{tracker.base}/{slug}/stats.json").json()
        assert stats["downloader_count"] == {} and tracker.http.get(
            f"{tracker.base}/{slug}/dashboard.json").json()["recent"] == []
        assert tracker.done(slug, "\0".join(mine), "alice").text == "OK"
        assert tracker.counts(slug)["done"] == 2


def test_bytes_beyond_what_the_stores_count_exactly_are_refused(redis_server, redis_prefix, tmp_path):
    with Server(f"{redis_server.url}?prefix={redis_prefix}", tmp_path) as tracker:
        slug = tracker.project(PAPERS)
        item = tracker.claim(slug)["item_name"]
        for nbytes in ({"data": 2**53}, {"data": 2**52, "other": 2**52}, {"data": -1}):
            r = tracker.done(slug, item, bytes=nbytes)
            assert r.status_code == 400, (nbytes, r.text)
        assert tracker.counts(slug)["done"] == 0
        assert tracker.done(slug, item, bytes={"data": 2**53 - 1}).text == "OK"
        assert tracker.http.get(f"{tracker.base}/{slug}/stats.json").json()["total_bytes"] == 2**53 - 1


def test_the_fast_path_answers_503_with_retry_after_while_redis_is_down(tmp_path, monkeypatch):
    if os.environ.get("REDIS_URL"):
        pytest.skip("this test stops its own redis-server; REDIS_URL names a shared one")
    from redis_server import RedisServer, RedisUnavailable

    monkeypatch.delenv("REDIS_URL", raising=False)
    redis = RedisServer()
    try:
        redis.__enter__()
    except RedisUnavailable as e:
        pytest.skip(str(e))
    try:
        with Server(f"{redis.url}?prefix=archiver-test:down:", tmp_path) as tracker:
            slug = tracker.project(PAPERS)
            answer = tracker.claim(slug)
            redis._stop()
            for r in (tracker.request(slug, "bob"), tracker.done(slug, answer["item_name"])):
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "store_unavailable" and r.headers["Retry-After"] == "30"
    finally:
        redis.__exit__(None, None, None)


def test_the_routes_the_openapi_document_shows_answer_like_the_fast_path(tmp_path):
    """The documented route handlers for request and done, reached past WorkerFastPath, answer the same."""
    import threading

    from fastapi import FastAPI

    from archiver.tracker.app import create_app

    app = create_app(f"sqlite:///{tmp_path}/store", TOKEN, sweep_interval=None)

    async def past_the_fast_path(scope, receive, send):
        await FastAPI.__call__(app, scope, receive, send)  # FastAPI's own call, not TrackerApp's

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(past_the_fast_path, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base, admin = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    http = requests.Session()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        assert http.put(f"{base}/admin/projects/p", json={"site": "arxiv"}, headers=admin).status_code == 201
        assert http.post(f"{base}/admin/projects/p/items", json={"items": PAPERS}, headers=admin).status_code == 200
        answer = http.post(f"{base}/p/multi=2/request", json={"downloader": "alice", "api_version": "2"}).json()
        assert answer["item_name"] == "2104.00001\x002104.00002"
        assert http.post(f"{base}/p//done", json={"downloader": "alice", "item": answer["item_name"]}).text == "OK"
        assert http.post(f"{base}/p/request", json={"downloader": "alice"}).text == "2104.00003"  # the bare name
        refused = http.post(f"{base}/p/multi=x/request", json={"downloader": "alice"})
        assert refused.status_code == 400 and refused.json()["error"] == "bad_multi"
        stranger = http.post(f"{base}/p/done", json={"downloader": "mallory", "item": "2104.00003"})
        assert stranger.status_code == 409 and stranger.json()["error"] == "not_claimant"
        assert http.get(f"{base}/admin/projects/p", headers=admin).json()["counts"]["done"] == 2
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_serving_gc_freezes_the_heap_and_puts_everything_back():
    before = gc.get_threshold()
    with serving_gc():
        assert gc.get_threshold()[0] == 10_000 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_both_stores_keep_the_same_bounded_dashboard_records(tmp_path, redis_server, redis_prefix):
    from archiver.tracker.state import RATE_BUCKET, RECENT_KEPT

    now = 1_700_000_000.0
    seen = []
    for url in (f"sqlite:///{tmp_path}/store", f"{redis_server.url}?prefix={redis_prefix}"):
        state = open_state(url)
        try:
            for i in range(RECENT_KEPT + 5):
                state.record_done("p", f"nick{i % 3}", [f"2105.{i:05d}", f"2106.{i:05d}"], {"data": 100, "x": 1},
                                  "1.0" if i % 3 else None, now + i)
            state.record_done("other", "nick0", ["2107.00001"], {}, "9", now)  # another project's records
            activity, tally = state.activity("p", now + RECENT_KEPT + 5), state.tally("p")
        finally:
            state.close()
        assert len(activity.recent) == RECENT_KEPT  # the oldest five were dropped as the newest came
        assert activity.recent[0].names == (f"2105.{RECENT_KEPT + 4:05d}", f"2106.{RECENT_KEPT + 4:05d}")
        assert activity.recent[0].bytes == 101 and activity.recent[0].items == 2
        assert sum(activity.buckets.values()) == 2 * (RECENT_KEPT + 5)
        assert all(start % RATE_BUCKET == 0 for start in activity.buckets)
        assert {d: v for d, (_at, v) in activity.active.items()} == {"nick0": None, "nick1": "1.0", "nick2": "1.0"}
        assert tally.items == {"nick0": 24, "nick1": 24, "nick2": 22} and tally.domains == {"data": 3500, "x": 35}
        seen.append((activity.recent, dict(activity.active), {k: v for k, v in activity.buckets.items() if v},
                     tally))
    assert seen[0] == seen[1]
