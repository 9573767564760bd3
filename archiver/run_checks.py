"""The per-item checks of a bulk run, in checker processes beside the crawl coordinator.

`archiver run` records an item done only after its WARCs are checked with the full checker, indexed (CDXJ) and
hashed. Done inside the coordinator's loop, that work stopped all dispatching for its length, so crawl workers
idled and `--workers` stopped scaling once a run had several hosts. A CheckPool does it in its own processes:
`submit` a CheckJob when an item's crawl finishes, `collect` the CheckResults on the coordinator's thread, which
alone then writes the queue, moves files and reports progress (the queue and the report stay single-threaded).

Processes, not threads: the checker is mostly pure Python (record and HTTP header parsing, field rules); hashing
and inflating release the GIL, the rest does not. Measured (check_files + sha256 of each item's WARCs, 2 vCPUs,
items/s serial / 2 threads / 2 processes): arXiv papers of bench/run.py (~22 small records) 166 / 91 / 251 --
threads are slower than one, fighting over the GIL; 2.5 MB items (8 images) 68 / 83 / 122; 10 MB items (4
images, stored bodies, mostly hashing) 32 / 48 / 53. A checker thread would also take the GIL from the
coordinator's own loop, the very thing this module frees.

A hand-made pool rather than concurrent.futures.ProcessPoolExecutor: one job per process at a time over its own
pipe, so a checker that dies (OOM killer, a signal) costs only its own job, which is given to a new process once
(ProcessPoolExecutor breaks as a whole and fails every pending job), a second Ctrl-C can kill the checkers at
once, and no helper threads are started in the coordinator, which forks crawl and checker processes.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from archiver.crawl.worker import _die_with_parent
from archiver.digests import file_sha256
from archiver.errors import ArchiverError
from archiver.queue.base import WarcFile
from archiver.sites.base import Item, Site

CHECKER_NAME = b"archiver-check"  # the processes' name in ps/top (Linux)
MAX_LOST = 2  # a job whose checker died this many times fails (the item is grabbed again later)


@dataclass
class CheckJob:
    """An item whose crawl finished: its WARCs (finished, in the run directory) and their index facts."""

    name: str
    item: Item
    paths: list[str]
    index: dict[str, list[tuple]]
    run_dir: str
    lost: int = 0  # times a checker died while holding it


@dataclass
class CheckResult:
    name: str
    problems: list[str] = field(default_factory=list)  # error findings: the item is not done
    files: tuple[WarcFile, ...] = ()  # checked clean: its WARCs, indexed and hashed
    seconds: float = 0.0  # the check proper (check_files)
    disk_error: str | None = None  # the index could not be written or a WARC read: stop the run


def check_item(job: CheckJob, site: Site) -> CheckResult:
    """Check one item's WARCs; if clean, write their CDXJ indexes and hash them. Runs in a checker process."""
    from archiver.warc.check import check_files
    from archiver.warc.index import write_entries

    try:
        t = time.perf_counter()
        report = check_files(job.paths, site=site, items=[job.item])
        seconds = time.perf_counter() - t
        errors = [f for f in findings(report) if f.severity == "error"]
        if errors:
            return CheckResult(job.name, [f"{f.code}: {f.message}" for f in errors[:10]], seconds=seconds)
        for p in job.paths:
            write_entries(p, job.index.get(p, ()))
        files = tuple(warc_file(Path(job.run_dir), Path(p)) for p in job.paths)
        return CheckResult(job.name, files=files, seconds=seconds)
    except OSError as e:
        return CheckResult(job.name, disk_error=f"cannot write in {job.run_dir}: {e.strerror or e}")
    except Exception as e:  # a bug must cost one item (retried), not the run
        traceback.print_exc()
        return CheckResult(job.name, [f"internal error while checking: {type(e).__name__}: {e}"])


def warc_file(run_dir: Path, path: Path) -> WarcFile:
    size, sha256 = file_sha256(path)
    return WarcFile(name=os.path.relpath(path, run_dir), size=size, sha256=sha256)


def findings(report) -> list:
    out = list(getattr(report, "findings", []) or [])
    for f in getattr(report, "files", []) or []:
        out += list(getattr(f, "findings", []) or [])
    return out


def _checker_main(conn, site: Site) -> None:
    """A checker process: check the jobs sent over `conn` until None (or the coordinator is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's: it lets running checks finish
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent()  # no orphan checkers after a SIGKILL of the coordinator
    _set_name(CHECKER_NAME)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(check_item(job, site))


def _set_name(name: bytes) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME = 15: /proc/PID/comm
    except (OSError, AttributeError):
        pass


class _Slot:
    __slots__ = ("proc", "conn", "job")

    def __init__(self) -> None:
        self.proc = None
        self.conn = None
        self.job: CheckJob | None = None


class CheckPool:
    """`size` checker processes, forked when first needed; every call is made from the coordinator's thread.

    Jobs beyond the idle processes wait in a backlog (the run bounds how many it submits). `len(pool)` is the
    jobs not yet collected: waiting, or being checked."""

    def __init__(self, size: int, site: Site) -> None:
        import multiprocessing

        self.site = site
        self._ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                else "spawn")
        self._slots = [_Slot() for _ in range(max(1, size))]
        self._backlog: deque[CheckJob] = deque()

    def __len__(self) -> int:
        return len(self._backlog) + sum(s.job is not None for s in self._slots)

    def submit(self, job: CheckJob) -> None:
        self._backlog.append(job)
        self._dispatch()

    def collect(self, timeout: float | None = 0.0) -> list[CheckResult]:
        """Results of finished checks. Waits up to `timeout` seconds (None: as long as it takes) for a checker
        to answer when none has; returns at once when nothing is being checked."""
        busy = [s for s in self._slots if s.job is not None]
        if not busy:
            return []
        out = []
        ready = set(wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout))
        for s in busy:
            if s.conn not in ready and s.proc.sentinel not in ready:
                continue
            try:
                if s.conn.poll():
                    out.append(s.conn.recv())
                    s.job = None
                    continue
            except (EOFError, OSError):
                pass
            lost = self._lost(s)
            if lost is not None:
                out.append(lost)
        self._dispatch()
        return out

    def close(self, *, kill: bool = False) -> None:
        """Stop the checkers: after their current job (they are asked to finish), or at once with `kill`.
        Waits for them either way, so none outlives the run."""
        for s in self._slots:
            if s.proc is None:
                continue
            if not kill:
                try:
                    s.conn.send(None)
                except OSError:
                    pass
            else:
                s.proc.kill()
        deadline = time.monotonic() + 30
        for s in self._slots:
            if s.proc is None:
                continue
            s.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if s.proc.is_alive():
                s.proc.kill()
                s.proc.join(timeout=5)
            s.conn.close()
            s.proc = s.conn = s.job = None
        self._backlog.clear()

    # ---- internals -----------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for s in self._slots:
            if not self._backlog:
                return
            if s.job is not None:
                continue
            if s.proc is None or not s.proc.is_alive():
                self._start(s)
            job = self._backlog.popleft()
            try:
                s.conn.send(job)
            except OSError:  # it died while idle: a new one gets the job
                self._backlog.appendleft(job)
                self._reap(s)
                self._start(s)
                s.conn.send(job)
            s.job = job

    def _start(self, s: _Slot) -> None:
        import archiver.warc.check  # noqa: F401 - imported once here, not in every forked checker
        import archiver.warc.index  # noqa: F401

        self._reap(s)
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_checker_main, args=(theirs, self.site), name="archiver-check",
                                 daemon=True)
        # SIGINT blocked across the fork: the child ignores it before it can arrive (blocked signals stay
        # pending in the parent, and the child's pending set starts empty)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc.start()
        except OSError as e:
            ours.close()
            raise ArchiverError(f"cannot start a checker process: {e.strerror or e}") from e
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            theirs.close()
        s.proc, s.conn = proc, ours

    def _reap(self, s: _Slot) -> None:
        if s.proc is not None:
            s.proc.join(timeout=1)
            if s.proc.is_alive():
                s.proc.kill()
                s.proc.join(timeout=5)
            s.conn.close()
        s.proc = s.conn = None

    def _lost(self, s: _Slot) -> CheckResult | None:
        """The checker died holding a job: once, the job goes to a new checker; then the item fails."""
        job, s.job = s.job, None
        code = s.proc.exitcode if s.proc is not None else None
        self._reap(s)
        assert job is not None
        job.lost += 1
        if job.lost < MAX_LOST:
            self._backlog.appendleft(job)
            return None
        return CheckResult(job.name, [f"checker-died: the checker process died {job.lost} times while checking "
                                      f"this item (exit code {code})"])
