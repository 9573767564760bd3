"""A crawl worker: a process that fetches what it is given, records it, and reports what it found.

Each worker process owns one HTTP client (one keep-alive connection per host) and its WARC writers — one shared
writer for a grab, or one per item when every item must get WARC files of its own (bulk runs) — so records are
never interleaved and both cores are used. The coordinator (crawler.py) decides what to fetch and when; workers
only fetch, classify, write and extract links.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from archiver.capture.http import HttpClient
from archiver.capture.spool import DiskError
from archiver.crawl.cookies import set_cookie_headers
from archiver.crawl.links import clean_url, css_links, decode_body, html_links, manifest_links, parse_html
from archiver.crawl.robots import MAX_ROBOTS_BYTES, dechunk
from archiver.sites import get_site
from archiver.sites.base import BACKOFF, HEAD_BYTES, LINK, REDIRECT, REQUISITE, Link, SiteOptions, Verdict
from archiver.warc.writer import WarcWriter

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HOP = {LINK: "L", REQUISITE: "E", REDIRECT: "R"}


class Task(NamedTuple):
    id: int
    url: str
    referer: str | None
    last_try: bool
    writer: str | None = None  # None: the shared writer; else the file prefix of the item's own writer
    robots: bool = False  # a host's robots.txt: recorded like any capture, its body sent back, no links followed
    cookie: str | None = None  # the Cookie header to send (from the coordinator's jar), None: none


class FetchResult(NamedTuple):
    task_id: int
    url: str
    status: int | None
    content_type: str
    length: int  # entity-body bytes received
    wire_bytes: int  # response bytes as recorded
    error: str | None
    truncated: str | None
    verdict: Verdict | None
    retry_after: str | None  # the Retry-After header, as sent
    retryable: bool  # a transient failure that wrote nothing: worth another try
    warc: str | None  # file name the response went to (None: nothing written)
    offset: int | None
    links: list[Link]
    page_info: dict[str, Any] | None
    elapsed: float
    body: bytes | None = None  # robots.txt tasks: the entity body (de-chunked, decoded, at most 512 KiB)
    set_cookies: tuple[str, ...] = ()  # the response's Set-Cookie values, for the coordinator's jar


@dataclass(frozen=True)
class WorkerConfig:
    site: str
    site_options: SiteOptions
    out_dir: str
    prefix: str
    user_agent: str
    timeout: float = 30.0
    max_time: float = 3600.0
    max_size: int | None = None
    warc_max_size: int = 5 * 1024**3
    compress_level: int = 6
    verify_tls: bool = True
    info: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    cookies: bool = True  # keep cookies for the crawl (jar in the coordinator); False: --no-cookies
    load_cookies: str | None = None  # a Netscape cookies.txt read into the jar at the start (coordinator only)


class Worker:
    """Fetch → classify → record → extract, for one task at a time."""

    def __init__(self, config: WorkerConfig, next_serial, should_stop=None) -> None:
        self.config = config
        self.site = get_site(config.site, config.site_options)
        self.client = HttpClient(user_agent=config.user_agent, timeout=config.timeout, max_time=config.max_time,
                                 max_size=config.max_size, verify_tls=config.verify_tls, spool_dir=config.out_dir,
                                 should_stop=should_stop)
        self.next_serial = next_serial
        self.writers: dict[str | None, WarcWriter] = {}
        self.finished: list[str] = []

    def writer(self, key: str | None) -> WarcWriter:
        w = self.writers.get(key)
        if w is None:
            c = self.config
            w = self.writers[key] = WarcWriter(c.out_dir, key or c.prefix, next_serial=self.next_serial,
                                               max_size=c.warc_max_size, compress_level=c.compress_level,
                                               info=c.info)
        return w

    def finish_writer(self, key: str | None) -> dict[str, list[tuple]]:
        """Close the writer `key` (an item's): its finished files, each with its index facts."""
        w = self.writers.pop(key, None)
        if w is None:
            return {}
        w.finish()
        return w.index

    def process(self, task: Task) -> FetchResult:
        ex = self.client.fetch(task.url, referer=task.referer, cookie=task.cookie)
        try:
            result = self._handle(task, ex)
        finally:
            ex.close()
        if self.config.cookies and ex.recordable:
            # every answer's cookies go back, recorded or not (a refusal or a try cut short may set one, as
            # it would in a browser); each redirect hop is a task of its own, so none is missed
            set_cookies = set_cookie_headers(ex.headers)
            if set_cookies:
                result = result._replace(set_cookies=set_cookies)
        return result

    def _handle(self, task: Task, ex) -> FetchResult:
        url = task.url
        writer = self.writer(task.writer)
        if not ex.recordable:
            if task.last_try or ex.permanent:
                self._log(writer, ex, task, None, None)
            return _result(task, ex, retryable=not task.last_try and not ex.permanent)
        if ex.truncated in ("disconnect", "time") and not task.last_try and ex.error != "interrupted by the user":
            return _result(task, ex, retryable=True)  # nothing written: the next try may get it whole
        hmap = ex.header_map()
        encoding = hmap.get("content-encoding")
        ctype = ex.content_type
        decoded = None
        if ex.payload is not None and encoding:
            decoded = decode_body(ex.payload, encoding)
            head = decoded[:HEAD_BYTES]
        elif encoding:
            head = decode_body(ex.payload_head, encoding, HEAD_BYTES)
        else:
            head = ex.payload_head
        verdict = self.site.classify(url, ex.status, hmap, head)
        if verdict is not None and verdict.action == BACKOFF:
            self._log(writer, ex, task, None, verdict)
            return _result(task, ex, verdict=verdict, retry_after=hmap.get("retry-after"))
        links: list[Link] = []
        page_info = None
        if 300 <= ex.status < 400 and "location" in hmap:
            target = clean_url(hmap["location"], url)
            if target:
                links.append(Link(target, REDIRECT, "http/location"))
        is_page = False
        if task.robots:
            ref = writer.write_exchange(ex, via=task.referer)
            self._log(writer, ex, task, ref, verdict)
            body = _entity_body(ex, hmap) if 200 <= ex.status < 300 else None
            return _result(task, ex, verdict=verdict, links=links, warc=ref.filename, offset=ref.offset, body=body)
        if ex.payload is not None and 200 <= ex.status < 300 and not ex.truncated:
            body = decoded if decoded is not None else (decode_body(ex.payload, encoding) if encoding else ex.payload)
            if ctype in HTML_TYPES:
                is_page = True
                tree = parse_html(body)
                links += html_links(tree, url)
                if tree is not None:
                    page_info = self.site.page_info(url, tree)
            elif ctype == "text/css":
                links += css_links(body, url)
            elif ctype == "application/manifest+json" or url.endswith(".webmanifest"):
                links += manifest_links(body, url)
        outlinks = [(link.url, _HOP.get(link.kind, "L"), link.how) for link in links] if is_page else None
        ref = writer.write_exchange(ex, outlinks=outlinks, via=task.referer)
        self._log(writer, ex, task, ref, verdict)
        return _result(task, ex, verdict=verdict, links=links, page_info=page_info, warc=ref.filename,
                       offset=ref.offset)

    def _log(self, writer: WarcWriter, ex, task: Task, ref, verdict: Verdict | None) -> None:
        entry = {"date": ex.date, "url": ex.url, "status": ex.status or None, "bytes": ex.payload_length,
                 "ms": round(ex.elapsed * 1000, 1)}
        if task.referer:
            entry["via"] = task.referer
        if ex.ip:
            entry["ip"] = ex.ip
        if ref is not None:
            entry["record"] = ref.record_id
        if ex.truncated:
            entry["truncated"] = ex.truncated
        if ex.error:
            entry["error"] = ex.error
        if verdict is not None:
            entry["verdict"] = verdict.code
            if verdict.action == BACKOFF:
                entry["recorded"] = False
        writer.log(entry)

    def close(self) -> dict[str, list[tuple]]:
        self.client.close()
        files: dict[str, list[tuple]] = {}
        for key in list(self.writers):
            files.update(self.finish_writer(key))
        return files


def _result(task: Task, ex, *, verdict=None, retryable=False, retry_after=None, links=(), page_info=None,
            warc=None, offset=None, body=None) -> FetchResult:
    return FetchResult(task.id, task.url, ex.status or None, ex.content_type if ex.status else "",
                       ex.payload_length, ex.response.size if ex.response is not None else 0, ex.error,
                       ex.truncated, verdict, retry_after, retryable, warc, offset, list(links), page_info,
                       ex.elapsed, body)


def _entity_body(ex, hmap: dict[str, str]) -> bytes:
    """The start of a response's entity body as robots.txt parsing needs it: transfer and content coding
    removed, at most MAX_ROBOTS_BYTES. Read from the spool (text/plain bodies are not kept in memory), and only
    a bounded prefix of it, so a huge or endless robots.txt costs nothing here."""
    if ex.response is None:
        return b""
    raw = bytearray()
    budget = 4 * MAX_ROBOTS_BYTES  # room for chunk framing and for compression
    for block in ex.response.chunks(ex.head_len):
        raw += block[:budget - len(raw)]
        if len(raw) >= budget:
            break
    data = bytes(raw)
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        data = dechunk(data)
    encoding = hmap.get("content-encoding")
    return decode_body(data, encoding, MAX_ROBOTS_BYTES) if encoding else data[:MAX_ROBOTS_BYTES]


def _die_with_parent() -> None:
    """If the coordinator is killed (SIGKILL, OOM), die too instead of fetching on as an orphan: Linux's
    PR_SET_PDEATHSIG. What this worker was writing stays `.open`, which nothing counts as finished."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def worker_main(config: WorkerConfig, conn, serial, stop_event) -> None:
    """Entry point of a worker process: serve task batches from `conn` until told to finish (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C and tells us to finish
    _die_with_parent()

    def next_serial() -> int:
        with serial.get_lock():
            value = serial.value
            serial.value += 1
        return value

    worker = None
    try:
        worker = Worker(config, next_serial, should_stop=stop_event.is_set)
        while True:
            batch = conn.recv()
            if batch is None:
                break
            if isinstance(batch, tuple) and batch[0] == "log":  # ("log", writer key, entry): a crawl-log line
                worker.writer(batch[1]).log(batch[2])
                continue
            if isinstance(batch, tuple):  # ("finish", writer key): an item is complete
                try:
                    conn.send(("item-files", batch[1], worker.finish_writer(batch[1])))
                except OSError as e:
                    conn.send(("fatal", f"cannot finish WARC in {config.out_dir}: {e.strerror or e}", None))
                    return
                continue
            for task in batch:
                if stop_event.is_set():
                    conn.send(("skipped", task.id))
                    continue
                try:
                    result = worker.process(task)
                except (OSError, DiskError) as e:
                    # the disk (spool or WARC) failed: nothing more can be written safely
                    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    conn.send(("fatal", f"cannot write in {config.out_dir}: {why}", task.id))
                    return
                except Exception as e:  # a bug must cost one URL, not the run
                    result = FetchResult(task.id, task.url, None, "", 0, 0,
                                         f"internal error: {type(e).__name__}: {e}", None, None, None, False,
                                         None, None, [], None, 0.0)
                    traceback.print_exc()
                conn.send(result)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        files: dict[str, list[tuple]] = {}
        if worker is not None:
            try:
                files = worker.close()
            except OSError as e:
                try:
                    conn.send(("fatal", f"cannot finish WARC in {config.out_dir}: {e.strerror or e}", None))
                except OSError:
                    pass
        try:
            conn.send(("finished", files))
        except OSError:
            pass
        conn.close()
