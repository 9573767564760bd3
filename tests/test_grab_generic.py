"""The generic site module: a page and its requisites, recursion within host and path prefix, ignores."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from grabbing import grab

PAGES = {
    "docs/index.html": '<link rel=stylesheet href="site.css"><a href="a.html">a</a> <a href="b.html">b</a>'
                       ' <a href="../outside.html">out</a> <a href="private/secret.html">s</a>'
                       ' <img src="/img/logo.png"> <a href="a.html#again">a again</a>',
    "docs/a.html": '<a href="deep/c.html">c</a> <a href="index.html">home</a> <img src="/img/logo.png">',
    "docs/b.html": '<a href="a.html">a</a>',
    "docs/deep/c.html": '<a href="d.html">d</a>',
    "docs/deep/d.html": "the bottom",
    "docs/private/secret.html": "never",
    "docs/site.css": "body { background: url(bg.png) }",
    "docs/bg.png": "\x89PNG fake",
    "outside.html": "out of scope",
    "img/logo.png": "\x89PNG logo",
}


class _LoggingHandler(SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        self.server.paths.append(self.path)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    for path, body in PAGES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body, encoding="latin-1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_LoggingHandler, directory=str(root)))
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


def test_without_recursion_only_the_page_and_its_requisites(site, tmp_path):
    run = grab(tmp_path / "out", site.base + "/docs/index.html")
    assert run.code == 0, run.stdout + run.stderr
    # robots.txt too (here a 404), fetched before the requisites, which it could rule out (as wget -p does)
    assert set(run.responses()) == {site.base + p for p in ("/docs/index.html", "/docs/site.css", "/docs/bg.png",
                                                            "/img/logo.png", "/robots.txt")}


def test_recursion_stays_under_the_start_path_and_fetches_each_url_once(site, tmp_path):
    run = grab(tmp_path / "out", "--recursive", site.base + "/docs/index.html")
    assert run.code == 0, run.stdout + run.stderr
    got = run.responses()
    for p in ("/docs/a.html", "/docs/b.html", "/docs/deep/c.html", "/docs/deep/d.html", "/img/logo.png"):
        assert site.base + p in got
    assert site.base + "/outside.html" not in got  # not under /docs/, as wget --no-parent
    assert all(len(statuses) == 1 for statuses in got.values())
    assert site.paths.count("/img/logo.png") == 1 and site.paths.count("/docs/a.html") == 1


def test_depth_limits_link_hops_but_not_requisites(site, tmp_path):
    run = grab(tmp_path / "out", "--recursive", "--depth", "1", site.base + "/docs/index.html")
    got = run.responses()
    assert site.base + "/docs/a.html" in got and site.base + "/img/logo.png" in got
    assert site.base + "/docs/deep/c.html" not in got


def test_ignore_patterns_and_ignore_files_drop_urls(site, tmp_path):
    ignores = tmp_path / "ignores"
    ignores.write_text("# grab-site style ignore set\n/deep/\n\n")
    run = grab(tmp_path / "out", "--recursive", "--ignore", r"/private/", "--ignore-file", str(ignores),
               site.base + "/docs/index.html")
    got = run.responses()
    assert site.base + "/docs/private/secret.html" not in got
    assert not any("/deep/" in u for u in got)
    assert "/docs/private/secret.html" not in site.paths
    assert "ignored by --ignore" in run.stdout or run.code == 0


def test_bad_ignore_regex_is_a_usage_error_naming_file_and_line(tmp_path):
    ignores = tmp_path / "ignores"
    ignores.write_text("ok\n(unclosed\n")
    run = grab(tmp_path / "out", "--ignore-file", str(ignores), "http://127.0.0.1:9/")
    assert run.code == 2
    assert f"{ignores}:2" in run.stderr


def test_a_dead_start_url_fails_its_item_with_the_reason(tmp_path):
    run = grab(tmp_path / "out", "--tries", "1", "http://127.0.0.1:9/nothing-here")
    assert run.code == 1
    assert "FAILED generic:http://127.0.0.1:9/nothing-here" in run.stdout and "refused" in run.stdout
