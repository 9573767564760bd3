"""The tracker's HTTP API on a real uvicorn server (127.0.0.1), once on the SQLite store and once on Redis.

Seesaw's wire shapes exactly (reference: archiveteam-distributed.md §1–2), what we do better than
universal-tracker (claimant-only done, fail with attempt limits, leases and heartbeats, Retry-After, budgets told
apart from an empty queue, version comparison, site-validated names, blocks), the admin API's token, hostile
input, and the upload target. Each test gets a project of its own on a server shared by the module; time is a
manual clock shared with the server, so leases and rate limits are exact and instant.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import itertools
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from fixtures.tracker_server import TOKEN, TrackerServer, tracker_on_store
from queue_contract import ManualClock  # tests/ is on sys.path (conftest.py)
from warc_factory import capture, serialise, warcinfo

from archiver.tracker.app import create_app
from archiver.tracker.uploads import UploadTarget

__all__ = ["TOKEN", "Server"]  # the other tracker tests import them from here
VERSION = "20240101.10"
_slugs = itertools.count(1)


class Server(TrackerServer):
    """The tracker on a manual clock, batching every accepted upload (chunk_bytes=1) into a hand-off that only
    notes what it got, and the calls tests make to it."""

    def __init__(self, store_url: str, root: Path) -> None:
        self.clock = ManualClock(time.time())
        self.handoffs: list[tuple[str, Path, list[str]]] = []
        super().__init__(store_url, root, chunk_bytes=1, handoff=self._handoff, clock=self.clock)

    def _handoff(self, slug: str, batch: Path) -> None:
        self.handoffs.append((slug, batch, sorted(p.name for p in batch.iterdir())))

    # ---- calls ---------------------------------------------------------------------------------------------
    def project(self, items: list[str] = (), **settings) -> str:
        slug = f"p{next(_slugs)}"
        r = self.admin("PUT", f"/projects/{slug}", json={"site": "arxiv", "min_version": "20240101.01"} | settings)
        assert r.status_code == 201, r.text
        if items:
            assert self.admin("POST", f"/projects/{slug}/items", json={"items": list(items)}).status_code == 200
        return slug

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.http.post(self.base + path, json=body, **kw)

    def request(self, slug: str, who: str = "alice", multi: int | None = None, version: str = VERSION,
                **extra) -> requests.Response:
        path = f"/{slug}/multi={multi}/request" if multi is not None else f"/{slug}/request"
        return self.post(path, {"downloader": who, "api_version": "2", "version": version} | extra)

    def claim(self, slug: str, who: str = "alice", multi: int | None = None) -> dict:
        r = self.request(slug, who, multi)
        assert r.status_code == 200, r.text
        return r.json()

    def done(self, slug: str, item: str, who: str = "alice", **extra) -> requests.Response:
        return self.post(f"/{slug}/done", {"downloader": who, "version": VERSION, "item": item,
                                           "bytes": {"data": 1000}, "id": {"pipeline_hash": "abc"}} | extra)

    def snapshot(self, slug: str) -> dict:
        """Everything the admin can see of a project, to prove a refused call changed nothing."""
        items = {name: self.item(slug, name) for name in ("2108.07258", "1706.03762", "hep-th/9901001")
                 if self.admin("GET", f"/projects/{slug}/items/{name}").status_code == 200}
        return {"project": self.admin("GET", f"/projects/{slug}").json(), "items": items,
                "stats": self.http.get(f"{self.base}/{slug}/stats.json").json()}


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def tracker(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"tracker-{request.param}")
    with tracker_on_store(request, request.param, root, "tracker", Server) as server:
        yield server


PAPERS = ["2108.07258", "1706.03762", "hep-th/9901001"]


# ---- the seesaw protocol, exactly --------------------------------------------------------------------------
def test_request_answers_item_name_plus_the_projects_extra_keys_and_the_claim(tracker):
    slug = tracker.project(PAPERS, extra={"wget_timeout": 30})
    answer = tracker.claim(slug)
    assert answer["item_name"] == "2108.07258"
    assert answer["wget_timeout"] == 30
    assert len(answer["claim_tokens"]) == 1 and answer["attempts"] == [1]
    assert answer["lease_expires"] == pytest.approx(tracker.clock.now + 900)


def test_multi_hands_out_nul_joined_names_on_both_paths_seesaw_builds(tracker):
    slug = tracker.project(PAPERS)
    r = tracker.post(f"/{slug}/multi=2//request", {"downloader": "alice", "api_version": "2", "version": VERSION})
    assert r.status_code == 200
    assert r.json()["item_name"] == "2108.07258\x001706.03762"
    single = tracker.post(f"/{slug}//request", {"downloader": "bob", "api_version": "2", "version": VERSION})
    assert single.json()["item_name"] == "hep-th/9901001"


def test_the_first_protocol_version_gets_the_bare_name_as_text(tracker):
    slug = tracker.project(PAPERS)
    r = tracker.post(f"/{slug}/request", {"downloader": "alice", "version": VERSION})
    assert r.status_code == 200 and r.text == "2108.07258"
    assert r.headers["content-type"].startswith("text/plain")


def test_done_answers_exactly_ok_and_a_retried_done_changes_nothing(tracker):
    slug = tracker.project(PAPERS)
    item = tracker.claim(slug, multi=2)["item_name"]
    for path in ("/done", "//done"):  # the second as seesaw sends it when the tracker URL ends in '/'
        r = tracker.post(f"/{slug}{path}", {"downloader": "alice", "version": VERSION, "item": item,
                                             "bytes": {"data": 1000}, "id": {"pipeline_hash": "abc"}})
        assert (r.status_code, r.text) == (200, "OK")
    assert tracker.counts(slug)["done"] == 2
    record = tracker.item(slug, "2108.07258")
    assert record["state"] == "done" and record["claimant"] == "alice"
    assert record["outcome"]["extra"]["id"] == {"pipeline_hash": "abc"}
    stats = tracker.http.get(f"{tracker.base}/{slug}/stats.json").json()
    assert stats["counts"] == {"todo": 1, "out": 0, "done": 2, "failed": 0}
    assert stats["downloader_count"] == {"alice": 2} and stats["downloader_bytes"] == {"alice": 1000}
    assert stats["domain_bytes"] == {"data": 1000} and stats["total_items"] == 3


def test_release_puts_the_item_back_without_using_a_try(tracker):
    slug = tracker.project(PAPERS[:1])
    tracker.claim(slug)
    r = tracker.post(f"/{slug}/release", {"downloader": "alice", "item": "2108.07258"})
    assert (r.status_code, r.text) == (200, "Released OK.")
    assert tracker.claim(slug, "bob")["attempts"] == [1]


# ---- status codes seesaw understands, with reasons ---------------------------------------------------------
def test_an_empty_queue_is_404_and_a_spent_budget_is_429_and_they_say_which(tracker):
    slug = tracker.project(PAPERS[:2], budget=1)
    tracker.claim(slug, "alice")
    spent = tracker.request(slug, "alice")
    assert spent.status_code == 429 and spent.json()["error"] == "budget_exhausted"
    assert int(spent.headers["Retry-After"]) > 0
    tracker.claim(slug, "bob")
    empty = tracker.request(slug, "carol")
    assert empty.status_code == 404 and empty.json()["error"] == "no_items"
    assert tracker.done(slug, "2108.07258", "alice").text == "OK"  # finishing frees the budget
    assert tracker.request(slug, "alice").json()["error"] == "no_items"


def test_a_budget_counts_only_live_leases(tracker):
    slug = tracker.project(PAPERS, budget=2, lease=60)
    assert tracker.claim(slug, multi=5)["item_name"].count("\0") == 1  # the budget caps a multi request
    assert tracker.request(slug).json()["error"] == "budget_exhausted"
    tracker.clock.advance(61)  # both leases ended: they no longer count against alice
    assert tracker.claim(slug, multi=5)["item_name"].count("\0") == 1


def test_the_rate_limit_answers_429_with_the_exact_wait(tracker):
    slug = tracker.project(PAPERS, rate_limit=60)  # one item a second
    tracker.claim(slug)
    limited = tracker.request(slug, "bob")
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert limited.headers["Retry-After"] == "1"
    tracker.clock.advance(1)
    assert tracker.claim(slug, "bob")["item_name"] == "1706.03762"


def test_versions_are_compared_as_versions_not_strings(tracker):
    slug = tracker.project(PAPERS, min_version="20240101.10")
    old = tracker.request(slug, version="20240101.9")  # as a string, "20240101.9" > "20240101.10"
    assert old.status_code == 455 and "older than 20240101.10" in old.json()["message"]
    assert tracker.request(slug, version="").status_code == 455
    assert tracker.request(slug, version="20240101.10").status_code == 200


def test_blocked_nicks_and_addresses_get_403(tracker):
    slug = tracker.project(PAPERS)
    assert tracker.admin("POST", f"/projects/{slug}/block", json={"who": "mallory"}).json()["blocked"] == ["mallory"]
    assert tracker.request(slug, "mallory").status_code == 403
    tracker.admin("POST", f"/projects/{slug}/block", json={"who": "127.0.0.1"})
    assert tracker.request(slug, "alice").status_code == 403
    tracker.admin("POST", f"/projects/{slug}/unblock", json={"who": "127.0.0.1"})
    tracker.admin("POST", f"/projects/{slug}/unblock", json={"who": "mallory"})
    assert tracker.request(slug, "mallory").status_code == 200


def test_a_nick_with_a_trailing_newline_is_refused(tracker):
    slug = tracker.project(PAPERS)
    assert tracker.request(slug, "jane\n").status_code == 400
    assert tracker.request(slug, "jane").status_code == 200


def test_every_answer_names_the_site_module_the_worker_must_validate_names_with(tracker):
    slug = tracker.project(PAPERS)
    assert tracker.request(slug, "alice").json()["site"] == "arxiv"


def test_a_paused_project_hands_out_nothing_but_takes_work_back(tracker):
    slug = tracker.project(PAPERS)
    item = tracker.claim(slug)["item_name"]
    tracker.admin("POST", f"/projects/{slug}/pause")
    paused = tracker.request(slug, "bob")
    assert paused.status_code == 404 and paused.json()["error"] == "project_paused"
    assert tracker.done(slug, item).text == "OK"
    tracker.admin("POST", f"/projects/{slug}/resume")
    assert tracker.request(slug, "bob").status_code == 200


def test_many_workers_at_once_never_get_the_same_item(tracker):
    papers = [f"2101.{n:05d}" for n in range(1, 241)]
    slug = tracker.project(papers)
    got: list[list[str]] = []

    def worker(n: int) -> None:
        mine: list[str] = []
        with requests.Session() as http:
            while True:
                r = http.post(f"{tracker.base}/{slug}/multi={1 + n % 3}/request",
                              json={"downloader": f"worker{n}", "api_version": "2", "version": VERSION})
                if r.status_code == 404:
                    break
                assert r.status_code == 200, r.text
                item = r.json()["item_name"]
                mine += item.split("\0")
                done = http.post(f"{tracker.base}/{slug}/done", json={"downloader": f"worker{n}", "item": item})
                assert done.text == "OK", done.text
        got.append(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed = [name for mine in got for name in mine]
    assert len(got) == 12 and len(handed) == len(set(handed)) == len(papers)
    assert tracker.counts(slug)["done"] == len(papers)


# ---- only the claimant finishes ----------------------------------------------------------------------------
def test_done_from_anyone_but_the_claimant_is_409_and_changes_nothing(tracker):
    slug = tracker.project(PAPERS)
    answer = tracker.claim(slug, multi=2)
    before = tracker.snapshot(slug)
    refused = [
        tracker.done(slug, "2108.07258", "mallory"),  # someone else's item
        tracker.done(slug, "2108.07258", claim_tokens=["0" * 32]),  # the right nick, a token never issued
        tracker.done(slug, "2108.07258\x00hep-th/9901001"),  # one of the two is still todo
        tracker.done(slug, "9999.99999"),  # not an item of the project
    ]
    assert [r.status_code for r in refused] == [409, 409, 409, 409]
    assert all(r.json()["message"] for r in refused)
    assert tracker.snapshot(slug) == before
    assert tracker.done(slug, answer["item_name"], claim_tokens=answer["claim_tokens"]).text == "OK"


def test_fail_keeps_the_reason_and_an_item_out_of_tries_is_failed(tracker):
    slug = tracker.project(PAPERS[:1], max_attempts=2)
    states = []
    for _ in range(2):
        tracker.claim(slug)
        r = tracker.post(f"/{slug}/fail", {"downloader": "alice", "item": "2108.07258", "reason": "HTTP 503"})
        states.append(r.json()["states"]["2108.07258"])
    assert states == ["todo", "failed"]
    record = tracker.item(slug, "2108.07258")
    assert (record["state"], record["attempts"], record["last_error"]) == ("failed", 2, "HTTP 503")
    assert tracker.request(slug).status_code == 404
    assert tracker.post(f"/{slug}/fail", {"downloader": "alice", "item": "2108.07258", "reason": "again"}) \
        .status_code == 409


def test_leases_end_on_their_own_unless_heartbeats_keep_them(tracker):
    slug = tracker.project(PAPERS[:1], lease=60)
    tracker.claim(slug, "slow")
    tracker.clock.advance(50)
    beat = tracker.post(f"/{slug}/heartbeat", {"downloader": "slow", "item": "2108.07258"})
    assert beat.json()["lease_expires"] == pytest.approx(tracker.clock.now + 60)
    tracker.clock.advance(50)
    assert tracker.request(slug, "fast").status_code == 404  # still slow's
    tracker.clock.advance(11)
    assert tracker.claim(slug, "fast")["attempts"] == [2]  # the lease ended: handed out again
    late = tracker.done(slug, "2108.07258", "slow")
    assert late.status_code == 409
    assert tracker.item(slug, "2108.07258")["claimant"] == "fast"


# ---- admin -------------------------------------------------------------------------------------------------
def test_the_admin_api_without_the_token_is_401_and_changes_nothing(tracker):
    slug = tracker.project(PAPERS[:1])
    before = tracker.snapshot(slug)
    calls = [("PUT", "/projects/newone", {"site": "arxiv"}), ("PUT", f"/projects/{slug}", {"paused": True}),
             ("POST", f"/projects/{slug}/items", {"items": ["1706.03762"]}), ("POST", f"/projects/{slug}/pause", None),
             ("POST", f"/projects/{slug}/block", {"who": "alice"}), ("POST", f"/projects/{slug}/requeue", {}),
             ("GET", "/projects", None)]
    for token in (None, "wrong-token-wrong-token-wrong"):
        for method, path, body in calls:
            r = tracker.admin(method, path, token=token, json=body)
            assert r.status_code == 401, (method, path)
            assert r.headers["WWW-Authenticate"] == "Bearer"
    assert tracker.snapshot(slug) == before
    assert tracker.admin("GET", "/projects/newone").status_code == 404


def test_items_enter_the_queue_only_through_the_site_module(tracker):
    slug = tracker.project()
    bad = tracker.admin("POST", f"/projects/{slug}/items", json={"items": ["2108.07258", "not-a-paper", "2108.0725"]})
    assert bad.status_code == 422 and len(bad.json()["problems"]) == 2
    assert "not-a-paper" in bad.json()["problems"][0]
    assert tracker.counts(slug)["todo"] == 0  # all or nothing
    plain = "# landmark papers\n2108.07258   # foundation models\narxiv:2108.07258v2\nhttps://arxiv.org/abs/1706.03762v5\n"
    r = tracker.admin("POST", f"/projects/{slug}/items", data=plain, headers={"Content-Type": "text/plain"})
    assert r.json() == {"added": 2, "known": 0, "listed": 3}  # canonical names: two papers
    manifest = "project: landmarks\nsite: arxiv\nitems:\n  - 1810.04805\n  - \"1412.6980\"\n"
    r = tracker.admin("POST", f"/projects/{slug}/items", data=manifest, headers={"Content-Type": "application/yaml"})
    assert r.json()["added"] == 2
    assert tracker.item(slug, "1412.6980")["state"] == "todo"


def test_requeue_returns_a_downloaders_claims_and_failed_items(tracker):
    slug = tracker.project(PAPERS)
    tracker.claim(slug, "gone", multi=2)
    tracker.claim(slug, "alive")
    r = tracker.admin("POST", f"/projects/{slug}/requeue", json={"downloader": "gone"})
    assert r.json() == {"requeued": 2, "reset_failed": 0}
    assert tracker.counts(slug) | {"bytes": 0} == {"todo": 2, "claimed": 1, "done": 0, "failed": 0, "bytes": 0}
    item = tracker.claim(slug, "gone")["item_name"]
    tracker.post(f"/{slug}/fail", {"downloader": "gone", "item": item, "reason": "404 at arXiv", "retry": False})
    r = tracker.admin("POST", f"/projects/{slug}/requeue", json={"claims": False, "failed": True})
    assert r.json() == {"requeued": 0, "reset_failed": 1}
    assert tracker.item(slug, item)["state"] == "todo"


@pytest.mark.parametrize("settings, message", [
    ({"site": "nosuchsite"}, "not a site module"),
    ({"site": "arxiv", "min_version": "not a version"}, "not a version"),
    ({"site": "arxiv", "lease": -1}, "positive"),
    ({"site": "arxiv", "colour": "red"}, "unknown project setting"),
])
def test_a_project_that_cannot_work_is_refused_with_the_reason(tracker, settings, message):
    r = tracker.admin("PUT", "/projects/broken", json=settings)
    assert r.status_code == 422 and message in r.json()["message"]
    assert tracker.admin("GET", "/projects/broken").status_code == 404


# ---- hostile input -----------------------------------------------------------------------------------------
def test_hostile_bodies_are_refused_and_change_nothing(tracker):
    slug = tracker.project(PAPERS)
    tracker.claim(slug)
    before = tracker.snapshot(slug)
    url = f"{tracker.base}/{slug}"
    answers = {
        "bad json": tracker.http.post(url + "/request", data=b"{not json", headers={"Content-Type": "application/json"}),
        "a list": tracker.post(f"/{slug}/done", ["alice", "2108.07258"]),
        "1 MB": tracker.http.post(url + "/done", data=b"{" + b" " * 1_000_000 + b"}"),
        "1 MB chunked": tracker.http.post(url + "/request", data=iter([b"x" * 65536] * 16)),
        "wrong types": tracker.post(f"/{slug}/done", {"downloader": "alice", "item": "2108.07258", "bytes": {"d": -5}}),
        "bad nick": tracker.post(f"/{slug}/request", {"downloader": "a b'; DROP", "api_version": "2"}),
        "nul nonsense": tracker.done(slug, "\x00\x00"),
        "multi=0": tracker.request(slug, multi=0),
        "multi=huge": tracker.request(slug, multi=10**9),
        "no project": tracker.request("nosuchproject"),
    }
    codes = {what: r.status_code for what, r in answers.items()}
    assert codes == {"bad json": 400, "a list": 400, "1 MB": 413, "1 MB chunked": 413, "wrong types": 400,
                     "bad nick": 400, "nul nonsense": 400, "multi=0": 400, "multi=huge": 400, "no project": 404}
    assert all(r.json()["message"] for r in answers.values())
    assert tracker.snapshot(slug) == before


def test_the_openapi_document_describes_the_worker_and_admin_routes(tracker):
    doc = tracker.http.get(tracker.base + "/openapi.json").json()
    for path in ("/{slug}/request", "/{slug}/multi={n}/request", "/{slug}/done", "/{slug}/upload",
                 "/{slug}/upload/{target}", "/{slug}/stats.json", "/admin/projects/{slug}/items"):
        assert path in doc["paths"], path
    assert "downloader" in doc["paths"]["/{slug}/done"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]


# ---- the upload target -------------------------------------------------------------------------------------
def good_warc(url: str = "https://arxiv.org/abs/2108.07258") -> bytes:
    return serialise([warcinfo(), *capture(url)])


def corrupt_warc() -> bytes:
    records = [warcinfo(), *capture("https://arxiv.org/abs/2108.07258")]
    records[1] = dataclasses.replace(records[1], length_delta=3)  # Content-Length says 3 bytes more than there are
    return serialise(records)


def upload_target(tracker: Server, slug: str, item: str, who: str = "alice") -> str:
    r = tracker.post(f"/{slug}/upload", {"downloader": who, "item_name": item, "version": VERSION})
    assert r.status_code == 200, r.text
    target = r.json()["upload_target"]
    assert target.startswith("http://") and target.endswith("/")
    return target


def kept(tracker: Server, slug: str) -> list[str]:
    accepted = tracker.uploads / slug / "accepted"
    return sorted(p.name for p in accepted.iterdir()) if accepted.exists() else []


def held(tracker: Server, slug: str) -> list[str]:
    """Files checked and waiting for their claim to end."""
    return sorted(p.name for p in (tracker.uploads / slug / "held").glob("*/*.warc.gz"))


def packed(tracker: Server, slug: str) -> list[str]:
    """Every file handed to packing so far."""
    return sorted(name for s, _batch, files in tracker.handoffs if s == slug for name in files)


def logged(tracker: Server, slug: str, log: str) -> list[dict]:
    path = tracker.uploads / slug / log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_seesaw_style_upload_is_checked_held_then_kept_once_done_and_batched_for_packing(tracker):
    slug = tracker.project(PAPERS)
    item = tracker.claim(slug, multi=2)["item_name"]
    target = upload_target(tracker, slug, item)
    data = good_warc()
    r = requests.put(target + "p-20240101.warc.gz", data=data)  # what `curl --upload-file F TARGET` does
    assert r.status_code == 201, r.text
    assert r.json()["items"] == item.split("\0") and r.json()["size"] == len(data)
    assert held(tracker, slug) == ["p-20240101.warc.gz"] and kept(tracker, slug) == []
    again = requests.put(target + "p-20240101.warc.gz", data=data)  # curl retried after a lost answer
    assert again.status_code == 200 and again.json()["already"]
    other = requests.put(target + "p-20240101.warc.gz", data=good_warc("https://arxiv.org/abs/1706.03762"))
    assert other.status_code == 409
    assert tracker.admin("POST", f"/projects/{slug}/sweep", json={"force": True}).json()["batches"] == []
    assert held(tracker, slug) == ["p-20240101.warc.gz"]  # the claim is still running: it waits
    assert tracker.done(slug, item).text == "OK"
    r = tracker.admin("POST", f"/projects/{slug}/sweep", json={})
    assert len(r.json()["batches"]) == 1
    assert packed(tracker, slug) == ["p-20240101.warc.gz"]
    [entry] = logged(tracker, slug, "accepted.jsonl")
    assert entry["downloader"] == "alice" and entry["items"] == item.split("\0") and entry["size"] == len(data)
    assert kept(tracker, slug) == [] and held(tracker, slug) == []
    assert not any((tracker.uploads / slug / "held").iterdir())  # the settled claim's directory is gone


def test_an_upload_whose_claim_ran_out_before_done_is_dropped_and_only_the_finishers_is_packed(tracker):
    slug = tracker.project(PAPERS[:1], lease=60)
    slow = tracker.claim(slug, "slow")
    slow_target = upload_target(tracker, slug, slow["item_name"], "slow")
    assert requests.put(slow_target + "slow.warc.gz", data=good_warc()).status_code == 201
    tracker.clock.advance(61)  # slow's lease ends while it is between upload and done
    fast = tracker.claim(slug, "fast")
    assert fast["attempts"] == [2]
    fast_target = upload_target(tracker, slug, fast["item_name"], "fast")
    assert requests.put(fast_target + "fast.warc.gz", data=good_warc()).status_code == 201
    assert tracker.done(slug, slow["item_name"], "slow").status_code == 409
    assert tracker.done(slug, fast["item_name"], "fast").text == "OK"
    uploads = tracker.admin("GET", f"/projects/{slug}").json()["uploads"]
    assert (uploads["held_files"], uploads["accepted_files"], uploads["dropped_files"]) == (2, 0, 0)
    assert uploads["held_bytes"] > 1000  # two small WARCs (record ids make each a few bytes apart)
    tracker.admin("POST", f"/projects/{slug}/sweep", json={"force": True})
    assert packed(tracker, slug) == ["fast.warc.gz"]  # one capture of the item, not two
    uploads = tracker.admin("GET", f"/projects/{slug}").json()["uploads"]
    assert (uploads["held_files"], uploads["accepted_files"], uploads["dropped_files"]) == (0, 0, 1)
    [drop] = logged(tracker, slug, "dropped.jsonl")
    assert (drop["file"], drop["downloader"], drop["items"]) == ("slow.warc.gz", "slow", [slow["item_name"]])
    assert held(tracker, slug) == []


@pytest.mark.parametrize("end", ["release", "fail"])
def test_uploads_of_a_claim_given_back_are_dropped(tracker, end):
    slug = tracker.project(PAPERS[:1])
    claim = tracker.claim(slug, "quitter")
    target = upload_target(tracker, slug, claim["item_name"], "quitter")
    assert requests.put(target + "half.warc.gz", data=good_warc()).status_code == 201
    body = {"downloader": "quitter", "item": claim["item_name"], "reason": "disk full"}
    assert tracker.post(f"/{slug}/{end}", body).status_code == 200
    tracker.admin("POST", f"/projects/{slug}/sweep", json={"force": True})
    assert packed(tracker, slug) == [] and held(tracker, slug) == []
    assert [d["file"] for d in logged(tracker, slug, "dropped.jsonl")] == ["half.warc.gz"]


def test_an_item_name_with_a_slash_uploads_to_its_own_path(tracker):
    slug = tracker.project(["hep-th/9901001"])
    item = tracker.claim(slug)["item_name"]
    target = upload_target(tracker, slug, item)
    assert "/upload/hep-th%2F9901001/" in target
    assert requests.put(target + "old.warc.gz", data=good_warc()).status_code == 201


def test_uploads_need_the_current_claim_token_of_that_item(tracker):
    slug = tracker.project(PAPERS)
    mine = tracker.claim(slug, "alice")
    theirs = tracker.claim(slug, "bob")
    path = f"{tracker.base}/{slug}/upload/{mine['item_name']}/a.warc.gz"
    assert requests.put(path, data=good_warc()).status_code == 401
    assert requests.put(path, data=good_warc(), auth=("alice", "f" * 32)).status_code == 403
    assert requests.put(path, data=good_warc(), auth=("alice", theirs["claim_tokens"][0])).status_code == 403
    bearer = {"Authorization": f"Bearer {mine['claim_tokens'][0]}"}
    assert requests.put(path, data=good_warc(), headers=bearer).status_code == 201
    tracker.done(slug, mine["item_name"])
    assert requests.put(path.replace("a.warc", "b.warc"), data=good_warc(), headers=bearer).status_code == 403
    assert held(tracker, slug) == ["a.warc.gz"]


def test_the_checker_refuses_a_corrupt_warc_and_one_that_merely_gunzips(tracker):
    slug = tracker.project(PAPERS)
    target = upload_target(tracker, slug, tracker.claim(slug)["item_name"])
    broken = requests.put(target + "broken.warc.gz", data=corrupt_warc())
    assert broken.status_code == 422 and broken.json()["error"] == "warc_rejected"
    assert any("missing-record-trailer" in f for f in broken.json()["findings"])
    junk = requests.put(target + "junk.warc.gz", data=gzip.compress(b"it gunzips, so megawarc would take it\n"))
    assert junk.status_code == 422
    assert kept(tracker, slug) == [] and held(tracker, slug) == []
    assert not any((tracker.uploads / slug / "incoming").iterdir())


def test_uploads_over_the_projects_size_limit_are_refused_streamed_or_declared(tracker):
    slug = tracker.project(PAPERS, max_upload=500)
    target = upload_target(tracker, slug, tracker.claim(slug)["item_name"])
    declared = requests.put(target + "big.warc.gz", data=good_warc())  # Content-Length over the limit
    assert declared.status_code == 413
    streamed = requests.put(target + "big.warc.gz", data=iter([good_warc()[:400], good_warc()[400:]]))  # chunked
    assert streamed.status_code == 413
    assert kept(tracker, slug) == []
    assert not any((tracker.uploads / slug / "incoming").iterdir())


def raw_put(tracker: Server, path: str, token: str, body: bytes = b"x") -> int:
    """A PUT whose path is sent exactly as written (requests would normalise ../)."""
    conn = http.client.HTTPConnection("127.0.0.1", tracker.port, timeout=10)
    try:
        conn.request("PUT", path, body=body, headers={"Authorization": f"Bearer {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_file_names_with_path_tricks_are_refused_and_nothing_lands_outside(tracker, tmp_path):
    slug = tracker.project(PAPERS)
    answer = tracker.claim(slug)
    item, token = answer["item_name"], answer["claim_tokens"][0]
    before = {p for p in tracker.uploads.parent.rglob("*")}
    tricks = [f"/{slug}/upload/{item}/..%2F..%2Fevil.warc.gz", f"/{slug}/upload/{item}/../../../evil.warc.gz",
              f"/{slug}/upload/{item}/..", f"/{slug}/upload/{item}/.hidden.warc.gz",
              f"/{slug}/upload/{item}/..%5Cevil.warc.gz", f"/{slug}/upload/{item}/evil.sh",
              f"/{slug}/upload/{item}/"]
    statuses = [raw_put(tracker, path, token, good_warc()) for path in tricks]
    assert all(400 <= s < 500 for s in statuses), statuses
    after = {p for p in tracker.uploads.parent.rglob("*")}
    assert not [p for p in after - before if "evil" in p.name or p.name.startswith(".")]
    assert kept(tracker, slug) == []


# ---- packing without a server ------------------------------------------------------------------------------
def test_the_default_hand_off_packs_a_batch_into_a_megawarc(tmp_path):
    target = UploadTarget(tmp_path, chunk_bytes=10**9, chunk_age=60)
    for name in ("a.warc.gz", "b.warc.gz"):
        path = target.incoming("proj", name)
        path.write_bytes(good_warc(f"https://arxiv.org/abs/{name}"))
        target.accept("proj", path, ("2108.07258",), "alice")
    assert target.sweep(["proj"]) == []  # neither big nor old enough yet
    later = time.time() + 61
    assert target.cut("proj", now=later) is not None
    [handed] = target.sweep(["proj"])
    assert not handed.exists()  # packed, then removed: the megawarc holds the bytes
    packs = sorted(p.name for p in (tmp_path / "proj" / "packs").iterdir())
    assert [p.split(".", 1)[1] for p in packs] == ["megawarc.json.gz", "megawarc.tar", "megawarc.warc.gz"]


def test_create_app_refuses_a_missing_or_short_admin_token(tmp_path):
    from archiver.errors import UsageError

    for token in ("", "short"):
        with pytest.raises(UsageError, match="admin token"):
            create_app(f"sqlite:///{tmp_path}/store", token)


# ---- the command ---------------------------------------------------------------------------------------------
def test_the_command_refuses_to_start_without_an_admin_token(tmp_path, monkeypatch, capsys):
    from archiver.cli import main

    monkeypatch.delenv("ARCHIVER_TRACKER_TOKEN", raising=False)
    assert main(["tracker", "serve", "--store", f"sqlite:///{tmp_path}/store"]) == 2
    assert "does not start without an admin token" in capsys.readouterr().err
    (tmp_path / "token").write_text("short\n")
    assert main(["tracker", "serve", "--admin-token-file", str(tmp_path / "token")]) == 2
    assert "at least 16 characters" in capsys.readouterr().err


def test_the_command_serves_with_several_workers_that_answer_without_delay(tmp_path):
    import json
    import signal
    import statistics
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "token").write_text(TOKEN + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "tracker", "serve", "--store",
                             f"sqlite:///{tmp_path}/store", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                             "--admin-token-file", str(tmp_path / "token"), "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(base + "/openapi.json", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the tracker did not start"
            time.sleep(0.1)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.put(base + "/admin/projects/cli", json={"site": "arxiv"}, headers=auth).status_code == 201
        assert requests.post(base + "/admin/projects/cli/items", json={"items": PAPERS}, headers=auth).status_code == 200
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one keep-alive connection, as seesaw's
        took = []

        def call(path: str, body: dict) -> bytes:
            started = time.perf_counter()
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            took.append(time.perf_counter() - started)
            assert response.status == 200, data
            return data

        for _ in PAPERS:
            item = json.loads(call("/cli/request", {"downloader": "alice", "api_version": "2"}))["item_name"]
            assert call("/cli/done", {"downloader": "alice", "item": item}) == b"OK"
        conn.close()
        # A worker whose connections lack TCP_NODELAY answers each small request after a ~40 ms delayed ACK.
        assert statistics.median(took) < 0.03, took
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
