"""The crawl coordinator: what to fetch next, when, and by whom.

It owns the frontier (what is queued, what was seen), asks the site module what to follow, keeps per-host
politeness across every item in flight (so arXiv gets one connection and its delay however many items are being
grabbed), and hands tasks to worker processes (worker.py), each recording into its own WARC files.

Two ways to use it:
- a grab: a fixed list of items, all recorded into shared files spread over the workers (both cores busy);
- a bulk run: items arrive from `feed` while others finish; each item is pinned to one worker and gets its own
  WARC files, finished as soon as the item's last URL is done and handed to `on_item_done`.

robots.txt (when the site module obeys it, `Site.obeys_robots_txt`): the first URL that comes up for an origin
(scheme, host, port) starts a fetch of its /robots.txt, dispatched like any URL (host politeness, retries,
back-off) and recorded in the WARC; that origin's URLs wait in `_Robots.held` meanwhile, other hosts go on.
Once it is parsed, start URLs (and their redirects) go ahead whatever it says, other URLs it disallows are
skipped and logged, and its Crawl-delay raises the host's delay. The rules are kept for the crawl (24 h at
most, RFC 9309 §2.4), so in a bulk run robots.txt is fetched once per origin, not once per item, and its records
are in the WARC of the item that first needed it: a run of thousands of single pages on one host would
otherwise double its requests, and a WARC needs no robots.txt to be replayed.

Cookies (cookies.py; off with `WorkerConfig.cookies=False`, i.e. --no-cookies): the jar is here, so every
worker shares it. Each task carries the Cookie header for its URL, computed when it is dispatched, and each
result brings back the response's Set-Cookie headers (every redirect hop is a task of its own). A grab has one
jar; a bulk run one per item, so an item's capture never depends on which items came before it. A redirect to a
URL already fetched is normally dropped as seen; it is fetched again when it is a hop of the same redirect chain
and the cookies it would now get differ from every earlier fetch of it in the chain ("set a cookie and redirect
back"), which cannot loop: MAX_REDIRECTS still bounds the chain. Tasks dispatched before an earlier answer's
cookie arrived go without it, as a browser's parallel requests would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from typing import Any, TextIO
from urllib.parse import urlsplit

from archiver.crawl.cookies import Cookies, load_cookie_file
from archiver.crawl.links import normalise
from archiver.crawl.politeness import HostState
from archiver.crawl.robots import (
    MAX_CRAWL_DELAY,
    MAX_ROBOTS_REDIRECTS,
    ROBOTS_MAX_AGE,
    RobotsRules,
    Rule,
    origin_of,
    parse_robots,
    path_of,
    product_token,
)
from archiver.crawl.worker import FetchResult, Task, WorkerConfig, worker_main
from archiver.errors import ArchiverError
from archiver.sites import get_site
from archiver.sites.base import BACKOFF, REDIRECT, REQUISITE, ROBOTS, SEED, Item

MAX_REDIRECTS = 20
PREFETCH = 4  # tasks waiting inside each worker when politeness allows it


@dataclass
class _Pending:
    url: str
    kind: str
    depth: int
    item: int
    referer: str | None
    redirects: int = 0
    attempts: int = 0
    robots_for: str | None = None  # ROBOTS: the origin whose rules this fetch decides (redirects may leave it)
    cookie: str | None = None  # the Cookie header it was last dispatched with
    chain: tuple[tuple[str, str | None], ...] = ()  # REDIRECT: (seen key, Cookie sent) of the earlier hops


@dataclass
class UrlOutcome:
    url: str
    item: str
    kind: str
    status: int | None
    error: str | None
    warc: str | None
    length: int
    verdict: str | None = None
    truncated: str | None = None


@dataclass
class CrawlStats:
    started: float = field(default_factory=time.time)
    fetched: int = 0
    failed: int = 0
    bytes: int = 0
    by_status: Counter = field(default_factory=Counter)
    refused: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count of URLs never fetched
    queued: int = 0
    current: str = ""

    @property
    def elapsed(self) -> float:
        return time.time() - self.started


@dataclass
class CrawlOutcome:
    warcs: list[str]
    urls: dict[str, UrlOutcome]
    stats: CrawlStats
    interrupted: bool = False
    fatal: str | None = None
    index: dict[str, list[tuple]] = field(default_factory=dict)  # finished WARC -> its index facts


@dataclass(frozen=True)
class CrawlConfig:
    worker: WorkerConfig
    concurrency: int = 2
    tries: int = 3
    log_json: str | None = None
    per_item_warcs: bool = False  # give every item WARC files of its own (bulk runs)


@dataclass
class ItemDone:
    """What `on_item_done` receives when an item has no URL left to fetch."""

    item: Item
    warcs: list[str]
    urls: list[UrlOutcome]
    index: dict[str, list[tuple]] = field(default_factory=dict)  # its WARCs' index facts


class _Robots:
    """One origin's robots.txt in this crawl: its rules once known, and the URLs waiting for them."""

    __slots__ = ("origin", "rules", "fetched", "held", "why")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.rules: RobotsRules | None = None  # None: being fetched
        self.fetched = 0.0  # monotonic time the rules were decided
        self.held: list[_Pending] = []  # the origin's URLs that came up while it was fetched
        self.why = ""  # how the rules were decided: "HTTP 200", "HTTP 404: no robots.txt", ...


class _ItemState:
    __slots__ = ("item", "pending", "urls", "worker", "writer", "finishing", "host")

    def __init__(self, item: Item, worker: int | None, writer: str | None) -> None:
        self.item = item
        self.pending = 0  # queued + in flight
        self.urls: list[UrlOutcome] = []
        self.worker = worker
        self.writer = writer
        self.finishing = False
        self.host: str | None = None


class Crawler:
    def __init__(self, items: list[Item], config: CrawlConfig,
                 progress: Callable[[CrawlStats], None] | None = None, *,
                 feed: Callable[[int], list[Item]] | None = None,
                 on_item_done: Callable[[ItemDone], None] | None = None,
                 tick: Callable[[], None] | None = None, max_items: int | None = None,
                 cookies: Cookies | None = None) -> None:
        """`cookies`: the jar to use (a grab of several site groups keeps one); by default a new one, loaded
        from `config.worker.load_cookies`. Ignored with per-item WARCs (a jar per item) or cookies off."""
        self.config = config
        self.site = get_site(config.worker.site, config.worker.site_options)
        self.progress = progress
        self.feed = feed
        self.on_item_done = on_item_done
        self.tick = tick
        self.max_items = max_items or max(1, config.concurrency)
        self.stats = CrawlStats()
        self.hosts: dict[str, HostState] = {}
        self.seen: set[str] = set()
        self.tasks: dict[int, tuple[_Pending, int]] = {}  # task id -> (pending, worker index)
        self.outcomes: dict[str, UrlOutcome] = {}
        self.items: list[_ItemState] = []
        self._initial = list(items)
        self._active = 0
        self._feed_done = feed is None
        self._next_id = 0
        self._log: TextIO | None = None
        self._outstanding: list[int] = []
        self._alive: set[int] = set()
        self._conns: list = []
        self.index: dict[str, list[tuple]] = {}
        self._obeys_robots = self.site.obeys_robots_txt()
        self._robots_token = product_token(config.worker.user_agent)
        self.robots: dict[str, _Robots] = {}  # origin -> its robots.txt
        self._robots_skipped: set[str] = set()  # seen keys already skipped (and logged) as disallowed
        self._result_worker: int | None = None  # the worker whose result is being handled (for crawl-log lines)
        self._cookies_on = config.worker.cookies
        self._loaded_cookies: list[Any] = []  # from --load-cookies: every item's jar starts with them (bulk runs)
        if self._cookies_on and config.worker.load_cookies and (cookies is None or config.per_item_warcs):
            self._loaded_cookies = load_cookie_file(config.worker.load_cookies)
        self._jar: Cookies | None = None  # the crawl's jar (a grab)
        if self._cookies_on and not config.per_item_warcs:
            self._jar = cookies if cookies is not None else Cookies(self._loaded_cookies)
        self._item_jars: dict[int, Cookies] = {}  # bulk runs: item index -> its own jar, dropped when done

    # ---- items -----------------------------------------------------------------------------------------------
    def _add_item(self, item: Item) -> None:
        index = len(self.items)
        worker = writer = None
        if self.config.per_item_warcs:
            worker = min(self._alive, key=lambda w: (self._load(w), w))
            writer = f"{self.config.worker.prefix}-{item.safe_name}"
        state = _ItemState(item, worker, writer)
        self.items.append(state)
        self._active += 1
        for link in self.site.seeds(item):
            self._enqueue(_Pending(link.url, SEED, 0, index, None))
        self._maybe_item_done(index)

    def _load(self, worker: int) -> int:
        return sum(1 for s in self.items if s.worker == worker and not s.finishing)

    def _maybe_item_done(self, index: int) -> None:
        state = self.items[index]
        if state.pending or state.finishing:
            return
        state.finishing = True
        if state.writer is not None and state.worker in self._alive:
            self._conns[state.worker].send(("finish", state.writer))  # answered by "item-files"
        else:
            self._item_finished(index, {})  # shared writers: the files are finished with the crawl

    def _item_finished(self, index: int, files: dict[str, list[tuple]]) -> None:
        state = self.items[index]
        self._active -= 1
        self._item_jars.pop(index, None)
        if self.on_item_done is not None:
            self.on_item_done(ItemDone(state.item, sorted(files), state.urls, files))

    # ---- frontier --------------------------------------------------------------------------------------------
    def _seen_key(self, p: _Pending) -> str:
        key = normalise(p.url)
        # in a bulk run two items may share a URL (a stylesheet): each item's WARC must hold its own copy
        return f"{p.item}\t{key}" if self.config.per_item_warcs else key

    def _enqueue(self, p: _Pending, front: bool = False, again: bool = False) -> None:
        """Queue `p` unless seen (`again`: fetch a seen URL once more; `front`: a retry of a URL in hand)."""
        if not front:
            key = self._seen_key(p)
            if key in self.seen and not again:
                return
            reason = self.site.forbidden(p.url)
            if reason:
                self.stats.skipped[reason] += 1
                return
            if self._robots_disallow(p):
                return  # not added to `seen`: the same URL may still come up as another item's start URL
            self.seen.add(key)
        state = self._host_state(p.url)
        if not front:
            self.items[p.item].pending += 1
        if state.gave_up:
            self._fail(p, state.gave_up)
            return
        if not front and self._robots_hold(p):
            self.stats.queued += 1
            return
        if front:
            state.queue.appendleft(p)
        else:
            state.queue.append(p)
        self.stats.queued += 1

    def _host_state(self, url: str) -> HostState:
        host = (urlsplit(url).hostname or "").lower()
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = HostState(host, self.site.host_policy(host))
        return state

    # ---- robots.txt ------------------------------------------------------------------------------------------
    def _robots_hold(self, p: _Pending) -> bool:
        """Hold `p` while its origin's robots.txt is fetched (starting that fetch when it is the origin's first
        URL, or when the rules are older than a day); False when the rules are known or do not apply."""
        if not self._obeys_robots or p.kind == ROBOTS:
            return False
        origin = origin_of(p.url)
        if origin is None:
            return False
        rs = self.robots.get(origin)
        if rs is None:
            rs = self.robots[origin] = _Robots(origin)
            self._fetch_robots(origin, p.item, origin + "/robots.txt")
        elif rs.rules is not None and time.monotonic() - rs.fetched > ROBOTS_MAX_AGE:
            rs.rules = None
            self._fetch_robots(origin, p.item, origin + "/robots.txt")
        if rs.rules is not None:
            return False
        rs.held.append(p)
        return True

    def _fetch_robots(self, origin: str, item: int, url: str, hops: int = 0, referer: str | None = None) -> None:
        """Queue a fetch of `origin`'s robots.txt (or of where it redirected), first in its host's queue. It
        counts as one of `item`'s URLs, so its records go into that item's WARC before the item is finished."""
        p = _Pending(url, ROBOTS, 0, item, referer, redirects=hops, robots_for=origin)
        if hops == 0:
            self.seen.add(self._seen_key(p))  # a link to /robots.txt needs no second fetch
        self.items[item].pending += 1
        state = self._host_state(url)
        if state.gave_up:
            self._fail(p, state.gave_up)
            return
        state.queue.appendleft(p)
        self.stats.queued += 1

    def _robots_disallow(self, p: _Pending) -> bool:
        """Skip (and log) `p` when its origin's known rules disallow it. Start URLs are never skipped."""
        if not self._obeys_robots or p.kind in (SEED, ROBOTS):
            return False
        rs = self.robots.get(origin_of(p.url) or "")
        if rs is None or rs.rules is None:
            return False
        rule = rs.rules.verdict(p.url)
        if rule is None:
            return False
        self._robots_skip(p, rs, rule)
        return True

    def _robots_skip(self, p: _Pending, rs: _Robots, rule: Rule) -> None:
        key = self._seen_key(p)
        if key in self._robots_skipped:
            return  # counted and logged the first time it came up
        self._robots_skipped.add(key)
        assert rs.rules is not None
        if rs.rules.disallow_all:
            summary = (f"{rs.origin}/robots.txt unreachable ({rs.why}): all but start URLs count as disallowed "
                       "(RFC 9309 §2.3.1.4; --robots ignore to fetch anyway)")
            why = f"robots.txt unreachable ({rs.why})"
        else:
            summary = f"disallowed by {rs.origin}/robots.txt (--robots ignore to fetch anyway)"
            group = "User-agent: " + (rs.rules.group or "*")
            why = f"{group}, {rule}"
        self.stats.skipped[summary] += 1
        state = self.items[p.item]
        entry: dict[str, Any] = {"url": p.url, "status": None, "skipped": "robots.txt", "reason": why,
                                 "kind": p.kind, "item": state.item.name}
        if p.referer:
            entry["via"] = p.referer
        self._write_log(entry)
        # ... and in the crawl log stored in the WARC, by the worker holding the item's (or the last) file
        worker = state.worker if state.worker is not None else self._result_worker
        if worker not in self._alive:
            worker = min(self._alive, default=None)
        if worker is not None:
            try:
                self._conns[worker].send(("log", state.writer, {"date": _now_iso(), **entry}))
            except OSError:
                pass

    def _robots_result(self, p: _Pending, r: FetchResult) -> None:
        """A robots.txt fetch ended with an answer (or none): decide the origin's rules (RFC 9309 §2.3.1)."""
        origin = p.robots_for or ""
        status = r.status

        def decide(rules: RobotsRules, why: str) -> None:
            self._robots_decide(origin, rules, why)
            # http://a/robots.txt redirected to https://a/robots.txt: that is https://a's robots.txt too, and
            # its first URL (the start URL redirects the same way) need not fetch it again
            other = origin_of(p.url)
            if other and other not in self.robots and path_of(p.url) == "/robots.txt" and status is not None:
                self.robots[other] = _Robots(other)
                self._robots_decide(other, rules, why)

        if status is None:
            decide(RobotsRules.disallow_everything(), f"no answer: {r.error or 'failed'}")
        elif 200 <= status < 300:
            decide(parse_robots(r.body or b"", self._robots_token), f"HTTP {status}")
        elif 300 <= status < 400:
            target = next((link.url for link in r.links if link.kind == REDIRECT), None)
            if target is not None and p.redirects < MAX_ROBOTS_REDIRECTS:
                self._fetch_robots(origin, p.item, target, p.redirects + 1, referer=p.url)
            else:  # §2.3.1.2: past five redirects it MAY count as unavailable
                self._robots_decide(origin, RobotsRules.allow_everything(),
                                    f"HTTP {status} after {p.redirects} redirects: counted as no robots.txt")
        elif status < 500:  # §2.3.1.3: 4xx (401 and 403 too) means there is no robots.txt: all allowed
            decide(RobotsRules.allow_everything(), f"HTTP {status}: no robots.txt")
        else:
            # §2.3.1.4: a server error means the rules are unknown and the crawler MUST assume complete
            # disallow. wget treats any failure as "allow everything"; we follow the RFC, because a server that
            # fails on its smallest file is the one a crawl must not press, and "politeness is a feature". Start
            # URLs are still fetched, the summary says why the rest was not, and --robots ignore overrides it.
            # (503 and 429 never get here: they are refusals, retried after the host's back-off.)
            decide(RobotsRules.disallow_everything(), f"HTTP {status}")

    def _robots_decide(self, origin: str, rules: RobotsRules, why: str) -> None:
        """The origin's rules are known: apply its Crawl-delay and let its held URLs go (or skip them)."""
        rs = self.robots.get(origin)
        if rs is None or rs.rules is not None:
            return
        rs.rules, rs.fetched, rs.why = rules, time.monotonic(), why
        entry: dict[str, Any] = {"url": origin + "/robots.txt", "robots": why, "group": rules.group or None,
                                 "rules": len(rules.rules)}
        if rules.disallow_all:
            entry["disallow_all"] = True
        state = self._host_state(origin + "/")
        if rules.crawl_delay is not None:
            # Crawl-delay raises the delay (never lowers the site's or the user's) and, being "seconds between
            # requests", allows one request in flight at a time; capped so a huge value cannot stall a crawl.
            delay = min(rules.crawl_delay, MAX_CRAWL_DELAY)
            entry["crawl_delay"] = rules.crawl_delay
            if delay > state.policy.delay:
                state.policy = replace(state.policy, delay=delay, connections=1)
                state.next_time = max(state.next_time, time.monotonic() + delay)  # robots.txt was a request too
                entry["delay"] = delay
        self._write_log(entry)
        held, rs.held = rs.held, []
        for q in held:
            self.stats.queued -= 1
            rule = rules.verdict(q.url) if q.kind != SEED else None
            if rule is not None:
                self.seen.discard(self._seen_key(q))
                self._robots_skip(q, rs, rule)
                self.items[q.item].pending -= 1
                self._maybe_item_done(q.item)
            elif state_gave_up := self._host_state(q.url).gave_up:
                self._fail(q, state_gave_up)
            else:
                self._host_state(q.url).queue.append(q)
                self.stats.queued += 1

    def _robots_restart(self, origin: str | None) -> None:
        """The fetch of `origin`'s robots.txt was lost with a crawl worker (not the server's doing): fetch it
        again for the first URL still waiting, or forget it so the next URL of the origin starts a new one."""
        rs = self.robots.get(origin or "")
        if rs is None or rs.rules is not None:
            return
        if rs.held:
            self._fetch_robots(rs.origin, rs.held[0].item, rs.origin + "/robots.txt")
        else:
            del self.robots[rs.origin]

    def _settle(self, p: _Pending, outcome: UrlOutcome) -> None:
        """A URL is finished for good: record it and see whether its item is complete."""
        self.outcomes[p.url] = outcome
        state = self.items[p.item]
        state.urls.append(outcome)
        state.pending -= 1
        self._maybe_item_done(p.item)

    def _fail(self, p: _Pending, error: str, decide: bool = True) -> None:
        self.stats.failed += 1
        name = self.items[p.item].item.name
        self._write_log({"url": p.url, "status": None, "error": error, "item": name})
        if p.kind == ROBOTS and decide:  # the host gave up or the crawl is stopping: no rules were read
            self._robots_decide(p.robots_for or "", RobotsRules.disallow_everything(), f"no answer: {error}")
        self._settle(p, UrlOutcome(p.url, name, p.kind, None, error, None, 0))

    # ---- the loop --------------------------------------------------------------------------------------------
    def run(self) -> CrawlOutcome:
        if self.config.log_json:
            self._log = open(self.config.log_json, "a", encoding="utf-8")
        n = max(1, self.config.concurrency)
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        serial = ctx.Value("i", 0)
        stop = ctx.Event()
        procs = []
        for _ in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(self.config.worker, theirs, serial, stop), daemon=True)
            proc.start()
            theirs.close()
            self._conns.append(ours)
            procs.append(proc)
            self._outstanding.append(0)
        self._alive = set(range(n))
        conns = self._conns
        warcs: list[str] = []
        fatal: str | None = None
        interrupted = False
        last_progress = 0.0
        try:
            for item in self._initial:
                self._add_item(item)
            while True:
                self._refill()
                now = time.monotonic()
                wake = self._dispatch(now)
                if not self.tasks and wake is None and self._active == 0 and self._feed_done:
                    break
                timeout = 0.25 if wake is None else max(0.0, min(0.25, wake - now))
                for conn in wait([conns[i] for i in self._alive], timeout):
                    i = conns.index(conn)
                    try:
                        while conn.poll():
                            fatal = self._on_message(i, conn.recv(), warcs) or fatal
                    except (EOFError, OSError):
                        self._alive.discard(i)
                        self._worker_died(i)
                if fatal:
                    break
                if not self._alive:
                    fatal = "every crawl worker died"
                    break
                if self.tick is not None:
                    self.tick()
                if self.progress and time.time() - last_progress > 0.1:
                    last_progress = time.time()
                    self.progress(self.stats)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if interrupted or fatal is not None:
                stop.set()
            self._shutdown(procs, warcs)
            if self._log:
                self._log.close()
        if self.progress:
            self.progress(self.stats)
        return CrawlOutcome(sorted(set(warcs)), self.outcomes, self.stats, interrupted, fatal, self.index)

    def _shutdown(self, procs, warcs: list[str]) -> None:
        """Tell every worker to finish its files, and collect them."""
        conns = self._conns
        for i in list(self._alive):
            try:
                conns[i].send(None)
            except OSError:
                self._alive.discard(i)
        deadline = time.monotonic() + 120
        while self._alive and time.monotonic() < deadline:
            try:
                ready = wait([conns[i] for i in self._alive], 1.0)
            except KeyboardInterrupt:
                break  # a second Ctrl-C: leave .open files behind; they are never mistaken for finished ones
            for conn in ready:
                i = conns.index(conn)
                try:
                    while conn.poll():
                        msg = conn.recv()
                        self._on_message(i, msg, warcs)
                        if isinstance(msg, tuple) and msg[0] == "finished":
                            self._alive.discard(i)
                except (EOFError, OSError):
                    self._alive.discard(i)
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()

    def _refill(self) -> None:
        if self._feed_done:
            return
        room = self.max_items - self._active
        if room <= 0:
            return
        new = self.feed(room)
        if not new:
            if self._active == 0:
                self._feed_done = True
            return
        for item in new:
            self._add_item(item)

    def stop_feeding(self) -> None:
        """Claim no more items (graceful stop); what is in flight finishes."""
        self._feed_done = True

    def _dispatch(self, now: float) -> float | None:
        """Hand ready tasks to workers; return the earliest time a waiting host becomes ready (None: none)."""
        wake = None
        alive = self._alive
        workers = len(alive)
        if not workers:
            return None
        outstanding = self._outstanding
        batches: dict[int, list[Task]] = {}
        for state in self.hosts.values():
            if not state.queue:
                continue
            while state.ready(now, PREFETCH, workers):
                p = state.queue[0]
                item = self.items[p.item]
                i = item.worker if item.worker is not None else min(alive, key=lambda w: outstanding[w])
                if i not in alive:
                    break
                if outstanding[i] >= PREFETCH and state.limit(PREFETCH, workers) > state.policy.connections:
                    break
                state.queue.popleft()
                self.stats.queued -= 1
                self._next_id += 1
                tries = 1 if p.kind == REQUISITE and not self._on_item_host(p) else self.config.tries
                jar = self._jar if self._jar is not None else self._item_jar(p.item)
                p.cookie = jar.header(p.url) if jar is not None else None
                task = Task(self._next_id, p.url, p.referer, p.attempts + 1 >= tries, item.writer, p.kind == ROBOTS,
                            p.cookie)
                self.tasks[task.id] = (p, i)
                outstanding[i] += 1
                state.in_flight += 1
                batches.setdefault(i, []).append(task)
                if state.policy.delay > 0:
                    break
            if state.queue and (wake is None or state.next_time < wake):
                wake = state.next_time if state.next_time > now else now + 0.05
        for i, batch in batches.items():
            self._conns[i].send(batch)
            self.stats.current = batch[-1].url
        if wake is None and (self.tasks or self._active):
            wake = now + 0.25
        return wake

    def _on_message(self, worker: int, msg, warcs: list[str]) -> str | None:
        if isinstance(msg, FetchResult):
            self._outstanding[worker] -= 1
            self._result_worker = worker
            self._on_result(msg)
            return None
        kind = msg[0]
        if kind == "finished":
            warcs.extend(msg[1])
            self.index.update(msg[1])
        elif kind == "item-files":
            warcs.extend(msg[2])
            self.index.update(msg[2])
            for index, state in enumerate(self.items):
                if state.writer == msg[1] and state.finishing:
                    self._item_finished(index, msg[2])
                    break
        elif kind == "skipped":
            self._outstanding[worker] -= 1
            p, _ = self.tasks.pop(msg[1])
            self._host(p.url).in_flight -= 1
        elif kind == "fatal":
            if msg[2] is not None and msg[2] in self.tasks:
                self._outstanding[worker] -= 1
                p, _ = self.tasks.pop(msg[2])
                self._host(p.url).in_flight -= 1
                self._fail(p, msg[1])
            return msg[1]
        return None

    def _worker_died(self, worker: int) -> None:
        """A worker process died (killed, out of memory): what it had in flight fails, and so does everything
        still queued for items pinned to it — their WARC files died with it (left as `.open`), so those items
        must be grabbed again from the start rather than finished in another worker's files."""
        lost_robots: list[str | None] = []  # origins whose robots.txt fetch died with the worker
        for task_id, (p, w) in list(self.tasks.items()):
            if w == worker:
                del self.tasks[task_id]
                self._host(p.url).in_flight -= 1
                p.attempts += 1
                if p.kind == ROBOTS:
                    lost_robots.append(p.robots_for)
                self._fail(p, "the crawl worker fetching it died", decide=False)
        self._outstanding[worker] = 0
        doomed = {i for i, s in enumerate(self.items) if s.worker == worker}
        if doomed:
            for state in self.hosts.values():
                keep = [p for p in state.queue if p.item not in doomed]
                gone = [p for p in state.queue if p.item in doomed]
                state.queue.clear()
                state.queue.extend(keep)
                for p in gone:
                    self.stats.queued -= 1
                    if p.kind == ROBOTS:
                        lost_robots.append(p.robots_for)
                    self._fail(p, "the crawl worker holding its item's WARC died", decide=False)
            for rs in self.robots.values():
                gone = [p for p in rs.held if p.item in doomed]
                rs.held = [p for p in rs.held if p.item not in doomed]
                for p in gone:
                    self.stats.queued -= 1
                    self._fail(p, "the crawl worker holding its item's WARC died")
        for origin in lost_robots:
            self._robots_restart(origin)

    def _on_item_host(self, p: _Pending) -> bool:
        """Is `p` on the host of its item's first seed? Off-host requisites are attempted once (like wget -p)."""
        state = self.items[p.item]
        if state.host is None:
            seeds = self.site.seeds(state.item)
            state.host = (urlsplit(seeds[0].url).hostname or "").lower() if seeds else ""
        return (urlsplit(p.url).hostname or "").lower() == state.host

    def _host(self, url: str) -> HostState:
        return self.hosts[(urlsplit(url).hostname or "").lower()]

    def _item_jar(self, item: int) -> Cookies | None:
        """The cookie jar of an item of a bulk run (made on first use), or None when cookies are off."""
        if not self._cookies_on:
            return None
        jar = self._item_jars.get(item)
        if jar is None:
            jar = self._item_jars[item] = Cookies(self._loaded_cookies)
        return jar

    def _fetch_again(self, p: _Pending) -> bool:
        """Is redirect `p` to a URL seen before worth fetching again? Only when that URL is an earlier hop of
        its own chain, and the cookies it would be sent now differ from each time it was fetched in it."""
        if not self._cookies_on or not p.chain:
            return False
        key = self._seen_key(p)
        if key not in self.seen:
            return False
        sent = {cookie for hop, cookie in p.chain if hop == key}
        if not sent:
            return False
        jar = self._jar if self._jar is not None else self._item_jar(p.item)
        return jar is not None and jar.header(p.url) not in sent

    def _on_result(self, r: FetchResult) -> None:
        p, _ = self.tasks.pop(r.task_id)
        if r.set_cookies:
            jar = self._jar if self._jar is not None else self._item_jar(p.item)
            if jar is not None:
                jar.store(p.url, r.set_cookies)
        now = time.monotonic()
        state = self._host(p.url)
        state.finished(now)
        if r.verdict is not None and r.verdict.action == BACKOFF:
            self.stats.refused += 1
            if state.refused(now, r.verdict.message, r.retry_after) is None:
                self._fail(p, state.gave_up or r.verdict.message)
                while state.queue:
                    self.stats.queued -= 1
                    self._fail(state.queue.popleft(), state.gave_up or r.verdict.message)
            else:
                self._enqueue(p, front=True)
            return
        if r.retryable:
            p.attempts += 1
            # a transient fault: try again after a short pause that grows with each attempt
            state.next_time = max(state.next_time, now + min(30.0, 0.5 * 2 ** p.attempts))
            self._enqueue(p, front=True)
            return
        state.succeeded()
        item = self.items[p.item].item
        if r.warc is not None:
            self.stats.fetched += 1
            self.stats.by_status[r.status] += 1
            self.stats.bytes += r.wire_bytes
        else:
            self.stats.failed += 1
        self._write_log({"url": p.url, "status": r.status, "bytes": r.length, "ms": round(r.elapsed * 1000, 1),
                         "kind": p.kind, "item": item.name, "warc": r.warc, "offset": r.offset,
                         **({"error": r.error} if r.error else {}),
                         **({"truncated": r.truncated} if r.truncated else {}),
                         **({"verdict": r.verdict.code} if r.verdict else {})})
        if p.kind == ROBOTS:
            self._robots_result(p, r)
        elif r.links:
            for link, depth in self.site.follow(item, p.url, p.depth, r.links, r.page_info):
                redirects = p.redirects + 1 if link.kind == REDIRECT else 0
                if redirects > MAX_REDIRECTS:
                    self.stats.skipped[f"redirect chain longer than {MAX_REDIRECTS}"] += 1
                    continue
                kind = p.kind if link.kind == REDIRECT else link.kind
                q = _Pending(link.url, kind, depth, p.item, p.url, redirects)
                if link.kind == REDIRECT and self._cookies_on:
                    q.chain = (*p.chain, (self._seen_key(p), p.cookie))
                    self._enqueue(q, again=self._fetch_again(q))
                else:
                    self._enqueue(q)
        self._settle(p, UrlOutcome(p.url, item.name, p.kind, r.status, r.error, r.warc, r.length,
                                   r.verdict.code if r.verdict else None, r.truncated))

    def _write_log(self, entry: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_disk(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise ArchiverError(f"cannot create output directory {out_dir}: {e.strerror or e}") from e
    if not os.access(out_dir, os.W_OK):
        raise ArchiverError(f"output directory {out_dir} is not writable")
