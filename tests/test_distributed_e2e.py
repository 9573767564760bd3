"""Distributed grabbing end to end on loopback, once with each tracker store (SQLite, Redis).

Our tracker hands four papers of the arXiv-like site to volunteer workers (`archiver worker` processes). A hostile
client pokes at it first and changes nothing; worker A is killed with SIGKILL in the middle of an item; workers B
and C grab everything, including A's item once its lease runs out. Then the accepted WARCs are packed into a
megawarc, which the tracker publishes to the fake Internet Archive (the project has upload settings).

What must hold: every item is done exactly once (one claimant, one accepted upload, one capture in the pack), the
dead worker hands in nothing, and no WARC that fails the checker is ever accepted.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from grabbing import records
from test_worker import RealTracker, start_worker
from warc_factory import capture, serialise, warcinfo

from archiver.sites import get_site
from archiver.sites.base import SiteOptions
from archiver.upload import ENDPOINT_ENV
from archiver.warc.check import check_files
from archiver.warc.megawarc import read_index

PAPERS = ["2108.07258", "cs/0012007", "0906.5132", "hep-th/9901001"]
SLUG = "papers"
LEASE = 3.0  # seconds: the killed worker's item comes back quickly
UPLOAD = {"collection": "test_collection", "metadata": {"title": "archiver distributed e2e"}}


@pytest.fixture(params=["sqlite", "redis"])
def tracker(request, tmp_path, fake_ia, monkeypatch):
    # The tracker publishes to the fake IA: endpoint from the environment, keys from it too (the fake_ia fixture).
    monkeypatch.setenv(ENDPOINT_ENV, fake_ia.url)
    if request.param == "sqlite":
        with RealTracker(f"sqlite:///{tmp_path}/store", tmp_path) as server:
            yield server
        return
    redis_server = request.getfixturevalue("redis_server")
    prefix = redis_server.unique_prefix("e2e")
    try:
        with RealTracker(f"{redis_server.url}?prefix={prefix}", tmp_path) as server:
            yield server
    finally:
        redis_server.delete_prefix(prefix)


def test_volunteers_grab_every_item_exactly_once_despite_a_killed_worker_and_a_hostile_client(
        tracker, arxiv_site, fake_ia, tmp_path):
    url = tracker.project(SLUG, PAPERS, arxiv_site.base_url, lease=LEASE, max_attempts=5, upload=UPLOAD)

    hostile_client_changes_nothing(tracker)

    victim = kill_a_worker_mid_item(tracker, arxiv_site, url, tmp_path / "a")

    workers = [start_worker(url, nick, tmp_path / nick, "--concurrency", "2", "--until-empty")
               for nick in ("worker-b", "worker-c")]
    outputs = [p.communicate(timeout=90)[0] for p in workers]
    assert [p.returncode for p in workers] == [0, 0], "\n".join(outputs)

    # every item done exactly once, none of it by the dead worker
    assert tracker.counts(SLUG) | {"bytes": 0} == {"todo": 0, "claimed": 0, "done": 4, "failed": 0, "bytes": 0}
    claimants = {name: tracker.item(SLUG, name)["claimant"] for name in PAPERS}
    assert set(claimants.values()) <= {"worker-b", "worker-c"}
    assert tracker.item(SLUG, victim)["attempts"] == 2  # A's try counts: it was lost with A
    said_done = Counter(line.split()[1].rstrip(":") for out in outputs for line in out.splitlines() if line.startswith("done "))
    assert said_done == Counter(PAPERS)
    # held until their claims ended: a sweep that is not due to cut a batch accepts the finished claims' files
    assert tracker.admin("POST", f"/projects/{SLUG}/sweep", json={}).json()["batches"] == []
    log = [json.loads(line) for line in (tracker.uploads / SLUG / "accepted.jsonl").read_text().splitlines()]
    assert Counter(name for entry in log for name in entry["items"]) == Counter(PAPERS)
    assert {entry["downloader"] for entry in log} <= {"worker-b", "worker-c"}
    assert all(entry["downloader"] == claimants[entry["items"][0]] for entry in log)

    # no WARC accepted that fails the check, the site module's completeness rules included
    accepted = sorted((tracker.uploads / SLUG / "accepted").glob("*.warc.gz"))
    assert [e["file"] for e in log] and sorted(e["file"] for e in log) == [p.name for p in accepted]
    site = get_site("arxiv", SiteOptions(base_url=arxiv_site.base_url))
    assert check_files(accepted, site=site, items=[site.parse_target(p) for p in PAPERS]).ok

    # packed into a megawarc holding each paper once, and the pack published by the tracker to the (fake)
    # Internet Archive in the same sweep
    r = tracker.admin("POST", f"/projects/{SLUG}/sweep", json={"force": True})
    assert r.status_code == 200 and len(r.json()["batches"]) == 1, r.text
    published = r.json()["published"]
    assert published["ok"] and len(published["packs"]) == 1, published
    [index] = (tracker.uploads / SLUG / "packs").glob("*.megawarc.json.gz")
    base = str(index)[:-len(".megawarc.json.gz")]
    warc, tar = Path(base + ".megawarc.warc.gz"), Path(base + ".megawarc.tar")
    entries = read_index(base)
    assert sorted(e["header_fields"]["name"] for e in entries) == [p.name for p in accepted]
    assert {e["target"]["container"] for e in entries} == {"warc"} and tar.stat().st_size == 0
    assert check_files([warc]).ok
    assert abs_v1_captures(warc) == Counter(f"{p}v1" for p in PAPERS)

    [pack] = published["packs"]
    identifier = pack["identifier"]
    assert pack["pack"] == Path(base).name and identifier.startswith(f"archiver_{SLUG}_")
    assert list(fake_ia.buckets) == [identifier]
    assert fake_ia.stored(identifier, warc.name) == warc.read_bytes()
    assert fake_ia.stored(identifier, index.name) == index.read_bytes()
    meta = fake_ia.metadata(identifier)["metadata"]
    assert meta["collection"] == "test_collection" and meta["title"] == "archiver distributed e2e"
    assert "4 arXiv papers" in meta["description"]
    again = tracker.admin("POST", f"/projects/{SLUG}/sweep", json={"force": True}).json()["published"]
    assert again["packs"] == [] and again["verified_earlier"] == 1  # published once


# ---- the hostile client --------------------------------------------------------------------------------------
def hostile_client_changes_nothing(tracker: RealTracker) -> None:
    """Wrong claimants, bad JSON, 1 MB bodies, ../ file names, a corrupt WARC and admin calls without the token
    are all refused, and the tracker looks exactly as before; then the hostile client's claim is given back."""
    claim = tracker.http.post(f"{tracker.base}/{SLUG}/request",
                              json={"downloader": "mallory", "api_version": "2"}).json()
    item, token = claim["item_name"], claim["claim_tokens"][0]
    other = next(p for p in PAPERS if p != item)
    before = snapshot(tracker)

    def post(command: str, body: object = None, **kw) -> int:
        return tracker.http.post(f"{tracker.base}/{SLUG}/{command}", json=body, **kw).status_code

    statuses = {
        "done by another nick": post("done", {"downloader": "eve", "item": item, "bytes": {"data": 1}}),
        "done with a forged token": post("done", {"downloader": "mallory", "item": item, "claim_tokens": ["0" * 32]}),
        "done of an unclaimed item": post("done", {"downloader": "mallory", "item": other}),
        "fail by another nick": post("fail", {"downloader": "eve", "item": item, "reason": "mine now"}),
        "release by another nick": post("release", {"downloader": "eve", "item": item}),
        "heartbeat by another nick": post("heartbeat", {"downloader": "eve", "item": item}),
        "upload target for another nick": post("upload", {"downloader": "eve", "item_name": item}),
        "bad JSON": post("done", data=b'{"downloader": "mallory", "item":', headers={"Content-Type": "application/json"}),
        "1 MB request": post("request", data=b'{"downloader": "' + b"m" * 1_000_000 + b'"}'),
        "1 MB done": post("done", data=b"{" + b" " * 1_000_000 + b"}"),
        "1 MB chunked": post("request", data=iter([b"x" * 65536] * 16)),
        "../ file name": raw_put(tracker, f"/{SLUG}/upload/{item}/..%2F..%2Fevil.warc.gz", token, good_warc()),
        "../ path": raw_put(tracker, f"/{SLUG}/upload/{item}/../../../evil.warc.gz", token, good_warc()),
        "upload with a forged token": raw_put(tracker, f"/{SLUG}/upload/{item}/forged.warc.gz", "0" * 32, good_warc()),
        "corrupt WARC": raw_put(tracker, f"/{SLUG}/upload/{item}/{SLUG}-corrupt.warc.gz", token, corrupt_warc()),
        "admin without a token": tracker.http.put(f"{tracker.base}/admin/projects/{SLUG}",
                                                  json={"paused": True}).status_code,
        "admin with a wrong token": tracker.http.post(f"{tracker.base}/admin/projects/{SLUG}/items",
                                                      json={"items": ["1706.03762"]},
                                                      headers={"Authorization": "Bearer wrong"}).status_code,
        "requeue without a token": tracker.http.post(f"{tracker.base}/admin/projects/{SLUG}/requeue",
                                                     json={}).status_code,
    }
    tricks = {what: statuses.pop(what) for what in ("../ file name", "../ path")}
    assert all(400 <= status < 500 for status in tricks.values()), tricks  # which refusal depends on the parse
    assert statuses == {
        "done by another nick": 409, "done with a forged token": 409, "done of an unclaimed item": 409,
        "fail by another nick": 409, "release by another nick": 409, "heartbeat by another nick": 409,
        "upload target for another nick": 409, "bad JSON": 400, "1 MB request": 413, "1 MB done": 413,
        "1 MB chunked": 413, "upload with a forged token": 403,
        "corrupt WARC": 422, "admin without a token": 401, "admin with a wrong token": 401,
        "requeue without a token": 401}
    assert snapshot(tracker) == before
    assert post("release", {"downloader": "mallory", "item": item, "claim_tokens": [token]}) == 200
    assert tracker.item(SLUG, item)["state"] == "todo"


def snapshot(tracker: RealTracker) -> dict:
    """Everything an admin can see, and every file the upload target holds."""
    return {"items": {name: tracker.item(SLUG, name) for name in PAPERS},
            "project": tracker.admin("GET", f"/projects/{SLUG}").json(),
            "stats": tracker.http.get(f"{tracker.base}/{SLUG}/stats.json").json(),
            "files": sorted(str(p.relative_to(tracker.uploads)) for p in tracker.uploads.rglob("*") if p.is_file())}


def raw_put(tracker: RealTracker, path: str, token: str, body: bytes) -> int:
    """A PUT whose path is sent exactly as written (requests would resolve ../)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(tracker.base.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request("PUT", path, body=body, headers={"Authorization": f"Bearer {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


def good_warc() -> bytes:
    return serialise([warcinfo(), *capture("https://arxiv.org/abs/2108.07258")])


def corrupt_warc() -> bytes:
    """It gunzips (megawarc would keep it), but a record's Content-Length claims 3 bytes more than it holds."""
    recs = [warcinfo(), *capture("https://arxiv.org/abs/2108.07258")]
    recs[1] = dataclasses.replace(recs[1], length_delta=3)
    return serialise(recs)


# ---- the killed worker ---------------------------------------------------------------------------------------
def kill_a_worker_mid_item(tracker: RealTracker, arxiv_site, url: str, data: Path) -> str:
    """Start worker A on a slowed-down site, SIGKILL it (and its crawl processes) once it has fetched part of an
    item, and return that item's name. Its claim is left as a crash leaves it: only the lease ends it."""
    arxiv_site.set_delay("*", 0.5)
    a = start_worker(url, "worker-a", data)
    try:
        def claimed_by_a() -> str | None:
            return next((p for p in PAPERS if tracker.item(SLUG, p).get("claimant") == "worker-a"), None)

        tracker.wait_for(lambda: claimed_by_a() is not None, why="worker A's claim")
        victim = claimed_by_a()
        tracker.wait_for(lambda: any(victim in r.path for r in arxiv_site.requests), why="worker A's first fetch")
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.communicate(timeout=10)
    arxiv_site.clear_faults()
    record = tracker.item(SLUG, victim)
    assert record["state"] == "claimed" and record["claimant"] == "worker-a"
    assert not (tracker.uploads / SLUG / "accepted").exists() or not any((tracker.uploads / SLUG / "accepted").iterdir())
    return victim


def abs_v1_captures(warc: Path) -> Counter:
    """How many times each paper's first-version abstract page was captured."""
    return Counter(r.rec_headers["WARC-Target-URI"].rsplit("/abs/", 1)[1] for r in records([warc])
                   if r.rec_type == "response" and "/abs/" in r.rec_headers["WARC-Target-URI"]
                   and r.rec_headers["WARC-Target-URI"].endswith("v1"))
