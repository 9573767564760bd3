"""The contract every item store must honour (archiver/queue/base.py), as a reusable test class.

A store's test module subclasses `QueueContract` and provides a `make_queue` fixture: a callable taking the
store options `lease`, `max_attempts` and `clock` and returning an ItemQueue. Every call within one test must
open the *same* underlying store (a second call is how a test restarts a run), and each test starts empty. The
store's `url` must open that same store from another process through `archiver.queue.open_store`.

Time is a `ManualClock` so lease tests run instantly; the multi-process test uses real time.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback

import pytest

from archiver.queue import (
    Claim,
    ItemOutcome,
    ItemState,
    NotClaimant,
    QueueError,
    UnknownItem,
    WarcFile,
    open_store,
)

LEASE = 60.0


class ManualClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _claim_until_empty(url: str, claimant: str, barrier, results) -> None:
    """Child process: claim small batches and finish them until the queue is empty."""
    try:
        q = open_store(url)
        got = []
        barrier.wait(timeout=20)
        while True:
            claims = q.claim(claimant, n=3)
            if not claims:
                break
            for c in claims:
                got.append(c.item)
                q.done(c.token, ItemOutcome(bytes=1))
        q.close()
        results.put((claimant, got, None))
    except BaseException:  # the parent must hear about any failure, or it would wait for nothing
        results.put((claimant, [], traceback.format_exc()))


class QueueContract:
    """Behaviour shared by all stores. Subclasses supply the `make_queue` fixture."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def q(self, make_queue, clock):
        queue = make_queue(lease=LEASE, max_attempts=3, clock=clock)
        yield queue
        queue.close()

    # ---- adding --------------------------------------------------------------------------------------------
    def test_add_counts_only_new_items_and_leaves_known_ones_alone(self, q):
        assert q.add(["a", "b", "c"]) == 3
        [claim] = q.claim("w1")
        q.done(claim.token)
        assert q.add(["c", "a", "d"]) == 1
        assert q.get("a").state == ItemState.DONE
        assert q.stats().total == 4

    def test_add_accepts_a_generator(self, q):
        assert q.add(f"item-{i}" for i in range(50)) == 50
        assert q.stats().todo == 50

    @pytest.mark.parametrize("bad", ["", " padded ", "a\0b"])
    def test_add_refuses_names_a_tracker_could_not_carry(self, q, bad):
        with pytest.raises(QueueError, match="not an item name"):
            q.add(["fine", bad])
        assert q.stats().total == 0  # all or nothing

    # ---- claiming ------------------------------------------------------------------------------------------
    def test_claim_hands_out_distinct_items_with_claimant_token_lease_and_attempt(self, q, clock):
        q.add(["a", "b", "c"])
        claims = q.claim("w1", n=2)
        assert len(claims) == 2
        assert len({c.item for c in claims}) == 2
        assert len({c.token for c in claims}) == 2
        for c in claims:
            assert c.claimant == "w1"
            assert c.lease_expires == clock.now + LEASE
            assert c.attempts == 1
            assert q.get(c.item).state == ItemState.CLAIMED
            assert q.claim_of(c.item) == c
        [last] = q.claim("w2", n=5)
        assert last.item not in {c.item for c in claims}
        assert q.claim("w3") == []

    def test_claim_uses_the_lease_asked_for(self, q, clock):
        q.add(["a"])
        [c] = q.claim("w1", lease=5)
        assert c.lease_expires == clock.now + 5

    def test_claim_of_an_unclaimed_item_is_none_and_of_an_unknown_one_an_error(self, q):
        q.add(["a"])
        assert q.claim_of("a") is None
        with pytest.raises(UnknownItem):
            q.claim_of("nope")
        with pytest.raises(UnknownItem):
            q.get("nope")

    def test_threads_sharing_one_queue_never_get_the_same_item(self, q):
        q.add(f"i{n}" for n in range(200))
        got: list[str] = []
        lock = threading.Lock()

        def work(name: str) -> None:
            while claims := q.claim(name, n=2):
                with lock:
                    got.extend(c.item for c in claims)
                for c in claims:
                    q.done(c.token)

        threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == sorted(f"i{n}" for n in range(200))
        assert q.stats().done == 200

    def test_processes_claiming_at_once_never_get_the_same_item(self, make_queue):
        q = make_queue()
        names = [f"p{n}" for n in range(300)]
        q.add(names)
        ctx = multiprocessing.get_context("fork")
        workers = 4
        barrier, results = ctx.Barrier(workers), ctx.Queue()
        procs = [ctx.Process(target=_claim_until_empty, args=(q.url, f"proc{n}", barrier, results))
                 for n in range(workers)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=10)
        errors = [err for _who, _got, err in outcomes if err]
        assert not errors, errors[0]
        claimed = [item for _who, got, _err in outcomes for item in got]
        assert len(claimed) == len(set(claimed)), "an item was handed to two processes"
        assert sorted(claimed) == sorted(names)
        assert q.stats().done == len(names)
        q.close()

    # ---- done ----------------------------------------------------------------------------------------------
    def test_done_records_the_outcome(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        outcome = ItemOutcome(warcs=(WarcFile("a-1.warc.gz", 1234, "ab" * 32), WarcFile("a-2.warc.gz", 10, "cd" * 32)),
                              bytes=5000, timings={"crawl": 1.5, "check": 0.25}, extra={"urls": 7})
        q.done(c.token, outcome)
        record = q.get("a")
        assert record.state == ItemState.DONE
        assert record.claimant == "w1"
        assert record.outcome is not None
        assert sorted(record.outcome.warcs, key=lambda w: w.name) == list(outcome.warcs)
        assert record.outcome.bytes == 5000
        assert dict(record.outcome.timings) == {"crawl": 1.5, "check": 0.25}
        assert dict(record.outcome.extra) == {"urls": 7}
        assert q.claim_of("a") is None
        assert q.stats().bytes == 5000

    def test_done_repeated_by_the_claimant_changes_nothing(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        q.done(c.token, ItemOutcome(bytes=10))
        q.done(c.token, ItemOutcome(bytes=99))
        assert q.get("a").outcome.bytes == 10
        assert q.stats().done == 1

    def test_done_with_a_token_nobody_was_given_is_refused_and_changes_nothing(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        before = q.get("a")
        with pytest.raises(NotClaimant):
            q.done("0" * 32, ItemOutcome(bytes=1))
        with pytest.raises(NotClaimant):
            q.done("")
        assert q.get("a") == before
        assert q.claim_of("a") == c

    def test_done_from_a_claimant_whose_item_was_reclaimed_is_refused(self, q, clock):
        q.add(["a"])
        [old] = q.claim("slow")
        clock.advance(LEASE + 1)
        [new] = q.claim("fast")
        assert new.item == "a" and new.token != old.token
        with pytest.raises(NotClaimant):
            q.done(old.token, ItemOutcome(bytes=1))
        with pytest.raises(NotClaimant):
            q.heartbeat(old.token)
        with pytest.raises(NotClaimant):
            q.fail(old.token, "late")
        assert q.get("a").state == ItemState.CLAIMED
        assert q.claim_of("a") == new
        q.done(new.token)
        assert q.get("a").claimant == "fast"

    def test_an_expired_lease_nobody_took_over_can_still_be_finished(self, q, clock):
        q.add(["a"])
        [c] = q.claim("slow")
        clock.advance(LEASE * 3)
        q.done(c.token)
        assert q.get("a").state == ItemState.DONE

    def test_a_finished_item_cannot_be_failed_released_or_heartbeaten(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        q.done(c.token)
        for call in (lambda: q.fail(c.token, "x"), lambda: q.release(c.token), lambda: q.heartbeat(c.token)):
            with pytest.raises(NotClaimant):
                call()
        assert q.get("a").state == ItemState.DONE

    def test_claim_status_follows_a_claim_to_done_and_forgets_every_other_end(self, q, clock):
        q.add(["a", "b", "c", "d", "e"])
        a, b, c, d, e = q.claim("w1", n=5)
        assert q.claim_status(a.token) == ("a", ItemState.CLAIMED)
        q.done(a.token)
        assert q.claim_status(a.token) == ("a", ItemState.DONE)
        q.release(b.token)
        q.fail(c.token, "broke")
        q.requeue_claims("w1")
        assert [q.claim_status(t.token) for t in (b, c, d)] == [None, None, None]
        assert q.claim_status("f" * 32) is None and q.claim_status("") is None
        clock.advance(LEASE + 1)
        assert q.claim_status(e.token) is None  # requeued above with d
        again = {x.item: x for x in q.claim("w2", n=5)}
        assert q.claim_status(again["e"].token) == ("e", ItemState.CLAIMED)
        assert q.claim_status(e.token) is None

    def test_claim_status_of_a_lease_run_out_and_taken_over_is_none(self, q, clock):
        q.add(["a"])
        [old] = q.claim("slow")
        clock.advance(LEASE + 1)
        [new] = q.claim("fast")
        q.done(new.token)
        assert q.claim_status(old.token) is None
        assert q.claim_status(new.token) == ("a", ItemState.DONE)

    # ---- leases --------------------------------------------------------------------------------------------
    def test_an_expired_lease_returns_the_item_to_the_next_claim(self, q, clock):
        q.add(["a"])
        [c] = q.claim("crashed")
        clock.advance(LEASE - 1)
        assert q.claim("other") == []
        clock.advance(2)
        [again] = q.claim("other")
        assert again.item == "a"
        assert again.attempts == 2
        assert again.token != c.token
        assert "lease expired" in q.get("a").last_error

    def test_heartbeat_keeps_the_item_claimed(self, q, clock):
        q.add(["a"])
        [c] = q.claim("w1")
        for _ in range(5):
            clock.advance(LEASE * 0.8)
            renewed = q.heartbeat(c.token)
            assert renewed.lease_expires == clock.now + LEASE
            assert renewed.token == c.token and renewed.item == "a"
            assert q.claim("other") == []
        renewed = q.heartbeat(c.token, lease=5)
        assert renewed.lease_expires == clock.now + 5
        q.done(c.token)

    def test_leases_that_keep_expiring_use_up_the_attempts(self, q, clock):
        q.add(["poison"])
        for n in range(1, 4):
            [c] = q.claim(f"w{n}")
            assert c.attempts == n
            clock.advance(LEASE + 1)
        assert q.claim("w4") == []
        record = q.get("poison")
        assert record.state == ItemState.FAILED
        assert "lease expired" in record.last_error

    # ---- fail, release, reset ------------------------------------------------------------------------------
    def test_fail_with_retry_returns_the_item_with_its_error(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        assert q.fail(c.token, "HTTP 503 from arxiv.org") == ItemState.TODO
        record = q.get("a")
        assert record.state == ItemState.TODO
        assert record.last_error == "HTTP 503 from arxiv.org"
        [again] = q.claim("w1")
        assert again.attempts == 2

    def test_fail_after_the_last_attempt_marks_the_item_failed(self, q):
        q.add(["a"])
        states = []
        for _ in range(3):
            [c] = q.claim("w1")
            states.append(q.fail(c.token, f"try {c.attempts} broke"))
        assert states == [ItemState.TODO, ItemState.TODO, ItemState.FAILED]
        assert q.claim("w1") == []
        assert q.get("a").last_error == "try 3 broke"
        assert q.stats().failed == 1

    def test_fail_without_retry_is_final_at_once(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        assert q.fail(c.token, "no such paper", retry=False) == ItemState.FAILED
        assert q.claim("w1") == []

    def test_release_returns_the_item_without_counting_a_try(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        q.release(c.token)
        assert q.get("a").state == ItemState.TODO
        with pytest.raises(NotClaimant):
            q.release(c.token)
        [again] = q.claim("w2")
        assert again.attempts == 1

    def test_reset_failed_gives_failed_items_fresh_attempts(self, q):
        q.add(["a", "b"])
        [c] = q.claim("w1")
        q.fail(c.token, "broken", retry=False)
        assert q.reset_failed() == 1
        assert q.get("a").state == ItemState.TODO
        claims = q.claim("w1", n=2)
        assert {c.item: c.attempts for c in claims} == {"a": 1, "b": 1}
        assert q.reset_failed() == 0

    def test_requeue_claims_returns_one_claimants_items_or_all(self, q):
        q.add(["a", "b", "c"])
        q.claim("dead", n=2)
        [alive] = q.claim("alive")
        assert q.requeue_claims("dead", reason="worker restarted") == 2
        assert q.claim_of(alive.item) == alive
        assert "worker restarted" in q.get("a").last_error
        assert q.requeue_claims() == 1
        assert q.stats().todo == 3

    # ---- reading -------------------------------------------------------------------------------------------
    def test_items_lists_every_item_or_one_state_in_the_order_added(self, q):
        names = [f"x{n:04d}" for n in range(2500)]  # more than one page of any paging store
        q.add(names)
        claims = q.claim("w1", n=3)
        for c in claims:
            q.done(c.token)
        assert [r.name for r in q.items()] == names
        assert {r.name for r in q.items(ItemState.DONE)} == {c.item for c in claims}
        assert len(list(q.items("todo"))) == 2497
        assert all(r.state == ItemState.TODO for r in q.items(ItemState.TODO))

    def test_stats_count_every_state(self, q):
        q.add(["a", "b", "c", "d", "e"])
        c1, c2, c3 = q.claim("w1", n=3)
        q.done(c1.token, ItemOutcome(bytes=7))
        q.fail(c2.token, "gone", retry=False)
        s = q.stats()
        assert (s.todo, s.claimed, s.done, s.failed, s.bytes, s.total) == (2, 1, 1, 1, 7, 5)
        assert "5 items" in s.line()

    # ---- resuming ------------------------------------------------------------------------------------------
    def test_reopening_resumes_where_the_last_run_stopped(self, make_queue, clock):
        first = make_queue(lease=LEASE, max_attempts=3, clock=clock)
        first.add(["a", "b", "c", "d"])
        a, b, c = first.claim("run1", n=3)
        first.done(a.token, ItemOutcome(bytes=3))
        first.fail(b.token, "timeout")
        first.close()  # killed with c still claimed

        clock.advance(LEASE + 1)
        second = make_queue(lease=LEASE, max_attempts=3, clock=clock)
        claims = second.claim("run2", n=10)
        assert sorted(x.item for x in claims) == sorted([b.item, c.item, "d"])
        assert a.item not in {x.item for x in claims}
        assert second.get(a.item).outcome.bytes == 3
        second.close()

    def test_claim_objects_are_plain_values(self, q):
        q.add(["a"])
        [c] = q.claim("w1")
        assert isinstance(c, Claim)
        assert c == Claim(c.item, c.token, c.claimant, c.lease_expires, c.attempts)
