"""One-off grabs: targets in, finished and checked WARC files out.

`grab()` is the library behind `archiver grab`: it turns targets into items through the site modules, crawls
them (crawl/crawler.py), indexes every finished WARC (CDXJ) and checks it with the checker, including the site
module's completeness rules, before saying whether each item was captured.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archiver import DEFAULT_USER_AGENT
from archiver.crawl.cookies import Cookies, load_cookie_file
from archiver.crawl.crawler import CrawlConfig, Crawler, CrawlOutcome, CrawlStats, check_disk
from archiver.crawl.worker import WorkerConfig
from archiver.errors import UsageError
from archiver.sites import detect_site, get_site
from archiver.sites.base import ROBOTS_OBEY, Item, SiteOptions

_ROOT_MARKERS = ("/abs/", "/pdf/", "/html/", "/src/")


@dataclass
class GrabOptions:
    site: str | None = None
    out_dir: str = "warcs"
    delay: float | None = None
    concurrency: int | None = None
    user_agent: str = DEFAULT_USER_AGENT
    include_source: bool = False
    recursive: bool = False
    depth: int | None = None
    ignore: tuple[str, ...] = ()
    robots: str = ROBOTS_OBEY  # generic: "obey" each host's robots.txt, or "ignore" it
    warc_max_size: int = 5 * 1024**3
    compress_level: int = 6
    max_size: int | None = None
    timeout: float = 30.0
    max_time: float = 3600.0
    tries: int = 3
    verify_tls: bool = True
    cookies: bool = True  # keep cookies for the crawl (as a browser, grab-site and wget --keep-session-cookies)
    load_cookies: str | None = None  # a Netscape cookies.txt to start from (wget --load-cookies); secrets
    log_json: str | None = None
    operator: str | None = None
    prefix: str | None = None
    command_line: str = ""
    check: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # site-module settings (back-off timings, ...)


@dataclass
class ItemResult:
    item: Item
    ok: bool
    problems: list[str]


@dataclass
class GrabReport:
    items: list[ItemResult]
    warcs: list[str]
    indexes: list[str]
    stats: CrawlStats
    check: Any = None  # archiver.warc.check.CheckReport
    interrupted: bool = False
    fatal: str | None = None
    failed_urls: list[tuple[str, str]] = field(default_factory=list)  # (url, why) of non-fatal failures

    @property
    def ok(self) -> bool:
        return not self.interrupted and not self.fatal and all(r.ok for r in self.items) and (
            self.check is None or self.check.ok)


def plan(targets: list[str], options: GrabOptions) -> list[tuple[str, SiteOptions, list[Item]]]:
    """Group targets by site module and parse them into items; a bad target raises a UsageError."""
    if not targets:
        raise UsageError("nothing to grab: give at least one arXiv id or URL")
    groups: dict[tuple[str, str | None], list[Item]] = {}
    site_opts: dict[tuple[str, str | None], SiteOptions] = {}
    for target in targets:
        name = options.site or detect_site(target)
        base_url = None
        if options.site and options.site != "generic" and target.lower().startswith(("http://", "https://")):
            base_url = _root_of(target)
        key = (name, base_url)
        if key not in site_opts:
            site_opts[key] = site_options(options, base_url)
        item = get_site(name, site_opts[key]).parse_target(target)
        if item not in groups.setdefault(key, []):
            groups[key].append(item)
    return [(key[0], site_opts[key], items) for key, items in groups.items()]


def site_options(options: GrabOptions, base_url: str | None) -> SiteOptions:
    return SiteOptions(base_url=base_url, include_source=options.include_source, recursive=options.recursive,
                       depth=options.depth, ignore=tuple(options.ignore), delay=options.delay,
                       concurrency=options.concurrency, robots=options.robots, extra=dict(options.extra))


def worker_config(site_name: str, site_opts: SiteOptions, options: GrabOptions, prefix: str,
                  description: str) -> WorkerConfig:
    """How crawl workers fetch and write, and what every warcinfo record says about the crawl."""
    site = get_site(site_name, site_opts)
    info = [("isPartOf", prefix), ("description", description), ("robots", site.robots_policy),
            ("http-header-user-agent", options.user_agent)]
    if options.command_line:
        info.append(("command-line", options.command_line))
    if options.operator:
        info.append(("operator", options.operator))
    # what was done with cookies, never which (loaded ones are secrets; request records carry what was sent)
    if options.cookies:
        info.append(("cookies", "kept: Set-Cookie answers stored and sent back (RFC 6265 rules), one jar per grab "
                                "or per bulk-run item" + ("; started from a cookies file" if options.load_cookies
                                                         else "")))
    else:
        info.append(("cookies", "not kept (--no-cookies)"))
    return WorkerConfig(site=site_name, site_options=site_opts, out_dir=options.out_dir, prefix=prefix,
                        user_agent=options.user_agent, timeout=options.timeout, max_time=options.max_time,
                        max_size=options.max_size, warc_max_size=options.warc_max_size,
                        compress_level=options.compress_level, verify_tls=options.verify_tls, info=tuple(info),
                        cookies=options.cookies, load_cookies=options.load_cookies if options.cookies else None)


def _root_of(url: str) -> str:
    """The site root of a URL given with --site: everything before /abs/, /pdf/... or else scheme://host."""
    parts = urlsplit(url)
    for marker in _ROOT_MARKERS:
        at = parts.path.find(marker)
        if at >= 0:
            return f"{parts.scheme}://{parts.netloc}{parts.path[:at]}"
    return f"{parts.scheme}://{parts.netloc}"


def grab(targets: list[str], options: GrabOptions,
         progress: Callable[[CrawlStats], None] | None = None) -> GrabReport:
    groups = plan(targets, options)
    # one jar for the whole grab, across its site groups; a bad cookies file stops it before anything is fetched
    jar = None
    if options.cookies:
        jar = Cookies(load_cookie_file(options.load_cookies) if options.load_cookies else ())
    check_disk(options.out_dir)
    results: list[ItemResult] = []
    warcs: list[str] = []
    failed_urls: list[tuple[str, str]] = []
    stats = CrawlStats()
    interrupted, fatal = False, None
    outcomes: list[tuple[str, SiteOptions, list[Item], CrawlOutcome]] = []
    for site_name, site_opts, items in groups:
        site = get_site(site_name, site_opts)
        prefix = options.prefix or _prefix(site_name, items)
        worker = worker_config(site_name, site_opts, options, prefix,
                               f"archiver grab of {', '.join(i.name for i in items)}")
        policy_concurrency = options.concurrency or site.host_policy(_first_host(site, items)).connections
        config = CrawlConfig(worker=worker, concurrency=max(1, min(policy_concurrency, 64)), tries=options.tries,
                             log_json=options.log_json)
        outcome = Crawler(items, config, progress=progress, cookies=jar).run()
        outcomes.append((site_name, site_opts, items, outcome))
        warcs += outcome.warcs
        _merge(stats, outcome.stats)
        failed_urls += [(u.url, u.error or f"HTTP {u.status}") for u in outcome.urls.values()
                        if u.warc is None or u.error]
        if outcome.interrupted or outcome.fatal:
            interrupted, fatal = outcome.interrupted, outcome.fatal
            break

    index_facts: dict[str, list[tuple]] = {}
    for _, _, _, outcome in outcomes:
        index_facts.update(outcome.index)
    indexes = [str(_index(w, index_facts.get(w))) for w in warcs]
    check_report = None
    for site_name, site_opts, items, outcome in outcomes:
        site = get_site(site_name, site_opts)
        problems_by_item: dict[str, list[str]] = {i.name: [] for i in items}
        if options.check and outcome.warcs:
            from archiver.warc.check import check_files

            # a second checking process pays off only on big files; on small ones it only doubles the memory
            big = sum(os.path.getsize(w) for w in outcome.warcs) > 256 * 1024 * 1024
            report = check_files(outcome.warcs, site=site, items=items, jobs=min(2, len(outcome.warcs)) if big else 1)
            check_report = report if check_report is None else _combine(check_report, report)
            for finding in _errors(report):
                for name in _items_concerned(finding, outcome, site, problems_by_item):
                    problems_by_item[name].append(f"{finding.code}: {finding.message}")
        if outcome.interrupted:
            for name in problems_by_item:
                problems_by_item[name].append("interrupted before the grab finished")
        if outcome.fatal:
            for name in problems_by_item:
                problems_by_item[name].append(outcome.fatal)
        if not outcome.warcs:
            for name in problems_by_item:
                problems_by_item[name].append("nothing was captured")
        for item in items:
            seed_fail = [u for u in outcome.urls.values() if u.item == item.name and u.kind == "seed"
                         and u.warc is None]
            problems = problems_by_item[item.name] + [f"{u.url}: {u.error}" for u in seed_fail]
            results.append(ItemResult(item, not problems, problems))
    return GrabReport(results, warcs, indexes, stats, check_report, interrupted, fatal, failed_urls)


def _items_concerned(finding, outcome: CrawlOutcome, site, names: dict[str, list[str]]) -> list[str]:
    """Which items a finding makes incomplete: the item of its URL, else those with records in its file."""
    url = getattr(finding, "url", None)
    if url:
        owner = outcome.urls.get(url)
        if owner is not None:
            return [owner.item]
        if url in names:
            return [url]
        name = site.item_for_url(url)
        if name in names:
            return [name]
    path = getattr(finding, "file", None)
    if path:
        base = os.path.basename(path)
        owners = sorted({u.item for u in outcome.urls.values() if u.warc and os.path.basename(u.warc) == base})
        if owners:
            return owners
    return list(names)


def _errors(report) -> list:
    out = list(getattr(report, "findings", []) or [])
    for f in getattr(report, "files", []) or []:
        out += list(getattr(f, "findings", []) or [])
    return [f for f in out if f.severity == "error"]


def _combine(a, b):
    a.files = list(a.files) + list(b.files)
    a.findings = list(a.findings) + list(b.findings)
    return a


def _index(warc: str, facts: list[tuple] | None) -> Path:
    from archiver.warc.index import write_entries, write_index

    return write_entries(warc, facts) if facts is not None else write_index(warc)


def _first_host(site, items: list[Item]) -> str:
    seeds = site.seeds(items[0])
    return (urlsplit(seeds[0].url).hostname or "") if seeds else ""


def _prefix(site_name: str, items: list[Item]) -> str:
    if site_name == "generic":
        host = urlsplit(items[0].name).hostname or "site"
        base = host.replace(":", "_")
    else:
        base = f"{site_name}-{items[0].safe_name}"
    if len(items) > 1:
        base += f"-and-{len(items) - 1}-more"
    return base


def _merge(total: CrawlStats, part: CrawlStats) -> None:
    total.fetched += part.fetched
    total.failed += part.failed
    total.bytes += part.bytes
    total.refused += part.refused
    total.by_status.update(part.by_status)
    total.skipped.update(part.skipped)
    total.started = min(total.started, part.started)


def command_line() -> str:
    return " ".join([os.path.basename(sys.argv[0]) or "archiver", *sys.argv[1:]])
