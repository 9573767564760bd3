"""Cookies kept during a crawl (the coordinator's jar, shared by every worker), --no-cookies, --load-cookies.

The jar's rules are http.cookiejar's, corrected where they are wrong for a crawler (archiver/crawl/cookies.py
lists where); each correction is tested here next to what the standard library alone would do. Then real grabs
and a bulk run against a loopback site (tests/fixtures/cookie_site.py) check the crawl: what each request
carried, what the WARC's request records show, and that the WARCs check clean.
"""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.cookie_site import SESSION_CONTENT, CookieSite
from grabbing import ROOT, Run, archiver, grab, records
from warcio.archiveiterator import ArchiveIterator

from archiver.capture.http import HttpClient
from archiver.crawl.cookie_rules import (
    MAX_COOKIE_BYTES,
    MAX_COOKIES_PER_DOMAIN,
    CrawlPolicy,
    _Request,
    _Response,
)
from archiver.crawl.cookies import Cookies, load_cookie_file
from archiver.errors import UsageError
from archiver.warc.check import check_files


@pytest.fixture
def site():
    with CookieSite() as s:
        yield s
    assert not s.errors, "cookie_site raised while serving:\n" + "\n".join(s.errors)


def jar_with(url: str, *set_cookies: str) -> Cookies:
    jar = Cookies()
    jar.store(url, list(set_cookies))
    return jar


# ---- the jar's rules ------------------------------------------------------------------------------------------


def test_domain_cookies_reach_subdomains_but_not_lookalikes_and_host_only_ones_stay_on_their_host():
    jar = jar_with("http://www.example.com/", "host=1", "dom=2; Domain=example.com")
    assert jar.header("http://www.example.com/x") == "host=1; dom=2"
    assert jar.header("http://example.com/") == "dom=2"
    assert jar.header("http://a.b.example.com/") == "dom=2"
    assert jar.header("http://sub.www.example.com/") == "dom=2"  # host-only: not even a subdomain
    assert jar.header("http://evilexample.com/") is None
    assert jar.header("http://example.org/") is None
    # a Domain the request host is not inside is refused
    assert len(jar_with("http://www.example.com/", "x=1; Domain=example.org")) == 0
    assert len(jar_with("http://www.example.com/", "x=1; Domain=other.www.example.com")) == 0


def test_the_standard_library_alone_sends_host_only_cookies_to_subdomains():
    # why CrawlPolicy sets DomainStrictNonDomain: RFC 6265 §5.3 step 6 says host-only means that host only
    plain = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy())
    plain.extract_cookies(_Response(["host=1"]), _Request("http://example.com/"))
    request = _Request("http://sub.example.com/")
    plain.add_cookie_header(request)
    assert request.cookie == "host=1"
    assert jar_with("http://example.com/", "host=1").header("http://sub.example.com/") is None


def test_no_cookie_for_a_bare_tld_or_a_country_second_level_domain():
    for domain in ("com", ".com", "uk", "co.uk", ".co.uk", "com.au"):
        assert len(jar_with("http://www.example.co.uk/", f"x=1; Domain={domain}")) == 0, domain
    assert len(jar_with("http://www.example.co.uk/", "x=1; Domain=example.co.uk")) == 1


def test_ip_addresses_and_dotless_hosts():
    # an IP address domain-matches only itself; the standard library takes "0.0.1" as a suffix of 127.0.0.1
    plain = http.cookiejar.CookieJar()
    plain.extract_cookies(_Response(["x=1; Domain=0.0.1"]), _Request("http://127.0.0.1/"))
    assert len(plain) == 1
    assert len(jar_with("http://127.0.0.1/", "x=1; Domain=0.0.1")) == 0
    assert len(jar_with("http://127.0.0.1/", "x=1; Domain=127.0.0.2")) == 0
    jar = jar_with("http://127.0.0.1:8080/", "x=1; Domain=127.0.0.1", "h=2")
    assert jar.header("http://127.0.0.1:9999/a") == "x=1; h=2"  # cookies do not depend on the port
    assert jar.header("http://127.0.0.2/") is None
    # Domain=localhost from localhost: the standard library keeps it and never sends it back
    plain = http.cookiejar.CookieJar()
    plain.extract_cookies(_Response(["d=1; Domain=localhost"]), _Request("http://localhost/"))
    request = _Request("http://localhost/")
    plain.add_cookie_header(request)
    assert len(plain) == 1 and request.cookie is None
    assert jar_with("http://localhost/", "d=1; Domain=localhost").header("http://localhost/a") == "d=1"
    # Domain=local from a dotless host would reach every dotless host ("x.local" to http.cookiejar)
    assert len(jar_with("http://localhost/", "x=1; Domain=local")) == 0
    assert jar_with("http://localhost/", "h=1").header("http://otherhost/") is None


def test_paths_match_on_segment_boundaries_and_default_to_the_directory():
    jar = jar_with("http://example.com/a/b/page.html", "dflt=1", "root=2; Path=/", "scoped=3; Path=/scoped")
    assert jar.header("http://example.com/a/b/other") == "dflt=1; root=2"  # longest path first
    assert jar.header("http://example.com/a/b") == "dflt=1; root=2"
    assert jar.header("http://example.com/a/bc") == "root=2"
    assert jar.header("http://example.com/scoped/x") == "scoped=3; root=2"
    assert jar.header("http://example.com/scoped") == "scoped=3; root=2"
    assert jar.header("http://example.com/scopedx") == "root=2"


def test_secure_cookies_go_over_https_only_and_are_refused_from_http():
    jar = jar_with("https://example.com/", "sec=1; Secure", "plain=2")
    assert jar.header("https://example.com/") == "sec=1; plain=2"
    assert jar.header("http://example.com/") == "plain=2"
    # set over plain http, a Secure cookie is refused, as browsers do (RFC 6265bis §5.7)
    assert len(jar_with("http://example.com/", "sec=1; Secure")) == 0
    # the prefixes' rules
    assert len(jar_with("https://example.com/", "__Secure-a=1")) == 0
    assert len(jar_with("https://example.com/", "__Secure-a=1; Secure")) == 1
    assert len(jar_with("https://example.com/", "__Host-a=1; Secure; Path=/; Domain=example.com")) == 0
    assert len(jar_with("https://example.com/", "__Host-a=1; Secure; Path=/x")) == 0
    assert len(jar_with("https://example.com/", "__Host-a=1; Secure; Path=/")) == 1


def test_expires_and_max_age_with_max_age_winning_and_zero_deleting(monkeypatch):
    past = "Thu, 01 Jan 1970 00:00:00 GMT"
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert len(jar_with("http://example.com/", f"old=1; Expires={past}")) == 0
    # Max-Age wins over Expires, in either order (RFC 6265 §5.3 step 3)
    assert len(jar_with("http://example.com/", f"a=1; Expires={future}; Max-Age=0")) == 0
    assert len(jar_with("http://example.com/", f"a=1; Max-Age=0; Expires={future}")) == 0
    assert len(jar_with("http://example.com/", f"a=1; Expires={past}; Max-Age=100")) == 1
    # Max-Age=0 and a past Expires delete a kept cookie
    jar = jar_with("http://example.com/", "a=1; Path=/", "b=2; Path=/", "c=3; Path=/")
    jar.store("http://example.com/x", ["a=; Path=/; Max-Age=0", f"b=; Path=/; Expires={past}"])
    assert jar.header("http://example.com/") == "c=3"
    # a cookie that runs out is no longer sent
    jar = jar_with("http://example.com/", "short=1; Max-Age=60", "session=2")
    assert jar.header("http://example.com/") == "short=1; session=2"
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert jar.header("http://example.com/") == "session=2"


def test_limits_keep_a_hostile_site_from_growing_every_request():
    assert len(jar_with("http://example.com/", "big=" + "x" * (MAX_COOKIE_BYTES - 3))) == 1
    assert len(jar_with("http://example.com/", "big=" + "x" * (MAX_COOKIE_BYTES - 2))) == 0
    jar = jar_with("http://example.com/", *[f"c{i}=1" for i in range(MAX_COOKIES_PER_DOMAIN + 10)])
    assert len(jar) == MAX_COOKIES_PER_DOMAIN
    jar.store("http://example.com/", ["c0=changed"])  # replacing a kept cookie is always allowed
    assert "c0=changed" in jar.header("http://example.com/")


def test_the_policy_is_the_standard_library_one():
    policy = CrawlPolicy()
    assert isinstance(policy, http.cookiejar.DefaultCookiePolicy)
    assert not policy.rfc2965 and policy.netscape and policy.strict_domain


def test_a_crawl_of_sites_that_set_no_cookie_never_imports_http_cookiejar():
    # it imports urllib.request: ~1.7 MiB more in each of a crawl's processes, for nothing
    code = ("import sys, archiver.cli.grab, archiver.grab, archiver.crawl.crawler, archiver.crawl.worker\n"
            "from archiver.crawl.cookies import Cookies\n"
            "jar = Cookies()\n"
            "assert jar.header('http://example.com/') is None and len(jar) == 0\n"
            "assert 'http.cookiejar' not in sys.modules and 'urllib.request' not in sys.modules, 'imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr


# ---- cookies.txt ---------------------------------------------------------------------------------------------


def write_cookies(path: Path, *lines: str, header: bool = True) -> Path:
    text = ("# Netscape HTTP Cookie File\n" if header else "") + "\n".join(lines) + "\n"
    path.write_text(text, encoding="latin-1")
    return path


def test_a_cookies_txt_as_wget_curl_and_browsers_write_it(tmp_path):
    future = str(int(time.time()) + 86400)
    path = write_cookies(
        tmp_path / "cookies.txt",
        "# a comment",
        "",
        f".example.com\tTRUE\t/\tFALSE\t{future}\tdom\tv1",
        f"www.example.com\tFALSE\t/\tFALSE\t{future}\thost\tv2",
        "#HttpOnly_www.example.com\tFALSE\t/\tTRUE\t0\tlogin\tv3",  # curl: HttpOnly, session (expiry 0)
        "www.example.com\tFALSE\t/app\tFALSE\t\tempty-expiry\tv4",
        "www.example.com\tFALSE\t/\tFALSE\t1\texpired\tv5",
        header=False)  # wget does not insist on the header line, nor do we
    cookies = load_cookie_file(str(path))
    assert sorted(c.name for c in cookies) == ["dom", "empty-expiry", "host", "login"]
    jar = Cookies(cookies)
    header = jar.header("https://www.example.com/app/x")
    assert header.startswith("empty-expiry=v4; ")  # the longest path first, then in any order
    assert set(header.split("; ")) == {"empty-expiry=v4", "host=v2", "login=v3", "dom=v1"}
    assert set(jar.header("http://www.example.com/").split("; ")) == {"host=v2", "dom=v1"}  # login is Secure
    assert jar.header("http://other.example.com/") == "dom=v1"
    assert jar.header("http://example.org/") is None
    # MozillaCookieJar drops the session cookie curl and browser exporters write with expiry 0 (the login!)
    mozilla = http.cookiejar.MozillaCookieJar()
    mozilla.load(str(write_cookies(tmp_path / "m.txt", "www.example.com\tFALSE\t/\tFALSE\t0\tlogin\tv3")),
                 ignore_discard=True)
    assert len(mozilla) == 0
    assert len(load_cookie_file(str(tmp_path / "m.txt"))) == 1


@pytest.mark.parametrize("line, where", [
    ("www.example.com\tFALSE\t/\tFALSE\t0\tname", "expected 7 tab-separated fields"),
    ("www.example.com FALSE / FALSE 0 name s3cr3tvalue", "expected 7 tab-separated fields"),
    ("www.example.com\tyes\t/\tFALSE\t0\tname\ts3cr3tvalue", "field 2 (include-subdomains flag)"),
    ("www.example.com\tFALSE\tnopath\tFALSE\t0\tname\ts3cr3tvalue", "field 3 (path)"),
    ("www.example.com\tFALSE\t/\tFALSE\ttomorrow\tname\ts3cr3tvalue", "field 5 (expiry)"),
    ("\tFALSE\t/\tFALSE\t0\tname\ts3cr3tvalue", "field 1 (domain)"),
])
def test_a_malformed_cookies_file_names_file_line_and_field_never_the_value(tmp_path, line, where):
    path = write_cookies(tmp_path / "bad.txt", "www.example.com\tFALSE\t/\tFALSE\t0\tok\tfine", line)
    with pytest.raises(UsageError) as e:
        load_cookie_file(str(path))
    assert f"{path}:3: " in str(e.value) and where in str(e.value)
    assert "s3cr3tvalue" not in str(e.value)


def test_a_missing_cookies_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read cookies file"):
        load_cookie_file(str(tmp_path / "nope.txt"))


# ---- the client writes the header into the request it records -----------------------------------------------


def test_the_recorded_request_bytes_carry_the_cookie_header(site):
    client = HttpClient(user_agent="test")
    try:
        ex = client.fetch(site.url("/session"), cookie="sid=s3cr3t")
        assert b"\r\nCookie: sid=s3cr3t\r\n" in ex.request and ex.status == 200
        ex.close()
        ex = client.fetch(site.url("/x"), cookie="a=1\r\nX-Injected: 1")  # a header cannot be smuggled in
        assert b"\r\nX-Injected" not in ex.request and ex.request.count(b"\r\n\r\n") == 1
        ex.close()
        ex = client.fetch(site.url("/y"))
        assert b"Cookie" not in ex.request
        ex.close()
    finally:
        client.close()
    assert site.requests("/session")[0].cookie == "sid=s3cr3t"
    assert site.requests("/y")[0].cookie is None


# ---- real grabs -----------------------------------------------------------------------------------------------


def request_records(run: Run) -> list[tuple[str, str, bytes]]:
    """(WARC file name, target URI, request header block) of every request record."""
    out = []
    for warc in run.warcs:
        for rec in records([warc]):
            if rec.rec_type == "request":
                out.append((warc.name, rec.rec_headers.get_header("WARC-Target-URI"),
                            rec.http_headers.to_bytes() if rec.http_headers else b""))
    return out


def bodies(run: Run, *types: str):
    """(record, its content block as read) of every record of these types."""
    for warc in run.warcs:
        with open(warc, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type in types:
                    yield rec, rec.content_stream().read()


def responses_of(run: Run, url: str) -> list[tuple[int, bytes]]:
    return [(int(rec.http_headers.get_statuscode()), body) for rec, body in bodies(run, "response")
            if rec.rec_headers.get_header("WARC-Target-URI") == url]


def warcinfo_text(run: Run) -> str:
    return "".join(body.decode() for _, body in bodies(run, "warcinfo"))


def test_a_cookie_and_a_redirect_back_to_itself_is_captured_right_and_does_not_loop(site, tmp_path):
    run = grab(tmp_path / "out", site.url("/session"))
    assert run.code == 0, run.stdout + run.stderr
    assert [h.cookie for h in site.requests("/session")] == [None, "sid=s3cr3t"]
    got = responses_of(run, site.url("/session"))
    assert [status for status, _ in got] == [302, 200]
    assert SESSION_CONTENT.encode() in got[1][1]
    # the request record shows the Cookie header sent, and the WARC passes the checker
    cookies = [block for _, uri, block in request_records(run) if uri == site.url("/session")]
    assert len(cookies) == 2 and b"Cookie" not in cookies[0] and b"Cookie: sid=s3cr3t\r\n" in cookies[1]
    assert check_files(run.warcs).ok
    check = archiver("check", *map(str, run.warcs))
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_site_that_sets_a_new_cookie_on_every_redirect_is_still_bounded(site, tmp_path):
    run = grab(tmp_path / "out", site.url("/always"))
    assert run.code == 0, run.stdout + run.stderr
    assert 2 <= len(site.requests("/always")) <= 21  # MAX_REDIRECTS hops after the first


def test_cookies_in_a_crawl_keep_their_scope_and_two_workers_share_the_jar(site, tmp_path):
    run = grab(tmp_path / "out", "--recursive", "--concurrency", "2", site.url("/start"))
    assert run.code == 0, run.stdout + run.stderr
    sent = {h.path: h.cookies() for h in site.requests(host="127.0.0.1")}
    assert sent["/start"] == {}
    assert sent["/scoped/inner"].keys() >= {"host", "scoped"}
    for path in ("/scopedx", "/other", "/delete", "/after-delete"):
        assert "host" in sent[path] and "scoped" not in sent[path], path  # Path=/scoped stays there
    for cookies in sent.values():
        assert not cookies.keys() & {"sec", "old", "dom"}  # Secure over http, expired, another IP's
    assert "gone" not in sent["/after-delete"]  # deleted by /delete's Max-Age=0 before it was found
    # a host-only cookie of 127.0.0.1 is not sent to localhost (same server, another host)
    assert [h.cookie for h in site.requests("/pixel.png")] == [None]
    # two workers, one jar: requests with the cookie are recorded in both workers' WARC files
    with_cookie = {name for name, _, block in request_records(run) if b"host=1" in block}
    assert len(run.warcs) == 2 and len(with_cookie) == 2, request_records(run)
    assert check_files(run.warcs).ok


def test_no_cookies_sends_none_and_keeps_none(site, tmp_path):
    run = grab(tmp_path / "out", "--no-cookies", "--recursive", site.url("/start"), site.url("/session"))
    assert run.code == 0, run.stdout + run.stderr
    assert site.hits and all(h.cookie is None for h in site.hits)
    assert len(site.requests("/session")) == 1  # the redirect back is not followed: no loop either
    assert [status for status, _ in responses_of(run, site.url("/session"))] == [302]
    assert "not kept (--no-cookies)" in warcinfo_text(run)


def test_load_cookies_sends_each_cookie_to_its_own_host_only_and_writes_it_nowhere_else(site, tmp_path):
    future = str(int(time.time()) + 86400)
    cookies = write_cookies(tmp_path / "cookies.txt",
                            f"127.0.0.1\tFALSE\t/\tFALSE\t{future}\tloaded\tLOADEDs3cr3t",
                            "localhost\tFALSE\t/\tFALSE\t0\tlh\tLHs3cr3t",
                            f".example.org\tTRUE\t/\tFALSE\t{future}\telsewhere\tNOTHERE")
    log = tmp_path / "log.jsonl"
    run = grab(tmp_path / "out", "--load-cookies", str(cookies), "--log-json", str(log), site.url("/plain"))
    assert run.code == 0, run.stdout + run.stderr
    for hit in site.hits:
        if hit.path == "/robots.txt":
            continue
        expected = {"127.0.0.1": {"loaded": "LOADEDs3cr3t"}, "localhost": {"lh": "LHs3cr3t"}}[hit.host]
        assert hit.cookies() == expected, hit
    assert site.requests("/pixel.png", host="localhost")
    # the request records carry them (as wget's do); warcinfo, the crawl logs and the output do not
    assert any(b"Cookie: loaded=LOADEDs3cr3t" in block for _, _, block in request_records(run))
    info = warcinfo_text(run)
    assert "started from a cookies file" in info and "s3cr3t" not in info
    assert "s3cr3t" not in log.read_text() and "s3cr3t" not in run.stdout + run.stderr
    for _, body in bodies(run, "metadata", "resource", "warcinfo"):
        assert b"s3cr3t" not in body
    assert check_files(run.warcs).ok


def test_a_malformed_cookies_file_stops_the_grab_with_exit_2(site, tmp_path):
    bad = write_cookies(tmp_path / "bad.txt", "127.0.0.1\tFALSE\t/\tFALSE\t0\tok\tfine",
                        "127.0.0.1\tmaybe\t/\tFALSE\t0\tsid\tSECRETVALUE")
    run = grab(tmp_path / "out", "--load-cookies", str(bad), site.url("/plain"))
    assert run.code == 2
    assert f"{bad}:3: field 2" in run.stderr and "SECRETVALUE" not in run.stderr + run.stdout
    assert not site.hits  # nothing fetched
    run = grab(tmp_path / "out", "--load-cookies", str(tmp_path / "missing.txt"), site.url("/plain"))
    assert run.code == 2 and "missing.txt" in run.stderr
    run = grab(tmp_path / "out", "--load-cookies", str(bad), "--no-cookies", site.url("/plain"))
    assert run.code == 2 and "not allowed with" in run.stderr


# ---- bulk runs and manifests ----------------------------------------------------------------------------------


def write_manifest(path: Path, site: CookieSite, items: list[str], options: str = "") -> Path:
    lines = ["project: cookies", "site: generic", "items:"] + [f"  - {site.url(i)}" for i in items]
    lines += ["options:", "  delay: 0"] + ([options] if options else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def test_items_of_a_bulk_run_do_not_share_cookies(site, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", site, ["/item/a", "/item/b", "/item/c"])
    out = tmp_path / "run"
    p = archiver("run", str(manifest), "-o", str(out), "-q", "--workers", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    for name in "abc":
        assert [h.cookie for h in site.requests(f"/item/{name}")] == [None]  # no other item's cookie
        assert [h.cookies() for h in site.requests(f"/img/{name}.png")] == [{"item": name}]
    warcs = sorted(out.glob("*.warc.gz"))
    assert len(warcs) == 3 and check_files(warcs).ok
    run = Run(0, "", "", out)
    assert any(b"Cookie: item=b" in block for _, _, block in request_records(run))


def test_manifest_cookie_options_are_checked_with_the_cookie_file_line(site, tmp_path):
    from archiver.manifest import ManifestError, load_manifest

    (tmp_path / "c").mkdir()
    write_cookies(tmp_path / "c" / "good.txt", "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tx")
    good = load_manifest(write_manifest(tmp_path / "m.yaml", site, ["/x"], "  load_cookies: c/good.txt"))
    assert good.options["load_cookies"] == str((tmp_path / "c" / "good.txt").resolve())
    assert load_manifest(write_manifest(tmp_path / "m.yaml", site, ["/x"], "  cookies: false")).options[
        "cookies"] is False
    write_cookies(tmp_path / "c" / "bad.txt", "127.0.0.1\tFALSE\t/\tFALSE\tsoon\tsid\tSECRETVALUE")
    for options, message in [("  load_cookies: c/bad.txt", "bad.txt:2: field 5 (expiry)"),
                             ("  load_cookies: c/none.txt", "cannot read cookies file"),
                             ("  cookies: maybe", "options.cookies"),
                             ("  cookies: false\n  load_cookies: c/good.txt", "given with `cookies: false`")]:
        with pytest.raises(ManifestError) as e:
            load_manifest(write_manifest(tmp_path / "m.yaml", site, ["/x"], options))
        assert message in str(e.value) and "m.yaml:" in str(e.value) and "SECRETVALUE" not in str(e.value)


def test_a_bulk_run_passes_the_manifest_cookie_options_through(site, tmp_path):
    write_cookies(tmp_path / "cookies.txt", "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tloaded")
    manifest = write_manifest(tmp_path / "m.yaml", site, ["/item/a", "/item/b"], "  load_cookies: cookies.txt")
    p = archiver("run", str(manifest), "-o", str(tmp_path / "run"), "-q", "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    for name in "ab":  # every item starts with the loaded cookies, and only its own from the site
        assert [h.cookies() for h in site.requests(f"/item/{name}")] == [{"sid": "loaded"}]
        assert [h.cookies() for h in site.requests(f"/img/{name}.png")] == [{"item": name, "sid": "loaded"}]
    manifest = write_manifest(tmp_path / "m2.yaml", site, ["/item/d"], "  cookies: false")
    p = archiver("run", str(manifest), "-o", str(tmp_path / "run2"), "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert [h.cookie for h in site.requests("/img/d.png")] == [None]


def test_the_crawl_log_shows_both_fetches_of_a_url_redirected_back_to(site, tmp_path):
    log = tmp_path / "log.jsonl"
    run = grab(tmp_path / "out", "--log-json", str(log), site.url("/session"))
    assert run.code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["status"] for e in lines if e.get("url") == site.url("/session")] == [302, 200]
