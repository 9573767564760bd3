import gzip
import zlib
from urllib.parse import urljoin

import pytest

from archiver.crawl.links import (
    clean_url,
    css_links,
    decode_body,
    html_links,
    manifest_links,
    normalise,
    parse_html,
)
from archiver.sites.base import LINK, REQUISITE

PAGE = b"""<!DOCTYPE html><html><head>
<base href="http://example.org/docs/">
<link rel="stylesheet" href="css/site.css?v=2">
<link rel="icon" href="/favicon.ico"><link rel="manifest" href="/site.webmanifest">
<link rel="canonical" href="https://example.org/docs/page">
<script src="//cdn.example.net/lib.js"></script>
<style>body { background: url('img/bg.png') } @import "print.css";</style>
<meta http-equiv="refresh" content="5; url=/next.html">
</head><body>
<a href="chapter1.html#sec2">one</a> <a href="../up.html">up</a> <a href="mailto:x@example.org">mail</a>
<a href="javascript:void(0)">js</a> <a href="#top">top</a>
<img src="img/a.png" srcset="img/a-2x.png 2x, img/a-3x.png 3x">
<div style="background-image:url(&quot;img/div.png&quot;)"></div>
<iframe src="frame.html"></iframe><video poster="poster.jpg"><source src="movie.mp4"></video>
</body></html>"""


def links_of(body: bytes, url: str = "http://example.org/docs/page"):
    return {(link.url, link.kind) for link in html_links(parse_html(body), url)}


def test_html_links_sorts_navigation_from_requisites_and_honours_base_href():
    found = links_of(PAGE)
    assert ("http://example.org/docs/css/site.css?v=2", REQUISITE) in found
    assert ("http://example.org/favicon.ico", REQUISITE) in found
    assert ("http://example.org/site.webmanifest", REQUISITE) in found
    assert ("https://example.org/docs/page", LINK) in found
    assert ("http://cdn.example.net/lib.js", REQUISITE) in found
    assert ("http://example.org/docs/img/bg.png", REQUISITE) in found
    assert ("http://example.org/docs/print.css", REQUISITE) in found
    assert ("http://example.org/next.html", LINK) in found
    assert ("http://example.org/docs/chapter1.html", LINK) in found  # fragment dropped
    assert ("http://example.org/up.html", LINK) in found
    assert ("http://example.org/docs/img/a-2x.png", REQUISITE) in found
    assert ("http://example.org/docs/img/a-3x.png", REQUISITE) in found
    assert ("http://example.org/docs/img/div.png", REQUISITE) in found
    assert ("http://example.org/docs/frame.html", REQUISITE) in found
    assert ("http://example.org/docs/poster.jpg", REQUISITE) in found
    assert ("http://example.org/docs/movie.mp4", REQUISITE) in found


def test_html_links_skip_non_http_schemes_and_bare_fragments():
    urls = {u for u, _ in links_of(PAGE)}
    assert not any(u.startswith(("mailto:", "javascript:")) for u in urls)
    assert "http://example.org/docs/page" not in urls  # "#top" is the page itself


@pytest.mark.parametrize("base", ["http://h/a/b.html", "http://h/a/", "http://h", "http://h:8/a/b?q=1",
                                  "https://h/x/y/z.html"])
@pytest.mark.parametrize("href", ["c.html", "/d", "//o.org/x", "?z=1", "../e", "./f", "http://x.org/../a",
                                  "g/h.html", "HTTP://UP/x", "a b.html", ".hidden", "q?x=/a", "x:y"])
def test_clean_url_agrees_with_urljoin(base, href):
    expected = urljoin(base, href)
    if not expected.startswith(("http://", "https://")):
        expected = None
    assert clean_url(href, base) == expected


def test_css_links_find_urls_and_imports_relative_to_the_stylesheet():
    css = b"""@import url("reset.css"); @import 'theme.css';
    @font-face { src: url(../fonts/Plex.woff2) format("woff2"), url('data:font/woff2;base64,AAAA'); }
    .x { background: url( "//static.example.net/icons/x.png" ) }"""
    urls = [link.url for link in css_links(css, "http://h/static/css/arXiv.css?v=1")]
    assert urls == ["http://h/static/css/reset.css", "http://h/static/css/theme.css",
                    "http://h/static/fonts/Plex.woff2", "http://static.example.net/icons/x.png"]


def test_manifest_links_lists_icons():
    body = b'{"icons": [{"src": "/icons/a.png"}, {"src": "b.png"}], "screenshots": [{"src": "s.png"}]}'
    urls = [link.url for link in manifest_links(body, "http://h/static/site.webmanifest")]
    assert urls == ["http://h/icons/a.png", "http://h/static/b.png", "http://h/static/s.png"]
    assert manifest_links(b"not json", "http://h/") == []


def test_decode_body_bounds_a_gzip_bomb():
    bomb = gzip.compress(bytes(64 * 1024 * 1024), 9)
    assert len(bomb) < 1024 * 1024
    out = decode_body(bomb, "gzip", limit=1024 * 1024)
    assert len(out) == 1024 * 1024


def test_decode_body_handles_zlib_and_raw_deflate_and_garbage():
    data = b"<html>hello</html>"
    assert decode_body(zlib.compress(data), "deflate") == data
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert decode_body(raw.compress(data) + raw.flush(), "deflate") == data
    assert decode_body(b"not gzip at all", "gzip") == b""
    assert decode_body(data, "br") == b""
    assert decode_body(data, None) == data


def test_parse_html_survives_empty_and_binary_bodies():
    assert parse_html(b"") is None
    assert html_links(parse_html(b"\x00\xff\xfe garbage"), "http://h/") == []


def test_normalise_lowercases_host_and_drops_default_port():
    assert normalise("HTTP://Example.ORG:80/a?b=1") == "http://example.org/a?b=1"
    assert normalise("https://h:443") == "https://h/"
    assert normalise("http://h:8080/x") == "http://h:8080/x"
