"""The tracker publishes its packs to the Internet Archive (archiver.tracker.publish): a project with upload
settings gets each pack into an item of its own, verified, once; a failure leaves the pack on disk and the next
sweep resumes it in the same item; a project without them sends nothing; bad settings are refused by reason.

Everything is real and on 127.0.0.1: our tracker on uvicorn (either store), workers' calls over HTTP, and the
fake Internet Archive (tests/fixtures/fake_ia.py); any other connection fails the test.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
import requests
from fixtures.tracker_server import TOKEN
from test_worker import RealTracker
from warc_factory import capture, serialise, warcinfo

from archiver.cli import main
from archiver.tracker import TOKEN_ENV
from archiver.tracker.app import SETTINGS_ENV, app_from_environment
from archiver.tracker.projects import Project
from archiver.tracker.publish import LEDGER_FILE, LOCK_FILE, Publisher
from archiver.upload import RetryPolicy
from archiver.upload.packs import UploadLedger

PAPERS = ["2108.07258", "1706.03762"]
UPLOAD = {"collection": "test_collection", "identifier": "tracker-{project}-{timestamp}-{rand8}",
          "metadata": {"subject": ["physics", "machine learning"], "language": "eng"}}
# One failure is the end of a pack's attempt (the next sweep is the retry), and no waiting in between.
FAIL_FAST = RetryPolicy(first_wait=0.01, max_wait=0.05, give_up_after=0, timeout=10, verify_wait=2,
                        verify_poll=0.01)


class PublishingTracker(RealTracker):
    """RealTracker (tests/test_worker.py), given create_app's Internet Archive options, and its sweeps and ledger."""

    def sweep(self, slug: str) -> dict:
        r = self.admin("POST", f"/projects/{slug}/sweep", json={"force": True})
        assert r.status_code == 200, r.text
        return r.json()

    def ledger(self, slug: str) -> dict[str, tuple[str, float | None]]:
        with UploadLedger(self.uploads / slug / LEDGER_FILE) as ledger:
            return ledger.all()


@pytest.fixture(params=["sqlite", "redis"])
def tracker(request, tmp_path, fake_ia):
    options = {"ia_endpoint": fake_ia.url, "ia_retry": FAIL_FAST}
    if request.param == "sqlite":
        with PublishingTracker(f"sqlite:///{tmp_path}/store", tmp_path, **options) as server:
            yield server
        return
    redis_server = request.getfixturevalue("redis_server")
    prefix = redis_server.unique_prefix("publish")
    try:
        with PublishingTracker(f"{redis_server.url}?prefix={prefix}", tmp_path, **options) as server:
            yield server
    finally:
        redis_server.delete_prefix(prefix)


def hand_in(tracker: PublishingTracker, slug: str, who: str = "alice") -> list[str]:
    """What a worker does for every item: claim it, PUT its WARC to the upload target with the claim token,
    report it done. Returns the file names."""
    files = []
    for _ in PAPERS:
        claim = tracker.http.post(f"{tracker.base}/{slug}/request",
                                  json={"downloader": who, "api_version": "2"}).json()
        item, token = claim["item_name"], claim["claim_tokens"][0]
        target = tracker.http.post(f"{tracker.base}/{slug}/upload",
                                   json={"downloader": who, "item_name": item}).json()["upload_target"]
        name = f"{slug}-{item.replace('/', '_')}-20240501120000.warc.gz"
        data = serialise([warcinfo(name), *capture(f"https://arxiv.org/abs/{item}v1", date="2024-05-01T12:00:00Z")])
        assert requests.put(target + name, data=data).status_code == 201
        done = tracker.http.post(f"{tracker.base}/{slug}/done", json={"downloader": who, "item": item,
                                                                       "claim_tokens": [token], "bytes": {"data": 1}})
        assert done.text == "OK", done.text
        files.append(name)
    return files


def packs_on_disk(tracker: PublishingTracker, slug: str) -> list[Path]:
    return sorted((tracker.uploads / slug / "packs").glob("*.megawarc.*"))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---- publishing ------------------------------------------------------------------------------------------------
def test_a_project_with_upload_settings_gets_its_pack_into_an_item_verified_once(tracker, arxiv_site, fake_ia):
    tracker.project("papers", PAPERS, arxiv_site.base_url, upload=UPLOAD)
    hand_in(tracker, "papers")

    answer = tracker.sweep("papers")
    assert len(answer["batches"]) == 1
    published = answer["published"]
    assert published["enabled"] and published["ok"] and not published["busy"], published
    [pack] = published["packs"]
    assert pack["ok"] and pack["error"] is None
    identifier = pack["identifier"]
    assert identifier.startswith("tracker-papers-")

    # the item holds the pack's WARC and index, byte for byte (IA's MD5s), and the empty .tar stays home
    local = {p.name: p for p in packs_on_disk(tracker, "papers")}
    listing = fake_ia.metadata(identifier)
    held = {f["name"]: f["md5"] for f in listing["files"] if f.get("source") == "original"}
    assert set(held) == {n for n in local if not n.endswith(".tar")}
    assert all(held[name] == md5(local[name]) for name in held)
    assert (tracker.uploads / "papers" / "packs" / f"{pack['pack']}.megawarc.tar").stat().st_size == 0
    meta = listing["metadata"]
    assert meta["collection"] == "test_collection" and meta["mediatype"] == "web" and meta["language"] == "eng"
    assert meta["subject"][:2] == ["physics", "machine learning"]
    assert "2 arXiv papers" in meta["description"]  # the items of the pack, from the upload target's log
    assert list(tracker.ledger("papers")) == [pack["pack"]]
    status = tracker.admin("GET", "/projects/papers").json()["uploads"]
    assert (status["packs"], status["packs_published"], status["held_files"], status["accepted_files"]) == (1, 1, 0, 0)
    assert tracker.ledger("papers")[pack["pack"]][0] == identifier and tracker.ledger("papers")[pack["pack"]][1]

    # a second sweep sends nothing, and does not even ask IA
    asked = len(fake_ia.requests)
    again = tracker.sweep("papers")
    assert again["batches"] == [] and again["published"]["packs"] == []
    assert again["published"]["verified_earlier"] == 1 and again["published"]["ok"]
    assert len(fake_ia.requests) == asked
    assert list(fake_ia.buckets) == [identifier]


def test_the_scheduled_sweeper_publishes_in_the_background_while_batching_goes_on(tmp_path, arxiv_site, fake_ia):
    options = {"ia_endpoint": fake_ia.url, "ia_retry": FAIL_FAST, "sweep_interval": 0.2, "chunk_age": 0}
    with PublishingTracker(f"sqlite:///{tmp_path}/store", tmp_path, **options) as tracker:
        tracker.project("papers", PAPERS, arxiv_site.base_url, upload=UPLOAD)
        tracker.project("other", ["1706.03762"], arxiv_site.base_url)  # no upload settings: packed only
        hand_in(tracker, "papers")
        tracker.wait_for(lambda: len(fake_ia.buckets) == 1 and all(v[1] for v in tracker.ledger("papers").values()),
                         why="the sweeper to pack and publish on its own")
        [identifier] = fake_ia.buckets
        assert identifier.startswith("tracker-papers-")
        assert {f["name"] for f in fake_ia.metadata(identifier)["files"] if f.get("source") == "original"} == {
            p.name for p in packs_on_disk(tracker, "papers") if not p.name.endswith(".tar")}
        assert not (tracker.uploads / "other" / "ia-uploads.sqlite").exists()


def test_a_failed_upload_keeps_the_pack_and_the_next_sweep_finishes_it_in_the_same_item(tracker, arxiv_site,
                                                                                        fake_ia):
    tracker.project("papers", PAPERS, arxiv_site.base_url, upload=UPLOAD)
    hand_in(tracker, "papers")
    fake_ia.drop_connection_mid_body_once()

    failed = tracker.sweep("papers")["published"]
    assert not failed["ok"]
    [attempt] = failed["packs"]
    assert not attempt["ok"] and "gave up" in attempt["error"]
    [(pack, (identifier, verified))] = tracker.ledger("papers").items()
    assert (pack, identifier, verified) == (attempt["pack"], attempt["identifier"], None)
    assert len(packs_on_disk(tracker, "papers")) == 3  # nothing lost

    resumed = tracker.sweep("papers")["published"]
    assert resumed["ok"]
    [done] = resumed["packs"]
    assert (done["pack"], done["identifier"]) == (pack, identifier)  # the same item, not a second one
    assert list(fake_ia.buckets) == [identifier]
    assert tracker.ledger("papers")[pack][1] is not None
    names = {f["name"] for f in fake_ia.metadata(identifier)["files"]}
    assert {p.name for p in packs_on_disk(tracker, "papers") if not p.name.endswith(".tar")} <= names


def test_a_project_without_upload_settings_keeps_its_packs_and_sends_nothing(tracker, arxiv_site, fake_ia):
    tracker.project("papers", PAPERS, arxiv_site.base_url)
    hand_in(tracker, "papers")
    answer = tracker.sweep("papers")
    assert len(answer["batches"]) == 1
    assert answer["published"] == {"enabled": False, "ok": True, "busy": False, "error": None,
                                   "verified_earlier": 0, "packs": []}
    assert len(packs_on_disk(tracker, "papers")) == 3
    assert fake_ia.requests == []
    assert not (tracker.uploads / "papers" / LEDGER_FILE).exists()

    # upload settings given later: the next sweep publishes the packs made before
    r = tracker.admin("PUT", "/projects/papers", json={"upload": UPLOAD})
    assert r.status_code == 200 and r.json()["upload"]["collection"] == "test_collection"
    later = tracker.sweep("papers")
    assert later["batches"] == [] and [p["ok"] for p in later["published"]["packs"]] == [True]

    # and null turns publishing off again
    assert tracker.admin("PUT", "/projects/papers", json={"upload": None}).json()["upload"] is None
    assert tracker.sweep("papers")["published"]["enabled"] is False


def test_missing_keys_are_reported_and_the_pack_waits_for_them(tracker, arxiv_site, fake_ia, monkeypatch):
    tracker.project("papers", PAPERS, arxiv_site.base_url, upload=UPLOAD)
    hand_in(tracker, "papers")
    monkeypatch.delenv("IA_ACCESS_KEY")
    monkeypatch.delenv("IA_SECRET_KEY")

    answer = tracker.sweep("papers")["published"]
    assert not answer["ok"] and "no Internet Archive credentials" in answer["error"]
    assert answer["packs"] == [] and fake_ia.requests == []
    assert len(packs_on_disk(tracker, "papers")) == 3

    from fixtures.fake_ia import ACCESS, SECRET

    monkeypatch.setenv("IA_ACCESS_KEY", ACCESS)  # keys set later: read at the next sweep, no restart
    monkeypatch.setenv("IA_SECRET_KEY", SECRET)
    assert tracker.sweep("papers")["published"]["ok"]
    assert len(fake_ia.buckets) == 1


# ---- several publishers ----------------------------------------------------------------------------------------
def test_a_publisher_finding_the_project_locked_sends_nothing_and_says_so(tracker, arxiv_site, fake_ia):
    tracker.project("papers", PAPERS, arxiv_site.base_url, upload=UPLOAD)
    hand_in(tracker, "papers")
    lock = tracker.uploads / "papers" / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another tracker process publishing holds it
        busy = tracker.sweep("papers")["published"]
        assert busy["busy"] and busy["packs"] == []
        assert fake_ia.requests == [] and tracker.ledger("papers") == {}
    finally:
        os.close(fd)
    assert [p["ok"] for p in tracker.sweep("papers")["published"]["packs"]] == [True]


def test_two_publishers_at_once_send_each_pack_once_to_one_item(tracker, arxiv_site, fake_ia):
    tracker.project("papers", PAPERS, arxiv_site.base_url)
    hand_in(tracker, "papers")
    tracker.sweep("papers")  # packed, not published
    settings = tracker.admin("GET", "/projects/papers").json()["project"] | {"upload": UPLOAD}
    project = Project.from_mapping("papers", {k: v for k, v in settings.items() if k != "slug"})
    # two tracker processes' publishers over the same directory
    publishers = [Publisher(tracker.uploads, lambda _slug: project, endpoint=fake_ia.url, retry=FAIL_FAST)
                  for _ in range(2)]
    start = threading.Barrier(2)
    results = [None, None]

    def publish(n: int) -> None:
        start.wait()
        results[n] = publishers[n].publish("papers")

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None and r.ok for r in results)
    assert sum(len(r.packs) for r in results) == 1  # one sent it; the other was busy or found it verified
    [identifier] = fake_ia.buckets
    assert len(fake_ia.puts()) == len(fake_ia.buckets[identifier].files) == 2
    assert [i for i, _v in tracker.ledger("papers").values()] == [identifier]


# ---- settings --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("upload", "status", "reason"), [
    ({"identifier": "{project} {timestamp}"}, 422, "upload.identifier"),
    ({"identifier": "x_{slug}"}, 422, "not a placeholder"),
    ({"identifier": "{project}-" + "x" * 80}, 422, "does not work for project"),
    ({"collection": "not a collection"}, 422, "upload.collection"),
    ({"metadata": {"Bad Key": "x"}}, 422, "is not a metadata name"),
    ({"metadata": {"identifier": "mine"}}, 422, "upload.identifier (a template)"),
    ({"metadata": {"subject": []}}, 422, "upload.metadata.subject"),
    ({"max_pack_size": "5GiB"}, 422, "--chunk-size"),
    ({"colection": "test_collection"}, 422, "unknown upload setting 'colection'"),
    ("test_collection", 400, "upload"),
    ({"metadata": {"year": 2024}}, 400, "upload.metadata.year"),
])
def test_bad_upload_settings_are_refused_with_the_reason_and_change_nothing(tracker, upload, status, reason):
    slug = "a-project-slug-long-enough-to-matter"
    r = tracker.admin("PUT", f"/projects/{slug}", json={"site": "arxiv", "upload": upload})
    assert r.status_code == status and reason in r.json()["message"], r.text
    assert tracker.admin("GET", f"/projects/{slug}").status_code == 404
    assert tracker.admin("PUT", f"/projects/{slug}", json={"site": "arxiv", "upload": UPLOAD}).status_code == 201
    r = tracker.admin("PUT", f"/projects/{slug}", json={"upload": upload})
    assert r.status_code == status and reason in r.json()["message"], r.text
    assert tracker.admin("GET", f"/projects/{slug}").json()["project"]["upload"]["collection"] == "test_collection"


def test_upload_settings_round_trip_through_the_store(tracker):
    r = tracker.admin("PUT", "/projects/papers", json={"site": "arxiv", "upload": UPLOAD})
    assert r.status_code == 201, r.text
    stored = tracker.admin("GET", "/projects/papers").json()["project"]["upload"]
    assert stored == {"collection": "test_collection", "identifier": "tracker-{project}-{timestamp}-{rand8}",
                      "metadata": {"subject": ["physics", "machine learning"], "language": "eng"},
                      "max_pack_size": None}
    default = tracker.admin("PUT", "/projects/other", json={"site": "arxiv", "upload": {}}).json()["upload"]
    assert default["identifier"] == "archiver_{project}_{timestamp}_{rand8}" and default["collection"] is None
    project = Project.from_mapping("papers", {"site": "arxiv", "upload": UPLOAD})
    assert Project.from_json(project.to_json()) == project


# ---- the command and its worker processes ----------------------------------------------------------------------
def test_serve_refuses_a_bad_ia_endpoint_before_serving(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    code = main(["tracker", "serve", "--store", f"sqlite:///{tmp_path}/store", "--ia-endpoint", "ftp://nope"])
    assert code == 2
    assert "--ia-endpoint 'ftp://nope' is not an endpoint URL" in capsys.readouterr().err


def test_worker_processes_get_the_ia_endpoint_from_the_settings_environment(tmp_path, monkeypatch, fake_ia):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"store_url": f"sqlite:///{tmp_path}/store",
                                                 "ia_endpoint": fake_ia.url}))
    app = app_from_environment()
    try:
        assert app.state.uploads.publisher.endpoint == fake_ia.url
    finally:
        app.state.tracker.close()
