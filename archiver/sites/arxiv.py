"""arXiv: one item is one paper, with the abstract page and the PDF of every version.

The versions are the point of the grab, and arXiv links them only from the submission history, with relative
``rel="nofollow"`` links, so a crawler that honours nofollow never finds them. This module therefore reads the
history (``div.submission-history``; cross-checked with the dateline and meta tags) and asks for
``/abs/IDvN`` and ``/pdf/IDvN`` for every N from 1 to the latest itself: versions are numbered 1..N with no
gaps, so the latest fixes the set. Everything else a page links to is out of scope except what is needed to
render the pages (requisites) and the "HTML (experimental)" rendering of a version when arXiv links one.

arXiv's robots.txt disallows /src, /e-print, /format, /show-email and more, and hides an /IgnoreMe honeypot on
every page: fetching either marks us as a robot (see /work/shared/reference/arxiv.md §3), so `forbidden`
refuses them; /src is opt-in through `SiteOptions.include_source`.

`classify` is inherited: `archiver.content.assess_response` already knows arXiv's robot-detection page,
"Rate exceeded." answers and PDF URLs answered with HTML.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urljoin, urlsplit

import lxml.html
from lxml import etree

from archiver.errors import UsageError
from archiver.sites.arxiv_ids import (
    ARXIV_HOSTS,
    PAPER_KINDS,
    PaperPath,
    looks_like_arxiv,
    parse_arxiv_id,
    parse_arxiv_path,
    split_paper_path,
)
from archiver.sites.base import (
    LINK,
    REDIRECT,
    REQUISITE,
    SEED,
    Capture,
    HostPolicy,
    Item,
    Link,
    Problem,
    Site,
    SiteOptions,
)

DEFAULT_ROOT = "https://arxiv.org"
HONEYPOT = "/IgnoreMe"

# arxiv.org/robots.txt, "User-agent: *" (snapshot 2026-06-26). Robots rules are case-sensitive path prefixes.
ROBOTS_DISALLOW = (
    "/user", "/e-print", "/src", "/ps", "/dvi", "/cookies", "/form", "/find", "/view", "/ftp", "/refs",
    "/cits", "/format", "/PS_cache", "/Stats", "/seek-and-destroy", HONEYPOT, "/oai2", "/auth", "/tb",
    "/tb-recent", "/trackback", "/prevnext", "/ct", "/api", "/search", "/set_author_id", "/show-email",
)

# Politeness for arXiv's own hosts. The Terms of Use ask API users for one request every three seconds on a
# single connection; blocks and "Rate exceeded." answers come without Retry-After and were reported to last
# about 20 minutes, hence the long back-off.
ARXIV_DELAY = 3.0
ARXIV_BACKOFF_BASE = 60.0
ARXIV_BACKOFF_MAX = 900.0
ARXIV_BACKOFF_GIVE_UP = 2 * 3600.0

# Longest first, so that a reason names the most specific rule (/format rather than /form).
_ROBOTS_LONGEST_FIRST = tuple(sorted(ROBOTS_DISALLOW, key=len, reverse=True))

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Compiled once: page_info runs on every HTML page a crawl fetches.
_HAS_CLASS = "contains(concat(' ', normalize-space(@class), ' '), ' {} ')"
_X_HISTORY = etree.XPath(f"//div[{_HAS_CLASS.format('submission-history')}]")
_X_DATELINE = etree.XPath(f"//div[{_HAS_CLASS.format('dateline')}]")
_X_VERSION_META = etree.XPath("//meta[@property='og:url' or @name='citation_pdf_url']/@content")
_X_HTML_LINK = etree.XPath("//a[@id='latexml-download-link']/@href")
_X_TEXT = etree.XPath("string()")

_HISTORY_VERSION = re.compile(r"\[v(\d+)\]")
_WITHDRAWN = re.compile(r"\(withdrawn\)", re.I)
_DATELINE_VERSION = re.compile(r"\bv(\d+)\b")
_URL_VERSION = re.compile(r"/(?:abs|pdf)/\S*?\dv(\d+)/?$")


class AbsFacts(NamedTuple):
    """What an abs page says about its paper's versions."""

    latest: int | None  # highest version any part of the page names; None when the page names none
    withdrawn: frozenset[int]  # versions the submission history marks "(withdrawn)"
    html_links: tuple[str, ...]  # hrefs of the "HTML (experimental)" link, as written


def read_abs_page(tree: Any) -> AbsFacts:
    """Read the version facts from a parsed abs page (an lxml.html element)."""
    versions: list[int] = []
    withdrawn: set[int] = set()
    for div in _X_HISTORY(tree):
        text = _X_TEXT(div)
        marks = list(_HISTORY_VERSION.finditer(text))
        for i, m in enumerate(marks):
            n = int(m.group(1))
            versions.append(n)
            # A version's line runs to the next "[vN]"; "(withdrawn)" in it marks that version.
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            if _WITHDRAWN.search(text, m.end(), end):
                withdrawn.add(n)
    # The dateline names the latest version ("last revised … (this version, v3)" or "latest version … (v3)")
    # and og:url the one on display: if the history was cut short or restyled, these still bound the set.
    for div in _X_DATELINE(tree):
        versions.extend(int(v) for v in _DATELINE_VERSION.findall(_X_TEXT(div)))
    for content in _X_VERSION_META(tree):
        m = _URL_VERSION.search(content.strip())
        if m:
            versions.append(int(m.group(1)))
    versions = [v for v in versions if v >= 1]
    return AbsFacts(max(versions) if versions else None, frozenset(withdrawn),
                    tuple(h.strip() for h in _X_HTML_LINK(tree)))


def _origin(parts: SplitResult) -> tuple[str, str, int] | None:
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


class ArxivSite(Site):
    name = "arxiv"
    description = "arXiv papers: the abstract page and PDF of every version (and HTML where arXiv has it)"

    def __init__(self, options: SiteOptions | None = None) -> None:
        super().__init__(options)
        o = self.options
        root = (o.base_url or DEFAULT_ROOT).strip().rstrip("/")
        parts = urlsplit(root)
        origin = _origin(parts)
        if origin is None or parts.query or parts.fragment:
            raise UsageError(f"base URL {o.base_url!r} must be an http(s) URL such as http://127.0.0.1:8080")
        self.root = root
        self._prefix = parts.path
        origins = {origin}
        if origin == ("https", "arxiv.org", 443) and not self._prefix:
            # Production pages mix https://arxiv.org with http:// and www. links (dateline, licence, search):
            # all of them are the same site.
            origins |= {(s, h, p) for s, p in _DEFAULT_PORTS.items() for h in ("arxiv.org", "www.arxiv.org")}
        self._origins = frozenset(origins)
        self._root_netloc = parts.netloc.lower()
        self._root_hostname = origin[1]
        try:
            self._ignore = tuple(re.compile(p) for p in o.ignore)
        except re.error as e:
            raise UsageError(f"--ignore {e.pattern!r} is not a valid regular expression: {e}") from None

    # ---- targets -------------------------------------------------------------------------------------------
    @classmethod
    def recognises(cls, target: str) -> bool:
        return looks_like_arxiv(target)

    def parse_target(self, target: str) -> Item:
        """Any id or URL of any version means the whole paper: the item is the canonical versionless id."""
        text = target.strip()
        local = self._local(text) if self.options.base_url else None
        aid = parse_arxiv_path(*local) if local is not None else parse_arxiv_id(text)
        return Item(site=self.name, name=aid.id, target=target)

    def seeds(self, item: Item) -> list[Link]:
        # The versionless abs page shows the latest version and the whole history; the versionless PDF is
        # what people cite and link, so it is archived under its own URL too.
        return [Link(self._url("abs", item.name), SEED, "seed"), Link(self._url("pdf", item.name), SEED, "seed")]

    def item_for_url(self, url: str) -> str | None:
        found = self._paper(url)
        if found is None or found[0].kind not in ("abs", "pdf", "html", "src"):
            return None
        return found[0].arxiv_id.id

    # ---- politeness and scope ------------------------------------------------------------------------------
    def host_policy(self, host: str) -> HostPolicy:
        o = self.options
        extra = o.extra or {}

        def knob(key: str, default: float) -> float:
            value = extra.get(key)
            return float(value) if value is not None else default

        if self._is_arxiv_host(host):
            return HostPolicy(
                delay=o.delay if o.delay is not None else ARXIV_DELAY,
                connections=o.concurrency if o.concurrency is not None else 1,
                backoff_base=knob("backoff_base", ARXIV_BACKOFF_BASE),
                backoff_max=knob("backoff_max", ARXIV_BACKOFF_MAX),
                backoff_give_up=knob("backoff_give_up", ARXIV_BACKOFF_GIVE_UP),
            )
        defaults = HostPolicy(delay=0.0, connections=1)
        return HostPolicy(
            delay=o.delay if o.delay is not None else 0.0,
            connections=o.concurrency if o.concurrency is not None else 1,
            backoff_base=knob("backoff_base", defaults.backoff_base),
            backoff_max=knob("backoff_max", defaults.backoff_max),
            backoff_give_up=knob("backoff_give_up", defaults.backoff_give_up),
        )

    def forbidden(self, url: str) -> str | None:
        parts = urlsplit(url)
        local = self._local(url)
        if local is not None:
            reason = self._robots_reason(local[0])
        elif (parts.hostname or "").lower() in ARXIV_HOSTS:
            # Production arXiv reached off-root (base_url points at a mirror): its robots.txt still applies.
            reason = self._robots_reason(parts.path)
        elif parts.path.rstrip("/").endswith(HONEYPOT):
            # Mirrors of arXiv's pages carry the same hidden link; nothing else is named like it.
            reason = f"{HONEYPOT} is arXiv's robot honeypot; fetching it gets the crawler blocked"
        else:
            reason = None
        if reason:
            return reason
        for rx in self._ignore:
            if rx.search(url):
                return f"matches --ignore {rx.pattern!r}"
        return None

    # ---- worker side ---------------------------------------------------------------------------------------
    def page_info(self, url: str, tree: Any) -> dict[str, Any] | None:
        """Versions of the paper, read from an abs page of this site; None for every other page."""
        found = self._paper(url)
        if found is None or found[0].kind != "abs" or found[0].rest not in ("", "/"):
            return None
        here = found[0].arxiv_id
        facts = read_abs_page(tree)
        latest = facts.latest
        html_versions: dict[int, str] = {}
        for href in facts.html_links:
            absolute = urljoin(url, href)
            link = self._paper(absolute)
            pp = link[0] if link else split_paper_path(urlsplit(absolute).path)
            if pp is None or pp.kind != "html" or pp.arxiv_id.id != here.id:
                continue
            # arXiv always versions this link; an unversioned one names the version on display.
            version = pp.arxiv_id.version or here.version or latest
            if version:
                html_versions[version] = absolute
        return {
            "arxiv_id": here.id,
            "version": here.version or latest,
            "versions": list(range(1, latest + 1)) if latest else [],
            "withdrawn": sorted(facts.withdrawn),
            "latest": latest,
            "html_versions": html_versions,
        }

    # ---- coordinator side ----------------------------------------------------------------------------------
    def follow(self, item: Item, url: str, depth: int, links: Iterable[Link],
               page_info: dict[str, Any] | None) -> list[tuple[Link, int]]:
        paper = item.name
        chosen: dict[str, tuple[Link, int]] = {}

        def take(link: Link, at: int) -> None:
            if link.url not in chosen and self.forbidden(link.url) is None:
                chosen[link.url] = (link, at)

        here = self._paper(url)
        ours = here is not None and here[0].arxiv_id.id == paper
        if ours and here[0].kind == "abs" and page_info and page_info.get("arxiv_id") == paper:
            # Built from the history rather than taken from the page's links: those are rel=nofollow and the
            # version on display is not linked at all.
            for n in range(1, int(page_info.get("latest") or 0) + 1):
                versioned = f"{paper}v{n}"
                take(Link(self._url("abs", versioned), LINK, "arxiv/submission-history"), depth + 1)
                # Attempted for withdrawn versions too: some still have a PDF, and completeness accepts a 404.
                take(Link(self._url("pdf", versioned), LINK, "arxiv/submission-history"), depth + 1)
                if self.options.include_source:
                    take(Link(self._url("src", versioned), LINK, "arxiv/submission-history"), depth + 1)
            # Keys are ints, but strings if page_info travelled through JSON.
            for _version, href in sorted((page_info.get("html_versions") or {}).items(), key=lambda kv: int(kv[0])):
                target = self._paper(href)
                if target and target[0].kind == "html" and target[0].arxiv_id.id == paper:
                    take(Link(href, LINK, "a/@href#latexml-download-link"), depth + 1)

        for link in links:
            if link.kind == REQUISITE:
                if self._requisite_in_scope(link.url, paper):
                    take(link, depth)
            elif link.kind == REDIRECT:
                if here is None:
                    # Only requisites are fetched outside the paper URL space, so this redirected one.
                    if self._requisite_in_scope(link.url, paper):
                        take(link, depth)
                elif ours and self._in_paper_space(link.url, paper):
                    take(link, depth)
            elif link.kind == LINK and ours and self.options.include_source:
                # Ancillary files (a.anc-file-name) live under /src/IDvN/anc/: source, so opt-in like /src.
                target = self._paper(link.url)
                if (target and target[0].kind == "src" and target[0].arxiv_id.id == paper
                        and (target[0].rest == "/anc" or target[0].rest.startswith("/anc/"))):
                    take(link, depth + 1)
        return list(chosen.values())

    # ---- completeness --------------------------------------------------------------------------------------
    def wants_body(self, url: str) -> bool:
        found = self._paper(url)
        return found is not None and found[0].kind == "abs"

    def completeness(self, captures: Iterable[Capture], items: Iterable[Item] | None = None) -> list[Problem]:
        """Every version 1..latest of every paper needs a 200 abs page and a 200 PDF that is a PDF.

        Only exact ``/abs/IDvN`` and ``/pdf/IDvN`` captures count: one reached through a redirect is recorded
        under its final URL, and that final URL is what a replay of ``/pdf/IDvN`` looks up.
        """
        versions: dict[tuple[str, str, int], list[Capture]] = defaultdict(list)
        facts: dict[str, list[AbsFacts]] = defaultdict(list)
        unreadable: dict[str, str] = {}
        seen: dict[str, str] = {}
        for c in captures:
            if c.record_type not in ("response", "revisit"):
                continue
            found = self._paper(c.url)
            if found is None:
                continue
            pp, query = found
            paper = pp.arxiv_id.id
            seen.setdefault(paper, c.url)
            if pp.rest or query or pp.kind not in ("abs", "pdf"):
                continue
            if pp.arxiv_id.version:
                versions[(paper, pp.kind, pp.arxiv_id.version)].append(c)
            if pp.kind == "abs" and c.status == 200 and c.body:
                page = _read_body(c.body)
                if page is not None and page.latest:
                    facts[paper].append(page)
                else:
                    unreadable.setdefault(paper, c.url)

        papers = dict.fromkeys(seen)
        if items is not None:
            wanted = [i.name for i in items if i.site == self.name]
            # The items, plus any other paper whose history we can read; a stray capture alone is no item.
            papers = dict.fromkeys(wanted + [p for p in seen if p in facts])

        problems: list[Problem] = []
        for paper in papers:
            pages = facts.get(paper)
            if not pages:
                if paper in unreadable:
                    problems.append(Problem(
                        "history-unreadable",
                        f"the abs page of {paper} was captured but no version could be read from it "
                        "(no submission history, dateline or version meta tag in the recorded body)",
                        item=paper, url=unreadable[paper]))
                else:
                    problems.append(Problem("no-abs-page", f"no abs page of {paper} was captured with status 200",
                                            item=paper, url=self._url("abs", paper)))
                continue
            latest = max(p.latest or 0 for p in pages)
            withdrawn = frozenset().union(*(p.withdrawn for p in pages))
            for n in range(1, latest + 1):
                problems += self._check_version(paper, n, "abs", versions.get((paper, "abs", n), []), False)
                problems += self._check_version(paper, n, "pdf", versions.get((paper, "pdf", n), []),
                                                n in withdrawn)
        return problems

    def _check_version(self, paper: str, n: int, kind: str, caps: list[Capture], withdrawn: bool) -> list[Problem]:
        url = self._url(kind, f"{paper}v{n}")
        what = f"v{n} {'abstract page' if kind == 'abs' else 'PDF'} of {paper}"
        good = [c for c in caps if c.status == 200 and not c.truncated]
        if kind == "pdf":
            # A revisit record carries no payload of its own; its original was checked where it was written.
            if any(c.head.startswith(b"%PDF") or (c.record_type == "revisit" and not c.head) for c in good):
                return []
        elif good:
            return []
        # A withdrawn version usually has no PDF at all; whatever arXiv answered, the paper is still complete.
        severity = "warning" if withdrawn else "error"
        if withdrawn and caps and all(c.status in (404, 410) for c in caps):
            return []
        if not caps:
            code = "missing-version-abs" if kind == "abs" else "missing-version-pdf"
            return [Problem(code, f"{what} was not captured", severity, paper, url)]
        if good:
            c = good[0]
            return [Problem("pdf-not-pdf", f"{what} is not a PDF: it starts {c.head[:16]!r} ({c.content_type or 'no type'})",
                            severity, paper, c.url)]
        truncated = [c for c in caps if c.status == 200 and c.truncated]
        if truncated:
            return [Problem("capture-truncated", f"{what} was captured truncated ({truncated[0].truncated})",
                            severity, paper, truncated[0].url)]
        statuses = ", ".join(sorted({str(c.status) for c in caps}))
        return [Problem("version-not-200", f"{what} answered HTTP {statuses}, never 200", severity, paper, caps[0].url)]

    # ---- URL helpers ---------------------------------------------------------------------------------------
    def _url(self, kind: str, versioned_id: str) -> str:
        return f"{self.root}/{kind}/{versioned_id}"

    def _local(self, url: str) -> tuple[str, str] | None:
        """(path below the root, query) when `url` is on this site's root, else None."""
        parts = urlsplit(url)
        if _origin(parts) not in self._origins:
            return None
        path = parts.path or "/"
        if self._prefix:
            if path == self._prefix:
                path = "/"
            elif path.startswith(self._prefix + "/"):
                path = path[len(self._prefix):]
            else:
                return None
        return path, parts.query

    def _paper(self, url: str) -> tuple[PaperPath, str] | None:
        """The paper URL `url` is on this site's root, with its query; None for anything else."""
        local = self._local(url)
        if local is None:
            return None
        pp = split_paper_path(*local)
        return (pp, local[1]) if pp is not None else None

    def _in_paper_space(self, url: str, paper: str) -> bool:
        found = self._paper(url)
        if found is None:
            return False
        pp, query = found
        # /abs/ID?context=cs.PL is the same page in another browse context: not a capture we need.
        return pp.arxiv_id.id == paper and not (pp.kind == "abs" and query)

    def _requisite_in_scope(self, url: str, paper: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme.lower() not in _DEFAULT_PORTS:
            return False
        if self._paper(url) is not None:
            # e.g. images of /html/IDvN or a canonical <link>: fine for this paper, never for another one.
            return self._in_paper_space(url, paper)
        if self._local(url) is not None:
            return True  # static files on the site; forbidden() still applies robots.txt
        if (parts.hostname or "").lower() in ARXIV_HOSTS:
            # Production arXiv while crawling a mirror: its paper URLs (canonical links) are not requisites,
            # and following them would crawl arxiv.org from a test run.
            first = parts.path.lstrip("/").split("/", 1)[0].lower()
            return first not in PAPER_KINDS
        return True

    def _robots_reason(self, path: str) -> str | None:
        if path.startswith(HONEYPOT):
            return f"{HONEYPOT} is arXiv's robot honeypot; fetching it gets the crawler blocked"
        for prefix in _ROBOTS_LONGEST_FIRST:
            if path.startswith(prefix):
                if prefix == "/src":
                    if self.options.include_source:
                        continue
                    return "arXiv's robots.txt disallows /src (source files are opt-in: --include-source)"
                return f"arXiv's robots.txt disallows {prefix}"
        return None

    def _is_arxiv_host(self, host: str) -> bool:
        h = host.strip().lower()
        bare = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
        if bare in ARXIV_HOSTS:
            return True
        # "127.0.0.1:8080" must match the root's port; a bare host name matches the root's host.
        return h == self._root_netloc or (":" not in h and h == self._root_hostname)


def _read_body(body: bytes) -> AbsFacts | None:
    try:
        return read_abs_page(lxml.html.fromstring(body))
    except (etree.ParserError, ValueError):
        return None
