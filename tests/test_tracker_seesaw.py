"""Archive Team's own client against our tracker: the real seesaw-kit (PyPI seesaw 0.10.3, Tornado 4.5.3) runs a
pipeline request → grab → upload (curl PUT to our upload target) → done, as a volunteer's warrior would.

seesaw 0.10.3 does not import on Python 3.10+ (collections.MutableMapping, seesaw-kit issue #127), so the
pipeline script first puts the abc classes back on `collections` (reference: archiveteam-distributed.md §4).
seesaw and Tornado 4 live in a venv of their own, built once and cached outside the repository
(~/.cache/archiver-tests/seesaw-venv, or $ARCHIVER_SEESAW_VENV); without a network to build it, the test is
skipped and says why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_tracker_api import Server, good_warc  # the same real server the API tests use

SEESAW = ["seesaw==0.10.3", "tornado==4.5.3"]
VENV = Path(os.environ.get("ARCHIVER_SEESAW_VENV", Path.home() / ".cache" / "archiver-tests" / "seesaw-venv"))
NICK = "seesawtester"
VERSION = "20240101.10"

PIPELINE = r'''
import collections, collections.abc
for name in ("MutableMapping", "Mapping", "MutableSet", "Sequence", "Callable"):
    if not hasattr(collections, name):  # seesaw 0.10.3 and Tornado 4 predate their removal (Python 3.10)
        setattr(collections, name, getattr(collections.abc, name))

import os, shutil, sys
from seesaw.item import ItemInterpolation, ItemValue
from seesaw.pipeline import Pipeline
from seesaw.runner import SimpleRunner
from seesaw.task import SimpleTask
from seesaw.tracker import (GetItemFromTracker, PrepareStatsForTracker, SendDoneToTracker, TrackerRequest,
                            UploadWithTracker)

TRACKER, WARC, ITEMS, NICK, VERSION = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]


class Grab(SimpleTask):
    """Stands in for wget-at: the item's WARC is one our WARC factory made."""

    def __init__(self):
        SimpleTask.__init__(self, "Grab")

    def process(self, item):
        item["warc_file"] = os.path.join(item["data_dir"], "%s.warc.gz" % item.item_id)
        shutil.copyfile(WARC, item["warc_file"])


pipeline = Pipeline(
    GetItemFromTracker(TRACKER + "/multi=2/", NICK, VERSION),  # as Archive Team's pipelines ask for batches
    Grab(),
    PrepareStatsForTracker(defaults={"downloader": NICK, "version": VERSION},
                           file_groups={"data": [ItemInterpolation("%(warc_file)s")]}),
    UploadWithTracker(TRACKER, NICK, [ItemInterpolation("%(warc_file)s")], VERSION),
    SendDoneToTracker(TRACKER, stats=ItemValue("stats")),
)
for task in pipeline.tasks:
    if isinstance(task, TrackerRequest):
        task.retry_delay = 0.2  # seesaw waits 60 s before a retry; a failing test should fail fast
SimpleRunner(pipeline, max_items=ITEMS).start()
'''


@pytest.fixture(scope="module")
def seesaw_python() -> Path:
    """The seesaw venv's python, built on first use (a lock keeps parallel test runs from building it twice)."""
    python = VENV / "bin" / "python"
    ready = VENV / ".archiver-ready"
    if ready.exists():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / (VENV.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        try:
            built = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                                    *SEESAW], capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            built = None
        if built is None or built.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            why = (built.stderr.strip().splitlines() or ["(no output)"])[-1] if built else "timed out"
            pytest.skip(f"cannot install {' '.join(SEESAW)} into {VENV} (no network?): {why}")
        ready.write_text(" ".join(SEESAW) + "\n")
    return python


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    root = tmp_path_factory.mktemp("seesaw-tracker")
    with Server(f"sqlite:///{root}/store", root) as server:
        yield server


def test_seesaw_requests_uploads_and_reports_done_against_our_tracker(seesaw_python, tracker, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("seesaw uploads over HTTP with the curl command, which is not installed")
    papers = ["2108.07258", "1706.03762", "hep-th/9901001"]
    slug = tracker.project(papers, min_version="20240101.01")
    warc = tmp_path / "grab.warc.gz"
    warc.write_bytes(good_warc())
    run = subprocess.run([str(seesaw_python), "-c", PIPELINE, f"{tracker.base}/{slug}", str(warc), "2", NICK,
                          VERSION], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Tracker confirmed item" in log, log[-3000:]

    # First pipeline item: a multi=2 batch ("2108.07258\0 1706.03762"); second: the last paper alone.
    for paper in papers:
        record = tracker.item(slug, paper)
        assert (record["state"], record["claimant"]) == ("done", NICK), record
    uploaded = sorted((tracker.uploads / slug / "held").glob("*/*.warc.gz"))  # kept once their claims are done
    assert len(uploaded) == 2 and all(p.read_bytes() == warc.read_bytes() for p in uploaded)
    assert tracker.admin("POST", f"/projects/{slug}/sweep", json={"force": True}).status_code == 200
    assert len([f for s, _batch, files in tracker.handoffs if s == slug for f in files]) == 2
    stats = tracker.http.get(f"{tracker.base}/{slug}/stats.json").json()
    assert stats["downloader_count"] == {NICK: 3}
    assert stats["domain_bytes"] == {"data": 2 * warc.stat().st_size}  # PrepareStatsForTracker's sizes
