"""Our WARCs through other people's tools: warcio, cdxj-indexer and pywb replay from the WARC alone."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from grabbing import grab, records
from warcio.archiveiterator import ArchiveIterator

PAPER = "2108.07258"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def grabbed(tmp_path_factory):
    """One grab of the paper, shared by the tests of this module (the fixture site stays up for replay)."""
    from fixtures.arxiv_site import ArxivSite

    out = tmp_path_factory.mktemp("interop")
    with ArxivSite() as site:
        run = grab(out, "--site", "arxiv", site.url(f"/abs/{PAPER}"))
        assert run.code == 0, run.stdout + run.stderr
        yield site, run


def test_warcio_reads_every_record_and_its_digests_pass_except_iso_chunked_payloads(grabbed):
    _, run = grabbed
    n = sum(1 for _ in records(run.warcs))
    assert n > 40
    p = subprocess.run([str(BIN / "warcio"), "check", "-v", *map(str, run.warcs)], capture_output=True, text=True)
    failures = [line for line in p.stdout.splitlines() if "payload digest failed" in line]
    # warcio digests chunked payloads over the chunk framing (warcio#74); we follow ISO 28500 and de-chunk,
    # so warcio flags exactly the chunked responses, and nothing else.
    chunked = 0
    for rec in records(run.warcs):
        if rec.rec_type == "response" and "chunked" in (rec.http_headers.get_header("Transfer-Encoding") or ""):
            chunked += 1
    assert len(failures) == chunked
    assert "block digest failed" not in p.stdout


def test_cdxj_written_during_the_grab_is_exactly_what_cdxj_indexer_writes(grabbed, tmp_path):
    _, run = grabbed
    for warc in run.warcs:
        ours = Path(str(warc) + ".cdxj").read_text()
        subprocess.run([str(BIN / "cdxj-indexer"), "--sort", "-o", str(tmp_path / "ref.cdxj"), str(warc)], check=True)
        assert ours == (tmp_path / "ref.cdxj").read_text()


def test_cdxj_index_points_at_every_response(grabbed):
    _, run = grabbed
    for warc in run.warcs:
        index = Path(str(warc) + ".cdxj")
        lines = index.read_text().splitlines()
        assert lines == sorted(lines)
        with open(warc, "rb") as f:
            for line in lines:
                fields = json.loads(line.split(" ", 2)[2])
                f.seek(int(fields["offset"]))
                rec = next(iter(ArchiveIterator(f)))
                assert rec.rec_headers["WARC-Target-URI"] == fields["url"]
        urls = {json.loads(line.split(" ", 2)[2])["url"] for line in lines}
        responses = {r.rec_headers["WARC-Target-URI"] for r in records([warc]) if r.rec_type == "response"}
        assert responses <= urls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wayback(grabbed, tmp_path_factory):
    """pywb serving a collection made from our WARCs alone."""
    _, run = grabbed
    root = tmp_path_factory.mktemp("pywb")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([str(BIN / "wb-manager"), "init", "coll"], cwd=root, check=True, capture_output=True, env=env)
    for warc in run.warcs:
        shutil.copy(warc, root)
        subprocess.run([str(BIN / "wb-manager"), "add", "coll", str(root / warc.name)], cwd=root, check=True,
                       capture_output=True, env=env)
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "wayback"), "-p", str(port), "-b", "127.0.0.1"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def _replay(base: str, url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(f"{base}/coll/2030id_/{url}", timeout=20) as r:
        return r.status, r.read(), r.headers.get("Content-Type", "")


def test_pywb_replays_the_abs_page_and_every_pdf_from_the_warc(grabbed, wayback):
    site, _ = grabbed
    status, body, ctype = _replay(wayback, site.url(f"/abs/{PAPER}v2"))
    assert status == 200 and "text/html" in ctype
    assert b"submission-history" in body and b"Foundation Models" in body
    for v in (1, 2, 3):
        status, body, ctype = _replay(wayback, site.url(f"/pdf/{PAPER}v{v}"))
        assert status == 200 and body.startswith(b"%PDF")
        live = urllib.request.urlopen(site.url(f"/pdf/{PAPER}v{v}")).read()
        assert body == live
