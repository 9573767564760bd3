"""The volunteer's worker takes politeness from the tracker and claims several items per request.

Politeness: a project's admins put `delay` and `max_concurrency` in the project's extra settings (they ride in every
request answer); the worker may only become more polite from them. Measured where it matters: the spacing of the
requests the arXiv-like site receives.

Multi-item claims: with --concurrency N the free slots are asked for in one `POST /<project>/multi=<n>/request`;
each name is still checked on its own, and uploads, done and fail stay per item, each with its own claim token.

Everything runs for real on 127.0.0.1: our tracker on uvicorn (behind a shim that notes each path it is asked,
its access log, and can play a tracker without the multi route), `archiver worker` processes, the arXiv-like site.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from test_worker import RealTracker, start_worker

from archiver.worker import WorkerError, WorkerOptions, run_worker
from archiver.worker.safety import Politeness, tracker_politeness

PAPERS = ["2108.07258", "cs/0012007", "0906.5132"]
SMALL = "hep-th/9901001"  # the paper with the fewest URLs (20): a paced grab of it stays short


class RecordingTracker(RealTracker):
    """Our tracker, with the path and answer status of every call it gets noted; `single_only` plays a tracker
    that has no multi=N route (universal-tracker), answering it as FastAPI answers a path it does not know."""

    def __init__(self, store_url: str, root: Path, *, single_only: bool = False) -> None:
        super().__init__(store_url, root)
        self.log: list[tuple[str, int]] = []
        app = self.server.config.app

        async def recorded(scope, receive, send):
            if scope["type"] == "http":
                async def noted(message):
                    if message["type"] == "http.response.start":
                        self.log.append((scope["path"], message["status"]))
                    await send(message)

                if single_only and "/multi=" in scope["path"]:
                    body = b'{"detail":"Not Found"}'
                    await noted({"type": "http.response.start", "status": 404,
                                 "headers": [(b"content-type", b"application/json"),
                                             (b"content-length", str(len(body)).encode())]})
                    await noted({"type": "http.response.body", "body": body})
                    return
                await app(scope, receive, noted)
                return
            await app(scope, receive, send)

        self.server.config.app = recorded

    def calls(self, slug: str, command: str) -> list[tuple[str, int]]:
        """(path, status) of each `command` call on project `slug`, in order."""
        return [(p, s) for p, s in self.log if p.startswith(f"/{slug}/") and p.endswith("/" + command)]

    def requests(self, slug: str) -> list[str]:
        """The request paths asked of project `slug`, in order."""
        return [p for p, _ in self.calls(slug, "request")]

    def settings(self, slug: str, items: list[str], site_url: str, extra: dict | None = None,
                 **settings: object) -> str:
        """A project of `items` from the arXiv-like site with `extra` added to its answers; the worker's --tracker."""
        r = self.admin("PUT", f"/projects/{slug}", json={
            "site": "arxiv", "extra": {"site": "arxiv", "base_url": site_url, **(extra or {})}, **settings})
        assert r.status_code in (200, 201), r.text
        if items:
            r = self.admin("POST", f"/projects/{slug}/items", json={"items": items})
            assert r.status_code == 200, r.text
        return f"{self.base}/{slug}"

    def accepted(self, slug: str) -> list[dict]:
        """What the upload target accepted, once the claims that sent the files have settled."""
        assert self.admin("POST", f"/projects/{slug}/sweep", json={"force": False}).status_code == 200
        log = self.uploads / slug / "accepted.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def tracker(tmp_path) -> Iterator[RecordingTracker]:
    with RecordingTracker(f"sqlite:///{tmp_path}/store", tmp_path) as server:
        yield server


@pytest.fixture
def single_tracker(tmp_path) -> Iterator[RecordingTracker]:
    with RecordingTracker(f"sqlite:///{tmp_path}/store", tmp_path, single_only=True) as server:
        yield server


def run(url: str, data: Path, *args: str, timeout: float = 60) -> str:
    p = start_worker(url, "jane_doe", data, "--until-empty", *args)
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return out


def gaps(arxiv_site) -> list[float]:
    """Seconds between the starts of consecutive requests the site received."""
    times = sorted(r.time for r in arxiv_site.requests)
    return [b - a for a, b in pairwise(times)]


def done_lines(out: str) -> Counter:
    return Counter(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("done "))


# ---- reading the tracker's settings --------------------------------------------------------------------------
def test_politeness_only_ever_gets_stricter():
    p = tracker_politeness({"delay": 2, "max_concurrency": 2, "site": "arxiv"}, "papers")
    assert p == Politeness(2.0, 2)
    assert (p.delay_over(0.5), p.delay_over(5.0), p.limit(4), p.limit(1)) == (2.0, 5.0, 2, 1)
    none = tracker_politeness({}, "papers")
    assert (none.delay_over(3.0), none.limit(4)) == (3.0, 4)


@pytest.mark.parametrize(("key", "value"), [("delay", -1), ("delay", "5"), ("delay", 86400), ("delay", True),
                                            ("max_concurrency", 0), ("max_concurrency", 1.5),
                                            ("max_concurrency", "2")])
def test_a_bad_politeness_value_is_an_error_naming_the_key_and_the_project(key, value):
    with pytest.raises(WorkerError, match=f"the tracker's '{key}' for papers is {value!r}, not"):
        tracker_politeness({key: value}, "papers")


# ---- delay ---------------------------------------------------------------------------------------------------
def test_the_trackers_delay_spaces_the_requests_the_site_receives(tracker, arxiv_site, tmp_path):
    quick = tracker.settings("quick", [SMALL], arxiv_site.base_url)
    run(quick, tmp_path / "a")  # the volunteer's --delay 0 and no tracker delay: back to back
    unpaced = gaps(arxiv_site)
    assert sorted(unpaced)[len(unpaced) // 2] < 0.1

    arxiv_site.clear_log()
    paced = tracker.settings("paced", [SMALL], arxiv_site.base_url, {"delay": 0.25})
    out = run(paced, tmp_path / "b")
    assert done_lines(out) == Counter([SMALL])
    assert "the tracker asks for 0.25 s between requests to one host on paced: waiting 0.25 s (your --delay is 0 s)" \
        in out
    spaced = gaps(arxiv_site)
    assert len(spaced) >= 15 and min(spaced) >= 0.25 - 0.01  # from the end of one request to the start of the next


def test_a_tracker_delay_shorter_than_the_volunteers_is_ignored(tracker, arxiv_site, tmp_path):
    url = tracker.settings("short", [SMALL], arxiv_site.base_url, {"delay": 0.05})
    out = run(url, tmp_path / "data", "--delay", "0.3")
    assert done_lines(out) == Counter([SMALL])
    assert "the tracker's delay for short (0.05 s) is not longer than your --delay (0.3 s): waiting 0.3 s" in out
    assert min(gaps(arxiv_site)) >= 0.3 - 0.01


@pytest.mark.parametrize(("key", "value"), [("delay", -1), ("delay", 7200), ("max_concurrency", 0)])
def test_a_bad_setting_stops_the_worker_and_gives_the_claim_back_untried(tracker, arxiv_site, tmp_path, key, value):
    url = tracker.settings("bad", PAPERS[:1], arxiv_site.base_url)
    # Our tracker refuses such a project (next test); another tracker might hand the value out all the same.
    state = tracker.app.state.tracker
    project, _queue = state.project("bad")
    state.save_project(project.replace(extra={**project.extra, key: value}))
    with pytest.raises(WorkerError, match=f"the tracker's '{key}' for bad is {value!r}, not .* Tell the project's "
                                          "admins"):
        run_worker(WorkerOptions(url, "jane_doe", data_dir=str(tmp_path / "data"), allow_base_url=True))
    assert arxiv_site.requests == []
    record = tracker.item("bad", PAPERS[0])
    assert (record["state"], record["attempts"]) == ("todo", 0)


@pytest.mark.parametrize(("key", "value"), [("delay", -1), ("delay", 7200), ("max_concurrency", 0)])
def test_our_tracker_refuses_a_politeness_setting_no_worker_could_use(tracker, key, value):
    r = tracker.admin("PUT", "/projects/typo", json={"site": "arxiv", "extra": {key: value}})
    assert r.status_code == 422, r.text
    assert f"'{key}' is {value!r}" in r.text and "every worker would refuse" in r.text
    assert tracker.admin("GET", "/projects/typo").status_code == 404


def test_a_stricter_delay_while_running_stops_claiming_and_says_to_start_again(tracker, arxiv_site, tmp_path):
    url = tracker.settings("change", [SMALL, PAPERS[0]], arxiv_site.base_url, {"delay": 0})
    arxiv_site.set_delay(f"/pdf/{SMALL}v1", 1.5)  # time to change the project while the first item is grabbed
    p = start_worker(url, "jane_doe", tmp_path / "data", "--until-empty")
    tracker.wait_for(lambda: arxiv_site.count(f"/abs/{SMALL}"), why="the grab to start")
    tracker.settings("change", [], arxiv_site.base_url, {"delay": 30})
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 1, out
    assert "made change more polite while this worker was running (delay 0 s to 30 s); start the worker again" in out
    assert done_lines(out) == Counter([SMALL])  # the item in flight is handed in...
    assert tracker.item("change", PAPERS[0])["state"] == "todo"  # ... the one claimed under the new delay given back
    assert arxiv_site.count(f"/abs/{PAPERS[0]}") == 0


# ---- how many at once ----------------------------------------------------------------------------------------
def test_max_concurrency_caps_the_volunteers_concurrency(tracker, arxiv_site, tmp_path):
    url = tracker.settings("capped", PAPERS, arxiv_site.base_url, {"max_concurrency": 1})
    out = run(url, tmp_path / "data", "--concurrency", "3")
    assert "grab at most 1 item(s) at once (max_concurrency): grabbing 1, not the 3 of --concurrency" in out
    assert done_lines(out) == Counter(PAPERS)
    # the first answer (multi=3) came before the worker knew the cap: what it may not grab went straight back
    assert tracker.requests("capped")[0] == "/capped/multi=3/request"
    assert out.count("item(s) at once is this worker's limit") == 2
    assert set(tracker.requests("capped")[1:]) == {"/capped/request"}
    spans = []
    for paper in PAPERS:  # one item at a time: each paper's requests end before the next paper's begin
        times = [r.time for r in arxiv_site.requests if paper in r.path]
        spans.append((min(times), max(times)))
    spans.sort()
    assert all(a_end < b_start for (_, a_end), (b_start, _) in pairwise(spans))
    assert all(tracker.item("capped", p)["attempts"] == 1 for p in PAPERS)  # a release uses up no try


# ---- several items per request -------------------------------------------------------------------------------
def test_concurrency_3_claims_3_items_in_one_request_and_hands_each_in_on_its_own(tracker, arxiv_site, tmp_path):
    url = tracker.settings("multi", PAPERS, arxiv_site.base_url)
    out = run(url, tmp_path / "data", "--concurrency", "3")
    handed_out = [call for call in tracker.calls("multi", "request") if call[1] == 200]
    assert handed_out == [("/multi/multi=3/request", 200)]  # all three in one request
    assert done_lines(out) == Counter(PAPERS)
    assert tracker.counts("multi") | {"bytes": 0} == {"todo": 0, "claimed": 0, "done": 3, "failed": 0, "bytes": 0}
    assert all(tracker.item("multi", p)["attempts"] == 1 for p in PAPERS)
    # one upload per item, each sent with that item's own claim token (the tracker holds it under those tokens)
    accepted = tracker.accepted("multi")
    assert sorted(tuple(entry["items"]) for entry in accepted) == sorted((p,) for p in PAPERS)
    assert {entry["downloader"] for entry in accepted} == {"jane_doe"}
    assert tracker.calls("multi", "done") == [("/multi/done", 200)] * 3  # done per item, not one for the batch
    assert len(tracker.calls("multi", "upload")) == 3


def test_an_invalid_name_in_a_multi_answer_is_failed_alone_and_the_others_are_grabbed(tracker, arxiv_site,
                                                                                        tmp_path):
    # An admin switched the project to the generic module for a while: a URL got into an arXiv project's queue.
    url = tracker.settings("mixed", PAPERS[:1], arxiv_site.base_url)
    bad = arxiv_site.url(f"/abs/{PAPERS[1]}")
    assert tracker.admin("PUT", "/projects/mixed", json={"site": "generic"}).status_code == 200
    assert tracker.admin("POST", "/projects/mixed/items", json={"items": [bad]}).status_code == 200
    tracker.settings("mixed", [PAPERS[2]], arxiv_site.base_url)
    out = run(url, tmp_path / "data", "--concurrency", "3")
    assert tracker.requests("mixed")[0] == "/mixed/multi=3/request"
    assert f"refused {bad!r}" in out
    assert done_lines(out) == Counter([PAPERS[0], PAPERS[2]])
    record = tracker.item("mixed", bad)
    assert record["state"] == "failed" and "not a valid arxiv item name" in record["last_error"]
    assert arxiv_site.count(f"/abs/{PAPERS[1]}") == 0  # nothing was fetched for it
    assert tracker.counts("mixed") | {"bytes": 0} == {"todo": 0, "claimed": 0, "done": 2, "failed": 1, "bytes": 0}


def test_a_tracker_without_multi_requests_is_asked_for_one_item_at_a_time(single_tracker, arxiv_site, tmp_path):
    url = single_tracker.settings("single", PAPERS, arxiv_site.base_url)
    out = run(url, tmp_path / "data", "--concurrency", "3")
    assert "does not hand out several items per request (multi=N): asking for one at a time" in out
    assert done_lines(out) == Counter(PAPERS)
    asked = single_tracker.requests("single")
    assert asked[0] == "/single/multi=3/request" and set(asked[1:]) == {"/single/request"}
    assert single_tracker.counts("single")["done"] == 3
