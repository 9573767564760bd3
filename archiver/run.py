"""Bulk runs: a manifest's items through the grab pipeline, resumable, one checked WARC set per item.

State lives in an SQLite item queue in the run directory (`state.sqlite`). Running the same command again
resumes: claims of a killed run return to the queue, `.open` files it left are removed (their items are grabbed
again), done items are never fetched again. An item is done only when its WARCs check clean.

Every item is pinned to one crawl worker and gets files of its own (`<project>-<item>-<ts>-<serial>.warc.gz`);
politeness is kept per host across all items in flight, so arXiv still gets one request at a time.

A finished item is checked, indexed and hashed in checker processes (archiver.run_checks), not in the crawl
coordinator's loop, so crawl workers keep fetching meanwhile; the results come back to the coordinator, which
alone records items done or failed in the queue. Items awaiting their check count against the claims in flight
(at most 2 x workers), so the crawl never runs far ahead of the checks.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver import __version__
from archiver.crawl.crawler import CrawlConfig, Crawler, CrawlStats, ItemDone
from archiver.errors import ArchiverError
from archiver.faults import crash_point
from archiver.grab import GrabOptions, site_options, worker_config
from archiver.manifest import Manifest
from archiver.queue import STATE_FILE
from archiver.queue.base import Claim, ItemOutcome
from archiver.queue.sqlite import SqliteQueue
from archiver.run_checks import CheckJob, CheckPool, CheckResult
from archiver.sites import get_site
from archiver.sites.base import Item

FAILED_DIR = "failed"  # WARCs of items that did not check clean, kept for inspection
REPORT = "report.json"
LEASE = 900.0
IN_FLIGHT_PER_WORKER = 2  # claims held per worker: items being crawled plus items awaiting or under check

_OPTION_KEYS = ("delay", "concurrency", "user_agent", "include_source", "recursive", "depth", "ignore",
                "warc_max_size", "compress_level", "max_size", "timeout", "max_time", "tries", "verify_tls",
                "operator", "robots", "cookies", "load_cookies")


@dataclass
class RunProgress:
    total: int
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    checking: int = 0  # of in_flight: crawled, awaiting or under their check
    bytes: int = 0
    started: float = field(default_factory=time.time)
    crawl: CrawlStats | None = None
    last: str = ""


@dataclass
class RunReport:
    project: str
    out_dir: str
    stats: dict[str, int]
    done_now: list[str]
    failed_now: dict[str, str]
    interrupted: bool = False
    fatal: str | None = None
    elapsed: float = 0.0
    uploads: list[Any] = field(default_factory=list)  # archiver.upload.runs.RunUploadReport, one per upload pass

    @property
    def ok(self) -> bool:
        return (not self.interrupted and not self.fatal and not self.failed_now and self.stats.get("failed", 0) == 0
                and all(u.ok for u in self.uploads))


class RunLock:
    """One run per directory: a second `archiver run` on the same DIR would claim the same items."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ArchiverError(f"another archiver run is using {self.path.parent}; wait for it or stop it") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)


def grab_options(manifest: Manifest, out_dir: Path, command_line: str = "") -> GrabOptions:
    o = manifest.options
    kwargs: dict[str, Any] = {k: o[k] for k in _OPTION_KEYS if k in o}
    return GrabOptions(site=manifest.site, out_dir=str(out_dir), command_line=command_line, **kwargs)


def clean_leftovers(out_dir: Path, queue: SqliteQueue) -> list[str]:
    """Remove what a killed run left, so no item is ever counted twice or from a half-made capture:
    `.open` WARCs (never finished), spool files, and finished WARCs no done item records (the run died between
    finishing an item's files and recording it done; the item is grabbed again)."""
    recorded = set(queue.warc_files())
    removed = []
    with os.scandir(out_dir) as entries:  # one pass: a big run directory holds a hundred thousand files
        for entry in entries:
            name = entry.name
            if (name.endswith(".open") or name.startswith(".archiver-spool-")
                    or (name.endswith(".warc.gz") and name not in recorded)
                    or (name.endswith(".warc.gz.cdxj") and name[:-5] not in recorded)):
                os.unlink(entry.path)
                removed.append(name)
    return removed


@dataclass
class UploadSettingsForRun:
    """`archiver run --upload`: where packs go, and who reports their progress."""

    endpoint: str | None = None  # None: the real Internet Archive
    listener: Any = None  # an archiver.upload UploadListener (progress bars), or None


def run_manifest(manifest: Manifest, out_dir: str | Path, *, workers: int | None = None,
                 retry_failed: bool = False, limit: int | None = None, command_line: str = "",
                 progress: Callable[[RunProgress], None] | None = None,
                 extra: dict[str, Any] | None = None, upload: UploadSettingsForRun | None = None) -> RunReport:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        run = _Run(manifest, out, workers, retry_failed, limit, command_line, progress, extra or {})
        run.upload = upload
        if upload is not None:
            from archiver.upload.credentials import load_credentials

            load_credentials()  # missing keys fail now, not after hours of grabbing
        return run.run()


class _Run:
    def __init__(self, manifest: Manifest, out: Path, workers: int | None, retry_failed: bool,
                 limit: int | None, command_line: str, progress, extra: dict[str, Any]) -> None:
        self.manifest = manifest
        self.out = out
        self.options = grab_options(manifest, out, command_line)
        self.options.extra.update(extra)
        base_url = manifest.options.get("base_url")
        self.site_opts = site_options(self.options, base_url)
        self.site = get_site(manifest.site, self.site_opts)
        self.queue = SqliteQueue(out / STATE_FILE, lease=LEASE,
                                 max_attempts=int(manifest.options.get("max_attempts", 3)))
        self.claimant = f"run:{socket.gethostname()}:{os.getpid()}"
        self.workers = max(1, workers or 1)
        self.limit = limit
        self.retry_failed = retry_failed
        self.claims: dict[str, Claim] = {}  # every item this run holds: being crawled or checked
        self.crawling: set[str] = set()  # of those, the ones handed to the crawler and not finished
        # crawled items awaiting their check: WARCs, bytes and URLs captured, seconds the crawl took
        self.awaiting: dict[str, tuple[list[str], int, int, float]] = {}
        self.started_at: dict[str, float] = {}
        self.claimed_now = 0
        self.done_now: list[str] = []
        self.failed_now: dict[str, str] = {}
        self.progress = progress
        self.last_heartbeat = time.monotonic()
        self.stopping = False
        self.crawler: Crawler | None = None
        self.upload: UploadSettingsForRun | None = None
        self.uploads: list[Any] = []
        self.unpacked = 0  # bytes of WARCs done since the last upload pass
        self.upload_error: str | None = None
        self.fatal: str | None = None
        # Checks run beside the crawl, one checker per worker up to the CPUs (the check is CPU-bound; more
        # checkers than CPUs would only share them). Processes are forked when the first item is crawled.
        self.checks = CheckPool(min(self.workers, os.cpu_count() or 1), self.site)
        self.max_in_flight = IN_FLIGHT_PER_WORKER * self.workers

    def run(self) -> RunReport:
        started = time.time()
        q = self.queue
        clean_leftovers(self.out, q)
        q.requeue_claims(None, reason="the run holding it stopped before finishing it")
        self._add_items()
        if self.retry_failed:
            q.reset_failed()
        stats = q.stats()
        self.state = RunProgress(total=stats.total, done=stats.done, failed=stats.failed, bytes=stats.bytes)
        config = CrawlConfig(
            worker=worker_config(self.manifest.site, self.site_opts, self.options, self.manifest.project,
                                 f"archiver run of {self.manifest.project} ({self.manifest.path.name})"),
            concurrency=self.workers, tries=self.options.tries, per_item_warcs=True)
        self.crawler = Crawler([], config, progress=self._crawl_progress, feed=self._feed,
                               on_item_done=self._item_done, tick=self._tick, max_items=self.workers)
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._first_interrupt)
        try:
            outcome = self.crawler.run()
            # the checks still in flight are finished, unless a second Ctrl-C stops the run at once
            interrupted = outcome.interrupted or not self._finish_checks()
        finally:
            # checks cut short (a second Ctrl-C, an error) are killed; their items are given back below
            self.checks.close(kill=len(self.checks) > 0)
            signal.signal(signal.SIGINT, previous)
        for name, claim in list(self.claims.items()):  # interrupted or fatal: give back what is unfinished
            self._discard_files_of(name)
            try:
                q.release(claim.token)
            except (ArchiverError, sqlite3.Error):
                pass  # e.g. a full disk: the claim is requeued when the run starts again
        fatal = outcome.fatal or self.fatal
        if self.upload is not None and not interrupted and not fatal and not self.upload_error:
            self._upload(final=True)
        stats = q.stats()
        report = RunReport(self.manifest.project, str(self.out),
                           {"todo": stats.todo, "claimed": stats.claimed, "done": stats.done,
                            "failed": stats.failed, "bytes": stats.bytes},
                           self.done_now, self.failed_now, interrupted or self.stopping,
                           fatal or self.upload_error, time.time() - started, self.uploads)
        self._write_report(report)
        q.close()
        return report

    def _add_items(self) -> None:
        """Put the manifest's items in the queue, unless this very list is already there (resuming a run of
        100,000 items should not cost a 100,000-row insert to start fetching again)."""
        names = [item.name for item in self.manifest.items]
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
        marker = self.out / ".items.sha256"
        try:
            if marker.read_text().strip() == digest:
                return
        except OSError:
            pass
        self.queue.add(names)
        marker.write_text(digest + "\n")

    # ---- signals -----------------------------------------------------------------------------------------
    def _first_interrupt(self, signum, frame) -> None:
        """First Ctrl-C: claim nothing more, finish what is in flight. The second one stops at once."""
        self.stopping = True
        if self.crawler is not None:
            self.crawler.stop_feeding()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # ---- crawler hooks -----------------------------------------------------------------------------------
    def _feed(self, room: int) -> list[Item]:
        """Items for the crawler. It ends the crawl when this returns nothing while it has no item left, so with
        only checks in flight, wait for them: a failed check may give its item back to the queue."""
        self._collect_checks()
        while True:
            items = self._claim(room)
            if items or self.crawling or not len(self.checks):
                return items
            self._collect_checks(wait=True)

    def _claim(self, room: int) -> list[Item]:
        if self.stopping or self.fatal:
            return []
        if self.limit is not None:
            room = min(room, self.limit - self.claimed_now)
        room = min(room, self.max_in_flight - len(self.claims))  # back-pressure: items awaiting check count
        if room <= 0:
            return []
        claims = self.queue.claim(self.claimant, room)
        items = []
        for claim in claims:
            try:
                item = self.site.parse_target(claim.item)
            except ArchiverError as e:
                self.queue.fail(claim.token, f"invalid item name: {e}", retry=False)
                self.failed_now[claim.item] = str(e)
                continue
            self.claims[item.name] = claim
            self.crawling.add(item.name)
            self.started_at[item.name] = time.time()
            items.append(item)
        self.claimed_now += len(claims)
        self.state.in_flight = len(self.claims)
        return items

    def _item_done(self, done: ItemDone) -> None:
        """The crawler finished an item: hand its WARCs to a checker (or fail it now if nothing was captured).
        Runs in the crawler's loop, so nothing slow happens here."""
        name = done.item.name
        self.crawling.discard(name)
        if name not in self.claims:
            return
        crawl_time = time.time() - self.started_at.pop(name, time.time())
        if not done.warcs:
            self._discard_files_of(name)  # e.g. the `.open` file of a crawl worker that died
            self._record(CheckResult(name, ["nothing was captured: " + "; ".join(
                f"{u.url}: {u.error}" for u in done.urls if u.error)[:500]]), ([], 0, len(done.urls), crawl_time))
            return
        self.awaiting[name] = (list(done.warcs), sum(u.length for u in done.urls), len(done.urls), crawl_time)
        self.checks.submit(CheckJob(name, done.item, list(done.warcs), dict(done.index), str(self.out)))
        self._show()

    def _collect_checks(self, wait: bool = False) -> None:
        """Record the items whose checks finished; with `wait`, wait for at least one (heartbeats go on)."""
        while True:
            results = self.checks.collect(1.0 if wait else 0.0)
            for result in results:
                self._record(result, self.awaiting.pop(result.name))
            if wait:
                self._heartbeat()
            if results or not wait or not len(self.checks):
                return

    def _finish_checks(self) -> bool:
        """After the crawl: wait for the checks still in flight (a graceful stop finishes them too). False if a
        second Ctrl-C cut the wait short."""
        try:
            while len(self.checks):
                self._collect_checks(wait=True)
        except KeyboardInterrupt:
            return False
        return True

    def _record(self, result: CheckResult, facts: tuple[list[str], int, int, float]) -> None:
        """An item's check is over: record it done or failed in the queue. Only here, on the coordinator."""
        name = result.name
        warcs, nbytes, nurls, crawl_time = facts
        claim = self.claims.pop(name, None)
        if claim is None:
            return
        if result.disk_error:  # e.g. a full disk while writing the index: the item is grabbed again next time
            self.claims[name] = claim  # released (and its files removed) when the run stops
            if not self.fatal:
                self.fatal = result.disk_error  # claim nothing more; what is in flight finishes
                if self.crawler is not None:
                    self.crawler.stop_feeding()
            return
        if result.problems:
            reason = "; ".join(result.problems)[:2000]
            self._move_to_failed(warcs)
            state = self.queue.fail(claim.token, reason)
            if str(state) == "failed":
                self.failed_now[name] = reason
                self.state.failed += 1
        else:
            crash_point("run-before-done")
            self.queue.done(claim.token, ItemOutcome(
                warcs=result.files, bytes=nbytes,
                timings={"crawl": round(crawl_time, 3), "check": round(result.seconds, 3)},
                extra={"urls": nurls, "archiver": __version__}))
            crash_point("run-after-done")
            self.done_now.append(name)
            self.state.done += 1
            self.state.bytes += nbytes
            self.unpacked += sum(f.size for f in result.files)
            if self.upload is not None and self.unpacked >= self._pack_size() and not self.upload_error:
                self._upload(final=False)
        self.state.last = name
        self._show()

    def _show(self) -> None:
        self.state.in_flight = len(self.claims)
        self.state.checking = len(self.checks)
        if self.progress:
            self.progress(self.state)

    def _pack_size(self) -> int:
        from archiver.upload.runs import DEFAULT_MAX_PACK_SIZE

        return self.manifest.upload.max_pack_size or DEFAULT_MAX_PACK_SIZE

    def _upload(self, final: bool) -> None:
        """Pack what is done and upload the packs (verified before they count); stop the run if that fails.

        Runs inside the crawl loop: a pack is gigabytes, so this pauses fetching for the length of an upload,
        which keeps the run single-threaded and its state simple."""
        from archiver.upload.runs import upload_run

        try:
            report = upload_run(self.out, self.manifest.upload, self.manifest.project, endpoint=self.upload.endpoint,
                                final=final, manifest=self.manifest.path, listener=self.upload.listener)
        except ArchiverError as e:
            self.upload_error = f"upload failed: {e}"
        else:
            self.uploads.append(report)
            if not report.ok:
                self.upload_error = "upload failed: " + report.summary().splitlines()[-1]
        self.unpacked = 0
        if self.upload_error and self.crawler is not None:
            self.stopping = True
            self.crawler.stop_feeding()

    def _tick(self) -> None:
        self._collect_checks()
        self._heartbeat()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self.last_heartbeat < LEASE / 6:
            return
        self.last_heartbeat = now
        for name, claim in list(self.claims.items()):
            self.claims[name] = self.queue.heartbeat(claim.token)

    def _crawl_progress(self, stats: CrawlStats) -> None:
        self.state.crawl = stats
        if self.progress:
            self.progress(self.state)

    # ---- files -------------------------------------------------------------------------------------------
    def _move_to_failed(self, paths: list[str]) -> None:
        target = self.out / FAILED_DIR
        target.mkdir(exist_ok=True)
        for p in paths:
            for path in (Path(p), Path(p + ".cdxj")):
                if path.exists():
                    shutil.move(str(path), target / path.name)

    def _discard_files_of(self, name: str) -> None:
        """An unfinished item's files (closed at shutdown) are not its capture: it will be grabbed again."""
        prefix = f"{self.manifest.project}-{Item(self.manifest.site, name, name).safe_name}-"
        for path in self.out.glob(prefix + "*.warc.gz*"):
            path.unlink(missing_ok=True)

    def _write_report(self, report: RunReport) -> None:
        q = self.queue
        items = {}
        # failed items, and those this run touched: a report of every item of a 100,000-item run would cost
        # seconds at every exit (`archiver status` and the queue hold the rest)
        touched = set(self.done_now) | set(self.failed_now)
        wanted = [r for r in q.items("failed")] + [q.get(name) for name in touched if name not in self.failed_now]
        for rec in wanted:
            entry: dict[str, Any] = {"state": str(rec.state), "attempts": rec.attempts}
            if rec.last_error:
                entry["last_error"] = rec.last_error
            if rec.outcome is not None:
                entry["warcs"] = [{"name": w.name, "size": w.size, "sha256": w.sha256} for w in rec.outcome.warcs]
                entry["bytes"] = rec.outcome.bytes
                entry["timings"] = dict(rec.outcome.timings)
            items[rec.name] = entry
        data = {"project": report.project, "manifest": str(self.manifest.path), "archiver": __version__,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stats": report.stats,
                "interrupted": report.interrupted, "fatal": report.fatal, "items": items}
        tmp = self.out / (REPORT + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.out / REPORT)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            print(f"archiver run: could not write {self.out / REPORT}: {e.strerror or e}", file=sys.stderr)
