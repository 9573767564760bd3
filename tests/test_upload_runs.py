"""Uploading a run (`archiver run --upload`): packs of finished items, one item per pack, recorded in the run
state only once verified, and a run killed anywhere in between resumes without losing or duplicating a pack.

Runs talk to the fake IA on 127.0.0.1 (tests/fixtures/fake_ia.py); any other connection fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.fake_ia import ACCESS, SECRET
from grabbing import ROOT
from warc_factory import capture, warcinfo, write_warc

from archiver.errors import UsageError
from archiver.manifest import UploadSettings
from archiver.queue import ItemOutcome, WarcFile
from archiver.queue.sqlite import SqliteQueue
from archiver.upload import Credentials, CredentialsMissing, RetryPolicy
from archiver.upload.identifiers import RUN_IDENTIFIER_TEMPLATE
from archiver.upload.runs import upload_run, uploaded_packs

pytestmark = pytest.mark.usefixtures("offline")

KEYS = Credentials(ACCESS, SECRET, "tests")
FAST = RetryPolicy(first_wait=0.01, max_wait=0.05, give_up_after=10, timeout=10, verify_wait=2, verify_poll=0.01)
SETTINGS = UploadSettings(identifier=RUN_IDENTIFIER_TEMPLATE, collection="test_collection",
                          metadata={"language": "eng"})
PAPERS = {"2108.07258": 3, "1706.03762": 2}  # paper -> versions captured


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run(tmp_path) -> Path:
    """A run directory as `archiver run` leaves it: per-item WARCs with CDXJ indexes, items done in the queue,
    and the manifest beside it (no report.json yet: the run is still going)."""
    d = tmp_path / "run"
    d.mkdir()
    (tmp_path / "m.yaml").write_text("project: ml-papers\nsite: arxiv\ndescription: foundational ML papers\n"
                                     "items:\n" + "".join(f"  - {p}\n" for p in PAPERS))
    with SqliteQueue(d / "state.sqlite") as q:
        q.add(PAPERS)
        for claim in q.claim("test", n=len(PAPERS)):
            paper, versions = claim.item, PAPERS[claim.item]
            name = f"ml-papers-{paper}-20240501120000-00001.warc.gz"
            records = [warcinfo(name)]
            for v in range(1, versions + 1):
                for kind in ("abs", "pdf"):
                    records += capture(f"https://arxiv.org/{kind}/{paper}v{v}", b"<html>" + b"x" * 2000,
                                       date=f"2024-05-0{v}T12:00:00Z")
            path = write_warc(d / name, records)
            from archiver.warc.index import write_index

            write_index(path)
            q.done(claim.token, ItemOutcome(warcs=(WarcFile(name, path.stat().st_size, sha256(path)),)))
    return d


def go(fake, run_dir: Path, **kwargs):
    kwargs.setdefault("manifest", run_dir.parent / "m.yaml")
    return upload_run(run_dir, kwargs.pop("settings", SETTINGS), "ml-papers", endpoint=fake.url, credentials=KEYS,
                      retry=kwargs.pop("retry", FAST), jobs=1, **kwargs)


def test_each_pack_goes_to_an_item_of_its_own_and_is_marked_only_once_verified(fake_ia, run):
    report = go(fake_ia, run, max_pack_size=1)  # one item per pack
    assert report.ok, report.summary()
    assert len(report.packed) == 2 and len(report.uploads) == 2
    marks = uploaded_packs(run)
    assert set(marks) == set(report.packed)
    identifiers = [identifier for identifier, verified in marks.values()]
    assert all(verified is not None for _i, verified in marks.values())
    assert len(set(identifiers)) == 2
    for identifier in identifiers:
        assert identifier.startswith("archiver_ml-papers_")
        names = {f["name"] for f in fake_ia.metadata(identifier)["files"]}
        assert {n for n in names if n.endswith((".megawarc.warc.gz", ".megawarc.json.gz"))}
        assert "m.yaml" in names and not any(n.endswith((".cdxj", ".megawarc.tar")) for n in names)
        meta = fake_ia.metadata(identifier)["metadata"]
        assert meta["mediatype"] == "web" and meta["collection"] == "test_collection" and meta["language"] == "eng"
        assert "archiver run of project ml-papers: foundational ML papers" in meta["description"]
        assert "ml-papers" in meta["subject"]
    assert "2 of 2 packs uploaded and verified" in report.summary()


def test_the_description_counts_the_packs_papers_and_versions_from_the_indexes(fake_ia, run):
    report = go(fake_ia, run)  # one pack for both papers
    [attempt] = report.uploads
    meta = fake_ia.metadata(attempt.identifier)["metadata"]
    assert "2 arXiv papers, 5 versions" in meta["description"]
    assert "Captured 2024-05-01T12:00:00Z to 2024-05-03T12:00:00Z" in meta["description"]
    assert meta["date"] == "2024-05-01"


def test_calling_it_again_sends_nothing_and_makes_no_new_item(fake_ia, run):
    first = go(fake_ia, run, max_pack_size=1)
    puts = len(fake_ia.puts())
    again = go(fake_ia, run, max_pack_size=1)
    assert again.ok and again.packed == [] and again.uploads == []
    assert sorted(again.earlier) == sorted(first.packed)
    assert len(fake_ia.puts()) == puts
    assert len(fake_ia.buckets) == 2


def test_a_pack_that_fails_verification_is_not_marked_and_is_mended_next_time(fake_ia, run):
    fake_ia.corrupt_stored("m.yaml")
    report = go(fake_ia, run)
    assert not report.ok
    [attempt] = report.uploads
    assert "m.yaml: IA holds md5" in attempt.report.problems[0]
    assert uploaded_packs(run)[attempt.pack] == (attempt.identifier, None)
    puts = len(fake_ia.puts())

    again = go(fake_ia, run)
    assert again.ok
    [resumed] = again.uploads
    assert resumed.identifier == attempt.identifier
    assert [p.path.rsplit("/", 1)[1] for p in fake_ia.puts()[puts:]] == ["m.yaml"]  # only what differs
    assert uploaded_packs(run)[attempt.pack][1] is not None


def _killed_upload(fake, run_dir: Path, crash_at: str) -> subprocess.CompletedProcess:
    """upload_run in a process of its own, SIGKILLed at a crash point (tests/faults: ARCHIVER_CRASH_AT)."""
    code = ("import sys; from archiver.upload.runs import upload_run; from archiver.manifest import UploadSettings;"
            "from archiver.upload.identifiers import RUN_IDENTIFIER_TEMPLATE;"
            "upload_run(sys.argv[1], UploadSettings(identifier=RUN_IDENTIFIER_TEMPLATE), 'ml-papers', "
            "endpoint=sys.argv[2], manifest=sys.argv[3], jobs=1)")
    env = {**os.environ, "ARCHIVER_CRASH_AT": crash_at, "IA_ACCESS_KEY": ACCESS, "IA_SECRET_KEY": SECRET}
    return subprocess.run([sys.executable, "-c", code, str(run_dir), fake.url, str(run_dir.parent / "m.yaml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, start_new_session=True)


@pytest.mark.parametrize("crash_at", ["upload-before-verify", "upload-run-before-mark"])
def test_a_kill_between_upload_and_marking_resumes_without_duplicates_or_loss(fake_ia, run, crash_at):
    killed = _killed_upload(fake_ia, run, crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [(pack, (identifier, verified))] = uploaded_packs(run).items()
    assert verified is None  # sent, not verified: not marked
    sent = [p.path for p in fake_ia.puts()]

    report = go(fake_ia, run)
    assert report.ok, report.summary()
    [resumed] = report.uploads
    assert (resumed.pack, resumed.identifier) == (pack, identifier)  # the same item, not a second one
    assert [p.path for p in fake_ia.puts()] == sent  # nothing sent twice
    assert all(f.status == "skipped" for f in resumed.report.files)
    assert uploaded_packs(run)[pack][1] is not None
    assert list(fake_ia.buckets) == [identifier]


def test_a_kill_mid_upload_sends_only_the_rest_on_resume(fake_ia, run):
    killed = _killed_upload(fake_ia, run, "upload-before-verify")
    assert killed.returncode == -signal.SIGKILL
    [(pack, (identifier, _))] = uploaded_packs(run).items()
    first_warc = next(p for p in fake_ia.puts() if p.path.endswith(".megawarc.warc.gz") and p.status == 200)
    # as if the kill had come before the index and manifest went out
    for name in [n for n in fake_ia.buckets[identifier].files if not n.endswith(".megawarc.warc.gz")]:
        fake_ia.forget(identifier, name)
    puts = len(fake_ia.puts())

    report = go(fake_ia, run)
    assert report.ok
    statuses = {f.name: f.status for f in report.uploads[0].report.files}
    assert statuses[first_warc.path.rsplit("/", 1)[1]] == "skipped"
    assert sorted(s for n, s in statuses.items() if not n.endswith(".megawarc.warc.gz")) == ["uploaded", "uploaded"]
    assert len(fake_ia.puts()) == puts + 2


def test_finished_items_wait_for_a_full_pack_until_the_run_is_over(fake_ia, run):
    waiting = go(fake_ia, run, max_pack_size=10 << 20, final=False)
    assert waiting.packed == [] and waiting.uploads == [] and waiting.held_back > 0
    assert "wait for a full pack" in waiting.summary()
    assert fake_ia.requests == []

    over = go(fake_ia, run, max_pack_size=10 << 20, final=True)
    assert over.ok and len(over.packed) == 1


def test_a_failed_pack_stops_the_rest_and_a_second_call_finishes(fake_ia, run):
    wrong = Credentials(ACCESS, "wrong", "tests")
    report = upload_run(run, SETTINGS, "ml-papers", endpoint=fake_ia.url, credentials=wrong, retry=FAST,
                        max_pack_size=1, jobs=1)
    assert not report.ok and len(report.uploads) == 1  # the second pack was not tried
    assert "HTTP 403" in report.summary() and "run the same command again" in report.summary()
    assert all(verified is None for _i, verified in uploaded_packs(run).values())
    assert go(fake_ia, run, max_pack_size=1).ok
    assert len(uploaded_packs(run)) == 2


def test_missing_keys_are_reported_before_anything_is_packed(fake_ia, run, monkeypatch):
    monkeypatch.delenv("IA_ACCESS_KEY")
    with pytest.raises(CredentialsMissing):
        upload_run(run, SETTINGS, "ml-papers", endpoint=fake_ia.url)
    assert not (run / "packs").exists()


def test_a_directory_without_run_state_is_a_usage_error(fake_ia, tmp_path):
    with pytest.raises(UsageError, match="not a run directory"):
        upload_run(tmp_path, SETTINGS, "ml-papers", endpoint=fake_ia.url, credentials=KEYS)


def test_an_identifier_template_that_makes_an_invalid_identifier_sends_nothing(fake_ia, run):
    bad = UploadSettings(identifier="{project} {timestamp}")
    with pytest.raises(UsageError, match="not a valid Internet Archive identifier"):
        go(fake_ia, run, settings=bad)
    assert fake_ia.requests == []


# ---- with a real run ------------------------------------------------------------------------------------------
def test_a_real_run_directory_uploads_and_the_cli_uploads_it_as_one_item(fake_ia, arxiv_site, tmp_path, capsys):
    from archiver.cli import main

    manifest = tmp_path / "real.yaml"
    manifest.write_text(f"project: real-run\nsite: arxiv\nitems:\n  - 2108.07258\n  - cs/0012007\noptions:\n"
                        f"  base_url: {arxiv_site.base_url}\n  delay: 0\n")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "archiver", "run", str(manifest), "-o", str(out), "-q"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr

    report = upload_run(out, SETTINGS, "real-run", endpoint=fake_ia.url, credentials=KEYS, retry=FAST, jobs=1)
    assert report.ok, report.summary()
    [attempt] = report.uploads
    description = fake_ia.metadata(attempt.identifier)["metadata"]["description"]
    assert "2 arXiv papers" in description and "archiver run of project real-run" in description

    # `archiver upload DIR`: the same packs, plus report.json, to one item the user names
    code = main(["upload", str(out), "--identifier", "real-run-everything", "--ia-endpoint", fake_ia.url, "-q"])
    assert code == 0, capsys.readouterr()
    names = {f["name"] for f in fake_ia.metadata("real-run-everything")["files"]}
    assert {"report.json", "real.yaml"} <= names
    assert {n for n in names if n.endswith(".megawarc.warc.gz")} == {
        f["name"] for f in fake_ia.metadata(attempt.identifier)["files"] if f["name"].endswith(".megawarc.warc.gz")}
    assert json.loads(fake_ia.stored("real-run-everything", "report.json"))["project"] == "real-run"
