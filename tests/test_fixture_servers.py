"""The local test servers behave as the integration tests assume (checked with http.client and raw sockets)."""

from __future__ import annotations

import gzip
import http.client
import re
import socket
import struct
import threading
import time
import urllib.robotparser
import zlib
from urllib.parse import urljoin, urlsplit

import pytest
from fixtures.arxiv_site import ArxivSite, paper_urls
from fixtures.fault_server import GZIP_BOMB_EXPANDED, FaultServer

# Verbatim from /work/shared/reference/arxiv.md ("Submission history block"), for cs/0012007 v3.
REFERENCE_HISTORY = """<div class="submission-history">
  <h2>Submission history</h2> From: Yasuhiro Ajiro [<a href="/show-email/f8836ad9/cs/0012007" rel="nofollow">view email</a>]      <br/>
  <strong><a href="/abs/cs/0012007v1" rel="nofollow">[v1]</a></strong>
      Wed, 13 Dec 2000 08:48:06 UTC (349 KB)<br/>
  <strong><a href="/abs/cs/0012007v2" rel="nofollow">[v2]</a></strong>
      Thu, 4 Jan 2001 13:28:06 UTC (362 KB)<br/>
  <strong>[v3]</strong>
      Fri, 5 Jan 2001 07:38:41 UTC (25 KB)<br/>
</div>"""


def connect(server: ArxivSite | FaultServer, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(server.host, server.port, timeout=timeout)


def get(server: ArxivSite | FaultServer, path: str, **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn = connect(server)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def raw_exchange(server: ArxivSite | FaultServer, request: bytes, limit: int = 64 * 1024 * 1024,
                 timeout: float = 5.0) -> bytes:
    """Send raw request bytes and read until the server closes (or ``limit`` bytes)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = bytearray()
        while len(received) < limit:
            data = sock.recv(1024 * 1024)
            if not data:
                break
            received += data
        return bytes(received)


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def decode_chunked(body: bytes) -> tuple[bytes, list[int]]:
    data, sizes, pos = bytearray(), [], 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            assert body[pos:pos + 2] == b"\r\n", "chunked body must end with an empty trailer section"
            return bytes(data), sizes
        sizes.append(size)
        data += body[pos:pos + size]
        assert body[pos + size:pos + size + 2] == b"\r\n"
        pos += size + 2


def section(page: str, start: str, end: str = "</div>") -> str:
    begin = page.index(start)
    return page[begin:page.index(end, begin) + len(end)]


# ---------------------------------------------------------------------------------------------------------------
# ArxivSite: HTTP behaviour
# ---------------------------------------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_over_one_connection(arxiv_site: ArxivSite) -> None:
    conn = connect(arxiv_site)
    for path in ["/abs/2108.07258", "/pdf/2108.07258v2", "/abs/cs/0012007", "/robots.txt"] * 10:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()
    assert arxiv_site.connections_opened == 1
    assert {entry.connection_id for entry in arxiv_site.requests} == {1}
    assert len(arxiv_site.requests) == 40


def test_connection_close_request_closes_after_the_response(arxiv_site: ArxivSite) -> None:
    raw = raw_exchange(arxiv_site, b"GET /abs/2108.07258 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 200 OK"
    assert headers["connection"] == "close"
    assert len(body) == int(headers["content-length"])


def test_http10_client_gets_whole_bodies_without_chunking(arxiv_site: ArxivSite) -> None:
    plain = raw_exchange(arxiv_site, b"GET /abs/2108.07258 HTTP/1.0\r\n\r\n")
    _, headers, body = split_response(plain)
    assert headers["connection"] == "close" and len(body) == int(headers["content-length"])
    # cs/0012007 is chunked for HTTP/1.1; an HTTP/1.0 client gets a close-delimited body instead.
    delimited = raw_exchange(arxiv_site, b"GET /abs/cs/0012007 HTTP/1.0\r\nUser-Agent: Wget/1.21\r\n\r\n")
    _, headers, body = split_response(delimited)
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body == get(arxiv_site, "/abs/cs/0012007")[1]


def test_http10_keep_alive_is_honoured(arxiv_site: ArxivSite) -> None:
    request = b"GET /robots.txt HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    with socket.create_connection((arxiv_site.host, arxiv_site.port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            _, headers, _ = split_response(head)
            assert headers["connection"] == "keep-alive"
            remaining = int(headers["content-length"])
            while remaining:
                remaining -= len(sock.recv(remaining))
    assert arxiv_site.connections_opened == 1


def test_chunked_abs_page_uses_several_chunk_sizes_and_decodes(arxiv_site: ArxivSite) -> None:
    raw = raw_exchange(arxiv_site, b"GET /abs/cs/0012007 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _, headers, body = split_response(raw)
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    decoded, sizes = decode_chunked(body)
    assert len(set(sizes)) >= 3
    assert decoded.startswith(b"<!DOCTYPE html>") and decoded.rstrip().endswith(b"</html>")
    _, via_client = get(arxiv_site, "/abs/cs/0012007")
    assert via_client == decoded


def test_one_pdf_is_chunked_and_the_others_have_content_length(arxiv_site: ArxivSite) -> None:
    chunked, body = get(arxiv_site, "/pdf/2108.07258v2")
    assert chunked.getheader("Transfer-Encoding") == "chunked" and body.startswith(b"%PDF-1.5")
    plain, body = get(arxiv_site, "/pdf/2108.07258v1")
    assert plain.getheader("Transfer-Encoding") is None
    assert int(plain.getheader("Content-Length")) == len(body)


@pytest.mark.parametrize("path", ["/abs/2108.07258", "/static/browse/0.3.4/css/arXiv.css"])
def test_gzip_is_sent_only_when_the_client_accepts_it(arxiv_site: ArxivSite, path: str) -> None:
    identity, plain_body = get(arxiv_site, path)
    assert identity.getheader("Content-Encoding") is None
    zipped, zipped_body = get(arxiv_site, path, **{"Accept-Encoding": "gzip, deflate"})
    assert zipped.getheader("Content-Encoding") == "gzip"
    assert zipped.getheader("Vary") == "Accept-Encoding"
    assert gzip.decompress(zipped_body) == plain_body
    refused, _ = get(arxiv_site, path, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert refused.getheader("Content-Encoding") is None
    arxiv_site.gzip_enabled = False
    switched_off, _ = get(arxiv_site, path, **{"Accept-Encoding": "gzip"})
    assert switched_off.getheader("Content-Encoding") is None


def test_gzip_and_chunked_together(arxiv_site: ArxivSite) -> None:
    response, body = get(arxiv_site, "/abs/cs/0012007", **{"Accept-Encoding": "gzip"})
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Encoding") == "gzip"
    assert b'<div class="submission-history">' in gzip.decompress(body)


def test_head_requests_get_headers_only(arxiv_site: ArxivSite) -> None:
    conn = connect(arxiv_site)
    conn.request("HEAD", "/pdf/2108.07258v1")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert response.getheader("Content-Type") == "application/pdf"
    conn.request("GET", "/robots.txt")  # The connection is still usable afterwards.
    assert conn.getresponse().status == 200
    conn.close()


def test_concurrent_clients_are_all_served_and_logged(arxiv_site: ArxivSite) -> None:
    failures: list[str] = []

    def client() -> None:
        conn = connect(arxiv_site)
        for _ in range(25):
            conn.request("GET", "/abs/2108.07258v1")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(str(response.status))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert failures == []
    assert arxiv_site.count("/abs/2108.07258v1") == 200
    assert len({entry.connection_id for entry in arxiv_site.requests}) == 8
    assert arxiv_site.errors == []


def test_stop_closes_idle_keep_alive_connections() -> None:
    site = ArxivSite().start()
    sock = socket.create_connection((site.host, site.port), timeout=5)
    sock.sendall(b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    sock.recv(65536)
    started = time.monotonic()
    site.stop()
    assert sock.recv(1) == b""
    assert time.monotonic() - started < 2
    sock.close()


def test_malformed_request_gets_400(arxiv_site: ArxivSite) -> None:
    raw = raw_exchange(arxiv_site, b"NONSENSE\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")


# ---------------------------------------------------------------------------------------------------------------
# ArxivSite: pages faithful to the reference
# ---------------------------------------------------------------------------------------------------------------


def test_submission_history_is_exactly_the_reference_markup(arxiv_site: ArxivSite) -> None:
    for path in ("/abs/cs/0012007", "/abs/cs/0012007v3"):
        page = get(arxiv_site, path)[1].decode()
        assert section(page, '<div class="submission-history">') == REFERENCE_HISTORY


def test_older_version_links_the_others_and_marks_the_withdrawn_one(arxiv_site: ArxivSite) -> None:
    page = get(arxiv_site, "/abs/0906.5132v2")[1].decode()
    history = section(page, '<div class="submission-history">')
    assert "  <strong>[v2]</strong>\n      Thu, 2 Jul 2009 09:15:40 UTC (1 KB) <em>(withdrawn)</em><br/>\n" in history
    for other in (1, 3, 4):
        assert f'<strong><a href="/abs/0906.5132v{other}" rel="nofollow">[v{other}]</a></strong>' in history
    assert "(1,024 KB)<br/>" in history  # thousands separator
    full_text = section(page, '<div class="extra-services">', "</ul>")
    assert "<li>Withdrawn</li>" in full_text and "/pdf/" not in full_text
    assert "This paper has been withdrawn by" in page


def test_dateline_follows_arxiv_browse(arxiv_site: ArxivSite) -> None:
    base = arxiv_site.base_url
    latest = get(arxiv_site, "/abs/cs/0012007")[1].decode()
    assert (f'[Submitted on 13 Dec 2000 (<a href="{base}/abs/cs/0012007v1">v1</a>), '
            "last revised 5 Jan 2001 (this version, v3)]") in latest
    first = get(arxiv_site, "/abs/cs/0012007v1")[1].decode()
    assert ("[Submitted on 13 Dec 2000 (this version), <em>latest version 5 Jan 2001</em> "
            f'(<a href="{base}/abs/cs/0012007v3">v3</a>)]') in first


def test_head_has_versionless_canonical_citation_tags_and_assets(arxiv_site: ArxivSite) -> None:
    page = get(arxiv_site, "/abs/2108.07258v2")[1].decode()
    head = section(page, "<head>", "</head>")
    assert '<link rel="canonical" href="https://arxiv.org/abs/2108.07258"/>' in head
    assert f'<meta name="citation_pdf_url" content="{arxiv_site.base_url}/pdf/2108.07258"/>' in head
    assert '<meta name="citation_title" content="On the Opportunities and Risks of Foundation Models"/>' in head
    assert '<meta name="citation_arxiv_id" content="2108.07258"/>' in head
    assert '<meta name="citation_online_date" content="2021/08/18"/>' in head
    for reference in (
        'href="/static/browse/0.3.4/css/arXiv.css?v=20240822"',
        'href="/static/base/1.0.1/css/abs.css"',
        'src="/static/browse/0.3.4/js/accordion.js"',
        'href="/static/browse/0.3.4/images/icons/site.webmanifest"',
        'href="/static/browse/0.3.4/images/icons/favicon-32x32.png"',
        'href="http://127.0.0.2:9/static.arxiv.org/js/bibex-dev/bibex.css',
        'src="//127.0.0.2:9/code.jquery.com/jquery-latest.min.js"',
    ):
        assert reference in head
    assert 'src="/static/base/1.0.1/images/arxiv-logo-primary-light.svg"' in page
    # The honeypot is the first link of the body.
    body = page[page.index("<body"):]
    assert re.search(r"<a [^>]*>", body).group(0) == (
        '<a aria-hidden="true" tabindex="-1" href="/IgnoreMe" class="is-sr-only">')


def test_html_link_is_on_the_latest_abs_pages_of_2108_only(arxiv_site: ArxivSite) -> None:
    link = (f'<a href="{arxiv_site.base_url}/html/2108.07258v3" class="abs-button" '
            'id="latexml-download-link">HTML (experimental)</a>')
    assert link in get(arxiv_site, "/abs/2108.07258")[1].decode()
    assert link in get(arxiv_site, "/abs/2108.07258v3")[1].decode()
    for older in ("/abs/2108.07258v1", "/abs/2108.07258v2", "/abs/cs/0012007"):
        assert "latexml-download-link" not in get(arxiv_site, older)[1].decode()


def test_full_text_links_carry_the_id_as_requested(arxiv_site: ArxivSite) -> None:
    versionless = get(arxiv_site, "/abs/2108.07258")[1].decode()
    assert 'href="/pdf/2108.07258" aria-describedby' in versionless
    assert 'href="/src/2108.07258" class="abs-button download-eprint">TeX Source </a>' in versionless
    v1 = get(arxiv_site, "/abs/2108.07258v1")[1].decode()
    assert 'href="/pdf/2108.07258v1" aria-describedby' in v1 and 'href="/src/2108.07258v1"' in v1
    assert 'href="http://arxiv.org/licenses/nonexclusive-distrib/1.0/"' in v1
    for linked in ("/prevnext?id=2108.07258&amp;function=prev", "/list/cs.LG/recent", "/search/cs?searchtype=author",
                   "/format/2108.07258", "/bibtex/2108.07258", "/a/bommasani_r_1",
                   "/auth/show-endorsers/2108.07258", "/show-email/"):
        assert f'href="{linked}' in v1


def test_pdfs_are_distinct_per_version_with_arxiv_headers(arxiv_site: ArxivSite) -> None:
    bodies = set()
    for version in (1, 2, 3):
        response, body = get(arxiv_site, f"/pdf/2108.07258v{version}")
        assert response.status == 200 and body.startswith(b"%PDF-1.5") and body.rstrip().endswith(b"%%EOF")
        assert f"arXiv:2108.07258v{version}".encode() in body
        assert response.getheader("Content-Type") == "application/pdf"
        assert response.getheader("Content-Disposition") == f'inline; filename="2108.07258v{version}.pdf"'
        assert response.getheader("Link") == "<https://arxiv.org/pdf/2108.07258>; rel='canonical'"
        bodies.add(body)
    assert len(bodies) == 3
    latest, body = get(arxiv_site, "/pdf/cs/0012007")
    assert latest.getheader("Content-Disposition") == 'inline; filename="0012007v3.pdf"'
    assert body == get(arxiv_site, "/pdf/cs/0012007v3")[1]


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/pdf/2108.07258.pdf", "/pdf/2108.07258"),
        ("/pdf/2108.07258v2.pdf", "/pdf/2108.07258v2"),
        ("/pdf/2108.07258?download=1", "/pdf/2108.07258"),
        ("/abs/arXiv:2108.07258", "/abs/2108.07258"),
        ("/abs/2108.07258V2", "/abs/2108.07258v2"),
        ("/abs/2108.07258/", "/abs/2108.07258"),
        ("/abs/math.GT/0309136", "/abs/math/0309136"),
        ("/abs/math.GT/0309136v2", "/abs/math/0309136v2"),
        ("/e-print/cs/0012007v1", "/src/cs/0012007v1"),
        ("/prevnext?id=2108.07258&function=next&context=cs.LG", "/abs/cs/0012007?context=cs.LG"),
    ],
)
def test_redirects(arxiv_site: ArxivSite, path: str, location: str) -> None:
    response, _ = get(arxiv_site, path)
    assert (response.status, response.getheader("Location")) == (301, location)


@pytest.mark.parametrize(
    "path", ["/abs/2108.07258v99", "/abs/2108.07258v4", "/abs/9999.99999", "/pdf/0906.5132v2", "/pdf/2108.07258v4",
             "/html/2108.07258v1", "/src/0906.5132v2", "/nowhere", "/static/browse/0.3.4/css/missing.css"],
)
def test_not_found(arxiv_site: ArxivSite, path: str) -> None:
    assert get(arxiv_site, path)[0].status == 404


def test_every_paper_and_version_is_served(arxiv_site: ArxivSite) -> None:
    expected = {"2108.07258": 3, "cs/0012007": 3, "0906.5132": 4, "hep-th/9901001": 1, "math/0309136": 2}
    assert {aid: paper.latest for aid, paper in arxiv_site.papers.items()} == expected
    conn = connect(arxiv_site)
    for aid, latest in expected.items():
        for version in range(1, latest + 1):
            conn.request("GET", f"/abs/{aid}v{version}")
            response = conn.getresponse()
            page = response.read().decode()
            assert response.status == 200 and f"<strong>[v{version}]</strong>" in page
    conn.close()


def test_paper_urls_lists_what_a_complete_grab_fetches(arxiv_site: ArxivSite) -> None:
    urls = list(paper_urls(arxiv_site, "0906.5132"))
    assert arxiv_site.url("/pdf/0906.5132v2") not in urls  # withdrawn: no PDF
    assert len(urls) == 2 + 4 + 3
    assert len(list(paper_urls(arxiv_site, "2108.07258"))) == 2 + 3 + 3 + 1
    conn = connect(arxiv_site)
    for url in urls:
        conn.request("GET", urlsplit(url).path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, url
    conn.close()


def test_robots_txt_is_arxivs(arxiv_site: ArxivSite) -> None:
    response, body = get(arxiv_site, "/robots.txt")
    text = body.decode()
    assert response.getheader("Content-Type").startswith("text/plain")
    assert "Indiscriminate automated downloads from this site are not permitted" in text
    assert "Crawl-delay: 15" in text
    for rule in ("Allow: /abs", "Allow: /pdf", "Allow: /html", "Disallow: /IgnoreMe", "Disallow: /src",
                 "Disallow: /e-print", "Disallow: /format", "Disallow: /show-email", "Disallow: /prevnext"):
        assert f"{rule}\n" in text
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(text.splitlines())
    assert parser.crawl_delay("archiver-test") == 15
    assert parser.can_fetch("archiver-test", arxiv_site.url("/abs/2108.07258v1"))
    assert parser.can_fetch("archiver-test", arxiv_site.url("/pdf/2108.07258v1"))
    for forbidden in ("/IgnoreMe", "/src/2108.07258", "/format/2108.07258", "/e-print/2108.07258"):
        assert not parser.can_fetch("archiver-test", arxiv_site.url(forbidden))


def test_static_assets_referenced_by_pages_and_css_are_served(arxiv_site: ArxivSite) -> None:
    base = arxiv_site.url("/abs/2108.07258")
    page = get(arxiv_site, "/abs/2108.07258")[1].decode()
    local = {urljoin(base, ref) for ref in re.findall(r'(?:href|src)="(/static/[^"]+)"', page)}
    css = get(arxiv_site, "/static/browse/0.3.4/css/arXiv.css")[1].decode()
    css_refs = re.findall(r"url\(['\"]?([^'\")]+)['\"]?\)", css)
    assert "//127.0.0.2:9/static.arxiv.org/icons/x.png" in css_refs
    assert any(ref.startswith("../") for ref in css_refs)
    css_base = arxiv_site.url("/static/browse/0.3.4/css/arXiv.css")
    local |= {urljoin(css_base, ref) for ref in css_refs if not ref.startswith("//")}
    assert arxiv_site.url("/static/base/1.0.1/fonts/IBMPlexSans-Regular.woff2") in local
    manifest = get(arxiv_site, "/static/browse/0.3.4/images/icons/site.webmanifest")[1].decode()
    icons = re.findall(r'"src": "([^"]+\.png)"', manifest)
    assert icons
    local |= {urljoin(base, icon) for icon in icons}
    conn = connect(arxiv_site)
    for url in sorted(local):
        parts = urlsplit(url)
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        response.read()
        assert response.status == 200, url
    conn.close()


def test_latexml_html_page_and_its_resources(arxiv_site: ArxivSite) -> None:
    response, body = get(arxiv_site, "/html/2108.07258v3")
    page = body.decode()
    assert response.status == 200
    assert response.getheader("X-Robots-Tag") == "nofollow"
    assert response.getheader("Link") == "<https://arxiv.org/html/2108.07258>; rel='canonical'"
    assert '<base href="/html/2108.07258v3/"/>' in page and 'src="x1.png"' in page
    image, png = get(arxiv_site, "/html/2108.07258v3/x1.png")
    assert image.status == 200 and png.startswith(b"\x89PNG\r\n\x1a\n")
    for stylesheet in re.findall(r'<link href="(/static/[^"]+\.css)"', page):
        assert get(arxiv_site, stylesheet)[0].status == 200


def test_source_is_a_real_tarball(arxiv_site: ArxivSite) -> None:
    import io
    import tarfile

    response, body = get(arxiv_site, "/src/cs/0012007v2")
    assert response.getheader("Content-Disposition") == 'attachment; filename="arXiv-cs0012007v2.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert b"arXiv:cs/0012007v2" in tar.extractfile("main.tex").read()


@pytest.mark.parametrize(
    "path",
    ["/list/cs.LG/recent", "/list/cs.LG/new", "/search/cs?searchtype=author&query=Bommasani,R",
     "/show-email/62c31a1c/0906.5132", "/format/2108.07258", "/bibtex/2108.07258", "/a/bommasani_r_1",
     "/auth/show-endorsers/2108.07258", "/tb/2108.07258", "/IgnoreMe", "/", "/abs/2108.07258?fmt=txt",
     "/abs?id=2108.07258", "/abs/2108.07258?context=cs.AI"],
)
def test_paths_a_crawler_should_not_follow_still_answer(arxiv_site: ArxivSite, path: str) -> None:
    response, _ = get(arxiv_site, path)
    assert response.status == 200
    assert arxiv_site.count(path) == 1


# ---------------------------------------------------------------------------------------------------------------
# ArxivSite: misbehaviour switches and the log
# ---------------------------------------------------------------------------------------------------------------


def test_rate_limit_once_answers_429_once(arxiv_site: ArxivSite) -> None:
    arxiv_site.rate_limit_once("/pdf/2108.07258v1")
    limited, body = get(arxiv_site, "/pdf/2108.07258v1")
    assert (limited.status, body, limited.getheader("Retry-After")) == (429, b"Rate exceeded.", None)
    assert get(arxiv_site, "/pdf/2108.07258v1")[0].status == 200
    arxiv_site.rate_limit_once("/abs/2108.07258", retry_after=120)
    limited, _ = get(arxiv_site, "/abs/2108.07258")
    assert (limited.status, limited.getheader("Retry-After")) == (429, "120")
    assert [e.status for e in arxiv_site.requests] == [429, 200, 429]


def test_block_once_answers_the_robot_detection_page(arxiv_site: ArxivSite) -> None:
    arxiv_site.block_once("/abs/2108.07258", times=2)
    for _ in range(2):
        blocked, body = get(arxiv_site, "/abs/2108.07258", **{"User-Agent": "archiver-test/1"})
        page = body.decode()
        assert blocked.status == 403
        assert "<title>Access Denied</title>" in page
        assert "Accesses from your site have triggered our automatic robot detection system" in page
        assert "archiver-test/1" in page
    assert get(arxiv_site, "/abs/2108.07258")[0].status == 200


def test_unavailable_once_answers_503_once(arxiv_site: ArxivSite) -> None:
    arxiv_site.unavailable_once("/abs/cs/0012007", retry_after=5)
    unavailable, _ = get(arxiv_site, "/abs/cs/0012007")
    assert (unavailable.status, unavailable.getheader("Retry-After")) == (503, "5")
    assert get(arxiv_site, "/abs/cs/0012007")[0].status == 200


def test_switches_only_affect_their_path(arxiv_site: ArxivSite) -> None:
    arxiv_site.rate_limit_once("/abs/2108.07258v1")
    assert get(arxiv_site, "/abs/2108.07258v2")[0].status == 200
    assert get(arxiv_site, "/abs/2108.07258v1")[0].status == 429


def test_set_delay_slows_one_path(arxiv_site: ArxivSite) -> None:
    arxiv_site.set_delay("/abs/2108.07258", 0.3)
    started = time.monotonic()
    get(arxiv_site, "/abs/2108.07258")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    get(arxiv_site, "/robots.txt")
    assert time.monotonic() - started < 0.25
    arxiv_site.set_delay("/abs/2108.07258", 0)
    started = time.monotonic()
    get(arxiv_site, "/abs/2108.07258")
    assert time.monotonic() - started < 0.25


def test_the_log_records_every_request(arxiv_site: ArxivSite) -> None:
    before = time.time()
    get(arxiv_site, "/abs/2108.07258?context=cs.AI", **{"User-Agent": "archiver-test/1"})
    conn = connect(arxiv_site)
    conn.request("HEAD", "/pdf/2108.07258")
    conn.getresponse().read()
    conn.close()
    get(arxiv_site, "/abs/2108.07258v99")
    first, second, third = arxiv_site.requests
    assert (first.method, first.path, first.query, first.http_version) == (
        "GET", "/abs/2108.07258", "context=cs.AI", "HTTP/1.1")
    assert first.header("user-agent") == "archiver-test/1" and first.headers["User-Agent"] == "archiver-test/1"
    assert (second.method, second.path, second.status) == ("HEAD", "/pdf/2108.07258", 200)
    assert third.status == 404
    assert before <= first.time <= second.time <= third.time <= time.time()
    assert len({first.connection_id, second.connection_id, third.connection_id}) == 3
    assert arxiv_site.paths() == ["/abs/2108.07258", "/pdf/2108.07258", "/abs/2108.07258v99"]
    assert arxiv_site.count("/abs/2108.07258") == 1
    assert arxiv_site.count("/abs/2108.07258?context=cs.AI") == 1
    assert arxiv_site.count("/abs/2108.07258?context=cs") == 0
    assert arxiv_site.count("/IgnoreMe") == 0
    arxiv_site.clear_log()
    assert arxiv_site.requests == []


# ---------------------------------------------------------------------------------------------------------------
# FaultServer
# ---------------------------------------------------------------------------------------------------------------


def test_fault_server_ok_pages_keep_alive(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/ok")
    response = conn.getresponse()
    page = response.read()
    assert response.status == 200 and b'href="/ok2"' in page and b'src="/img.png"' in page
    conn.request("GET", "/img.png")
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "image/png" and response.read().startswith(b"\x89PNG")
    conn.request("GET", "/ok2")
    assert conn.getresponse().status == 200
    conn.close()


def test_reset_mid_body_resets_the_connection(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/reset-mid-body")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "100000"
    with pytest.raises(ConnectionResetError):
        response.read()
    conn.close()
    assert get(fault_server, "/ok")[0].status == 200  # The server itself is fine.


def test_close_mid_body_is_a_short_read(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/close-mid-body")
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert len(caught.value.partial) == 10000
    conn.close()


def test_slow_headers_and_slow_body_exceed_the_read_timeout() -> None:
    with FaultServer(read_timeout=0.3) as server:
        assert server.stall_seconds > server.read_timeout
        conn = connect(server, timeout=server.read_timeout)
        conn.request("GET", "/slow-headers")
        with pytest.raises(TimeoutError):
            conn.getresponse()
        conn.close()
        conn = connect(server, timeout=server.read_timeout)
        conn.request("GET", "/slow-body")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(TimeoutError):
            response.read()
        conn.close()
        started = time.monotonic()
        assert get(server, "/ok")[0].status == 200
        assert time.monotonic() - started < 0.5
    # stop() returned promptly although two handlers were stalled.


def test_trickle_sends_a_byte_every_half_second(fault_server: FaultServer) -> None:
    with socket.create_connection((fault_server.host, fault_server.port), timeout=2) as sock:
        sock.sendall(b"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        started = time.monotonic()
        while received.partition(b"\r\n\r\n")[2].count(b".") < 3:
            received += sock.recv(100)
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert 0.8 <= elapsed < 1.8


def test_bad_chunking_and_missing_terminator_are_incomplete(fault_server: FaultServer) -> None:
    for path in ("/bad-chunking", "/chunked-no-terminator"):
        conn = connect(fault_server)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()
    raw = raw_exchange(fault_server, b"GET /bad-chunking HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"\r\n1a\r\n<p>a good first chunk</p>\r\n\r\nzz-not-a-size\r\n" in raw
    raw = raw_exchange(fault_server, b"GET /chunked-no-terminator HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not raw.endswith(b"0\r\n\r\n")


def test_redirect_loop_and_chain(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/redirect-loop")
    first = conn.getresponse()
    first.read()
    conn.request("GET", "/redirect-loop2")
    second = conn.getresponse()
    second.read()
    assert (first.status, first.getheader("Location")) == (302, "/redirect-loop2")
    assert (second.status, second.getheader("Location")) == (302, "/redirect-loop")
    path, hops = "/redirect-chain?n=30", 0
    while True:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 302:
            break
        path, hops = response.getheader("Location"), hops + 1
    conn.close()
    assert (hops, response.status) == (30, 200)


def test_many_headers_sends_ten_thousand_lines(fault_server: FaultServer) -> None:
    raw = raw_exchange(fault_server, b"GET /many-headers HTTP/1.1\r\nHost: x\r\n\r\n")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert sum(1 for line in head.split(b"\r\n") if line.startswith(b"X-Header-")) == 10000
    conn = connect(fault_server)
    conn.request("GET", "/many-headers")
    with pytest.raises(http.client.HTTPException):
        conn.getresponse()
    conn.close()


def test_huge_header_is_one_mebibyte_line(fault_server: FaultServer) -> None:
    raw = raw_exchange(fault_server, b"GET /huge-header HTTP/1.1\r\nHost: x\r\n\r\n")
    longest = max(raw.split(b"\r\n"), key=len)
    assert longest.startswith(b"X-Huge: ") and len(longest) >= 1024 * 1024


def test_huge_body_declares_5_gib_and_streams(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/huge")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == str(5 * 1024**3)
    prefix = response.read(8 * 1024 * 1024)
    assert len(prefix) == 8 * 1024 * 1024
    conn.close()
    response, body = get(fault_server, "/huge?size=12345")
    assert len(body) == 12345 == int(response.getheader("Content-Length"))


def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/gzip-bomb")
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "text/html"
    assert response.getheader("Content-Encoding") == "gzip"
    wire_size = int(response.getheader("Content-Length"))
    assert wire_size < 10 * 1024 * 1024
    compressed = response.read(200_000)
    conn.close()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = 0
    head = b""
    data = compressed
    while data and inflated < 300 * 1024 * 1024:
        out = inflater.decompress(data, 16 * 1024 * 1024)
        head = head or out[:64]
        inflated += len(out)
        data = inflater.unconsumed_tail
    assert head.startswith(b'<html><body><a href="/ok">bomb</a>')
    # The first 200 kB already inflate past 100 MiB: the whole body reaches 4 GiB.
    assert inflated > 100 * 1024 * 1024
    assert wire_size * 500 < GZIP_BOMB_EXPANDED


def test_gzip_bomb_trailer_declares_four_gib() -> None:
    from fixtures.fault_server import gzip_bomb

    bomb = gzip_bomb()
    # ISIZE is the expanded length modulo 2**32, and 4 GiB is exactly 2**32.
    assert struct.unpack("<I", bomb[-4:])[0] == GZIP_BOMB_EXPANDED % 2**32
    assert bomb[:3] == b"\x1f\x8b\x08"


def test_no_length_close_body_ends_at_close(fault_server: FaultServer) -> None:
    response, body = get(fault_server, "/no-length-close")
    assert response.getheader("Content-Length") is None and response.getheader("Transfer-Encoding") is None
    assert body == b"<p>this body ends when the connection closes</p>\n"


def test_http09_garbage_status_line(fault_server: FaultServer) -> None:
    conn = connect(fault_server)
    conn.request("GET", "/http09")
    with pytest.raises(http.client.BadStatusLine):
        conn.getresponse()
    conn.close()


def test_empty_200_and_head_only_close(fault_server: FaultServer) -> None:
    response, body = get(fault_server, "/empty-200")
    assert (response.status, body, response.getheader("Content-Length")) == (200, b"", "0")
    raw = raw_exchange(fault_server, b"GET /head-only-close HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw == b"HTTP/1.1 200 OK\r\n"


def test_faults_only_hurt_their_own_connection(fault_server: FaultServer) -> None:
    trickling = socket.create_connection((fault_server.host, fault_server.port), timeout=2)
    trickling.sendall(b"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n")
    huge = socket.create_connection((fault_server.host, fault_server.port), timeout=2)
    huge.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
    huge.recv(65536)
    started = time.monotonic()
    for _ in range(20):
        assert get(fault_server, "/ok")[0].status == 200
    assert time.monotonic() - started < 1
    trickling.close()
    huge.close()
    assert fault_server.errors == []


def test_fault_server_logs_requests(fault_server: FaultServer) -> None:
    fault_server.clear_log()
    get(fault_server, "/ok", **{"User-Agent": "archiver-test/1"})
    get(fault_server, "/redirect-chain?n=3")
    get(fault_server, "/missing")
    assert fault_server.paths() == ["/ok", "/redirect-chain", "/missing"]
    ok, chain, missing = fault_server.requests
    assert ok.header("User-Agent") == "archiver-test/1" and ok.status == 200
    assert (chain.query, chain.status) == ("n=3", 302)
    assert missing.status == 404
    assert fault_server.count("/redirect-chain?n=3") == 1
