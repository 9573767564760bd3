"""The generic site module: any URL, its page requisites, and optionally a recursive crawl.

Scope follows wget and grab-site: with --recursive, links are followed within the start URL's host and path
prefix (like wget --no-parent) up to --depth; page requisites are fetched from any host (like wget -p -H for
requisites); --ignore / --ignore-file regexes drop URLs (grab-site's ignore sets).

robots.txt is obeyed by default (`--robots obey`, as wget and Heritrix do): the crawler fetches and records each
host's robots.txt before that host's other URLs, always fetches the start URLs the user gave (as wget fetches
its command-line URLs), skips other URLs it disallows, and honours Crawl-delay (crawl/crawler.py,
crawl/robots.py). `--robots ignore` does not consult it (grab-site and wget-at's choice for dying sites).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from archiver.crawl.robots import MAX_CRAWL_DELAY
from archiver.errors import TargetError, UsageError
from archiver.sites.base import (
    LINK,
    REDIRECT,
    REQUISITE,
    ROBOTS_IGNORE,
    ROBOTS_MODES,
    ROBOTS_OBEY,
    SEED,
    Capture,
    Item,
    Link,
    Problem,
    Site,
    SiteOptions,
)


class GenericSite(Site):
    name = "generic"
    description = "any http(s) URL: the page, its requisites, and with --recursive the pages under it"

    def __init__(self, options: SiteOptions | None = None) -> None:
        super().__init__(options)
        self._ignore = [re.compile(p) for p in self.options.ignore]
        if self.options.robots not in ROBOTS_MODES:
            raise UsageError(f"robots {self.options.robots!r}: expected one of {', '.join(ROBOTS_MODES)}")

    @classmethod
    def recognises(cls, target: str) -> bool:
        return target.lower().startswith(("http://", "https://"))

    def parse_target(self, target: str) -> Item:
        parts = urlsplit(target.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise TargetError(f"{target!r} is not an http(s) URL (e.g. https://example.org/page.html)")
        url = target.strip().split("#", 1)[0]
        if not parts.path:
            url = url.replace(parts.netloc, parts.netloc + "/", 1) if "?" not in url else url
        return Item(site=self.name, name=url, target=target)

    def seeds(self, item: Item) -> list[Link]:
        return [Link(item.name, SEED, "seed")]

    def forbidden(self, url: str) -> str | None:
        for rx in self._ignore:
            if rx.search(url):
                return f"ignored by --ignore {rx.pattern}"
        return None

    def obeys_robots_txt(self) -> bool:
        return self.options.robots == ROBOTS_OBEY

    @property
    def robots_policy(self) -> str:
        if self.options.robots == ROBOTS_IGNORE:
            return "ignore: robots.txt not consulted (--robots ignore; archival crawl, as grab-site)"
        return ("obey: each host's robots.txt fetched and recorded before its other URLs (RFC 9309, longest "
                "match, User-agent groups for our product token or *); start URLs always fetched; other "
                f"disallowed URLs skipped; Crawl-delay honoured up to {MAX_CRAWL_DELAY:g} s; a 4xx robots.txt "
                "allows everything, a 5xx or unreachable one disallows everything but start URLs")

    def follow(self, item: Item, url: str, depth: int, links: Iterable[Link],
               page_info: dict[str, Any] | None) -> list[tuple[Link, int]]:
        o = self.options
        start = urlsplit(item.name)
        host = (start.hostname or "").lower()
        prefix = start.path.rsplit("/", 1)[0] + "/"
        out = []
        for link in links:
            if link.kind == REQUISITE or link.kind == REDIRECT:
                out.append((link, depth))
            elif link.kind == LINK and o.recursive and (o.depth is None or depth < o.depth):
                parts = urlsplit(link.url)
                if (parts.hostname or "").lower() == host and (parts.path or "/").startswith(prefix):
                    out.append((link, depth + 1))
        return out

    def completeness(self, captures: Iterable[Capture], items: Iterable[Item] | None = None) -> list[Problem]:
        """Each item's start URL must have been captured with a status below 400 (or redirect to one)."""
        if items is None:
            return []
        by_url = {}
        for c in captures:
            if c.record_type == "response":
                by_url[c.url] = c
        problems = []
        for item in items:
            c = by_url.get(item.name)
            if c is None:
                problems.append(Problem("start-url-missing", f"{item.name} was not captured", item=item.name,
                                        url=item.name))
            elif c.status is None or c.status >= 400:
                problems.append(Problem("start-url-failed", f"{item.name} answered HTTP {c.status}",
                                        item=item.name, url=item.name))
            elif c.truncated and c.truncated != "length":
                # cut short by the network (a --max-size cut is the user's choice, so only a warning)
                problems.append(Problem("start-url-truncated", f"{item.name} was cut short ({c.truncated})",
                                        item=item.name, url=item.name))
            elif c.truncated:
                problems.append(Problem("start-url-truncated", f"{item.name} was cut at --max-size",
                                        severity="warning", item=item.name, url=item.name))
        return problems
