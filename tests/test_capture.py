"""The recording HTTP client and the WARC writer, against real local servers."""

import hashlib
import itertools
import os
import re
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver.capture.http import HttpClient, sha1_b32
from archiver.warc.writer import WarcWriter


@pytest.fixture
def client():
    c = HttpClient(user_agent="archiver-tests", timeout=2.0, max_time=10.0)
    yield c
    c.close()


def writer_in(tmp_path: Path, **kw) -> WarcWriter:
    counter = itertools.count()
    return WarcWriter(tmp_path, "test", next_serial=lambda: next(counter), **kw)


def dechunk(raw: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = raw.index(b"\r\n", pos)
        size = int(raw[pos:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += raw[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def test_chunked_response_is_recorded_as_sent_and_digested_without_chunk_framing(client, arxiv_site):
    ex = client.fetch(arxiv_site.url("/abs/cs/0012007"))
    raw = ex.response.getvalue()
    head, body = raw[:ex.head_len], raw[ex.head_len:]
    assert b"transfer-encoding: chunked" in head.lower()
    entity = dechunk(body)
    assert ex.error is None and ex.truncated is None
    assert ex.block_digest == sha1_b32(hashlib.sha1(raw))
    assert ex.payload_digest == sha1_b32(hashlib.sha1(entity))
    assert ex.payload_length == len(entity)
    assert raw.startswith(b"HTTP/1.1 200")


def test_keep_alive_reuses_one_connection(client, arxiv_site):
    before = arxiv_site.connections_opened
    for path in ("/abs/2108.07258v1", "/abs/2108.07258v2", "/pdf/2108.07258v1"):
        assert client.fetch(arxiv_site.url(path)).status == 200
    assert arxiv_site.connections_opened - before == 1


def test_crawl_log_lines_written_before_the_first_file_opens_reach_it_and_do_not_repeat(client, arxiv_site,
                                                                                        tmp_path):
    w = writer_in(tmp_path, max_size=1)  # every capture rotates to a new file
    w.log({"url": "http://127.0.0.2:9/x", "error": "connection refused"})  # a failure before any capture
    w.write_exchange(client.fetch(arxiv_site.url("/abs/2108.07258")))
    w.log({"url": "second"})
    w.write_exchange(client.fetch(arxiv_site.url("/abs/1706.03762")))
    w.finish()
    logs = []
    for path in w.finished:
        with open(path, "rb") as f:
            logs += [r.content_stream().read().decode() for r in ArchiveIterator(f) if r.rec_type == "resource"]
    assert len(logs) == 2 and "connection refused" in logs[0] and "second" in logs[1]
    assert "connection refused" not in logs[1]


def test_writer_writes_request_before_response_with_one_capture_date(client, arxiv_site, tmp_path):
    w = writer_in(tmp_path)
    ex = client.fetch(arxiv_site.url("/pdf/2108.07258v2"))
    w.write_exchange(ex, outlinks=[("http://x/", "L", "a/@href")], via=arxiv_site.url("/abs/2108.07258"))
    w.log({"url": ex.url, "status": ex.status})
    assert w.current.name.endswith(".warc.gz")
    assert Path(str(w.current) + ".open").exists() and not w.current.exists()
    path = w.finish()
    assert path.exists() and not Path(str(path) + ".open").exists()
    assert re.fullmatch(r"test-\d{14}-00000\.warc\.gz", path.name)
    with open(path, "rb") as f:
        records = [(r.rec_type, dict(r.rec_headers.headers),
                    (r.http_headers.protocol + " " + r.http_headers.statusline).encode()
                    if r.rec_type == "request" else r.content_stream().read())
                   for r in ArchiveIterator(f)]
    types = [t for t, _, _ in records]
    assert types == ["warcinfo", "request", "response", "metadata", "resource"]
    _, req, req_body = records[1]
    _, resp, resp_body = records[2]
    assert req["WARC-Date"] == resp["WARC-Date"]
    assert req["WARC-Concurrent-To"] == resp["WARC-Record-ID"]
    assert resp["WARC-Concurrent-To"] == req["WARC-Record-ID"]
    assert resp["WARC-IP-Address"] == "127.0.0.1"
    assert resp["WARC-Target-URI"] == arxiv_site.url("/pdf/2108.07258v2")
    assert req_body == b"GET /pdf/2108.07258v2 HTTP/1.1"
    assert resp_body.startswith(b"%PDF")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", resp["WARC-Date"])
    assert b"outlink: http://x/ L a/@href" in records[3][2]
    assert records[4][1]["WARC-Target-URI"] == "urn:x-archiver:crawl-log"
    assert records[4][2] == b'{"url":"' + ex.url.encode() + b'","status":200}\n'


def test_writer_rotates_at_max_size_and_numbers_files(client, arxiv_site, tmp_path):
    w = writer_in(tmp_path, max_size=1)
    for v in (1, 2, 3):
        w.write_exchange(client.fetch(arxiv_site.url(f"/pdf/2108.07258v{v}")))
    w.finish()
    names = sorted(p.name for p in w.finished)
    assert len(names) == 3
    assert [n.rsplit("-", 1)[1] for n in names] == ["00000.warc.gz", "00001.warc.gz", "00002.warc.gz"]
    assert not list(tmp_path.glob("*.open"))


def test_incompressible_bodies_are_stored_and_text_is_deflated(tmp_path, client, fault_server):
    w = writer_in(tmp_path)
    ex = client.fetch(fault_server.url("/huge?size=2000000"))  # repeated text: compressible
    w.write_exchange(ex)
    size_text = os.path.getsize(str(w.current) + ".open")
    assert size_text < 200_000
    w.finish()


def test_connection_reset_mid_body_is_marked_truncated_disconnect(client, fault_server):
    ex = client.fetch(fault_server.url("/reset-mid-body"))
    assert ex.status == 200
    assert ex.truncated == "disconnect"
    assert "reset" in ex.error or "closed" in ex.error


def test_clean_close_mid_body_is_truncated_disconnect(client, fault_server):
    ex = client.fetch(fault_server.url("/close-mid-body"))
    assert ex.truncated == "disconnect"
    assert ex.payload_length == 10000


def test_read_timeout_mid_body_is_truncated_time(fault_server):
    c = HttpClient(user_agent="t", timeout=0.5)
    ex = c.fetch(fault_server.url("/slow-body"))
    assert ex.truncated == "time" and "timeout" in ex.error


def test_read_timeout_before_headers_records_nothing(fault_server):
    c = HttpClient(user_agent="t", timeout=0.5)
    ex = c.fetch(fault_server.url("/slow-headers"))
    assert not ex.recordable and "timeout" in ex.error


def test_trickling_server_is_cut_at_max_time(fault_server):
    c = HttpClient(user_agent="t", timeout=5, max_time=1.5)
    ex = c.fetch(fault_server.url("/trickle"))
    assert ex.truncated == "time" and "max-time" in ex.error


def test_invalid_chunking_is_truncated_unspecified(client, fault_server):
    ex = client.fetch(fault_server.url("/bad-chunking"))
    assert ex.truncated == "unspecified" and "chunk" in ex.error
    ex = client.fetch(fault_server.url("/chunked-no-terminator"))
    assert ex.truncated == "disconnect"


def test_max_size_cuts_a_huge_body_with_bounded_memory(fault_server, tmp_path):
    c = HttpClient(user_agent="t", max_size=3_000_000, spool_dir=str(tmp_path))
    ex = c.fetch(fault_server.url("/huge"))  # 5 GiB offered
    assert ex.truncated == "length" and ex.payload_length == 3_000_000
    assert not ex.response.in_memory


def test_header_floods_cost_one_url(client, fault_server):
    ex = client.fetch(fault_server.url("/huge-header"))
    assert not ex.recordable and "header" in ex.error
    ex = client.fetch(fault_server.url("/many-headers"))
    assert ex.status == 200 or "header" in (ex.error or "")
    assert client.fetch(fault_server.url("/ok")).status == 200


def test_non_http_answers_are_errors_not_records(client, fault_server):
    for path in ("/http09", "/head-only-close"):
        ex = client.fetch(fault_server.url(path))
        assert not ex.recordable, path
        assert ex.error


def test_body_ended_by_close_is_complete(client, fault_server):
    ex = client.fetch(fault_server.url("/no-length-close"))
    assert ex.status == 200 and ex.truncated is None and ex.payload_length > 0


def test_gzip_bomb_is_recorded_compressed_not_expanded(client, fault_server):
    ex = client.fetch(fault_server.url("/gzip-bomb"))
    assert ex.status == 200 and ex.truncated is None
    assert ex.payload_length < 16 * 1024 * 1024
    assert ex.header("content-encoding") == "gzip"


def test_connection_refused_is_an_error(client):
    ex = client.fetch("http://127.0.0.1:9/")
    assert not ex.recordable and "refused" in ex.error
