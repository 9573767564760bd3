"""The volunteer's worker (archiver.worker) on its own: the name it works under, how it waits, when it stops, and
what it refuses to do for a tracker.

Every test talks HTTP to a real server on 127.0.0.1: `FakeTracker`, a scripted stand-in for answers a real tracker
never gives (a foreign upload target, a URL as an item name), or `RealTracker`, our tracker on uvicorn, with the
arXiv-like site to grab from. Waits are measured on a fake clock so back-off is exact and instant.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures.tracker_server import TrackerServer
from grabbing import ROOT

from archiver.cli import main
from archiver.errors import UsageError
from archiver.worker import (
    Backoff,
    RetryPolicy,
    TrackerClient,
    TrackerError,
    UploadRefused,
    VersionTooOld,
    WorkerError,
    WorkerOptions,
    check_upload_target,
    run_worker,
    validate_nick,
)

PAPERS = ["2108.07258", "hep-th/9901001", "cs/0012007"]


# ---- servers -------------------------------------------------------------------------------------------------
class FakeTracker:
    """A scripted tracker: each command answers from its script, then its default. Every call is logged."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.calls: list[tuple[str, str, object, dict[str, str]]] = []  # method, path, JSON body, headers
        self.script: dict[str, deque[tuple[int, object, dict[str, str]]]] = {}
        self.defaults: dict[str, tuple[int, object, dict[str, str]]] = {
            "request": (404, {"error": "no_items", "message": "no items left", "claimed": 0}, {}),
            "done": (200, "OK", {}), "release": (200, "Released OK.", {}), "fail": (200, {"states": {}}, {}),
            "heartbeat": (200, {"lease_seconds": 60}, {}), "upload": (404, {"error": "no"}, {}), "PUT": (201, {}, {})}
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, command: str, status: int, body: object = None, headers: dict[str, str] | None = None,
               times: int = 1) -> None:
        self.script.setdefault(command, deque()).extend([(status, body, headers or {})] * times)

    def hand_out(self, name: str, **extra: object) -> None:
        """The next request answers one claim of `name`, with the project's `extra` keys."""
        self.answer("request", 200, {"item_name": name, "claim_tokens": [f"token-{name}"], "attempts": [1],
                                     "lease_seconds": 60, **extra})

    def commands(self, command: str) -> list[dict]:
        return [body for method, path, body, _h in self.calls if method == "POST" and path.endswith("/" + command)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: object = json.loads(raw)
                except ValueError:
                    body = raw
                fake.calls.append((self.command, self.path, body, dict(self.headers)))
                command = "PUT" if self.command == "PUT" else self.path.rsplit("/", 1)[-1]
                queued = fake.script.get(command)
                status, answer, headers = queued.popleft() if queued else fake.defaults[command]
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = _serve

        return Handler


@pytest.fixture
def fake_tracker():
    server = FakeTracker()
    yield server
    server.close()


class RealTracker(TrackerServer):
    """Our tracker (both stores) on uvicorn with the real clock, and the admin calls tests make."""

    def project(self, slug: str, items: list[str], site_url: str, **settings) -> str:
        """A project grabbing `items` from the arXiv-like site at `site_url`; returns the worker's --tracker."""
        r = self.admin("PUT", f"/projects/{slug}", json={"site": "arxiv", "extra": {"site": "arxiv",
                                                                                     "base_url": site_url}} | settings)
        assert r.status_code == 201, r.text
        assert self.admin("POST", f"/projects/{slug}/items", json={"items": items}).status_code == 200
        return f"{self.base}/{slug}"

    def wait_for(self, what: Callable[[], bool], timeout: float = 30, why: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, f"timed out waiting for {why or what}"
            time.sleep(0.05)


def start_worker(tracker_url: str, nick: str, data: Path, *args: str) -> subprocess.Popen:
    """`archiver worker` as a volunteer runs it, in a process group of its own (so a test can kill it whole),
    allowed to fetch from the test site, without politeness delay, waiting at most half a second at a time."""
    return subprocess.Popen([sys.executable, "-m", "archiver", "worker", "--tracker", tracker_url, "--nick", nick,
                             "--data", str(data), "--allow-base-url", "--delay", "0", "--max-wait", "0.5", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, stdin=subprocess.DEVNULL)


class FakeTime:
    """A clock that moves only when the client sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


POLICY = RetryPolicy(base=2.0, cap=300.0, give_up=900.0, timeout=5.0, quick_timeout=5.0)


def client(url: str, t: FakeTime, **kw) -> TrackerClient:
    return TrackerClient(url + "/papers", kw.pop("nick", "jane_doe"), policy=kw.pop("policy", POLICY), sleep=t.sleep,
                         clock=t.clock, **kw)


def options(url: str, tmp_path: Path, **kw) -> WorkerOptions:
    return WorkerOptions(url + "/papers", "jane_doe", data_dir=str(tmp_path / "data"), until_empty=True,
                         policy=RetryPolicy(base=0.01, ceiling=0.05, give_up=5, timeout=5), **kw)


# ---- the name a volunteer works under ------------------------------------------------------------------------
@pytest.mark.parametrize("nick", ["jane_doe", "abc", "A-1_b", "x" * 30])
def test_a_nick_of_3_to_30_letters_digits_dashes_and_underscores_is_accepted(nick):
    assert validate_nick(nick) == nick


@pytest.mark.parametrize("nick", ["ab", "x" * 31, "jane doe", "jane.doe", "ja/ne", "", "jäne", "jane\n"])
def test_any_other_nick_is_refused_before_anything_is_sent(nick, fake_tracker):
    with pytest.raises(UsageError, match="3 to 30 letters, digits, '-' or '_'"):
        TrackerClient(fake_tracker.url + "/papers", nick)
    assert fake_tracker.calls == []


def test_the_command_says_what_a_nick_may_be_and_exits_2(capsys, tmp_path):
    code = main(["worker", "--tracker", "http://127.0.0.1:9/papers", "--nick", "no way", "--data", str(tmp_path)])
    assert code == 2
    assert "--nick 'no way' is not a downloader name" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["127.0.0.1:9080/papers", "ftp://host/papers", "http://host", "http://host/",
                                 "http://user:pw@host/papers", "http://host/papers?x=1"])
def test_a_tracker_url_without_a_project_or_scheme_is_refused_with_an_example(url):
    with pytest.raises(UsageError, match="tracker.example.org/myproject"):
        TrackerClient(url, "jane_doe")


# ---- waiting -------------------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_with_jitter_and_never_exceeds_its_cap():
    policy = RetryPolicy(base=2.0, cap=60.0)
    first = [Backoff(policy, rng=random.Random(seed).random).next() for seed in range(50)]
    assert all(1.0 <= w <= 2.0 for w in first) and len(set(first)) > 40  # fifty workers spread out, not in step
    b = Backoff(policy, rng=lambda: 1.0)
    assert [b.next() for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    b = Backoff(policy, rng=lambda: 0.0)
    assert [b.next() for _ in range(3)] == [1, 2, 4]  # never less than half the range
    b.reset()
    assert b.next() == 1


def test_retry_after_is_a_floor_that_only_the_ceiling_cuts():
    b = Backoff(RetryPolicy(base=2.0, cap=300.0, ceiling=3600.0), rng=lambda: 0.5)
    assert b.next(retry_after=120) == pytest.approx(132)  # 120 plus up to 20%, so a crowd does not return at once
    assert Backoff(RetryPolicy(ceiling=3600.0), rng=lambda: 0.0).next(retry_after=10**7) == 3600


def test_a_rate_limited_claim_waits_at_least_retry_after_and_asks_nothing_meanwhile(fake_tracker):
    t = FakeTime()
    c = client(fake_tracker.url, t)
    fake_tracker.answer("request", 429, {"error": "rate_limited", "message": "slow down"}, {"Retry-After": "30"})
    fake_tracker.answer("request", 503, {"error": "store_unavailable", "message": "down"})
    fake_tracker.hand_out("2108.07258", site="arxiv")
    assert c.claim() == []
    assert 30 <= c.wait() <= 36
    t.now += 29
    assert c.claim() == [] and len(fake_tracker.commands("request")) == 1  # too early: no request was sent
    t.now += 8
    assert c.claim() == []  # 503 without Retry-After: the second step of the back-off
    assert 2 <= c.wait() <= 4
    t.now += c.wait()
    [claim] = c.claim()
    assert (claim.name, claim.token, claim.extra) == ("2108.07258", "token-2108.07258", {"site": "arxiv"})
    assert fake_tracker.commands("request")[0] == {"downloader": "jane_doe", "api_version": "2",
                                                   "version": c.version}


def test_a_claim_with_no_answer_at_all_is_retried_later_too(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = FakeTime()
    c = client(f"http://127.0.0.1:{port}", t)
    assert c.claim() == [] and 1 <= c.wait() <= 2
    t.now += 2
    assert c.claim() == [] and 2 <= c.wait() <= 4


def test_done_is_retried_through_429_and_5xx_honouring_retry_after_then_succeeds(fake_tracker):
    t = FakeTime()
    c = client(fake_tracker.url, t)
    fake_tracker.answer("done", 503, {"message": "store down"}, {"Retry-After": "10"})
    fake_tracker.answer("done", 500, "oops")
    fake_tracker.answer("done", 429, {"message": "rate"})
    a = c.call("done", {"downloader": "jane_doe", "item": "2108.07258"})
    assert (a.status, a.body) == (200, "OK")
    assert len(t.slept) == 3
    assert 10 <= t.slept[0] <= 12 and 2 <= t.slept[1] <= 4 and 4 <= t.slept[2] <= 8


def test_a_call_that_never_gets_through_gives_up_and_says_why(fake_tracker):
    t = FakeTime()
    c = client(fake_tracker.url, t, policy=RetryPolicy(base=2.0, give_up=60.0))
    fake_tracker.answer("fail", 502, {"message": "bad gateway"}, times=100)
    with pytest.raises(TrackerError, match=r"gave up on fail of 2108.07258 .* HTTP 502: bad gateway"):
        c.call("fail", {"downloader": "jane_doe", "item": "2108.07258"})
    assert sum(t.slept) <= 60


def test_a_409_is_not_retried_but_returned_for_the_worker_to_judge(fake_tracker):
    t = FakeTime()
    fake_tracker.answer("done", 409, {"error": "not_claimant", "message": "claimed by another"})
    a = client(fake_tracker.url, t).call("done", {"downloader": "jane_doe", "item": "x"})
    assert (a.status, a.error) == (409, "not_claimant") and t.slept == []


def test_455_stops_the_worker_and_says_in_plain_words_how_to_update(fake_tracker, tmp_path, capsys):
    fake_tracker.answer("request", 455, {"error": "version_too_old", "message": "pipeline version 0.1.0 is older "
                                         "than 0.2.0, the oldest this project accepts"}, times=2)
    with pytest.raises(VersionTooOld) as e:
        run_worker(options(fake_tracker.url, tmp_path))
    assert "0.1.0 is older than 0.2.0" in str(e.value)
    assert "update archiver (`pip install --upgrade archiver`" in str(e.value)
    assert "start the worker again" in str(e.value)
    code = main(["worker", "--tracker", fake_tracker.url + "/papers", "--nick", "jane_doe", "--data",
                 str(tmp_path / "data")])
    assert code == 1 and "pip install --upgrade archiver" in capsys.readouterr().err
    assert len(fake_tracker.commands("request")) == 2  # a 455 is not retried: only an update helps


def test_a_blocked_worker_or_an_unknown_project_stops_with_the_trackers_reason(fake_tracker, tmp_path):
    fake_tracker.answer("request", 403, {"error": "blocked", "message": "jane_doe may not work on papers"})
    with pytest.raises(TrackerError, match="jane_doe may not work on papers"):
        run_worker(options(fake_tracker.url, tmp_path))
    fake_tracker.answer("request", 404, {"error": "unknown_project", "message": "there is no project 'papers'"})
    with pytest.raises(TrackerError, match="check the --tracker URL"):
        run_worker(options(fake_tracker.url, tmp_path))


# ---- what the worker will not do for a tracker ---------------------------------------------------------------
def test_items_the_site_module_rejects_are_failed_for_good_and_nothing_is_fetched(fake_tracker, arxiv_site,
                                                                                   tmp_path):
    hostile = ["https://evil.example/abs/2108.07258", "../../etc/passwd", "arxiv:2108.07258v2",
               f"{arxiv_site.base_url}/abs/2108.07258", "2108.07258\nHost: evil.example"]
    for name in hostile:
        fake_tracker.hand_out(name, site="arxiv", base_url=arxiv_site.base_url)
    report = run_worker(options(fake_tracker.url, tmp_path, allow_base_url=True))
    assert sorted(report.refused) == sorted(hostile) and report.done == []
    assert arxiv_site.requests == []  # nothing was fetched for any of them
    fails = fake_tracker.commands("fail")
    assert [f["item"] for f in fails] == hostile
    assert all(f["retry"] is False and "not a valid arxiv item name" in f["reason"] for f in fails)
    assert [f["claim_tokens"] for f in fails] == [[f"token-{n}"] for n in hostile]
    assert not [c for c in fake_tracker.calls if c[0] == "PUT"]


def test_a_project_without_a_site_module_needs_the_volunteer_to_name_it(fake_tracker, tmp_path):
    fake_tracker.hand_out("2108.07258")
    with pytest.raises(WorkerError, match="pass --site NAME"):
        run_worker(options(fake_tracker.url, tmp_path))
    assert [r["item"] for r in fake_tracker.commands("release")] == ["2108.07258"]


def test_a_generic_project_hands_the_tracker_every_url_so_it_needs_site_generic(fake_tracker, arxiv_site, tmp_path):
    fake_tracker.hand_out(arxiv_site.url("/abs/2108.07258"), site="generic")
    with pytest.raises(WorkerError, match="Pass --site generic if you trust it"):
        run_worker(options(fake_tracker.url, tmp_path))
    assert arxiv_site.requests == []
    assert [r["item"] for r in fake_tracker.commands("release")] == [arxiv_site.url("/abs/2108.07258")]


def test_a_base_url_from_the_tracker_needs_allow_base_url(fake_tracker, arxiv_site, tmp_path):
    fake_tracker.hand_out("2108.07258", site="arxiv", base_url=arxiv_site.base_url)
    with pytest.raises(WorkerError, match="pass --allow-base-url if you trust this tracker"):
        run_worker(options(fake_tracker.url, tmp_path))
    assert arxiv_site.requests == []
    assert [r["item"] for r in fake_tracker.commands("release")] == ["2108.07258"]


def test_a_site_module_the_worker_does_not_have_asks_for_an_update(fake_tracker, tmp_path):
    fake_tracker.hand_out("10.1101/2024.01.01.123456", site="biorxiv")
    with pytest.raises(WorkerError, match="does not have .* update archiver"):
        run_worker(options(fake_tracker.url, tmp_path))


@pytest.mark.parametrize("target", [
    "http://127.0.0.2:{port}/papers/upload/x/",  # another host
    "http://127.0.0.1:{other}/papers/upload/x/",  # another port
    "https://127.0.0.1:{port}/papers/upload/x/",  # another scheme
    "http://127.0.0.1:{port}@127.0.0.2:{port}/papers/upload/x/",  # the tracker's address as user-info
    "rsync://127.0.0.1:{port}/papers/",  # not HTTP
    "http://127.0.0.1:{port}/papers/upload/x",  # not a directory to PUT into
    "", None,
])
def test_an_upload_target_anywhere_but_the_tracker_itself_is_refused(target):
    base = "http://127.0.0.1:9080"
    target = target.format(port=9080, other=9081) if target else target
    with pytest.raises(UploadRefused, match="x"):
        check_upload_target(target, base, "x")


def test_the_upload_target_loses_the_user_info_the_tracker_put_in_it():
    assert check_upload_target("http://jane:tok@127.0.0.1:9080/papers/upload/x/", "http://127.0.0.1:9080",
                               "x") == "http://127.0.0.1:9080/papers/upload/x/"


def test_nothing_is_sent_to_an_upload_target_on_another_host(fake_tracker, tmp_path):
    elsewhere = FakeTracker("127.0.0.2")
    try:
        fake_tracker.answer("upload", 200, {"upload_target": elsewhere.url + "/papers/upload/2108.07258/"})
        warc = tmp_path / "papers-2108.07258.warc.gz"
        warc.write_bytes(b"capture")
        c = client(fake_tracker.url, FakeTime())
        fake_tracker.hand_out("2108.07258", site="arxiv")
        [claim] = c.claim()
        with pytest.raises(UploadRefused, match="uploads only to the tracker itself"):
            c.upload(claim, [warc])
        assert elsewhere.calls == []  # neither the file nor the claim token went there
        assert not [call for call in fake_tracker.calls if call[0] == "PUT"]
    finally:
        elsewhere.close()


def test_an_upload_goes_to_the_trackers_target_with_the_claim_token_and_is_checked_byte_for_byte(fake_tracker,
                                                                                                tmp_path):
    warc = tmp_path / "papers-hep-th_9901001.warc.gz"
    warc.write_bytes(b"capture bytes")
    sha = hashlib.sha256(b"capture bytes").hexdigest()
    fake_tracker.answer("upload", 200, {"upload_target": f"http://x:y@{fake_tracker.url[7:]}/papers/upload/"
                                                         "hep-th%2F9901001/"})
    fake_tracker.answer("PUT", 201, {"sha256": sha})
    c = client(fake_tracker.url, FakeTime())
    fake_tracker.hand_out("hep-th/9901001", site="arxiv")
    [claim] = c.claim()
    [up] = c.upload(claim, [warc])
    assert (up.name, up.size, up.sha256) == (warc.name, 13, sha)
    [(method, path, body, headers)] = [call for call in fake_tracker.calls if call[0] == "PUT"]
    assert path == "/papers/upload/hep-th%2F9901001/papers-hep-th_9901001.warc.gz" and body == b"capture bytes"
    assert base64.b64decode(headers["Authorization"].split()[1]).decode() == "jane_doe:token-hep-th/9901001"
    fake_tracker.answer("upload", 200, {"upload_target": fake_tracker.url + "/papers/upload/x/"})
    fake_tracker.answer("PUT", 201, {"sha256": "0" * 64})
    with pytest.raises(UploadRefused, match="damaged on the way"):
        c.upload(claim, [warc])


def test_a_grab_whose_upload_target_is_foreign_is_reported_failed_with_the_reason(fake_tracker, arxiv_site,
                                                                                    tmp_path):
    fake_tracker.hand_out("hep-th/9901001", site="arxiv", base_url=arxiv_site.base_url)
    fake_tracker.answer("upload", 200, {"upload_target": "http://127.0.0.2:9/papers/upload/hep-th%2F9901001/"})
    p = start_worker(fake_tracker.url + "/papers", "jane_doe", tmp_path / "data", "--until-empty")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert arxiv_site.count("/abs/hep-th/9901001") == 1  # it was grabbed...
    [fail] = fake_tracker.commands("fail")  # ... and reported failed, not left to rot
    assert fail["item"] == "hep-th/9901001" and fail["retry"] is True
    assert "upload: the tracker named 'http://127.0.0.2:9/" in fail["reason"]
    assert fake_tracker.commands("done") == [] and not [c for c in fake_tracker.calls if c[0] == "PUT"]
    assert "failed hep-th/9901001: upload:" in out
    assert list((tmp_path / "data").iterdir()) == []  # nothing left on the volunteer's disk


# ---- against the real tracker --------------------------------------------------------------------------------
@pytest.fixture
def real_tracker(tmp_path):
    with RealTracker(f"sqlite:///{tmp_path}/store", tmp_path) as tracker:
        yield tracker


def test_heartbeats_keep_a_slow_items_claim_while_another_worker_waits_for_work(real_tracker, arxiv_site, tmp_path):
    url = real_tracker.project("slowgrab", PAPERS[1:2], arxiv_site.base_url, lease=1.5)
    arxiv_site.set_delay(f"/pdf/{PAPERS[1]}v1", 3.0)  # the grab takes twice the lease
    a = start_worker(url, "worker-a", tmp_path / "a", "--until-empty")
    real_tracker.wait_for(lambda: real_tracker.item("slowgrab", PAPERS[1])["state"] == "claimed", why="a claim")
    b = start_worker(url, "worker-b", tmp_path / "b", "--until-empty")  # would take the item if its lease ran out
    out_a, out_b = a.communicate(timeout=60)[0], b.communicate(timeout=60)[0]
    assert (a.returncode, b.returncode) == (0, 0), out_a + out_b
    assert f"done {PAPERS[1]}" in out_a and "grabbing" not in out_b
    record = real_tracker.item("slowgrab", PAPERS[1])
    assert (record["state"], record["claimant"], record["attempts"]) == ("done", "worker-a", 1)


def test_a_real_trackers_455_reaches_the_volunteer_in_plain_words(real_tracker, arxiv_site, tmp_path):
    url = real_tracker.project("newer", PAPERS[:1], arxiv_site.base_url, min_version="99.0")
    with pytest.raises(VersionTooOld, match=r"older than 99.0.*update archiver \(`pip install --upgrade archiver`"):
        run_worker(WorkerOptions(url, "jane_doe", data_dir=str(tmp_path / "data"), allow_base_url=True))
    assert real_tracker.counts("newer")["todo"] == 1


# ---- stopping ------------------------------------------------------------------------------------------------


def test_the_stop_file_stops_claiming_and_lets_the_item_in_flight_finish(real_tracker, arxiv_site, tmp_path):
    url = real_tracker.project("stopping", PAPERS, arxiv_site.base_url)
    stop = tmp_path / "STOP"
    arxiv_site.set_delay(f"/abs/{PAPERS[0]}", 1.0)  # slow enough to drop the stop file mid-item
    p = start_worker(url, "jane_doe", tmp_path / "data", "--stop-file", str(stop))
    real_tracker.wait_for(lambda: real_tracker.item("stopping", PAPERS[0])["state"] == "claimed", why="a claim")
    stop.touch()
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert "stopping (stop file" in out and f"done {PAPERS[0]}" in out
    assert real_tracker.counts("stopping") | {"bytes": 0} == {"todo": 2, "claimed": 0, "done": 1, "failed": 0,
                                                              "bytes": 0}
    again = start_worker(url, "jane_doe", tmp_path / "data", "--stop-file", str(stop))
    out, _ = again.communicate(timeout=30)
    assert again.returncode == 0 and "0 done" in out  # the file is still there: nothing is claimed
    assert real_tracker.counts("stopping")["todo"] == 2


def test_a_second_ctrl_c_stops_at_once_and_gives_the_item_back_untried(real_tracker, arxiv_site, tmp_path):
    url = real_tracker.project("interrupted", PAPERS[:1], arxiv_site.base_url)
    arxiv_site.set_delay("*", 1.0)
    p = start_worker(url, "jane_doe", tmp_path / "data")
    real_tracker.wait_for(lambda: arxiv_site.requests, why="the grab to start")
    p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 130, out
    assert f"released {PAPERS[0]}" in out
    record = real_tracker.item("interrupted", PAPERS[0])
    assert record["state"] == "todo" and record["attempts"] == 0  # a release does not use up a try
    assert not [d for d in (tmp_path / "data").iterdir()]
    assert_process_group_gone(p.pid)


def test_sigterm_stops_like_ctrl_c_the_item_in_flight_is_handed_in_and_no_process_is_left(real_tracker,
                                                                                           arxiv_site, tmp_path):
    url = real_tracker.project("terminated", PAPERS, arxiv_site.base_url)
    arxiv_site.set_delay(f"/abs/{PAPERS[0]}", 1.0)
    p = start_worker(url, "jane_doe", tmp_path / "data", "--concurrency", "2")  # claims two items at once
    real_tracker.wait_for(lambda: arxiv_site.requests, why="the grab to start")
    p.send_signal(signal.SIGTERM)  # what `docker stop` sends the worker
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out
    assert "stopping (SIGTERM): claiming no more; finishing 2 item(s) in flight" in out
    assert sorted(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("done ")) == \
        sorted(PAPERS[:2])
    assert real_tracker.counts("terminated") | {"bytes": 0} == {"todo": 1, "claimed": 0, "done": 2, "failed": 0,
                                                                "bytes": 0}
    assert_process_group_gone(p.pid)


def test_an_item_that_takes_too_long_is_reported_failed_and_its_late_capture_discarded(real_tracker, arxiv_site,
                                                                                        tmp_path):
    url = real_tracker.project("slow", PAPERS[1:2], arxiv_site.base_url, max_attempts=1)
    arxiv_site.set_delay(f"/pdf/{PAPERS[1]}v1", 3.0)  # a site that hangs on one URL
    p = start_worker(url, "jane_doe", tmp_path / "data", "--item-timeout", "1", "--until-empty")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert f"failed {PAPERS[1]}: the grab took longer than 1 s" in out and "(the tracker has it as failed)" in out
    record = real_tracker.item("slow", PAPERS[1])
    assert record["state"] == "failed" and "--item-timeout" in record["last_error"]
    assert not (real_tracker.uploads / "slow" / "accepted").exists()  # what arrived late was not handed in
    assert list((tmp_path / "data").iterdir()) == []


def assert_process_group_gone(pgid: int, timeout: float = 10) -> None:
    """Neither the worker nor any of its crawl processes is still running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"processes of group {pgid} outlived the worker"
        time.sleep(0.05)


def test_a_killed_workers_leftovers_are_cleared_by_the_next_worker(fake_tracker, tmp_path):
    stale = tmp_path / "data" / "papers-jane_doe-dead1234"
    stale.mkdir(parents=True)
    (stale / ".lock").touch()
    (stale / "papers-jane_doe-2108.07258-20240101000000-00000.warc.gz.open").write_bytes(b"half")
    run_worker(options(fake_tracker.url, tmp_path))
    assert not stale.exists() and list((tmp_path / "data").iterdir()) == []


def test_environment_proxies_are_ignored(fake_tracker, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.2:9")
    monkeypatch.setenv("NO_PROXY", "")
    fake_tracker.hand_out("2108.07258", site="arxiv")
    assert [c.name for c in client(fake_tracker.url, FakeTime()).claim()] == ["2108.07258"]
