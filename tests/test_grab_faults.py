"""A dying or hostile server costs one URL, recorded honestly, never the run or a readable WARC."""

import os
import signal
import subprocess
import sys
import time

from grabbing import ROOT, archiver, grab, records


def truncations(run) -> dict[str, str | None]:
    out = {}
    for rec in records(run.warcs):
        if rec.rec_type == "response":
            out[rec.rec_headers["WARC-Target-URI"]] = rec.rec_headers.get_header("WARC-Truncated")
    return out


def test_faults_cost_one_url_each_and_the_warc_stays_sound(fault_server, tmp_path):
    urls = [fault_server.url(p) for p in (
        "/reset-mid-body", "/close-mid-body", "/slow-body", "/bad-chunking", "/redirect-loop",
        "/many-headers", "/huge-header", "/http09", "/head-only-close", "/gzip-bomb", "/no-length-close",
        "/huge?size=50000000", "/ok")]
    run = grab(tmp_path / "out", "--site", "generic", "--timeout", "1", "--tries", "2", "--max-size", "20000000",
               *urls, timeout=180)
    assert run.code == 1  # some items failed ...
    assert "Traceback" not in run.stderr
    got = run.responses()
    assert got[fault_server.url("/ok")] == [200]  # ... the good ones were captured
    assert fault_server.url("/ok2") not in got  # not recursive: links are not followed
    assert got[fault_server.url("/img.png")] == [200]  # requisites are
    cut = truncations(run)
    assert cut[fault_server.url("/reset-mid-body")] == "disconnect"
    assert cut[fault_server.url("/close-mid-body")] == "disconnect"
    assert cut[fault_server.url("/slow-body")] == "time"
    assert cut[fault_server.url("/bad-chunking")] == "unspecified"
    assert cut[fault_server.url("/huge?size=50000000")] == "length"
    assert cut[fault_server.url("/gzip-bomb")] is None
    assert fault_server.url("/http09") not in got
    assert fault_server.url("/huge-header") not in got
    # the redirect loop was followed once around, then stopped by the seen set
    assert got[fault_server.url("/redirect-loop")] == [302]
    assert got[fault_server.url("/redirect-loop2")] == [302]
    # every record, cut short or not, is sound: truncations are declared, digests cover what was received
    check = archiver("check", *map(str, run.warcs))
    assert check.returncode == 0, check.stdout
    assert "FAILED generic:" + fault_server.url("/http09") in run.stdout
    assert f"done generic:{fault_server.url('/ok')}" in run.stdout
    assert not list(run.out_dir.glob("*.open"))


def test_redirect_chains_are_cut_at_twenty_hops(fault_server, tmp_path):
    run = grab(tmp_path / "out", "--site", "generic", fault_server.url("/redirect-chain?n=30"))
    got = run.responses()
    assert 20 <= len(got) <= 22
    assert fault_server.url("/redirect-chain?n=0") not in got


def test_ctrl_c_finishes_the_record_closes_the_warc_and_exits_130(arxiv_site, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "grab", "-q", "--delay", "0.5", "-o", str(out),
                             "--site", "arxiv", arxiv_site.url("/abs/2108.07258")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while len(arxiv_site.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    warcs = sorted(out.glob("*.warc.gz"))
    assert warcs and not list(out.glob("*.open"))
    recs = list(records(warcs))
    assert recs[0].rec_type == "warcinfo" and any(r.rec_type == "response" for r in recs)
    assert "interrupted" in stdout
