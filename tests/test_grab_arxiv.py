"""`archiver grab` of arXiv papers against the local arXiv-like site, end to end through the real CLI."""

import json
import time

from grabbing import FAST_BACKOFF, grab, records

PAPER = "2108.07258"
NEVER = ("/IgnoreMe", "/src/", "/e-print/", "/format/", "/show-email/", "/auth/", "/prevnext", "/list/",
         "/search", "/a/")


def test_grab_captures_every_version_with_pdfs_and_checks_clean(arxiv_site, tmp_path):
    log = tmp_path / "log.jsonl"
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url(f"/abs/{PAPER}"), "--log-json", str(log))
    assert run.code == 0, run.stdout + run.stderr
    got = run.responses()
    for v in (1, 2, 3):
        assert got[arxiv_site.url(f"/abs/{PAPER}v{v}")] == [200]
        assert got[arxiv_site.url(f"/pdf/{PAPER}v{v}")] == [200]
    assert got[arxiv_site.url(f"/abs/{PAPER}")] == [200]
    assert got[arxiv_site.url(f"/pdf/{PAPER}")] == [200]
    assert got[arxiv_site.url(f"/html/{PAPER}v3")] == [200]
    assert arxiv_site.url("/static/base/1.0.1/fonts/IBMPlexSans-Regular.woff2") in got  # from CSS url()
    assert any("site.webmanifest" in u for u in got)
    assert f"done arxiv:{PAPER}" in run.stdout and "check: clean" in run.stdout
    for path in arxiv_site.paths():
        assert not path.startswith(NEVER), f"fetched forbidden {path}"
    assert all(run.out_dir.glob("*.warc.gz.cdxj")) and len(list(run.out_dir.glob("*.cdxj"))) == len(run.warcs)
    assert not list(run.out_dir.glob("*.open"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["url"] for e in lines} >= set(got)
    # every version's PDF is distinct: the grab did not capture the same bytes under several names
    pdfs = [r for r in records(run.warcs) if r.rec_type == "response" and "/pdf/" in r.rec_headers["WARC-Target-URI"]]
    assert len({r.rec_headers["WARC-Payload-Digest"] for r in pdfs}) >= 3


def test_any_version_or_form_of_the_id_means_the_whole_paper(arxiv_site, tmp_path):
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url(f"/pdf/{PAPER}v2"))
    assert run.code == 0, run.stdout + run.stderr
    got = run.responses()
    assert all(arxiv_site.url(f"/pdf/{PAPER}v{v}") in got for v in (1, 2, 3))


def test_old_style_ids_and_withdrawn_versions(arxiv_site, tmp_path):
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url("/abs/cs/0012007"),
               arxiv_site.url("/abs/0906.5132"))
    assert run.code == 0, run.stdout + run.stderr
    got = run.responses()
    assert all(arxiv_site.url(f"/abs/cs/0012007v{v}") in got for v in (1, 2, 3))
    assert all(arxiv_site.url(f"/abs/0906.5132v{v}") in got for v in (1, 2, 3, 4))
    assert "done arxiv:cs/0012007" in run.stdout and "done arxiv:0906.5132" in run.stdout


def test_rate_limit_is_backed_off_and_never_recorded_as_the_capture(arxiv_site, tmp_path):
    arxiv_site.rate_limit_once(f"/abs/{PAPER}v2")
    arxiv_site.block_once(f"/pdf/{PAPER}v1")
    arxiv_site.unavailable_once(f"/pdf/{PAPER}v3")
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url(f"/abs/{PAPER}"), *FAST_BACKOFF)
    assert run.code == 0, run.stdout + run.stderr
    got = run.responses()
    assert got[arxiv_site.url(f"/abs/{PAPER}v2")] == [200]
    assert got[arxiv_site.url(f"/pdf/{PAPER}v1")] == [200]
    assert got[arxiv_site.url(f"/pdf/{PAPER}v3")] == [200]
    assert arxiv_site.count(f"/abs/{PAPER}v2") == 2
    assert "3 refusals backed off" in run.stdout


def test_retry_after_is_honoured(arxiv_site, tmp_path):
    arxiv_site.rate_limit_once(f"/abs/{PAPER}v1", retry_after=2)
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url(f"/abs/{PAPER}"), *FAST_BACKOFF)
    assert run.code == 0, run.stdout + run.stderr
    times = [r.time for r in arxiv_site.requests if r.path == f"/abs/{PAPER}v1"]
    assert len(times) == 2 and times[1] - times[0] >= 1.9


def test_a_persistent_block_gives_up_with_a_clear_message(arxiv_site, tmp_path):
    arxiv_site.block_once(f"/abs/{PAPER}", times=1000)
    started = time.monotonic()
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url(f"/abs/{PAPER}"),
               "--backoff-base", "0.2", "--backoff-give-up", "2")
    assert run.code == 1
    assert "gave up" in run.stdout and "robot-detection" in run.stdout
    assert f"FAILED arxiv:{PAPER}" in run.stdout
    assert time.monotonic() - started < 30
    assert arxiv_site.count(f"/abs/{PAPER}") < 20  # backed off, did not hammer


def test_bad_arxiv_id_is_a_usage_error_that_shows_valid_ids(tmp_path):
    run = grab(tmp_path / "out", "arxiv:2113.07258")
    assert run.code == 2
    assert "2108.07258" in run.stderr and "hep-th/9901001" in run.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_default_politeness_is_one_connection_with_a_delay(arxiv_site, tmp_path):
    from grabbing import Run, archiver

    p = archiver("grab", "-q", "-o", str(tmp_path / "out"), "--site", "arxiv", "--delay", "0.3",
                 arxiv_site.url(f"/abs/{PAPER}"))
    run = Run(p.returncode, p.stdout, p.stderr, tmp_path / "out")
    assert run.code == 0, run.stdout + run.stderr
    times = sorted(r.time for r in arxiv_site.requests)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.25
    assert arxiv_site.connections_opened == 1
