"""ArxivSite on abs pages built to arXiv's real markup (arxiv-browse templates, reference/arxiv.md §1)."""

from __future__ import annotations

import json
from urllib.parse import urldefrag, urljoin

import lxml.html
import pytest

from archiver.errors import TargetError
from archiver.sites import detect_site
from archiver.sites.arxiv import ArxivSite
from archiver.sites.base import LINK, REDIRECT, REQUISITE, SEED, Capture, Item, Link, SiteOptions

ROOT = "https://arxiv.org"
MIRROR = "http://127.0.0.1:8080"
PAPER = "2108.07258"


def abs_page(paper: str = PAPER, shown: int = 3, latest: int = 3, withdrawn: tuple[int, ...] = (),
             html_version: int | None = None, html_host: str = ROOT, requested: str | None = None) -> str:
    """An abs page as arxiv-browse renders it: honeypot, head assets, dateline, history, full-text block."""
    requested = requested or (f"{paper}v{shown}" if shown != latest else paper)
    history = []
    for n in range(1, latest + 1):
        label = f"<strong>[v{n}]</strong>" if n == shown else \
            f'<strong><a href="/abs/{paper}v{n}" rel="nofollow">[v{n}]</a></strong>'
        note = " <em>(withdrawn)</em>" if n in withdrawn else ""
        history.append(f"  {label}\n      Wed, {n} Dec 2021 08:48:06 UTC (1,349 KB){note}<br/>")
    if shown == latest:
        revised = f", last revised 5 Jan 2022 (this version, v{shown})" if latest > 1 else ""
        dateline = f'[Submitted on 13 Dec 2021 (<a href="https://arxiv.org/abs/{paper}v1">v1</a>){revised}]'
    else:
        dateline = (f"[Submitted on 13 Dec 2021 (this version), <em>latest version 5 Jan 2022</em> "
                    f'(<a href="https://arxiv.org/abs/{paper}v{latest}">v{latest}</a>)]')
    html_link = (f'<li><a href="{html_host}/html/{paper}v{html_version}" class="abs-button" '
                 f'id="latexml-download-link">HTML (experimental)</a></li>') if html_version else ""
    full_text = "<li>Withdrawn</li>" if shown in withdrawn else (
        f'<li><a href="/pdf/{requested}" aria-describedby="download-button-info" accesskey="f" '
        f'class="abs-button download-pdf">View PDF</a></li>\n {html_link}\n'
        f' <li><a href="/src/{requested}" class="abs-button download-eprint">TeX Source </a></li>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <title>[{requested}] A synthetic paper</title>
  <link rel="apple-touch-icon" sizes="180x180" href="/static/browse/0.3.4/images/icons/apple-touch-icon.png">
  <link rel="icon" type="image/png" sizes="32x32" href="/static/browse/0.3.4/images/icons/favicon-32x32.png">
  <link rel="manifest" href="/static/browse/0.3.4/images/icons/site.webmanifest">
  <link rel="stylesheet" type="text/css" media="screen" href="/static/browse/0.3.4/css/arXiv.css?v=20241206">
  <link rel="stylesheet" type="text/css" href="https://static.arxiv.org/js/bibex-dev/bibex.css">
  <script src="/static/browse/0.3.4/js/mathjaxToggle.min.js" type="text/javascript"></script>
  <script src="//code.jquery.com/jquery-latest.min.js" type="text/javascript"></script>
  <link rel="canonical" href="https://arxiv.org/abs/{paper}"/>
  <meta name="citation_arxiv_id" content="{paper}"/>
  <meta name="citation_pdf_url" content="https://arxiv.org/pdf/{paper}"/>
  <meta property="og:url" content="https://arxiv.org/abs/{paper}v{shown}"/>
</head>
<body class="with-cu-identity">
  <div class="flex-wrap-footer">
    <header>
      <a href="#content" class="is-sr-only">Skip to main content</a>
      <a aria-hidden="true" tabindex="-1" href="/IgnoreMe" class="is-sr-only">.</a>
      <img src="/static/base/1.0.1/images/arxiv-logo-primary-light.svg" alt="arXiv logo">
      <a href="http://arxiv.org/search/?searchtype=all">Search</a>
    </header>
    <div class="header-breadcrumbs"><a href="/">arXiv</a> &gt; <a href="/list/cs/recent">cs</a></div>
    <div class="dateline">{dateline}</div>
    <div class="metatable"><a href="https://arxiv.org/abs/{paper}v{shown}">arXiv:{paper}v{shown}</a>
      <a href="/abs/2101.04792">a cited paper</a></div>
    <div class="submission-history">
  <h2>Submission history</h2> From: Ada Example [<a href="/show-email/f8836ad9/{paper}" rel="nofollow">view email</a>]      <br/>
{chr(10).join(history)}
</div>
    <div class="extra-services"><div class="full-text"><a name="other"></a>
 <span class="descriptor">Full-text links:</span><h2>Access Paper:</h2><ul>
 <div id="download-button-info" hidden>View a PDF of the paper titled ...</div>
 {full_text}</ul>
 <div class="abs-license"><a href="http://arxiv.org/licenses/nonexclusive-distrib/1.0/" title="Rights to this article">view license</a></div>
</div>
      <a class="mobile-submission-download" href="/pdf/{requested}">View PDF</a>
      <a href="/prevnext?id={paper}&amp;function=prev&amp;context=cs.PL" accesskey="p">&lt;&nbsp;prev</a>
      <a href="/abs/{paper}?context=cs.PL">cs.PL</a>
      <a href="/format/{paper}">Other formats</a>
      <a href="/bibtex/{paper}">Export BibTeX</a>
      <a href="/a/example_a_1">Ada Example</a>
      <a href="/auth/show-endorsers/{paper}">Which authors of this paper are endorsers?</a>
      <a href="/tb/{paper}">trackbacks</a>
    </div>
  </div>
</body>
</html>"""


HTML_VERSION_PAGE = f"""<!DOCTYPE html><html><head>
<link rel="stylesheet" href="https://arxiv.org/static/browse/0.3.4/css/ar5iv.min.css">
<link rel="canonical" href="https://arxiv.org/html/{PAPER}">
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
</head><body>
<a aria-hidden="true" tabindex="-1" href="/IgnoreMe">.</a>
<img src="/html/{PAPER}v3/x1.png" alt="Figure 1"><img src="/html/2101.04792v1/x1.png" alt="another paper's figure">
<a href="/abs/{PAPER}v3">abstract</a> <a href="https://arxiv.org/html/2101.04792v1">a cited paper</a>
</body></html>"""


def extract_links(url: str, html: str) -> list[Link]:
    """What the crawler hands `follow`: absolute, fragment-free links, <a> as LINK and assets as REQUISITE."""
    tree = lxml.html.fromstring(html)
    found = []
    for xpath, kind, how in (("//a/@href", LINK, "a/@href"), ("//link/@href", REQUISITE, "link/@href"),
                             ("//script/@src", REQUISITE, "script/@src"), ("//img/@src", REQUISITE, "img/@src")):
        for value in tree.xpath(xpath):
            absolute = urldefrag(urljoin(url, value.strip()))[0]
            if absolute.startswith(("http://", "https://")):
                found.append(Link(absolute, kind, how))
    return found


def crawl_step(site: ArxivSite, url: str, html: str, depth: int = 0,
               item: Item | None = None) -> dict[str, tuple[Link, int]]:
    """page_info then follow, as the worker and the coordinator would run them; keyed by URL."""
    item = item or site.parse_target(PAPER)
    info = site.page_info(url, lxml.html.fromstring(html))
    return {link.url: (link, d) for link, d in site.follow(item, url, depth, extract_links(url, html), info)}


def cap(url: str, status: int = 200, head: bytes = b"%PDF-1.5\n", body: bytes | None = None,
        content_type: str = "application/pdf", truncated: str | None = None, record_type: str = "response") -> Capture:
    return Capture(url=url, status=status, content_type=content_type, head=head, body=body, record_id="<urn:uuid:x>",
                   filename="grab.warc.gz", offset=0, truncated=truncated, record_type=record_type)


def abs_cap(url: str, html: str, status: int = 200) -> Capture:
    data = html.encode()
    return cap(url, status=status, head=data[:8192], body=data, content_type="text/html")


def complete_grab(root: str = ROOT, latest: int = 3, withdrawn: tuple[int, ...] = (),
                  skip: tuple[str, ...] = ()) -> list[Capture]:
    """Captures of a finished grab: the versionless pages plus abs and PDF of every version."""
    caps = [abs_cap(f"{root}/abs/{PAPER}", abs_page(latest=latest, shown=latest, withdrawn=withdrawn)),
            cap(f"{root}/pdf/{PAPER}")]
    for n in range(1, latest + 1):
        caps.append(abs_cap(f"{root}/abs/{PAPER}v{n}", abs_page(latest=latest, shown=n, withdrawn=withdrawn)))
        caps.append(cap(f"{root}/pdf/{PAPER}v{n}", status=404, head=b"<html>not found")
                    if n in withdrawn else cap(f"{root}/pdf/{PAPER}v{n}"))
    return [c for c in caps if c.url not in {f"{root}{path}" for path in skip}]


# ---- targets -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["2108.07258", "arXiv:2108.07258v2", "hep-th/9901001",
                                    "https://arxiv.org/pdf/2108.07258v2.pdf", "2113.07258"])
def test_recognises_arxiv_ids_and_urls_even_invalid_ones(target: str) -> None:
    assert ArxivSite.recognises(target)
    assert detect_site(target) == "arxiv"


@pytest.mark.parametrize("target", ["https://example.com/paper.pdf", "https://arxiv.org/list/cs/new"])
def test_does_not_recognise_other_urls(target: str) -> None:
    assert not ArxivSite.recognises(target)


@pytest.mark.parametrize("target", ["2108.07258", "2108.07258v2", "arxiv:2108.07258v1",
                                    "https://arxiv.org/abs/2108.07258v3", "https://arxiv.org/pdf/2108.07258v2.pdf"])
def test_any_version_given_still_means_the_whole_paper(target: str) -> None:
    assert ArxivSite().parse_target(target) == Item(site="arxiv", name=PAPER, target=target)


def test_old_style_subject_class_is_dropped_from_the_item_name() -> None:
    item = ArxivSite().parse_target("math.GT/0309136v2")
    assert item.name == "math/0309136"
    assert item.safe_name == "math_0309136"


def test_parse_target_accepts_urls_on_the_configured_base() -> None:
    site = ArxivSite(SiteOptions(base_url=MIRROR + "/"))
    assert site.parse_target(f"{MIRROR}/abs/{PAPER}v2").name == PAPER
    assert site.parse_target(f"{MIRROR}/pdf/hep-th/9901001v1.pdf").name == "hep-th/9901001"
    assert site.parse_target(PAPER).name == PAPER
    with pytest.raises(TargetError, match="not an arXiv paper URL path"):
        site.parse_target(f"{MIRROR}/list/cs/new")


def test_parse_target_rejects_invalid_ids_with_the_reason() -> None:
    with pytest.raises(TargetError, match="month 13 does not exist"):
        ArxivSite().parse_target("2113.07258")


def test_seeds_are_the_versionless_abs_page_and_pdf_on_the_root() -> None:
    item = Item("arxiv", PAPER, PAPER)
    assert ArxivSite().seeds(item) == [Link(f"{ROOT}/abs/{PAPER}", SEED, "seed"),
                                       Link(f"{ROOT}/pdf/{PAPER}", SEED, "seed")]
    mirror = ArxivSite(SiteOptions(base_url=MIRROR + "/"))
    assert [link.url for link in mirror.seeds(item)] == [f"{MIRROR}/abs/{PAPER}", f"{MIRROR}/pdf/{PAPER}"]


# ---- page_info ---------------------------------------------------------------------------------------------

def test_page_info_reads_versions_withdrawn_and_html_link_from_the_latest_abs_page() -> None:
    html = abs_page(latest=3, shown=3, withdrawn=(2,), html_version=3)
    info = ArxivSite().page_info(f"{ROOT}/abs/{PAPER}", lxml.html.fromstring(html))
    assert info == {"arxiv_id": PAPER, "version": 3, "versions": [1, 2, 3], "withdrawn": [2], "latest": 3,
                    "html_versions": {3: f"{ROOT}/html/{PAPER}v3"}}


def test_page_info_on_an_older_version_sees_the_later_ones() -> None:
    html = abs_page(latest=4, shown=1)  # v1 unlinked, v2..v4 nofollow links, dateline "latest version (v4)"
    info = ArxivSite().page_info(f"{ROOT}/abs/{PAPER}v1", lxml.html.fromstring(html))
    assert info is not None
    assert (info["versions"], info["latest"], info["version"], info["withdrawn"]) == ([1, 2, 3, 4], 4, 1, [])


def test_page_info_reads_old_style_history_with_b_tags() -> None:
    # Older arxiv-browse templates used <b> instead of <strong> around the version labels.
    html = abs_page(paper="cs/0012007", latest=3).replace("<strong>", "<b>").replace("</strong>", "</b>")
    info = ArxivSite().page_info(f"{ROOT}/abs/cs/0012007", lxml.html.fromstring(html))
    assert info is not None and info["arxiv_id"] == "cs/0012007" and info["latest"] == 3


def test_page_info_takes_the_highest_version_named_by_history_dateline_or_meta() -> None:
    html = abs_page(latest=2, shown=2).replace("(this version, v2)", "(this version, v5)")
    info = ArxivSite().page_info(f"{ROOT}/abs/{PAPER}", lxml.html.fromstring(html))
    assert info is not None and info["latest"] == 5 and info["versions"] == [1, 2, 3, 4, 5]


def test_page_info_of_a_page_without_history_has_no_versions() -> None:
    html = "<html><body><h1>Article 2108.07258v9 not found</h1></body></html>"
    info = ArxivSite().page_info(f"{ROOT}/abs/{PAPER}v9", lxml.html.fromstring(html))
    assert info is not None and info["latest"] is None and info["versions"] == []


@pytest.mark.parametrize("url", [f"{ROOT}/html/{PAPER}v3", f"{ROOT}/pdf/{PAPER}", f"{ROOT}/list/cs/new",
                                 f"https://example.com/abs/{PAPER}", f"{ROOT}/static/browse/0.3.4/css/arXiv.css"])
def test_page_info_is_none_for_pages_that_are_not_abs_pages_of_this_site(url: str) -> None:
    assert ArxivSite().page_info(url, lxml.html.fromstring(abs_page())) is None


# ---- follow ------------------------------------------------------------------------------------------------

def test_follows_nofollow_version_links_for_every_version() -> None:
    chosen = crawl_step(ArxivSite(), f"{ROOT}/abs/{PAPER}", abs_page(latest=3), depth=0)
    for n in (1, 2, 3):
        for kind in ("abs", "pdf"):
            link, depth = chosen[f"{ROOT}/{kind}/{PAPER}v{n}"]
            assert (link.kind, depth) == (LINK, 1)


def test_the_displayed_unlinked_version_is_followed_too() -> None:
    chosen = crawl_step(ArxivSite(), f"{ROOT}/abs/{PAPER}v2", abs_page(latest=3, shown=2), depth=1)
    assert f"{ROOT}/abs/{PAPER}v2" in chosen and f"{ROOT}/pdf/{PAPER}v2" in chosen
    assert chosen[f"{ROOT}/pdf/{PAPER}v3"][1] == 2


def test_withdrawn_version_still_gets_its_abs_page_and_a_pdf_attempt() -> None:
    chosen = crawl_step(ArxivSite(), f"{ROOT}/abs/{PAPER}", abs_page(latest=3, withdrawn=(3,)))
    assert f"{ROOT}/abs/{PAPER}v3" in chosen and f"{ROOT}/pdf/{PAPER}v3" in chosen


def test_never_follows_the_honeypot_disallowed_paths_or_other_pages() -> None:
    chosen = crawl_step(ArxivSite(), f"{ROOT}/abs/{PAPER}", abs_page(latest=3, html_version=3))
    expected = {f"{ROOT}/{kind}/{PAPER}v{n}" for kind in ("abs", "pdf") for n in (1, 2, 3)}
    expected.add(f"{ROOT}/html/{PAPER}v3")
    # The page's own links to /pdf/ID and /abs/ID are not needed: both are seeds.
    assert {url for url, (link, _) in chosen.items() if link.kind != REQUISITE} == expected
    for url in chosen:
        for unwanted in ("/IgnoreMe", "/src/", "/show-email", "/format", "/prevnext", "/list", "/search",
                         "/bibtex", "/a/", "/auth", "/tb/", "context=", "2101.04792", "/licenses"):
            assert unwanted not in url, url


def test_follows_page_requisites_on_any_host_without_using_depth() -> None:
    chosen = crawl_step(ArxivSite(), f"{ROOT}/abs/{PAPER}", abs_page(), depth=1)
    for url in (f"{ROOT}/static/browse/0.3.4/css/arXiv.css?v=20241206",
                f"{ROOT}/static/browse/0.3.4/js/mathjaxToggle.min.js",
                f"{ROOT}/static/browse/0.3.4/images/icons/site.webmanifest",
                f"{ROOT}/static/browse/0.3.4/images/icons/apple-touch-icon.png",
                f"{ROOT}/static/base/1.0.1/images/arxiv-logo-primary-light.svg",
                "https://static.arxiv.org/js/bibex-dev/bibex.css",
                "https://code.jquery.com/jquery-latest.min.js"):
        link, depth = chosen[url]
        assert (link.kind, depth) == (REQUISITE, 1)


def test_follows_fonts_referenced_from_a_stylesheet() -> None:
    site, item = ArxivSite(), Item("arxiv", PAPER, PAPER)
    css = f"{ROOT}/static/base/1.0.1/css/abs.css"
    font = Link(f"{ROOT}/static/base/1.0.1/fonts/IBMPlexSans-Regular.woff2", REQUISITE, "css/url")
    icon = Link("https://static.arxiv.org/icons/social/reddit.png", REQUISITE, "css/url")
    assert site.follow(item, css, 1, [font, icon], None) == [(font, 1), (icon, 1)]


def test_include_source_adds_src_and_ancillary_files_of_every_version() -> None:
    page = abs_page(latest=2).replace(
        "</ul>", f'</ul><a class="anc-file-name" href="/src/{PAPER}v2/anc/data.csv">data.csv</a>', 1)
    without = crawl_step(ArxivSite(), f"{ROOT}/abs/{PAPER}", page)
    assert not any("/src/" in url for url in without)
    chosen = crawl_step(ArxivSite(SiteOptions(include_source=True)), f"{ROOT}/abs/{PAPER}", page, depth=0)
    for url in (f"{ROOT}/src/{PAPER}v1", f"{ROOT}/src/{PAPER}v2", f"{ROOT}/src/{PAPER}v2/anc/data.csv"):
        link, depth = chosen[url]
        assert (link.kind, depth) == (LINK, 1)
    assert not any("/e-print" in url for url in chosen)


def test_follows_the_html_version_and_only_its_requisites() -> None:
    site = ArxivSite()
    url = f"{ROOT}/html/{PAPER}v3"
    assert crawl_step(site, f"{ROOT}/abs/{PAPER}", abs_page(html_version=3))[url][0].kind == LINK
    chosen = crawl_step(site, url, HTML_VERSION_PAGE, depth=1)
    # Its figures and assets, yes; the honeypot, its abstract link, and another paper's figure or page, no.
    assert set(chosen) == {f"{ROOT}/static/browse/0.3.4/css/ar5iv.min.css", f"{ROOT}/html/{PAPER}",
                           "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
                           f"{ROOT}/html/{PAPER}v3/x1.png"}
    assert all(link.kind == REQUISITE and depth == 1 for link, depth in chosen.values())


def test_follows_relative_figures_of_an_html_version_served_as_a_directory() -> None:
    url = f"{ROOT}/html/{PAPER}v3/"
    chosen = crawl_step(ArxivSite(), url, '<html><body><img src="x2.png"></body></html>', depth=1)
    assert chosen[f"{ROOT}/html/{PAPER}v3/x2.png"][0].kind == REQUISITE


def test_follows_redirects_within_the_papers_url_space_only() -> None:
    site, item = ArxivSite(), Item("arxiv", PAPER, PAPER)
    inside = [Link(f"{ROOT}/pdf/{PAPER}v2", REDIRECT, "http/location")]
    assert site.follow(item, f"{ROOT}/pdf/{PAPER}v2.pdf", 1, inside, None) == [(inside[0], 1)]
    https = [Link(f"{ROOT}/abs/{PAPER}", REDIRECT, "http/location")]
    assert site.follow(item, f"http://arxiv.org/abs/{PAPER}", 0, https, None) == [(https[0], 0)]
    for target in (f"{ROOT}/abs/2101.04792", f"{ROOT}/abs/{PAPER}?context=cs.PL", "https://example.com/pdf",
                   f"{ROOT}/src/{PAPER}v1", f"{ROOT}/IgnoreMe"):
        assert site.follow(item, f"{ROOT}/abs/{PAPER}v1", 1, [Link(target, REDIRECT, "http/location")], None) == []


def test_follows_redirects_of_requisites_to_other_hosts() -> None:
    site, item = ArxivSite(), Item("arxiv", PAPER, PAPER)
    moved = Link("https://cdn.example.net/jquery-3.7.1.min.js", REDIRECT, "http/location")
    assert site.follow(item, "https://code.jquery.com/jquery-latest.min.js", 2, [moved], None) == [(moved, 2)]


def test_base_url_builds_version_urls_on_the_mirror_and_leaves_arxiv_org_alone() -> None:
    site = ArxivSite(SiteOptions(base_url=MIRROR))
    chosen = crawl_step(site, f"{MIRROR}/abs/{PAPER}", abs_page(latest=2, html_version=2))
    for n in (1, 2):
        assert chosen[f"{MIRROR}/abs/{PAPER}v{n}"][0].kind == LINK
        assert chosen[f"{MIRROR}/pdf/{PAPER}v{n}"][0].kind == LINK
    assert f"{MIRROR}/static/browse/0.3.4/css/arXiv.css?v=20241206" in chosen
    assert "https://static.arxiv.org/js/bibex-dev/bibex.css" in chosen  # off-host requisites are still tried
    # The dateline, canonical link and HTML link point at production arXiv: not this crawl's business.
    assert not any(url.startswith("https://arxiv.org/") or url.startswith("http://arxiv.org/") for url in chosen)


def test_base_url_follows_an_html_link_rendered_on_the_mirror() -> None:
    site = ArxivSite(SiteOptions(base_url=MIRROR))
    chosen = crawl_step(site, f"{MIRROR}/abs/{PAPER}", abs_page(html_version=3, html_host=MIRROR))
    assert chosen[f"{MIRROR}/html/{PAPER}v3"][0].kind == LINK


def test_default_root_treats_absolute_arxiv_org_links_as_the_same_site() -> None:
    site = ArxivSite()
    html = abs_page(html_version=3, html_host="http://www.arxiv.org")
    assert "http://www.arxiv.org/html/2108.07258v3" in crawl_step(site, f"{ROOT}/abs/{PAPER}", html)
    assert site.item_for_url(f"http://www.arxiv.org/pdf/{PAPER}v1") == PAPER


def test_follow_accepts_page_info_that_travelled_as_json() -> None:
    site, url = ArxivSite(), f"{ROOT}/abs/{PAPER}"
    html = abs_page(html_version=3)
    info = json.loads(json.dumps(site.page_info(url, lxml.html.fromstring(html))))
    chosen = site.follow(Item("arxiv", PAPER, PAPER), url, 0, [], info)
    assert f"{ROOT}/html/{PAPER}v3" in {link.url for link, _ in chosen}


def test_follow_does_not_expand_versions_of_another_paper() -> None:
    site, url = ArxivSite(), f"{ROOT}/abs/2101.04792"
    info = site.page_info(url, lxml.html.fromstring(abs_page(paper="2101.04792")))
    chosen = site.follow(Item("arxiv", PAPER, PAPER), url, 0, [], info)
    assert chosen == []


# ---- scope, politeness, bookkeeping ------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "reason"), [
    (f"{ROOT}/IgnoreMe", "honeypot"),
    (f"{MIRROR}/IgnoreMe", "honeypot"),
    (f"{ROOT}/src/{PAPER}v1", "--include-source"),
    (f"{ROOT}/e-print/{PAPER}", "robots.txt disallows /e-print"),
    (f"{ROOT}/format/{PAPER}", "robots.txt disallows /format"),
    (f"http://www.arxiv.org/show-email/f8836ad9/{PAPER}", "robots.txt disallows /show-email"),
    (f"{ROOT}/auth/show-endorsers/{PAPER}", "robots.txt disallows /auth"),
    (f"{ROOT}/prevnext?id={PAPER}&function=prev", "robots.txt disallows /prevnext"),
    (f"{ROOT}/search/?query=x", "robots.txt disallows /search"),
    (f"{ROOT}/tb/{PAPER}", "robots.txt disallows /tb"),
    ("https://export.arxiv.org/api/query?id_list=2108.07258", "robots.txt disallows /api"),
])
def test_forbidden_names_the_honeypot_and_robots_rules(url: str, reason: str) -> None:
    site = ArxivSite(SiteOptions(base_url=MIRROR)) if url.startswith(MIRROR) else ArxivSite()
    assert reason in (site.forbidden(url) or "")


@pytest.mark.parametrize("url", [f"{ROOT}/abs/{PAPER}v2", f"{ROOT}/pdf/{PAPER}v2", f"{ROOT}/html/{PAPER}v2",
                                 f"{ROOT}/static/browse/0.3.4/css/arXiv.css", f"{ROOT}/bibtex/{PAPER}",
                                 "https://code.jquery.com/jquery-latest.min.js"])
def test_forbidden_allows_what_robots_txt_allows(url: str) -> None:
    assert ArxivSite().forbidden(url) is None


def test_include_source_lifts_only_the_src_rule() -> None:
    site = ArxivSite(SiteOptions(include_source=True))
    assert site.forbidden(f"{ROOT}/src/{PAPER}v1") is None
    assert site.forbidden(f"{ROOT}/e-print/{PAPER}v1") is not None


def test_robots_rules_apply_on_the_mirror_root() -> None:
    site = ArxivSite(SiteOptions(base_url=MIRROR + "/arxiv"))
    assert "/show-email" in (site.forbidden(f"{MIRROR}/arxiv/show-email/x/{PAPER}") or "")
    assert site.forbidden(f"{MIRROR}/arxiv/abs/{PAPER}") is None


def test_ignore_patterns_are_forbidden_with_the_pattern_named() -> None:
    site = ArxivSite(SiteOptions(ignore=(r"jquery", r"\.woff2$")))
    assert site.forbidden("https://code.jquery.com/jquery-latest.min.js") == "matches --ignore 'jquery'"
    assert site.forbidden(f"{ROOT}/static/base/1.0.1/fonts/IBMPlexSans-Regular.woff2") is not None
    assert site.forbidden(f"{ROOT}/abs/{PAPER}") is None


def test_host_policy_is_slow_and_single_for_arxiv_and_configurable() -> None:
    policy = ArxivSite().host_policy("arxiv.org")
    assert (policy.delay, policy.connections) == (3.0, 1)
    assert (policy.backoff_base, policy.backoff_max, policy.backoff_give_up) == (60.0, 900.0, 7200.0)
    other = ArxivSite().host_policy("code.jquery.com")
    assert (other.delay, other.connections) == (0.0, 1)

    tuned = ArxivSite(SiteOptions(base_url=MIRROR, delay=0.1, concurrency=2,
                                  extra={"backoff_base": 0.5, "backoff_give_up": 5}))
    mirror = tuned.host_policy("127.0.0.1:8080")
    assert (mirror.delay, mirror.connections, mirror.backoff_base, mirror.backoff_give_up) == (0.1, 2, 0.5, 5.0)
    assert tuned.host_policy("static.arxiv.org").backoff_base == 0.5


def test_item_for_url_and_wants_body() -> None:
    site = ArxivSite()
    assert site.item_for_url(f"{ROOT}/pdf/math.GT/0309136v2") == "math/0309136"
    assert site.item_for_url(f"{ROOT}/html/{PAPER}v3/x1.png") == PAPER
    assert site.item_for_url(f"{ROOT}/src/{PAPER}v1") == PAPER
    assert site.item_for_url(f"{ROOT}/static/browse/0.3.4/css/arXiv.css") is None
    assert site.item_for_url(f"https://example.com/abs/{PAPER}") is None
    assert site.wants_body(f"{ROOT}/abs/{PAPER}v2")
    assert not site.wants_body(f"{ROOT}/pdf/{PAPER}v2")
    assert not ArxivSite(SiteOptions(base_url=MIRROR)).wants_body(f"{ROOT}/abs/{PAPER}")


# ---- completeness ------------------------------------------------------------------------------------------

def codes(problems: list) -> list[tuple[str, str | None, str | None]]:
    return [(p.code, p.item, p.url) for p in problems if p.severity == "error"]


def test_a_complete_grab_has_no_problems() -> None:
    assert ArxivSite().completeness(complete_grab(), [Item("arxiv", PAPER, PAPER)]) == []


def test_completeness_catches_a_missing_v2_pdf() -> None:
    caps = complete_grab(skip=(f"/pdf/{PAPER}v2",))
    assert codes(ArxivSite().completeness(caps)) == [("missing-version-pdf", PAPER, f"{ROOT}/pdf/{PAPER}v2")]


def test_completeness_catches_a_missing_version_abs_page() -> None:
    caps = complete_grab(skip=(f"/abs/{PAPER}v3",))
    assert codes(ArxivSite().completeness(caps)) == [("missing-version-abs", PAPER, f"{ROOT}/abs/{PAPER}v3")]


def test_completeness_catches_a_pdf_that_is_html() -> None:
    caps = complete_grab(skip=(f"/pdf/{PAPER}v1",))
    caps.append(cap(f"{ROOT}/pdf/{PAPER}v1", head=b"<!DOCTYPE html><html>", content_type="text/html"))
    assert codes(ArxivSite().completeness(caps)) == [("pdf-not-pdf", PAPER, f"{ROOT}/pdf/{PAPER}v1")]


def test_completeness_catches_a_version_that_never_answered_200() -> None:
    caps = complete_grab(skip=(f"/abs/{PAPER}v2",))
    caps.append(abs_cap(f"{ROOT}/abs/{PAPER}v2", "Rate exceeded.", status=429))
    problems = ArxivSite().completeness(caps)
    assert codes(problems) == [("version-not-200", PAPER, f"{ROOT}/abs/{PAPER}v2")]
    assert "429" in problems[0].message


def test_a_pdf_reached_through_a_redirect_does_not_count_for_the_versioned_url() -> None:
    caps = complete_grab(skip=(f"/pdf/{PAPER}v2",))
    caps += [cap(f"{ROOT}/pdf/{PAPER}v2", status=301, head=b""), cap(f"{ROOT}/pdf/{PAPER}v2.pdf")]
    assert codes(ArxivSite().completeness(caps)) == [("version-not-200", PAPER, f"{ROOT}/pdf/{PAPER}v2")]


def test_a_retried_pdf_counts_when_one_capture_is_good() -> None:
    caps = complete_grab() + [cap(f"{ROOT}/pdf/{PAPER}v2", status=503, head=b"")]
    assert ArxivSite().completeness(caps) == []


def test_a_truncated_pdf_is_not_complete() -> None:
    caps = complete_grab(skip=(f"/pdf/{PAPER}v3",))
    caps.append(cap(f"{ROOT}/pdf/{PAPER}v3", truncated="length"))
    assert codes(ArxivSite().completeness(caps)) == [("capture-truncated", PAPER, f"{ROOT}/pdf/{PAPER}v3")]


def test_completeness_accepts_a_withdrawn_versions_404_pdf() -> None:
    caps = complete_grab(withdrawn=(2,))
    assert any(c.url.endswith("/pdf/2108.07258v2") and c.status == 404 for c in caps)
    assert ArxivSite().completeness(caps, [Item("arxiv", PAPER, PAPER)]) == []


def test_a_withdrawn_versions_abs_page_is_still_required() -> None:
    caps = complete_grab(withdrawn=(2,), skip=(f"/abs/{PAPER}v2",))
    assert codes(ArxivSite().completeness(caps)) == [("missing-version-abs", PAPER, f"{ROOT}/abs/{PAPER}v2")]


def test_the_latest_version_named_by_any_abs_page_is_required() -> None:
    # The versionless page was captured before v4 appeared; a later capture of v1's page names v4.
    caps = complete_grab() + [abs_cap(f"{ROOT}/abs/{PAPER}v1", abs_page(latest=4, shown=1))]
    assert [c for c, _, _ in codes(ArxivSite().completeness(caps))] == ["missing-version-abs", "missing-version-pdf"]


def test_an_item_without_an_abs_page_is_incomplete() -> None:
    other = Item("arxiv", "hep-th/9901001", "hep-th/9901001")
    caps = complete_grab() + [cap(f"{ROOT}/pdf/hep-th/9901001v1")]
    problems = codes(ArxivSite().completeness(caps, [Item("arxiv", PAPER, PAPER), other]))
    assert problems == [("no-abs-page", "hep-th/9901001", f"{ROOT}/abs/hep-th/9901001")]


def test_an_abs_page_without_history_is_reported_unreadable() -> None:
    caps = [abs_cap(f"{ROOT}/abs/{PAPER}", "<html><body><p>Something else entirely</p></body></html>")]
    assert codes(ArxivSite().completeness(caps, [Item("arxiv", PAPER, PAPER)])) == [
        ("history-unreadable", PAPER, f"{ROOT}/abs/{PAPER}")]


def test_completeness_on_a_mirror_checks_mirror_urls() -> None:
    site = ArxivSite(SiteOptions(base_url=MIRROR))
    assert site.completeness(complete_grab(root=MIRROR), [Item("arxiv", PAPER, PAPER)]) == []
    caps = complete_grab(root=MIRROR, skip=(f"/pdf/{PAPER}v2",))
    assert codes(site.completeness(caps)) == [("missing-version-pdf", PAPER, f"{MIRROR}/pdf/{PAPER}v2")]
