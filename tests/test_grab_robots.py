"""The generic module obeys robots.txt (--robots obey, the default): fetched and recorded first, start URLs
always fetched, other disallowed URLs skipped and logged, Crawl-delay honoured; --robots ignore as before.

The parser (archiver/crawl/robots.py) is tested against RFC 9309 first, including where urllib.robotparser
differs; then real grabs against a loopback site (tests/fixtures/robots_site.py) check the crawl."""

from __future__ import annotations

import json
import textwrap
import urllib.robotparser

import pytest
from fixtures.robots_site import RobotsSite
from grabbing import Run, archiver, records
from warcio.archiveiterator import ArchiveIterator

from archiver.crawl.robots import (
    RobotsRules,
    dechunk,
    origin_of,
    parse_robots,
    path_of,
    product_token,
)
from archiver.warc.check import check_files

# ---- the parser ---------------------------------------------------------------------------------------------


def rules(text: str, token: str = "archiver") -> RobotsRules:
    return parse_robots(textwrap.dedent(text).encode(), token)


def allowed(r: RobotsRules, path: str) -> bool:
    return r.allowed("http://example.org" + path)


def test_the_longest_match_wins_and_allow_wins_a_tie():
    r = rules("""\
        User-agent: *
        Disallow: /a
        Allow: /a/b
        Disallow: /a/b/c
        Allow: /same
        Disallow: /same
        """)
    assert not allowed(r, "/a") and not allowed(r, "/a/x")
    assert allowed(r, "/a/b") and allowed(r, "/a/b/x")
    assert not allowed(r, "/a/b/c/d")
    assert allowed(r, "/same/thing")  # equally specific: Allow (RFC 9309 §2.2.2)
    assert allowed(r, "/other")
    assert str(r.verdict("http://example.org/a/b/c")) == "Disallow: /a/b/c"


def test_urllib_robotparser_gets_precedence_wrong_which_is_why_we_parse_ourselves():
    text = "User-agent: *\nDisallow: /a\nAllow: /a/b\n"
    stdlib = urllib.robotparser.RobotFileParser()
    stdlib.parse(text.splitlines())
    assert not stdlib.can_fetch("archiver", "http://example.org/a/b")  # first match in file order
    assert rules(text).allowed("http://example.org/a/b")  # RFC 9309: most specific match
    # ... and it matches a group whose name is a mere substring of our token
    stdlib = urllib.robotparser.RobotFileParser()
    stdlib.parse(["User-agent: a", "Disallow: /"])
    assert not stdlib.can_fetch("archiver", "http://example.org/x")
    assert rules("User-agent: a\nDisallow: /\n").allowed("http://example.org/x")


def test_our_group_beats_star_and_groups_naming_us_are_merged():
    text = """\
        User-agent: *
        Disallow: /

        User-agent: Archiver/2.0
        Disallow: /one
        Crawl-delay: 2

        User-agent: otherbot
        User-agent: ARCHIVER
        Disallow: /two
        """
    r = rules(text)
    assert r.group == "archiver" and r.crawl_delay == 2
    assert not allowed(r, "/one") and not allowed(r, "/two") and allowed(r, "/three")
    star = rules(text, "somebot")
    assert star.group == "*" and not allowed(star, "/three")
    assert rules("User-agent: otherbot\nDisallow: /\n").group == ""  # no group for us, no `*`: all allowed
    assert rules("User-agent: otherbot\nDisallow: /\n").allowed("http://example.org/x")


def test_wildcards_end_anchors_comments_and_odd_lines():
    r = rules("""\
        # a comment
        Disallow: /before-any-group
        User-agent: *   # trailing comment
        Disallow: /*.pdf$
        Disallow: /search*q=
        Disallow:
        Sitemap: https://example.org/sitemap.xml
        Allow: /public/*.pdf$
        Nonsense line
        Crawl-delay: not-a-number
        """)
    assert allowed(r, "/before-any-group")  # rules outside a group are ignored
    assert not allowed(r, "/files/paper.pdf") and allowed(r, "/files/paper.pdf?download=1")
    assert allowed(r, "/public/paper.pdf")  # longer pattern
    assert not allowed(r, "/search?q=x") and not allowed(r, "/search/more?lang=en&q=x") and allowed(r, "/search")
    assert r.crawl_delay is None
    assert allowed(r, "/robots.txt")


def test_paths_compare_with_one_percent_encoding():
    r = rules("User-agent: *\nDisallow: /caf%c3%a9\nDisallow: /%7Euser\nDisallow: /ünï\n")
    assert not allowed(r, "/caf%C3%A9/menu") and not allowed(r, "/café")
    assert not allowed(r, "/~user/page")
    assert not allowed(r, "/%C3%BCn%C3%AF")
    assert path_of("http://example.org") == "/"
    assert path_of("http://example.org/a?b=c") == "/a?b=c"


def test_tokens_origins_and_chunked_bodies():
    from archiver import DEFAULT_USER_AGENT

    assert product_token(DEFAULT_USER_AGENT) == "archiver"
    assert product_token("Mozilla/5.0 (X11)") == "mozilla"
    assert origin_of("HTTP://Example.ORG:80/a") == "http://example.org"
    assert origin_of("https://example.org:8443/a") == "https://example.org:8443"
    assert origin_of("ftp://example.org/") is None
    assert dechunk(b"4\r\nUser\r\n6;ext=1\r\n-agent\r\n0\r\n\r\n") == b"User-agent"
    assert dechunk(b"4\r\nUs") == b"Us"  # cut short: what arrived


def test_crawl_delay_raises_the_host_delay_capped_and_never_lowers_it(tmp_path):
    from archiver.crawl.crawler import CrawlConfig, Crawler, _Robots
    from archiver.crawl.worker import WorkerConfig
    from archiver.sites.base import SiteOptions

    def crawler(delay):
        worker = WorkerConfig("generic", SiteOptions(delay=delay), str(tmp_path), "t", "archiver/0")
        c = Crawler([], CrawlConfig(worker=worker))
        c.robots["http://a.example"] = _Robots("http://a.example")
        return c

    c = crawler(None)
    c._robots_decide("http://a.example", RobotsRules(crawl_delay=3600.0), "HTTP 200")
    policy = c.hosts["a.example"].policy
    assert (policy.delay, policy.connections) == (60.0, 1)
    c = crawler(5.0)
    c._robots_decide("http://a.example", RobotsRules(crawl_delay=1.0), "HTTP 200")
    assert c.hosts["a.example"].policy.delay == 5.0


# ---- grabs against a loopback site --------------------------------------------------------------------------

PAGES = {
    "/docs/index.html": '<link rel=stylesheet href="site.css"><a href="a.html">a</a>'
                        ' <a href="private/secret.html">secret</a> <a href="private/open/ok.html">open</a>'
                        ' <img src="/static/logo.png"> <img src="/static/hidden/x.png">',
    "/docs/a.html": '<a href="private/secret.html">secret again</a> <a href="b.html">b</a>',
    "/docs/b.html": "b",
    "/docs/site.css": "body { color: black }",
    "/docs/private/secret.html": "never",
    "/docs/private/open/ok.html": "allowed by a longer Allow",
    "/docs/private/start.html": '<a href="secret.html">secret</a>',
    "/static/logo.png": ("image/png", b"\x89PNG logo"),
    "/static/hidden/x.png": ("image/png", b"\x89PNG hidden"),
}

ROBOTS = """\
User-agent: *
Disallow: /docs/private/
Allow: /docs/private/open/
Disallow: /static/hidden/
"""


def grab(out_dir, *args: str) -> Run:
    """`archiver grab` as a user runs it (not quiet: the summary lists what robots.txt kept out)."""
    p = archiver("grab", "--delay", "0", "-o", str(out_dir), *args)
    return Run(p.returncode, p.stdout, p.stderr, out_dir)


def responses(run) -> dict[str, list[int]]:
    return run.responses()


def _contents(run, rec_type: str, uri: str | None = None) -> list[str]:
    out = []
    for path in run.warcs:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == rec_type and (uri is None or rec.rec_headers["WARC-Target-URI"] == uri):
                    out.append(rec.content_stream().read().decode())
    return out


def warcinfo_robots(run) -> list[str]:
    """The `robots` field of every warcinfo record."""
    return [line.split(":", 1)[1].strip() for text in _contents(run, "warcinfo") for line in text.splitlines()
            if line.startswith("robots:")]


def crawl_log(run) -> list[dict]:
    """The crawl-log lines stored in the WARCs."""
    return [json.loads(line) for text in _contents(run, "resource", "urn:x-archiver:crawl-log")
            for line in text.splitlines()]


def test_obey_records_robots_first_skips_what_it_disallows_and_fetches_start_urls(tmp_path):
    log = tmp_path / "log.jsonl"
    with RobotsSite(PAGES, ROBOTS) as site:
        run = grab(tmp_path / "out", "--recursive", "--log-json", str(log), site.url("/docs/index.html"),
                   site.url("/docs/private/start.html"))
        paths = site.paths
    assert run.code == 0, run.stdout + run.stderr
    assert paths[0] == "/robots.txt" and paths.count("/robots.txt") == 1  # before anything else, once
    got = responses(run)
    assert got[site.url("/robots.txt")] == [200]
    for p in ("/docs/index.html", "/docs/a.html", "/docs/b.html", "/docs/site.css", "/static/logo.png",
              "/docs/private/open/ok.html",  # Allow: /docs/private/open/ is longer than Disallow: /docs/private/
              "/docs/private/start.html"):  # a start URL: fetched although disallowed, as wget does
        assert site.url(p) in got, p
    for p in ("/docs/private/secret.html", "/static/hidden/x.png"):  # a link and a requisite
        assert p not in paths
    assert f"not fetched: 2 × disallowed by {site.base}/robots.txt" in run.stdout
    # the robots.txt exchange is a capture like any other: request and response records
    kinds = {(r.rec_type, r.rec_headers["WARC-Target-URI"]) for r in records(run.warcs)}
    assert ("request", site.url("/robots.txt")) in kinds and ("response", site.url("/robots.txt")) in kinds
    report = check_files(run.warcs)
    assert report.ok, [str(f) for f in report.all_findings()]
    assert warcinfo_robots(run) and all(v.startswith("obey") for v in warcinfo_robots(run))
    # skipped URLs are in the crawl logs, with the rule that skipped them
    skipped = [e for e in map(json.loads, log.read_text().splitlines()) if e.get("skipped") == "robots.txt"]
    assert {e["url"] for e in skipped} == {site.url("/docs/private/secret.html"), site.url("/static/hidden/x.png")}
    assert {e["reason"] for e in skipped} == {"User-agent: *, Disallow: /docs/private/",
                                              "User-agent: *, Disallow: /static/hidden/"}
    in_warc = [e for e in crawl_log(run) if e.get("skipped") == "robots.txt"]
    assert {e["url"] for e in in_warc} == {e["url"] for e in skipped}


def test_a_group_for_our_user_agent_beats_star(tmp_path):
    robots = "User-agent: *\nDisallow: /\n\nUser-agent: archiver\nDisallow: /docs/b.html\n"
    with RobotsSite(PAGES, robots) as site:
        run = grab(tmp_path / "ours", "--recursive", site.url("/docs/index.html"))
        assert run.code == 0, run.stdout + run.stderr
        ours = set(site.paths)
        site.hits.clear()
        other = grab(tmp_path / "other", "--recursive", "--user-agent", "otherbot/1.0 (+https://example.org)",
                     site.url("/docs/index.html"))
        theirs = set(site.paths)
    assert "/docs/a.html" in ours and "/docs/private/secret.html" in ours and "/docs/b.html" not in ours
    assert other.code == 0, other.stdout + other.stderr
    assert theirs == {"/robots.txt", "/docs/index.html"}  # `*` disallows everything but the start URL


def test_crawl_delay_spaces_the_requests(tmp_path):
    pages = {"/s/index.html": '<a href="1.html">1</a> <a href="2.html">2</a> <a href="3.html">3</a>',
             "/s/1.html": "1", "/s/2.html": "2", "/s/3.html": "3"}
    with RobotsSite(pages, "User-agent: *\nCrawl-delay: 0.6\n") as site:
        run = grab(tmp_path / "out", "--recursive", "--concurrency", "2", site.url("/s/index.html"))
        times = sorted(h.at for h in site.hits)
        paths = site.paths
    assert run.code == 0, run.stdout + run.stderr
    assert len(paths) == 5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5, gaps  # 0.6 s from the end of one request to the start of the next


def test_a_404_robots_txt_allows_everything_and_is_recorded(tmp_path):
    with RobotsSite(PAGES, None) as site:
        run = grab(tmp_path / "out", "--recursive", site.url("/docs/index.html"))
    assert run.code == 0, run.stdout + run.stderr
    got = responses(run)
    assert got[site.url("/robots.txt")] == [404]
    assert site.url("/docs/private/secret.html") in got and site.url("/static/hidden/x.png") in got
    assert check_files(run.warcs).ok


def test_a_500_robots_txt_disallows_all_but_the_start_url(tmp_path):
    # RFC 9309 §2.3.1.4 (our choice over wget's "allow"): an erroring server is not crawled further
    with RobotsSite(PAGES, "whatever", robots_status=500) as site:
        run = grab(tmp_path / "out", "--recursive", site.url("/docs/index.html"))
        paths = site.paths
    assert run.code == 0, run.stdout + run.stderr
    assert sorted(paths) == ["/docs/index.html", "/robots.txt"]
    assert responses(run)[site.url("/robots.txt")] == [500]
    assert f"{site.base}/robots.txt unreachable (HTTP 500)" in run.stdout
    assert check_files(run.warcs).ok


def test_an_unreachable_robots_txt_disallows_all_but_the_start_url(tmp_path):
    with RobotsSite(PAGES, ROBOTS, robots_stall=3) as site:
        run = grab(tmp_path / "out", "--recursive", "--timeout", "0.5", "--tries", "1",
                   site.url("/docs/index.html"))
        paths = site.paths
    assert "/docs/index.html" in paths and "/docs/a.html" not in paths and "/docs/site.css" not in paths
    assert "unreachable (no answer" in run.stdout
    assert f"done generic:{site.url('/docs/index.html')}" in run.stdout


def test_a_redirected_robots_txt_is_followed_and_both_records_kept(tmp_path):
    with RobotsSite(PAGES, ROBOTS, robots_redirect="/moved/robots.txt") as site:
        run = grab(tmp_path / "out", "--recursive", site.url("/docs/index.html"))
        paths = site.paths
    assert run.code == 0, run.stdout + run.stderr
    assert paths[:2] == ["/robots.txt", "/moved/robots.txt"]
    got = responses(run)
    assert got[site.url("/robots.txt")] == [301] and got[site.url("/moved/robots.txt")] == [200]
    assert "/docs/private/secret.html" not in paths and "/docs/a.html" in paths


def test_a_robots_txt_redirected_to_another_origin_serves_that_origin_too(tmp_path):
    # as http://a/robots.txt -> https://a/robots.txt: the start URL redirects the same way, and the second
    # origin's robots.txt is not fetched again
    with RobotsSite(PAGES, ROBOTS) as new, RobotsSite({}) as old:
        old.robots_redirect = new.url("/robots.txt")
        old.pages["/start"] = ("redirect", new.url("/docs/index.html"))
        run = grab(tmp_path / "out", "--recursive", old.url("/start"))
        new_paths = new.paths
    assert run.code == 0, run.stdout + run.stderr
    assert new_paths.count("/robots.txt") == 1 and "/docs/index.html" in new_paths
    assert "/static/hidden/x.png" not in new_paths and "/static/logo.png" in new_paths


def test_a_robots_fetch_lost_with_a_worker_is_started_again(tmp_path):
    """A crawl worker dying is not the server's doing: robots.txt is fetched again, not taken as unreachable."""
    from archiver.crawl.crawler import CrawlConfig, Crawler
    from archiver.crawl.worker import WorkerConfig
    from archiver.sites import get_site
    from archiver.sites.base import ROBOTS, SiteOptions

    item = get_site("generic").parse_target("http://a.example/index.html")
    c = Crawler([], CrawlConfig(worker=WorkerConfig("generic", SiteOptions(), str(tmp_path), "t", "archiver/0")))
    c._alive, c._outstanding = {0, 1}, [0, 0]
    c._add_item(item)
    queue = c.hosts["a.example"].queue
    assert [p.kind for p in queue] == [ROBOTS] and len(c.robots["http://a.example"].held) == 1  # the seed waits
    fetch = queue.popleft()  # handed to worker 0 ...
    c.tasks[1] = (fetch, 0)
    c.hosts["a.example"].in_flight += 1
    c._worker_died(0)  # ... which dies
    assert c.robots["http://a.example"].rules is None
    assert [p.kind for p in queue] == [ROBOTS] and len(c.robots["http://a.example"].held) == 1
    assert c.items[0].pending == 2  # the seed and the new fetch: the item is not finished


def test_ignore_fetches_everything_and_the_warcinfo_says_so(tmp_path):
    with RobotsSite(PAGES, ROBOTS) as site:
        run = grab(tmp_path / "out", "--recursive", "--robots", "ignore", site.url("/docs/index.html"))
        paths = site.paths
    assert run.code == 0, run.stdout + run.stderr
    assert "/robots.txt" not in paths
    assert "/docs/private/secret.html" in paths and "/static/hidden/x.png" in paths
    values = warcinfo_robots(run)
    assert values and all(v.startswith("ignore") for v in values)


def test_a_bad_robots_mode_is_a_usage_error(tmp_path):
    p = archiver("grab", "--robots", "maybe", "http://127.0.0.1:9/")
    assert p.returncode == 2 and "--robots" in p.stderr


def test_per_item_warcs_fetch_robots_once_into_the_first_items_warc(tmp_path):
    """A bulk run: robots.txt is fetched once per origin for the whole crawl, not once per item."""
    from archiver.crawl.crawler import CrawlConfig, Crawler
    from archiver.grab import GrabOptions, site_options, worker_config
    from archiver.sites import get_site

    done = []
    with RobotsSite(PAGES, ROBOTS) as site:
        options = GrabOptions(site="generic", out_dir=str(tmp_path), delay=0)
        opts = site_options(options, None)
        generic = get_site("generic", opts)
        items = [generic.parse_target(site.url(p)) for p in ("/docs/index.html", "/docs/a.html")]
        config = CrawlConfig(worker=worker_config("generic", opts, options, "bulk", "test"), concurrency=2,
                             per_item_warcs=True)
        outcome = Crawler(items, config, on_item_done=done.append).run()
        paths = site.paths
    assert not outcome.fatal
    assert paths.count("/robots.txt") == 1 and "/docs/private/secret.html" not in paths
    assert sorted(d.item.name for d in done) == sorted(i.name for i in items)
    with_robots = []
    for d in done:
        assert d.warcs
        report = check_files(d.warcs, site=generic, items=[d.item])
        assert report.ok, [str(f) for f in report.all_findings()]
        uris = {r.rec_headers["WARC-Target-URI"] for r in records(d.warcs) if r.rec_type == "response"}
        if site.url("/robots.txt") in uris:
            with_robots.append(d.item.name)
    assert len(with_robots) == 1


def test_the_manifest_key_is_validated(tmp_path):
    from archiver.manifest import ManifestError, load_manifest

    good = tmp_path / "good.yaml"
    good.write_text("project: p\nsite: generic\noptions:\n  robots: ignore\nitems:\n  - https://example.org/\n")
    assert load_manifest(good).options["robots"] == "ignore"
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: p\nsite: generic\noptions:\n  robots: maybe\nitems:\n  - https://example.org/\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:4: options.robots: 'maybe' is not one of obey, ignore (expected obey (robots.txt is fetched and "
        "obeyed) or ignore)"]


def test_a_bulk_run_takes_the_manifest_robots_key(tmp_path):
    pages = {"/a.html": '<img src="/private/x.png">', "/private/x.png": ("image/png", b"png")}
    for mode, fetched in (("obey", False), ("ignore", True)):
        with RobotsSite(pages, robots="User-agent: *\nDisallow: /private/\n") as site:
            manifest = tmp_path / f"{mode}.yaml"
            manifest.write_text(f"project: p\nsite: generic\noptions:\n  robots: {mode}\n  delay: 0\n"
                                f"items:\n  - {site.url('/a.html')}\n")
            p = archiver("run", str(manifest), "-o", str(tmp_path / mode), "-q")
            assert p.returncode == 0, p.stdout + p.stderr
            assert ("/private/x.png" in site.paths) is fetched, (mode, site.paths)


def test_arxiv_is_unaffected(arxiv_site, tmp_path):
    from archiver.sites import get_site

    assert not get_site("arxiv").obeys_robots_txt()
    run = grab(tmp_path / "out", "--site", "arxiv", arxiv_site.url("/abs/2108.07258"))
    assert run.code == 0, run.stdout + run.stderr
    assert all(r.path != "/robots.txt" for r in arxiv_site.requests)
