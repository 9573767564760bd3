"""The worker loop: claim → grab → check → upload → done, the pipeline of a bulk run (archiver.run) with a
tracker as its queue.

The crawler is driven exactly as a bulk run drives it: items arrive through `feed` (a claim from the tracker),
each gets WARC files of its own, and `on_item_done` checks them with the same checker and the site module's
completeness rules. Sound files are uploaded to the tracker and the item reported done; anything else is reported
with `fail` and its reason, so no claim is left to rot (seesaw never reports failures). While an item is being
grabbed, `tick` sends the tracker heartbeats; a heartbeat the tracker refuses means the lease ran out and the item
went to someone else, and then nothing of it is handed in.

Claiming: the free slots are asked for in one request (multi=N); each name of the answer is checked on its own, so
a bad one is failed alone. Uploads, done, fail and heartbeats stay per item, each with its own claim token.

Politeness: the project's admins may ask for more of it in the answers (`delay`, `max_concurrency`), never less
(safety.Politeness). The first claim settles it, as it settles the site module; see `_politeness_changed` for a
change while the worker runs.

Safety for volunteers: what the worker fetches comes only from the site module, from an item name that module
accepts as it is (a canonical name), so a tracker cannot make a worker fetch arbitrary URLs. The generic site
module, whose item names *are* URLs, and a tracker-chosen base_url each need the volunteer's explicit consent
(--site generic, --allow-base-url).

Stopping: a stop file or the first Ctrl-C (or SIGTERM) stops claiming and lets what is in flight finish; a second
one stops at once. Either way every claim not handed in is released.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archiver import DEFAULT_USER_AGENT, __version__
from archiver.crawl.crawler import CrawlConfig, Crawler, ItemDone
from archiver.errors import ArchiverError, UsageError
from archiver.grab import GrabOptions, worker_config
from archiver.sites import get_site
from archiver.sites.base import SEED, Item, Site, SiteOptions
from archiver.worker.client import Claimed, RetryPolicy, TrackerClient, retryable
from archiver.worker.errors import TrackerError, TrackerRefused, UploadRefused, WorkerError
from archiver.worker.safety import Politeness, choose_site, item_from_name, tracker_politeness

MAX_CONCURRENCY = 20  # seesaw's limit for --concurrent
POLL = 0.2  # seconds between looks at the stop file while waiting for the tracker
ERRORS_SHOWN = 10  # check errors quoted in a fail reason
LOCK_FILE = ".lock"
PREFIX_MAX = 50  # keeps file names within the tracker's 200 characters (item part up to 120, time and serial)
_LOST = ("not_claimant", "not_claimed")  # the tracker's codes for "this claim is no longer yours"


@dataclass
class WorkerOptions:
    tracker: str  # URL/PROJECT
    nick: str
    concurrency: int = 1  # items grabbed at once (and crawl processes)
    # (the project's `max_concurrency` and `delay`, in the tracker's answers, may lower this and lengthen `delay`)
    stop_file: str | None = None
    data_dir: str = "worker-data"  # a directory of its own per worker is made inside, and removed at the end
    site: str | None = None  # the site module the volunteer expects (needed for generic)
    allow_base_url: bool = False  # let the tracker say where the site is served (tests, mirrors)
    delay: float | None = None  # seconds between requests to one host (None: the site module's, arXiv 3 s)
    until_empty: bool = False  # stop once the tracker has nothing left, handed out or not
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = DEFAULT_USER_AGENT
    tries: int = 3  # per URL, as in a grab
    item_timeout: float = 2 * 3600.0  # give an item up (fail) after this long: a hung grab must not hold its claim


@dataclass
class WorkerReport:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # reported with fail, or abandoned
    refused: dict[str, str] = field(default_factory=dict)  # names the site module does not accept
    lost: list[str] = field(default_factory=list)  # claims that went to someone else meanwhile
    released: list[str] = field(default_factory=list)
    stopped: str = ""
    interrupted: bool = False

    def summary(self, nick: str) -> str:
        return (f"worker {nick}: {len(self.done)} done, {len(self.failed)} failed, {len(self.refused)} refused, "
                f"{len(self.lost)} lost, {len(self.released)} released" + (f"; stopped: {self.stopped}"
                                                                           if self.stopped else ""))


@dataclass
class _InFlight:
    claim: Claimed
    started: float
    next_heartbeat: float
    lost: str | None = None  # why the claim went to someone else (a refused heartbeat)
    given_up: bool = False  # reported failed for taking too long; what it captures later is thrown away


def run_worker(options: WorkerOptions, progress: Callable[[str], None] | None = None) -> WorkerReport:
    """Work for the tracker until stopped (stop file, Ctrl-C, --until-empty); `progress` gets a line per item and
    per event. Raises WorkerError (or TrackerRefused) when it cannot go on, after releasing its claims."""
    return _Worker(options, progress or (lambda _line: None)).run()


class _Worker:
    def __init__(self, options: WorkerOptions, say: Callable[[str], None]) -> None:
        if not 1 <= options.concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency {options.concurrency}: give 1 to {MAX_CONCURRENCY} items at once")
        self.o = options
        self.say = say
        self.client = TrackerClient(options.tracker, options.nick, policy=options.policy)
        self.site: Site | None = None
        self.site_key: tuple[str, str | None] | None = None
        self.site_opts = SiteOptions()
        self.wanted = Politeness()  # what the tracker asked for in the answer that settled the site module
        self.limit = options.concurrency  # items at once: --concurrency, capped by the tracker's max_concurrency
        self.delay: float | None = None  # seconds between requests to one host, settled by the first item
        self.relaxed_said = False
        self.inflight: dict[str, _InFlight] = {}
        self.report = WorkerReport()
        self.stop_reason = ""
        self.announced = False
        self.fatal: ArchiverError | None = None
        self.crawler: Crawler | None = None
        self.work_dir = Path(options.data_dir)

    # ---- the outer loop: wait for work, grab it ------------------------------------------------------------
    def run(self) -> WorkerReport:
        lock = self._make_work_dir()
        restore = self._install_signals()
        try:
            while not self._stopping():
                items = self._feed(self.o.concurrency)
                if items:
                    self._crawl(items)
                elif self.o.until_empty and self.client.drained and not self.fatal:
                    self._stop("the tracker has no items left")
                elif not self.fatal:
                    self._pause(self.client.wait())
        except KeyboardInterrupt:
            self.stop_reason, self.report.interrupted = "interrupted", True
        finally:
            self._release_all()
            restore()
            self.client.close()
            shutil.rmtree(self.work_dir, ignore_errors=True)
            os.close(lock)
        self.report.stopped = self.stop_reason or str(self.fatal or "")
        if self.fatal is not None:
            raise self.fatal
        return self.report

    def _make_work_dir(self) -> int:
        """A directory of this worker's own inside the data directory, locked while it runs (several workers may
        share the data directory). Directories left by killed workers (unlocked) are removed first: their
        half-written files will never be handed in, and a volunteer's disk should not fill up with them."""
        root = Path(self.o.data_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
            for old in root.glob(f"{self.client.slug}-*/{LOCK_FILE}"):
                try:
                    fd = os.open(old, os.O_RDWR)
                except OSError:  # another worker is removing it
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a running worker's
                finally:
                    os.close(fd)
                shutil.rmtree(old.parent, ignore_errors=True)
            self.work_dir = Path(tempfile.mkdtemp(prefix=f"{self.client.slug}-{self.o.nick}-", dir=root))
            lock = os.open(self.work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except OSError as e:
            raise UsageError(f"cannot use {root} for the worker's files: {e.strerror or e}") from None

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping() and (left := end - time.monotonic()) > 0:
            time.sleep(min(POLL, left))

    def _crawl(self, items: list[Item]) -> None:
        """One crawl session: these items and whatever `feed` claims while they run, until nothing is left."""
        assert self.site_key is not None
        o, slug = self.o, self.client.slug
        grab = GrabOptions(site=self.site_key[0], out_dir=str(self.work_dir), user_agent=o.user_agent,
                           operator=o.nick, tries=o.tries)
        worker = worker_config(self.site_key[0], self.site_opts, grab, f"{slug}-{o.nick}"[:PREFIX_MAX],
                               f"archiver worker {o.nick} for project {slug} of {self.client.base}")
        config = CrawlConfig(worker=worker, concurrency=self.limit, tries=o.tries, per_item_warcs=True)
        self.crawler = Crawler(items, config, feed=self._feed, on_item_done=self._item_done, tick=self._tick,
                               max_items=self.limit)
        try:
            outcome = self.crawler.run()
        finally:
            self.crawler = None
        if outcome.interrupted:
            self.stop_reason, self.report.interrupted = self.stop_reason or "interrupted", True
        if outcome.fatal and self.fatal is None:
            self.fatal = WorkerError(f"the grab stopped: {outcome.fatal}")
        self._release_all()  # items the session did not finish (interrupted, or the crawl failed)
        for leftover in self.work_dir.iterdir():  # their files, finished at shutdown, are not their capture
            if leftover.name != LOCK_FILE:
                leftover.unlink(missing_ok=True)

    # ---- stopping ------------------------------------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def first(signum: int, _frame: object) -> None:
            # Only flags here: printing from a signal handler can collide with a print in progress.
            self.report.interrupted = True
            self._stop(signal.Signals(signum).name)
            for s in previous:
                signal.signal(s, signal.default_int_handler)  # the second one stops at once

        first.archiver_worker = True  # type: ignore[attr-defined]  # see _crawl_child_signals
        for s in previous:
            signal.signal(s, first)

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return restore

    def _stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        if self.crawler is not None:
            self.crawler.stop_feeding()

    def _stopping(self) -> bool:
        if not self.stop_reason and self.o.stop_file and os.path.exists(self.o.stop_file):
            self._stop(f"stop file {self.o.stop_file}")
        if self.stop_reason and not self.announced:
            self.announced = True
            busy = f"; finishing {len(self.inflight)} item(s) in flight" if self.inflight else ""
            self.say(f"stopping ({self.stop_reason}): claiming no more{busy}")
        return bool(self.stop_reason) or self.fatal is not None

    def _give_up_work(self, error: ArchiverError) -> None:
        """Claim nothing more and stop once what is in flight is handed in; `error` is raised at the end."""
        if self.fatal is None:
            self.fatal = error
            self.say(f"stopping: {error}")
        if self.crawler is not None:
            self.crawler.stop_feeding()

    # ---- claiming ------------------------------------------------------------------------------------------
    def _feed(self, room: int) -> list[Item]:
        """Up to `room` items, the free slots asked for in one request where the tracker allows it."""
        items: list[Item] = []
        while not self._stopping():
            want = min(room - len(items), self.limit - len(self.inflight))
            if want <= 0:
                break
            multi = self.client.multi
            try:
                claims = self.client.claim(want)
            except TrackerRefused as e:
                self._give_up_work(e)
                break
            if multi and not self.client.multi:
                self.say("the tracker does not hand out several items per request (multi=N): asking for one at a "
                         "time")
            if not claims:
                break
            for claim in claims:
                item = self._accept(claim, room - len(items))
                if item is not None:
                    items.append(item)
        return items

    def _accept(self, claim: Claimed, room: int) -> Item | None:
        """The item to grab for a claim, or None when this worker will not grab it (and has told the tracker)."""
        try:
            self._configure(claim.extra)
        except WorkerError as e:
            self._release(claim)
            self._give_up_work(e)
            return None
        assert self.site is not None and self.site_key is not None
        if room <= 0 or len(self.inflight) >= self.limit:
            # more than this worker may grab at once: the first answer lowered the limit (max_concurrency) after
            # the request was sent, or the tracker handed out more names than were asked for
            self._release(claim, f"{self.limit} item(s) at once is this worker's limit")
            return None
        if claim.name in self.inflight:  # its timed-out grab is still running here: one crawl per name at a time
            self._release(claim)
            self.client.defer()
            return None
        try:
            item = item_from_name(self.site, claim.name)
        except (ArchiverError, ValueError) as e:
            self.report.refused[claim.name] = str(e)
            self.say(f"refused {claim.name!r}: {e}")
            reason = f"not a valid {self.site_key[0]} item name, so worker {self.o.nick} fetched nothing for it: {e}"
            try:
                self.client.fail(claim, reason, retry=False)
            except TrackerError as err:
                self.say(f"could not report {claim.name!r} as failed ({err}); its claim runs out by itself")
            self.client.defer()  # a tracker handing out names like this one is not to be asked in a tight loop
            return None
        self._settle_delay(item)
        now = time.monotonic()
        self.inflight[item.name] = _InFlight(claim, now, now + _heartbeat_interval(claim))
        self.say(f"grabbing {item.name} (try {claim.attempts})")
        return item

    def _configure(self, extra: Mapping[str, Any]) -> None:
        """The first claim settles the site module, base URL and the tracker's politeness; later claims must agree
        (see safety.py and `_politeness_changed`)."""
        slug = self.client.slug
        site, options, module = choose_site(extra, slug, expected=self.o.site,
                                            allow_base_url=self.o.allow_base_url, delay=self.o.delay)
        wanted = tracker_politeness(extra, slug)
        key = (site, options.base_url)
        if self.site_key is None:
            self.site_key, self.site_opts, self.site, self.wanted = key, options, module, wanted
            self.limit = wanted.limit(self.o.concurrency)
            if self.limit < self.o.concurrency:
                self.say(f"the tracker asks workers on {slug} to grab at most {wanted.max_concurrency} item(s) at "
                         f"once (max_concurrency): grabbing {self.limit}, not the {self.o.concurrency} of "
                         "--concurrency")
        elif key != self.site_key:
            raise WorkerError(f"the tracker changed how {slug} is grabbed (site {self.site_key} to "
                              f"{key}); start the worker again to pick up the change")
        else:
            self._politeness_changed(wanted)

    def _politeness_changed(self, wanted: Politeness) -> None:
        """The tracker's politeness in a later answer. Stricter than what this worker uses: stop, as for a change
        of site, and say to start again. Applying it in place is not possible: the crawl fixes each host's delay
        and its number of items when it starts (HostPolicy, max_items) and has no way to tighten them while items
        are in flight, and carrying on at the old pace is exactly what the admins asked workers not to do; stopping
        claims nothing more at once and only finishes what is in flight. Looser: ignored until the worker is
        started again, so a tracker never makes a running worker less polite than it agreed to be."""
        if wanted == self.wanted:
            return
        slug, stricter = self.client.slug, []
        in_use = self.delay if self.delay is not None else (self.wanted.delay or 0.0)
        if wanted.delay is not None and wanted.delay > in_use:
            stricter.append(f"delay {in_use:g} s to {wanted.delay:g} s")
        if wanted.limit(self.o.concurrency) < self.limit:
            stricter.append(f"max_concurrency {self.limit} to {wanted.max_concurrency}")
        if stricter:
            raise WorkerError(f"the tracker made {slug} more polite while this worker was running "
                              f"({', '.join(stricter)}); start the worker again to pick up the change")
        if not self.relaxed_said:
            self.relaxed_said = True
            asked = ", ".join(f"{k} {v:g}" for k, v in (("delay", wanted.delay),
                                                          ("max_concurrency", wanted.max_concurrency)) if v is not None)
            self.say(f"the tracker changed the politeness of {slug} ({asked or 'none asked'}) to nothing stricter "
                     "than this worker uses: keeping what it started with until it is started again")

    def _settle_delay(self, item: Item) -> None:
        """The first item settles the delay between requests to one host: the tracker's, when it is longer than the
        volunteer's --delay (or, without one, the site module's own for the item's hosts, arXiv 3 s)."""
        if self.delay is not None:
            return
        assert self.site is not None and self.site_key is not None
        own = self.o.delay if self.o.delay is not None else _site_delay(self.site, item)
        whose = "your --delay" if self.o.delay is not None else f"the {self.site_key[0]} module's"
        self.delay = self.wanted.delay_over(own)
        if self.wanted.delay is None:
            return  # SiteOptions.delay stays as it was: the volunteer's, or the site module's per-host defaults
        # The crawl takes one delay for every host (SiteOptions.delay); the longest of the two is the one that
        # keeps every host at least as far apart as both the tracker and the volunteer or site module ask.
        self.site_opts = replace(self.site_opts, delay=self.delay)
        self.site = get_site(self.site_key[0], self.site_opts)
        slug = self.client.slug
        if self.wanted.delay > own:
            self.say(f"the tracker asks for {self.wanted.delay:g} s between requests to one host on {slug}: "
                     f"waiting {self.delay:g} s ({whose} is {own:g} s)")
        else:
            self.say(f"the tracker's delay for {slug} ({self.wanted.delay:g} s) is not longer than {whose} "
                     f"({own:g} s): waiting {self.delay:g} s")

    # ---- while grabbing ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        self._stopping()
        now = time.monotonic()
        for entry in list(self.inflight.values()):
            if entry.lost or entry.given_up:
                continue
            if now - entry.started > self.o.item_timeout:
                self._time_out(entry)
                continue
            if now < entry.next_heartbeat:
                continue
            interval = _heartbeat_interval(entry.claim)
            a = self.client.heartbeat(entry.claim)
            if a is None or retryable(a.status):
                entry.next_heartbeat = now + min(5.0, interval)  # soon again: the lease is running out
                continue
            entry.next_heartbeat = now + interval
            if a.status == 409 or a.error in _LOST:
                entry.lost = a.message

    # ---- handing in ----------------------------------------------------------------------------------------
    def _item_done(self, done: ItemDone) -> None:
        name = done.item.name
        entry = self.inflight.get(name)
        try:
            if entry is None or entry.given_up:
                return
            if entry.lost:
                self._lost(name, entry.lost)
                return
            problems = self._problems(done)
            if problems:
                self._fail(entry, "; ".join(problems))
            else:
                self._hand_in(entry, done)
        except TrackerError as e:  # the tracker stayed unreachable: the claim runs out and someone else gets it
            self._abandoned(name, str(e))
        except (ArchiverError, OSError) as e:  # a local trouble, e.g. a WARC the checker cannot read
            assert entry is not None
            try:
                self._fail(entry, f"the capture could not be handed in: {e}")
            except TrackerError as err:
                self._abandoned(name, f"{e}; the tracker was not told ({err})")
        finally:
            self.inflight.pop(name, None)
            for path in done.warcs:  # uploaded or refused: either way a volunteer's disk need not keep it
                Path(path).unlink(missing_ok=True)

    def _problems(self, done: ItemDone) -> list[str]:
        """Why the item's capture may not be handed in: the same rules as a bulk run and a grab."""
        from archiver.warc.check import check_files

        if not done.warcs:
            errors = "; ".join(f"{u.url}: {u.error}" for u in done.urls if u.error)
            return [f"nothing was captured: {errors or 'no URL answered'}"[:500]]
        problems = [f"{u.url}: {u.error or f'HTTP {u.status}'}" for u in done.urls
                    if u.kind == SEED and u.warc is None]
        report = check_files(done.warcs, site=self.site, items=[done.item])
        errors = [f for f in report.all_findings() if f.severity == "error"]
        problems += [f"{f.code}: {f.message}" for f in errors[:ERRORS_SHOWN]]
        if len(errors) > ERRORS_SHOWN:
            problems.append(f"and {len(errors) - ERRORS_SHOWN} more check errors")
        return problems

    def _hand_in(self, entry: _InFlight, done: ItemDone) -> None:
        claim, name = entry.claim, done.item.name
        try:
            uploaded = self.client.upload(claim, done.warcs)
        except UploadRefused as e:
            if e.error in _LOST:
                self._lost(name, str(e))
            else:
                self._fail(entry, f"upload: {e}")
            return
        size = sum(u.size for u in uploaded)
        provenance = {"archiver": __version__, "python": platform.python_version(),
                      "warcs": [{"name": u.name, "size": u.size, "sha256": u.sha256} for u in uploaded]}
        a = self.client.done(claim, size, provenance)
        if a.status == 200 and str(a.body).strip() == "OK":
            self.report.done.append(name)
            self.say(f"done {name}: {len(uploaded)} WARC file(s), {size / 1e6:.2f} MB uploaded, "
                     f"{time.monotonic() - entry.started:.1f} s (try {claim.attempts})")
        elif a.status == 409 or a.error in _LOST:
            self._lost(name, a.message)
        else:
            raise TrackerError(f"the tracker did not take done for {name}: HTTP {a.status}: {a.message}")

    def _time_out(self, entry: _InFlight) -> None:
        """Fail an item that has taken too long (a site that never answers, a hung crawl process): heartbeats stop,
        the tracker hears why, and the item can go to someone else. Its grab runs on; its files are discarded."""
        entry.given_up = True
        reason = f"the grab took longer than {self.o.item_timeout:g} s (the worker's --item-timeout)"
        try:
            self._fail(entry, reason)
        except TrackerError as e:
            self._abandoned(entry.claim.name, f"{reason}; the tracker was not told ({e})")

    def _abandoned(self, name: str, why: str) -> None:
        self.report.failed[name] = why
        self.say(f"abandoned {name}: {why}")

    def _fail(self, entry: _InFlight, reason: str) -> None:
        name = entry.claim.name
        a = self.client.fail(entry.claim, reason)
        if a.status == 409 or a.error in _LOST:
            self._lost(name, a.message)
            return
        states = a.body.get("states") if a.status == 200 and isinstance(a.body, dict) else None
        state = states.get(name) if isinstance(states, dict) else None
        self.report.failed[name] = reason
        told = f" (the tracker has it as {state})" if state else f" (the tracker answered HTTP {a.status})" \
            if a.status != 200 else ""
        self.say(f"failed {name}: {reason[:300]}{told}")

    def _lost(self, name: str, why: str) -> None:
        self.report.lost.append(name)
        self.say(f"lost {name}: the claim went to someone else ({why}); nothing of it was handed in")

    def _release(self, claim: Claimed, why: str = "") -> None:
        try:
            self.client.release(claim)
        except TrackerError as e:
            self.say(f"could not release {claim.name} ({e}); its claim runs out by itself")
            return
        self.report.released.append(claim.name)
        self.say(f"released {claim.name}" + (f": {why}" if why else ""))

    def _release_all(self) -> None:
        for name, entry in list(self.inflight.items()):
            self.inflight.pop(name, None)
            if not (entry.lost or entry.given_up):
                self._release(entry.claim)


def _crawl_child_signals() -> None:
    """In a forked crawl process, SIGTERM must end the process as usual: the handler inherited from the worker
    would only set a flag on the child's copy of it, and `kill PID` would leave the process running."""
    if getattr(signal.getsignal(signal.SIGTERM), "archiver_worker", False):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_crawl_child_signals)


def _site_delay(site: Site, item: Item) -> float:
    """The site module's own delay for the hosts an item starts from (arXiv's 3 s on arXiv, 0 for most sites)."""
    hosts = {(urlsplit(link.url).hostname or "").lower() for link in site.seeds(item)}  # as the crawler keys hosts
    return max((site.host_policy(host).delay for host in hosts), default=0.0)


def _heartbeat_interval(claim: Claimed) -> float:
    """A third of the lease: two heartbeats may go missing before the item is handed to someone else."""
    return max(0.5, min(claim.lease / 3, 300.0))
