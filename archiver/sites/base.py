"""What a site module is.

A site module knows *what* to grab: which targets it accepts, which URLs make up an item, which of a page's
links belong to the item, which answers mean "you are being blocked", and which captures prove the grab worked.
The crawler knows *how* (queueing, politeness, recording); it calls only the methods below, so adding a site
never touches the crawler.

Site objects are built from a picklable `SiteOptions` in every crawl worker process, so they must keep no
state beyond what their constructor derives from the options.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

# Kinds of link, as the crawler treats them.
SEED = "seed"  # where an item starts
LINK = "link"  # navigation (<a href>): followed only when the site module says so; costs one level of depth
REQUISITE = "requisite"  # needed to render a page (CSS, JS, images, fonts, icons): no depth cost
REDIRECT = "redirect"  # a Location header: same kind and depth as the URL that redirected
ROBOTS = "robots"  # a host's /robots.txt, fetched by the crawler before that host's other URLs (--robots obey)

# What `--robots` may say: obey each host's robots.txt (the default), or do not consult it.
ROBOTS_OBEY = "obey"
ROBOTS_IGNORE = "ignore"
ROBOTS_MODES = (ROBOTS_OBEY, ROBOTS_IGNORE)

# How many leading payload bytes (content-encoding removed) `classify` and `Capture.head` see.
HEAD_BYTES = 8192


class Link(NamedTuple):
    """A URL found somewhere, absolute and without its fragment."""

    url: str
    kind: str  # SEED, LINK, REQUISITE or REDIRECT
    how: str  # where it was found, e.g. "a/@href", "link/@href", "img/@src", "css/url", "http/location"


@dataclass(frozen=True)
class Item:
    """The unit of work: one arXiv paper (every version), one start URL, ..."""

    site: str  # the site module's name
    name: str  # canonical name, e.g. "2108.07258", "hep-th/9901001", or a URL for the generic module
    target: str  # what the user typed

    @property
    def safe_name(self) -> str:
        """The name as a file-name fragment (old arXiv ids hold a '/')."""
        out = []
        for ch in self.name:
            out.append(ch if ch.isalnum() or ch in "._-" else "_")
        return "".join(out)[:120]


@dataclass(frozen=True)
class SiteOptions:
    """Everything a site module is built from. Picklable: crawl workers rebuild the site from it."""

    base_url: str | None = None  # root of the site when it is served somewhere else (mirrors, tests)
    include_source: bool = False  # arXiv: also fetch /src/IDvN (robots.txt disallows it; opt-in)
    recursive: bool = False  # generic: follow links within the start URL's host and path prefix
    depth: int | None = None  # generic: link depth limit with --recursive (None: unlimited)
    ignore: tuple[str, ...] = ()  # regexes: URLs matching any are never fetched
    delay: float | None = None  # seconds between requests to one host (None: the site's default)
    concurrency: int | None = None  # requests in flight to one host (None: the site's default)
    robots: str = ROBOTS_OBEY  # generic: "obey" each host's robots.txt or "ignore" it (arXiv has fixed rules)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostPolicy:
    """How politely to treat one host."""

    delay: float  # seconds from the end of one request to the start of the next, per host
    connections: int  # at most this many requests in flight to the host
    backoff_base: float = 60.0  # first wait after a block or rate-limit answer (then doubled, with jitter)
    backoff_max: float = 3600.0  # longest single wait
    backoff_give_up: float = 4 * 3600.0  # total back-off time on one host after which its URLs fail


class Verdict(NamedTuple):
    """What `Site.classify` says of an answer that is not what it claims to be."""

    action: str  # BACKOFF: not a capture, retry later; REJECT: a capture, but not of what was asked
    code: str  # stable finding code, shared with the checker: "bot-block-page", "rate-limited", ...
    message: str


BACKOFF = "backoff"
REJECT = "reject"


@dataclass(frozen=True)
class Capture:
    """One captured response (or resource/revisit), as completeness checks see it."""

    url: str
    status: int | None  # HTTP status; None for non-HTTP records
    content_type: str  # HTTP Content-Type without parameters, lower case ("" when absent)
    head: bytes  # first HEAD_BYTES of the payload, content-encoding removed when possible
    body: bytes | None  # the whole decoded payload when `Site.wants_body(url)` and it is ≤ 8 MiB
    record_id: str
    filename: str
    offset: int
    truncated: str | None = None  # WARC-Truncated value, if any
    record_type: str = "response"


@dataclass(frozen=True)
class Problem:
    """Something a site module found wrong with a grab (missing version, PDF that is not a PDF, ...)."""

    code: str
    message: str
    severity: str = "error"  # "error", "warning" or "notice"
    item: str | None = None  # the item it concerns, when known
    url: str | None = None


class Site:
    """Base class for site modules; every method has a safe default."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, options: SiteOptions | None = None) -> None:
        self.options = options or SiteOptions()

    # ---- targets -------------------------------------------------------------------------------------------
    @classmethod
    def recognises(cls, target: str) -> bool:
        """True when this module should handle `target` without `--site`."""
        return False

    def parse_target(self, target: str) -> Item:
        """Turn what the user typed into an Item, or raise TargetError saying what a valid target looks like."""
        raise NotImplementedError

    def seeds(self, item: Item) -> list[Link]:
        """The URLs an item starts from."""
        raise NotImplementedError

    def item_for_url(self, url: str) -> str | None:
        """The name of the item a URL belongs to, when the URL alone says so (None otherwise)."""
        return None

    # ---- politeness and scope ------------------------------------------------------------------------------
    def host_policy(self, host: str) -> HostPolicy:
        """Politeness for `host`. `options.extra` may shorten the back-off timings (tests, impatient users)."""
        o = self.options
        return HostPolicy(delay=o.delay if o.delay is not None else 0.0,
                          connections=o.concurrency if o.concurrency is not None else 2,
                          backoff_base=float(o.extra.get("backoff_base", 10.0)),
                          backoff_max=float(o.extra.get("backoff_max", 300.0)),
                          backoff_give_up=float(o.extra.get("backoff_give_up", 900.0)))

    def forbidden(self, url: str) -> str | None:
        """A reason never to fetch `url` (honeypots, paths robots.txt disallows, --ignore), or None."""
        return None

    def obeys_robots_txt(self) -> bool:
        """True when the crawler should fetch, record and obey each host's robots.txt (RFC 9309) before that
        host's other URLs: start URLs are fetched whatever it says, other URLs it disallows are skipped, and
        its Crawl-delay raises the host's delay (crawl/robots.py, crawl/crawler.py)."""
        return False

    @property
    def robots_policy(self) -> str:
        """What the crawl does about robots.txt, written into every warcinfo record (`robots` field)."""
        return "robots.txt not consulted (archival crawl, as grab-site and Browsertrix default)"

    # ---- worker side (runs in crawl worker processes, on every response: keep it cheap) --------------------
    def classify(self, url: str, status: int, headers: Mapping[str, str], head: bytes) -> Verdict | None:
        """Say when an answer is a block page, a rate limit or otherwise not the capture of `url`.

        `headers` has lower-case names; `head` is the first HEAD_BYTES of the decoded payload.
        """
        from archiver.content import assess_response

        return assess_response(url, status, headers, head)

    def page_info(self, url: str, tree: Any) -> dict[str, Any] | None:
        """Facts a site module wants from an HTML page (lxml tree); passed back to `follow`."""
        return None

    # ---- coordinator side ----------------------------------------------------------------------------------
    def follow(self, item: Item, url: str, depth: int, links: Iterable[Link],
               page_info: dict[str, Any] | None) -> list[tuple[Link, int]]:
        """Choose which of the links found at `url` (fetched at `depth`) to fetch next, with their depths."""
        return []

    # ---- completeness --------------------------------------------------------------------------------------
    def wants_body(self, url: str) -> bool:
        """True when `completeness` needs the whole payload of this URL (e.g. arXiv abs pages)."""
        return False

    def completeness(self, captures: Iterable[Capture], items: Iterable[Item] | None = None) -> list[Problem]:
        """Problems that make a grab incomplete. With `items`, each of them must be complete."""
        return []
