"""`archiver run`: manifest-driven bulk runs that resume, never lose an item and never do one twice."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from grabbing import ROOT, archiver, records

from archiver.warc.check import check_files

PAPERS = ["2108.07258", "cs/0012007", "0906.5132", "hep-th/9901001"]


def write_manifest(path: Path, site, items=PAPERS, delay: float = 0.0, extra: str = "") -> Path:
    lines = ["project: crash-test", "site: arxiv", "items:"] + [f"  - {i}" for i in items]
    lines += ["options:", f"  base_url: {site.base_url}", f"  delay: {delay}", "  max_attempts: 10"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def run_cmd(manifest: Path, out: Path, *args: str, env: dict | None = None, timeout: float = 120):
    return archiver("run", str(manifest), "-o", str(out), "-q", *args, timeout=timeout, env=env)


def finished_warcs(out: Path) -> list[Path]:
    return sorted(out.glob("*.warc.gz"))


def assert_each_item_done_exactly_once(out: Path, items=PAPERS):
    from archiver.queue.sqlite import SqliteQueue

    q = SqliteQueue(out / "state.sqlite")
    records_ = list(q.items())
    q.close()
    assert {r.name for r in records_ if str(r.state) == "done"} == set(items)
    recorded = {w.name for r in records_ if r.outcome for w in r.outcome.warcs}
    present = {p.name for p in finished_warcs(out)}
    assert present == recorded, "a finished WARC that no done item records (or the reverse)"
    assert not list(out.glob("*.open"))
    # each paper's abs page v1 was captured once, in one file, across everything in the directory
    abs_v1 = Counter(r.rec_headers["WARC-Target-URI"].split("/abs/", 1)[1] for r in records(finished_warcs(out))
                     if r.rec_type == "response" and r.rec_headers["WARC-Target-URI"].endswith("v1")
                     and "/abs/" in r.rec_headers["WARC-Target-URI"])
    assert abs_v1 == Counter({f"{i}v1": 1 for i in items})
    assert check_files(finished_warcs(out)).ok


def test_run_grabs_every_item_into_its_own_checked_warc_and_resumes_as_a_no_op(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out = tmp_path / "run"
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 done, 0 failed, 0 to do" in p.stdout
    names = [w.name for w in finished_warcs(out)]
    for item in ("crash-test-2108.07258-", "crash-test-cs_0012007-", "crash-test-0906.5132-",
                 "crash-test-hep-th_9901001-"):
        assert sum(n.startswith(item) for n in names) == 1, names
    assert_each_item_done_exactly_once(out)
    fetched = len(arxiv_site.requests)
    p = run_cmd(manifest, out)
    assert p.returncode == 0 and "4 done" in p.stdout and "(0 done in this run" in p.stdout
    assert len(arxiv_site.requests) == fetched  # nothing fetched again
    status = archiver("status", str(out))
    assert "4 done, 0 to do" in status.stdout


def test_limit_then_resume_completes_the_rest(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out = tmp_path / "run"
    p = run_cmd(manifest, out, "--limit", "1")
    assert p.returncode == 0 and "1 done, 0 failed, 3 to do" in p.stdout, p.stdout + p.stderr
    p = run_cmd(manifest, out, "--workers", "3")
    assert p.returncode == 0 and "4 done" in p.stdout
    assert_each_item_done_exactly_once(out)


def test_politeness_is_shared_by_all_workers(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, items=PAPERS[:3], delay=0.2)
    p = run_cmd(manifest, tmp_path / "run", "--workers", "3")
    assert p.returncode == 0, p.stdout + p.stderr
    times = sorted(r.time for r in arxiv_site.requests)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.15, "two workers hit the same host without the delay between them"


def test_a_failing_item_is_retried_up_to_its_limit_then_failed_and_retry_failed_resets_it(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, items=["2108.07258", "cs/0012007"])
    manifest.write_text(manifest.read_text().replace("max_attempts: 10", "max_attempts: 2"))
    arxiv_site.block_once("/abs/cs/0012007", times=1000)
    out = tmp_path / "run"
    p = run_cmd(manifest, out, "--backoff-base", "0.1", "--backoff-give-up", "0.5")
    assert p.returncode == 1
    assert "1 done, 1 failed" in p.stdout and "FAILED cs/0012007" in p.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["items"]["cs/0012007"]["state"] == "failed"
    assert "gave up" in report["items"]["cs/0012007"]["last_error"]
    assert not [p for p in finished_warcs(out) if "cs_0012007" in p.name]
    arxiv_site.clear_faults()
    p = run_cmd(manifest, out, "--retry-failed")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_each_item_done_exactly_once(out, ["2108.07258", "cs/0012007"])


def _spawn_run(manifest: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archiver", "run", str(manifest), "-o", str(out), "-q",
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("crash_at", ["warc-before-rename", "warc-after-rename", "run-before-done",
                                      "run-after-done", "warc-after-rename:2", "run-before-done:3"])
def test_sigkill_at_a_crash_point_loses_and_duplicates_nothing(arxiv_site, tmp_path, crash_at):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out = tmp_path / "run"
    proc = _spawn_run(manifest, out, env={"ARCHIVER_CRASH_AT": crash_at})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_each_item_done_exactly_once(out)


@pytest.mark.parametrize("after", [0.0, 0.4, 0.9, 1.6])
def test_sigkill_at_any_moment_loses_and_duplicates_nothing(arxiv_site, tmp_path, after):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, delay=0.02)
    arxiv_site.set_delay("/pdf/2108.07258v2", 0.5)  # a slow response, so some kills land mid-response
    out = tmp_path / "run"
    proc = _spawn_run(manifest, out)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_each_item_done_exactly_once(out)


def test_ctrl_c_stops_claiming_finishes_in_flight_and_resumes(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, delay=0.1)
    out = tmp_path / "run"
    proc = _spawn_run(manifest, out)
    deadline = time.monotonic() + 20
    while len(arxiv_site.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    done = [n for n, e in report["items"].items() if e["state"] == "done"]
    assert 1 <= len(done) <= 2  # the two in flight were finished, nothing more was claimed
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0
    assert_each_item_done_exactly_once(out)


def test_full_disk_stops_with_a_clear_error_and_the_run_resumes(arxiv_site, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
        out = mnt / "run"
        p = run_cmd(manifest, out)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "No space left on device" in p.stdout + p.stderr
        assert "Traceback" not in p.stderr
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        p = run_cmd(manifest, out, "--workers", "2")
        assert p.returncode == 0, p.stdout + p.stderr
        assert_each_item_done_exactly_once(out)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_bad_manifest_names_file_line_and_key(tmp_path):
    m = tmp_path / "bad.yaml"
    m.write_text("project: Bad Slug\nsite: arxiv\nitems:\n  - 2108.07258\n  - 2113.00001\noptions:\n  dealy: 3\n")
    p = archiver("run", str(m), "-o", str(tmp_path / "run"))
    assert p.returncode == 2
    assert f"{m}:1" in p.stderr and f"{m}:5" in p.stderr and f"{m}:7" in p.stderr
    assert "delay" in p.stderr  # did you mean
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("crash_at", ["pack-mid-rename", "pack-mid-rename:2", "pack-before-record"])
def test_sigkill_while_packing_leaves_every_item_in_exactly_one_pack(arxiv_site, tmp_path, crash_at):
    from archiver.queue.sqlite import SqliteQueue
    from archiver.warc.megawarc import read_index

    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out = tmp_path / "run"
    assert run_cmd(manifest, out, "--workers", "2").returncode == 0
    env = {**os.environ, "ARCHIVER_CRASH_AT": crash_at}
    proc = subprocess.run([sys.executable, "-m", "archiver", "pack", str(out), "--max-size", "1"], cwd=ROOT,
                          env=env, capture_output=True, text=True, start_new_session=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    p = archiver("pack", str(out), "--max-size", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    packs_dir = out / "packs"
    indexes = sorted(packs_dir.glob("*.megawarc.json.gz"))
    names = [e["header_fields"]["name"] for i in indexes for e in read_index(str(i)[:-len(".megawarc.json.gz")])]
    assert sorted(names) == sorted(p.name for p in finished_warcs(out))  # every WARC in exactly one pack
    assert not list(packs_dir.glob("*.open"))
    assert all(Path(str(w)[:-len(".megawarc.warc.gz")] + ".megawarc.json.gz").exists()
               for w in packs_dir.glob("*.megawarc.warc.gz"))
    q = SqliteQueue(out / "state.sqlite")
    assert {pk.name for pk in q.packs()} == {str(i.name)[:-len(".megawarc.json.gz")] for i in indexes}
    q.close()
    assert check_files(sorted(packs_dir.glob("*.megawarc.warc.gz"))).ok


def test_run_with_upload_packs_uploads_and_verifies_then_sends_nothing_again(arxiv_site, fake_ia, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, items=PAPERS[:2],
                              extra="upload:\n  collection: test_collection\n  metadata:\n    subject: [arXiv]\n")
    out = tmp_path / "run"
    p = run_cmd(manifest, out, "--upload", "--ia-endpoint", fake_ia.url)
    assert p.returncode == 0, p.stdout + p.stderr
    identifiers = list(fake_ia.buckets)
    assert len(identifiers) == 1 and identifiers[0].startswith("archiver_crash-test_")
    files = {f["name"]: f for f in fake_ia.metadata(identifiers[0])["files"]}
    assert any(n.endswith(".megawarc.warc.gz") for n in files) and "m.yaml" in files
    meta = fake_ia.metadata(identifiers[0])["metadata"]
    assert meta["mediatype"] == "web" and meta["collection"] == "test_collection"
    puts = len(fake_ia.puts())
    p = run_cmd(manifest, out, "--upload", "--ia-endpoint", fake_ia.url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(fake_ia.puts()) == puts  # nothing sent twice


def test_run_upload_without_credentials_fails_before_grabbing(arxiv_site, tmp_path, monkeypatch):
    for name in ("IA_ACCESS_KEY", "IA_SECRET_KEY", "IA_ACCESS_KEY_ID", "IA_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IA_CONFIG_FILE", str(tmp_path / "none.ini"))
    monkeypatch.setenv("HOME", str(tmp_path))
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, items=PAPERS[:1])
    p = run_cmd(manifest, tmp_path / "run", "--upload", "--ia-endpoint", "http://127.0.0.1:9")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "IA_ACCESS_KEY" in p.stderr or "ia configure" in p.stderr
    assert arxiv_site.requests == []


def test_a_crawl_worker_killed_mid_item_costs_a_retry_not_the_run(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, delay=0.05)
    arxiv_site.set_delay("/pdf/2108.07258v2", 1.0)
    out = tmp_path / "run"
    proc = _spawn_run(manifest, out)
    children: list[int] = []
    deadline = time.monotonic() + 20
    while not children and time.monotonic() < deadline:
        time.sleep(0.1)
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if len(found) >= 2 and any(r.path == "/pdf/2108.07258v2" for r in arxiv_site.requests):
            children = [int(pid) for pid in found]
    assert children, "the run's crawl workers never started"
    os.kill(children[0], signal.SIGKILL)  # one of the two crawl workers dies; the run goes on with the other
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert_each_item_done_exactly_once(out)  # the dead worker's item was grabbed again, from the start


# ---- checks beside the crawl (archiver/run_checks.py) -----------------------------------------------------------
# `archiver run` with the per-item check patched: each check is logged ("start"/"end", checker pid, item, time),
# can be slowed down, and can kill its own checker process the first N times it sees one item. Checkers are forked
# from this process, so they run the patched function.
PATCHED_CHECKS = r"""
import os, signal, sys, time
import archiver.run_checks as rc

_real = rc.check_item
LOG = os.environ["CHECK_LOG"]


def note(what, job):
    with open(LOG, "a") as f:
        f.write(f"{what} {os.getpid()} {job.name} {time.time()}\n")


def patched(job, site):
    note("start", job)
    if job.name == os.environ.get("CHECK_DIE_ITEM"):
        with open(LOG) as f:
            seen = sum(1 for line in f if line.split()[0] == "start" and line.split()[2] == job.name)
        if seen <= int(os.environ.get("CHECK_DIE_TIMES", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("CHECK_DELAY", "0")))
    result = _real(job, site)
    note("end", job)
    return result


rc.check_item = patched
from archiver.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _spawn_patched_run(manifest: Path, out: Path, log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PATCHED_CHECKS, "run", str(manifest), "-o", str(out), "-q",
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "CHECK_LOG": str(log), **env})


def _checks(log: Path) -> list[tuple[str, int, str, float]]:
    """(start|end, checker pid, item, time) for every line the patched check wrote."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        what, pid, item, t = line.split()
        out.append((what, int(pid), item, float(t)))
    return out


def _wait_for_check_start(log: Path, proc: subprocess.Popen, timeout: float = 30) -> tuple[str, int, str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        starts = [c for c in _checks(log) if c[0] == "start"]
        if starts:
            return starts[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("no check started")


def _processes_left(pgid: int, grace: float = 5.0) -> list[str]:
    """Processes still in the run's process group (its crawl workers and checkers), after a short grace."""
    deadline = time.monotonic() + grace
    while True:
        found = subprocess.run(["pgrep", "-a", "-g", str(pgid)], capture_output=True, text=True).stdout.split("\n")
        found = [line for line in found if line.strip()]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_checks_run_beside_the_crawl_and_items_held_stay_bounded(arxiv_site, tmp_path, monkeypatch):
    """While an item is checked the next one is already being fetched, in checker processes, and the run holds at
    most 2 x workers items (crawling or awaiting their check)."""
    import archiver.run_checks as rc
    from archiver.manifest import load_manifest
    from archiver.run import run_manifest

    log = tmp_path / "checks.log"
    real = rc.check_item

    def slow(job, site):
        started = time.time()
        time.sleep(0.5)
        result = real(job, site)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {job.name} {started} {time.time()}\n")
        return result

    monkeypatch.setattr(rc, "check_item", slow)  # checkers are forked: they run it
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out = tmp_path / "run"
    held: list[tuple[int, int]] = []
    report = run_manifest(load_manifest(manifest), out, workers=1,
                          progress=lambda s: held.append((s.in_flight, s.checking)))
    assert report.ok and len(report.done_now) == 4, report
    assert_each_item_done_exactly_once(out)
    checks = [(int(pid), item, float(a), float(b)) for pid, item, a, b in
              (line.split() for line in log.read_text().splitlines())]
    assert len(checks) == 4 and os.getpid() not in {pid for pid, *_ in checks}
    # with one worker, another item's pages were fetched while an item was being checked
    overlapping = [(item, r.path) for r in arxiv_site.requests for _, item, a, b in checks
                   if a < r.time < b and any(p in r.path and p != item for p in PAPERS)]
    assert overlapping, "nothing was fetched while an item was being checked"
    assert max(n for n, _ in held) <= 2, "more than 2 x workers items held at once"
    assert max(c for _, c in held) >= 1


def test_first_ctrl_c_finishes_the_checks_in_flight_and_leaves_no_process(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, delay=0.05)
    out, log = tmp_path / "run", tmp_path / "checks.log"
    proc = _spawn_patched_run(manifest, out, log, CHECK_DELAY="1.5")
    _wait_for_check_start(log, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the whole group, checkers included
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert _processes_left(proc.pid) == []
    checks = _checks(log)
    started = {item for what, _, item, _ in checks if what == "start"}
    ended = {item for what, _, item, _ in checks if what == "end"}
    report = json.loads((out / "report.json").read_text())
    done = {n for n, e in report["items"].items() if e["state"] == "done"}
    assert started and started == ended == done  # every check begun was finished and its item recorded
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_each_item_done_exactly_once(out)


def test_second_ctrl_c_kills_running_checks_at_once_and_the_run_resumes(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, delay=0.05)
    out, log = tmp_path / "run", tmp_path / "checks.log"
    proc = _spawn_patched_run(manifest, out, log, CHECK_DELAY="60")
    _, _, checking, _ = _wait_for_check_start(log, proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 20, "the second Ctrl-C waited for the check"
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert _processes_left(proc.pid) == []
    report = json.loads((out / "report.json").read_text())
    assert report["items"].get(checking, {}).get("state") != "done"
    assert not [c for c in _checks(log) if c[0] == "end"]
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_each_item_done_exactly_once(out)


def test_a_checker_killed_mid_check_costs_one_more_check_not_the_run(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out, log = tmp_path / "run", tmp_path / "checks.log"
    proc = _spawn_patched_run(manifest, out, log, CHECK_DELAY="1.0")
    _, pid, item, _ = _wait_for_check_start(log, proc)
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert _processes_left(proc.pid) == []  # the normal end leaves nothing behind either
    assert_each_item_done_exactly_once(out)
    again = [(p, i) for what, p, i, _ in _checks(log) if what == "end" and i == item]
    assert len(again) == 1 and again[0][0] != pid  # checked once more, by a new checker
    report = json.loads((out / "report.json").read_text())
    assert report["items"][item]["attempts"] == 1  # no crawl again


def test_an_item_whose_checker_keeps_dying_fails_that_attempt_and_is_grabbed_again(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site)
    out, log = tmp_path / "run", tmp_path / "checks.log"
    proc = _spawn_patched_run(manifest, out, log, CHECK_DIE_ITEM="cs/0012007", CHECK_DIE_TIMES="2")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert_each_item_done_exactly_once(out)
    report = json.loads((out / "report.json").read_text())
    assert report["items"]["cs/0012007"]["attempts"] == 2  # its second crawl was checked clean
    assert [what for what, _, i, _ in _checks(log) if i == "cs/0012007"] == ["start", "start", "start", "end"]
    assert _processes_left(proc.pid) == []


def test_sigkill_of_the_coordinator_alone_leaves_no_orphan_checker_or_worker(arxiv_site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", arxiv_site, delay=0.05)
    out, log = tmp_path / "run", tmp_path / "checks.log"
    proc = _spawn_patched_run(manifest, out, log, CHECK_DELAY="30")
    _wait_for_check_start(log, proc)
    os.kill(proc.pid, signal.SIGKILL)  # the coordinator only, as the OOM killer would
    proc.communicate(timeout=30)
    assert _processes_left(proc.pid) == []
    p = run_cmd(manifest, out, "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert_each_item_done_exactly_once(out)
