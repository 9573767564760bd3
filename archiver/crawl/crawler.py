"""The crawl coordinator: what to fetch next, when, and by whom.

It owns the frontier (what is queued, what was seen), asks the site module what to follow, keeps per-host
politeness, and hands tasks to worker processes (worker.py), each recording into its own WARC files.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, TextIO
from urllib.parse import urlsplit

from archiver.crawl.links import normalise
from archiver.crawl.politeness import HostState
from archiver.crawl.worker import FetchResult, Task, WorkerConfig, worker_main
from archiver.errors import ArchiverError
from archiver.sites import get_site
from archiver.sites.base import BACKOFF, REDIRECT, SEED, Item, Link

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


@dataclass(frozen=True)
class CrawlConfig:
    worker: WorkerConfig
    concurrency: int = 2
    tries: int = 3
    log_json: str | None = None


class Crawler:
    def __init__(self, items: list[Item], config: CrawlConfig,
                 progress: Callable[[CrawlStats], None] | None = None) -> None:
        self.items = items
        self.config = config
        self.site = get_site(config.worker.site, config.worker.site_options)
        self.progress = progress
        self.stats = CrawlStats()
        self.hosts: dict[str, HostState] = {}
        self.seen: set[str] = set()
        self.tasks: dict[int, tuple[_Pending, int]] = {}  # task id -> (pending, worker index)
        self.outcomes: dict[str, UrlOutcome] = {}
        self._next_id = 0
        self._log: TextIO | None = None

    # ---- frontier --------------------------------------------------------------------------------------------
    def _enqueue(self, p: _Pending, front: bool = False) -> None:
        key = normalise(p.url)
        if not front:
            if key in self.seen:
                return
            reason = self.site.forbidden(p.url)
            if reason:
                self.stats.skipped[reason] += 1
                return
            self.seen.add(key)
        host = (urlsplit(p.url).hostname or "").lower()
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = HostState(host, self.site.host_policy(host))
        if state.gave_up:
            self._fail(p, state.gave_up)
            return
        if front:
            state.queue.appendleft(p)
        else:
            state.queue.append(p)
        self.stats.queued += 1

    def _fail(self, p: _Pending, error: str) -> None:
        self.outcomes[p.url] = UrlOutcome(p.url, self.items[p.item].name, p.kind, None, error, None, 0)
        self.stats.failed += 1
        self._write_log({"url": p.url, "status": None, "error": error, "item": self.items[p.item].name})

    # ---- the loop --------------------------------------------------------------------------------------------
    def run(self) -> CrawlOutcome:
        for index, item in enumerate(self.items):
            for link in self.site.seeds(item):
                self._enqueue(_Pending(link.url, SEED, 0, index, None))
        if self.config.log_json:
            self._log = open(self.config.log_json, "a", encoding="utf-8")
        n = max(1, self.config.concurrency)
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        serial = ctx.Value("i", 0)
        stop = ctx.Event()
        conns, procs, outstanding = [], [], []
        for _ in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(self.config.worker, theirs, serial, stop), daemon=True)
            proc.start()
            theirs.close()
            conns.append(ours)
            procs.append(proc)
            outstanding.append(0)
        warcs: list[str] = []
        fatal: str | None = None
        interrupted = False
        alive = set(range(n))
        last_progress = 0.0
        try:
            while True:
                now = time.monotonic()
                wake = self._dispatch(now, conns, outstanding, alive)
                if not self.tasks and wake is None:
                    break
                timeout = 0.25 if wake is None else max(0.0, min(0.25, wake - now))
                for conn in wait([conns[i] for i in alive], timeout):
                    i = conns.index(conn)
                    try:
                        while conn.poll():
                            msg = conn.recv()
                            fatal = self._on_message(i, msg, outstanding, warcs) or fatal
                    except EOFError:
                        alive.discard(i)
                        self._worker_died(i, outstanding)
                if fatal:
                    break
                if not alive:
                    fatal = "every crawl worker died"
                    break
                if self.progress and time.time() - last_progress > 0.1:
                    last_progress = time.time()
                    self.progress(self.stats)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
        finally:
            stop_needed = interrupted or fatal is not None
            if stop_needed:
                stop.set()
            for i in list(alive):
                try:
                    conns[i].send(None)
                except OSError:
                    alive.discard(i)
            deadline = time.monotonic() + 60
            while alive and time.monotonic() < deadline:
                try:
                    ready = wait([conns[i] for i in alive], 1.0)
                except KeyboardInterrupt:
                    break  # a second Ctrl-C: leave the .open files behind, never mistaken for finished ones
                for conn in ready:
                    i = conns.index(conn)
                    try:
                        while conn.poll():
                            msg = conn.recv()
                            fatal = self._on_message(i, msg, outstanding, warcs) or fatal
                            if isinstance(msg, tuple) and msg[0] == "finished":
                                alive.discard(i)
                    except EOFError:
                        alive.discard(i)
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.terminate()
            if self._log:
                self._log.close()
        if self.progress:
            self.progress(self.stats)
        return CrawlOutcome(sorted(warcs), self.outcomes, self.stats, interrupted, fatal)

    def _dispatch(self, now: float, conns, outstanding: list[int], alive: set[int]) -> float | None:
        """Hand ready tasks to workers; return the earliest time a waiting host becomes ready (None: none)."""
        wake = None
        workers = len(alive)
        if not workers:
            return None
        batches: dict[int, list[Task]] = {}
        for state in self.hosts.values():
            if not state.queue:
                continue
            while state.ready(now, PREFETCH, workers):
                i = min(alive, key=lambda w: outstanding[w])
                if outstanding[i] >= PREFETCH and state.limit(PREFETCH, workers) > state.policy.connections:
                    break
                p = state.queue.popleft()
                self.stats.queued -= 1
                self._next_id += 1
                last = p.attempts + 1 >= self.config.tries
                task = Task(self._next_id, p.url, p.referer, last)
                self.tasks[task.id] = (p, i)
                outstanding[i] += 1
                state.in_flight += 1
                batches.setdefault(i, []).append(task)
                if state.policy.delay > 0:
                    break
            if state.queue and (wake is None or state.next_time < wake):
                wake = max(state.next_time, now) if state.next_time > now else now + 0.05
        for i, batch in batches.items():
            conns[i].send(batch)
            self.stats.current = batch[-1].url
        if wake is None and self.tasks:
            wake = now + 0.25
        return wake

    def _on_message(self, worker: int, msg, outstanding: list[int], warcs: list[str]) -> str | None:
        if isinstance(msg, FetchResult):
            outstanding[worker] -= 1
            self._on_result(msg)
            return None
        kind = msg[0]
        if kind == "finished":
            warcs.extend(msg[1])
        elif kind == "skipped":
            outstanding[worker] -= 1
            p, _ = self.tasks.pop(msg[1])
            self._host(p.url).in_flight -= 1
        elif kind == "fatal":
            if msg[2] is not None and msg[2] in self.tasks:
                outstanding[worker] -= 1
                p, _ = self.tasks.pop(msg[2])
                self._host(p.url).in_flight -= 1
                self._fail(p, msg[1])
            return msg[1]
        return None

    def _worker_died(self, worker: int, outstanding: list[int]) -> None:
        for task_id, (p, w) in list(self.tasks.items()):
            if w == worker:
                del self.tasks[task_id]
                self._host(p.url).in_flight -= 1
                p.attempts += 1
                if p.attempts < self.config.tries:
                    self._enqueue(p, front=True)
                else:
                    self._fail(p, "the crawl worker fetching it died")
        outstanding[worker] = 0

    def _host(self, url: str) -> HostState:
        return self.hosts[(urlsplit(url).hostname or "").lower()]

    def _on_result(self, r: FetchResult) -> None:
        p, _ = self.tasks.pop(r.task_id)
        now = time.monotonic()
        state = self._host(p.url)
        state.finished(now)
        if r.verdict is not None and r.verdict.action == BACKOFF:
            self.stats.refused += 1
            wait_s = state.refused(now, r.verdict.message, r.retry_after)
            if wait_s is None:
                self._fail(p, state.gave_up or r.verdict.message)
                while state.queue:
                    self.stats.queued -= 1
                    self._fail(state.queue.popleft(), state.gave_up or r.verdict.message)
            else:
                self._enqueue(p, front=True)
            return
        if r.retryable:
            p.attempts += 1
            # transient fault: try again later, politely (a short pause that grows with each attempt)
            state.next_time = max(state.next_time, now + min(30.0, 0.5 * 2 ** p.attempts))
            self._enqueue(p, front=True)
            return
        state.succeeded()
        item = self.items[p.item]
        outcome = UrlOutcome(p.url, item.name, p.kind, r.status, r.error, r.warc, r.length,
                             r.verdict.code if r.verdict else None, r.truncated)
        self.outcomes[p.url] = outcome
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
        if not r.links:
            return
        chosen = self.site.follow(item, p.url, p.depth, r.links, r.page_info)
        for link, depth in chosen:
            redirects = p.redirects + 1 if link.kind == REDIRECT else 0
            if redirects > MAX_REDIRECTS:
                self.stats.skipped[f"redirect chain longer than {MAX_REDIRECTS}"] += 1
                continue
            kind = p.kind if link.kind == REDIRECT else link.kind
            self._enqueue(_Pending(link.url, kind, depth, p.item, p.url, redirects))

    def _write_log(self, entry: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(entry, ensure_ascii=False) + "\n")


def default_concurrency(site_concurrency: int | None) -> int:
    if site_concurrency:
        return site_concurrency
    return min(2, os.cpu_count() or 1)


def check_disk(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise ArchiverError(f"cannot create output directory {out_dir}: {e.strerror or e}") from e
    if not os.access(out_dir, os.W_OK):
        raise ArchiverError(f"output directory {out_dir} is not writable")


__all__ = ["Crawler", "CrawlConfig", "CrawlOutcome", "CrawlStats", "UrlOutcome", "Link", "check_disk"]
