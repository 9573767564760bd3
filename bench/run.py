#!/usr/bin/env python3
"""Benchmark `archiver run` (bulk, resumable runs) against its peers in the same run.

Not a test: it prints markdown tables and ratios, and writes bench/results/run.json. An arXiv-like fixture
(tests/fixtures/arxiv_site.py) serves 1,000 synthetic papers (1-3 versions each, small PDFs) on 127.0.0.1 from
a thread of this process, and these are timed, alternating the order from round to round:

  run-w1      archiver run MANIFEST --workers 1     (1,000-item manifest, delay 0, fresh DIR)   -> items/s
  run-w4      archiver run MANIFEST --workers 4
  run-w4c4    the same with `concurrency: 4` in the manifest: arXiv's host policy allows one connection by
              default, so this row shows whether --workers alone can help (diagnostic)
  grab-loop   a shell loop of N `archiver grab --site arxiv --delay 0 -q` calls, one paper each
  wget-loop   a shell loop of N `wget --warc-file -i LIST` calls; LIST = the paper's abs pages and PDFs of
              every version (wget cannot discover versions: the list is handed to it)
  wget-p-loop the same with -p, so wget also fetches the abs pages' requisites, as archiver does

and on a second fixture, where the per-item check matters (MultiHostSite: 4 plain websites on 127.0.0.11-14,
50 items each, an item = a page + stylesheet + 2 scripts + 4 images of 1-4 MiB, ~10 MB of WARC; every answer
waits 20 ms, a remote host's round trip, so crawl workers wait on the network as they do on the real web):

  multi-w1    archiver run MANIFEST --workers 1     (200 generic items, delay 0, fresh DIR)     -> items/s
  multi-w4    archiver run MANIFEST --workers 4

With --baseline ARCHIVER (another archiver, e.g. a snapshot of the code before a change), every archiver run
row is also timed with it in the same rounds (base-run-w1, base-multi-w4, ...), so a change is measured against
its predecessor under the same load.

and, at the run level:

  resume      archiver run on a 100,000-item queue with 50,000 done: time from start to the fixture's first
              request (and to the first claim)                                            target < 2 s
  queue       bench/queue.py's claim + done overhead per item (imported, run here)        target < 5 ms

Every output is verified: items done (`archiver status --json`, report.json), WARC files and the paper URLs
captured in them (warcio), request counts at the server.

No traffic leaves 127.0.0.1. `bench/run.py --help`; see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import platform
import pstats
import random
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# tests/, not tests/fixtures: the fixture modules import each other as the `fixtures` package (see conftest.py,
# which does the same because pywb installs a top-level `tests` package that shadows ours).
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from fixtures import arxiv_site  # noqa: E402
from fixtures.arxiv_site import ArxivSite, Paper, Version, paper_urls  # noqa: E402

from archiver.queue import ItemOutcome, WarcFile  # noqa: E402
from archiver.queue.sqlite import SqliteQueue  # noqa: E402

TARGET_OVERHEAD_MS = 5.0
TARGET_RESUME_S = 2.0
PROJECT = "bench-run"
RUN_TOOLS = ("run-w1", "run-w4", "run-w4c4")
MULTI_TOOLS = ("multi-w1", "multi-w4")
BASE = "base-"  # prefix of the rows timed with --baseline's archiver
TOOLS = (*RUN_TOOLS, *MULTI_TOOLS, *(BASE + t for t in (*RUN_TOOLS, *MULTI_TOOLS)), "grab-loop", "wget-loop",
         "wget-p-loop")
PARTS = ("run", "multi", "grab", "wget", "resume", "queue")
LABELS = {
    "run-w1": "archiver run --workers 1",
    "run-w4": "archiver run --workers 4",
    "run-w4c4": "archiver run --workers 4, `concurrency: 4` (diagnostic)",
    "multi-w1": "multi-host: archiver run --workers 1",
    "multi-w4": "multi-host: archiver run --workers 4",
    "grab-loop": "shell loop of `archiver grab` (one paper each)",
    "wget-loop": "shell loop of `wget --warc-file -i` (abs + PDFs)",
    "wget-p-loop": "shell loop of `wget -p --warc-file -i` (+ requisites)",
}
LABELS.update({BASE + t: f"baseline: {LABELS[t]}" for t in (*RUN_TOOLS, *MULTI_TOOLS)})
CATEGORIES = (("cs.LG", "Machine Learning"), ("cs.CL", "Computation and Language"),
              ("stat.ML", "Machine Learning (Statistics)"), ("math.OC", "Optimization and Control"))


def log(msg: str) -> None:
    print(f"[run-bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- the site --------
def synthetic_papers(n: int, seed: int) -> dict[str, Paper]:
    """n papers 2301.00001.. with 1-3 versions; seeded, so every run serves the same bytes."""
    rng = random.Random(seed)
    papers: dict[str, Paper] = {}
    start = datetime(2023, 1, 2, 9, 0, tzinfo=timezone.utc)
    for i in range(n):
        arxiv_id = f"2301.{i + 1:05d}"
        submitted = start + timedelta(minutes=7 * i)
        versions = tuple(Version(v, submitted + timedelta(days=30 * (v - 1)), rng.randint(20, 400))
                         for v in range(1, rng.randint(1, 3) + 1))
        primary, name = rng.choice(CATEGORIES)
        authors = tuple(f"Author {rng.randint(1, 5000)} Example" for _ in range(rng.randint(1, 4)))
        papers[arxiv_id] = Paper(
            arxiv_id=arxiv_id, title=f"Synthetic benchmark paper number {i + 1}", authors=authors,
            submitter=authors[0], primary_category=primary, category_name=name,
            abstract=f"A synthetic abstract for benchmark paper {i + 1}. " * 3, versions=versions)
    return papers


def cache_pdfs(papers: dict[str, Paper]) -> None:
    """Give the fixture's PDF generator an unbounded cache and fill it now.

    make_pdf's lru_cache holds 256 entries, fewer than 1,000 papers' versions, so every tool would pay for
    regenerated PDFs at the server, and the first measurement would warm the cache for the later ones. The
    fixture looks the function up by its module-global name at request time, so replacing it here suffices.
    """
    make = getattr(arxiv_site.make_pdf, "__wrapped__", arxiv_site.make_pdf)
    arxiv_site.make_pdf = functools.lru_cache(maxsize=None)(make)
    for p in papers.values():
        for v in p.versions:
            arxiv_site.make_pdf(p.arxiv_id, v.number, p.title)


# ---------------------------------------------------------------------------------- the multi-host site --------
MULTI_HOST_BASE = 11  # the sites listen on 127.0.0.11, .12, ...: politeness is per host name, so N hosts
MULTI_IMAGES = 4  # images per item page (--multi-images)
MULTI_IMAGE_KIB = (1024, 4096)  # their sizes (--multi-image-kib): random bytes, so the writer stores them
MULTI_WORDS = ("archive web page crawl record request response digest host item check queue worker link style "
               "script image the of and a to in is for on with as by at from that this which be are").split()


class MultiHostSite:
    """Plain websites on HOSTS loopback addresses, each serving PER_HOST items.

    An item is `http://127.0.0.1x:PORT/item/K/`: an HTML page (~30 KB of text) with a stylesheet, two scripts
    and 4 images (1–4 MiB of random bytes), ~10 MB of WARC per item, so its check, index and hash (~35 ms)
    weigh next to its crawl. Seeded: every run serves the same bytes. Keep-alive HTTP/1.1, one
    ThreadingHTTPServer per host in threads of the benchmark process; `latency` seconds before each answer.
    """

    def __init__(self, hosts: int, per_host: int, seed: int, latency: float = 0.0, images: int = MULTI_IMAGES,
                 image_kib: tuple[int, int] = MULTI_IMAGE_KIB) -> None:
        import http.server

        rng = random.Random(seed)
        self.n_images = images
        self.images = [b"\x89PNG\r\n\x1a\n" + rng.randbytes(1024 * rng.randint(*image_kib)) for _ in range(16)]
        self.css = ("".join(f".c{i} {{ margin: {i}px; color: #{i * 7919 % 0xFFFFFF:06x}; }}\n" for i in range(300))
                    ).encode()
        self.js = [("".join(f"function f{k}_{i}(x) {{ return x * {i} + {k}; }}\n" for i in range(700))).encode()
                   for k in range(2)]
        self.per_host = per_host
        self.seed = seed
        self.latency = latency  # seconds each answer waits (a sleeping thread, no CPU): a remote host's RTT
        self._pages = [self._page(i) for i in range(hosts * per_host)]  # made now, not on the clock
        self.requests = 0
        self._lock = threading.Lock()
        self._servers: list[Any] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with owner._lock:
                    owner.requests += 1
                if owner.latency:
                    time.sleep(owner.latency)
                body, ctype = owner.body(self.path)
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"not found\n"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        for h in range(hosts):
            self._servers.append(Server((f"127.0.0.{MULTI_HOST_BASE + h}", 0), Handler))

    def __enter__(self) -> MultiHostSite:
        for srv in self._servers:
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()

    def _image(self, item: int, k: int) -> bytes:
        return self.images[(item * 31 + k * 7 + self.seed) % len(self.images)]

    def _page(self, item: int) -> bytes:
        rng = random.Random(self.seed * 100_003 + item)
        paras = "".join("<p>" + " ".join(rng.choice(MULTI_WORDS) for _ in range(120)) + "</p>\n" for _ in range(40))
        imgs = "".join(f'<img src="img-{k}.png" alt="figure {k}">\n' for k in range(self.n_images))
        return (f"<!DOCTYPE html>\n<html><head><title>Item {item}</title>\n"
                '<link rel="stylesheet" href="style.css">\n<script src="app.js"></script>\n'
                f'<script src="lib.js"></script></head>\n<body><h1>Item {item}</h1>\n{paras}{imgs}</body></html>\n'
                ).encode()

    def body(self, path: str) -> tuple[bytes | None, str]:
        parts = path.split("/")  # "", "item", K, name
        if len(parts) != 4 or parts[1] != "item" or not parts[2].isdigit():
            return None, "text/plain"
        item, name = int(parts[2]), parts[3]
        if name == "":
            return (self._pages[item], "text/html; charset=utf-8") if item < len(self._pages) else (None, "text/plain")
        if name == "style.css":
            return self.css, "text/css"
        if name in ("app.js", "lib.js"):
            return self.js[name == "lib.js"], "application/javascript"
        if name.startswith("img-") and name.endswith(".png") and name[4:-4].isdigit():
            k = int(name[4:-4])
            return (self._image(item, k), "image/png") if k < self.n_images else (None, "text/plain")
        return None, "text/plain"

    def item_urls(self) -> list[str]:
        """Start URLs, host by host in turn, so every host is busy from the start."""
        out = []
        for k in range(self.per_host):
            for srv in self._servers:
                host, port = srv.server_address[:2]
                out.append(f"http://{host}:{port}/item/{k * len(self._servers) + self._servers.index(srv)}/")
        return out

    def expected_urls(self) -> set[str]:
        urls = set()
        for start in self.item_urls():
            urls.add(start)
            urls.update(start + n for n in ("style.css", "app.js", "lib.js"))
            urls.update(f"{start}img-{k}.png" for k in range(self.n_images))
        return urls


# ------------------------------------------------------------------------------------------- measuring --------
@dataclass
class Timed:
    exit_code: int | None
    timed_out: bool
    wall_s: float
    cpu_s: float  # the tool's process tree (user + sys, as wait4 reports it for the child and its reaped ones)
    server_cpu_s: float  # this process meanwhile: the fixture's threads, so a server-bound run is visible
    started: float  # time.time() at launch, to line up with the server's request log
    loadavg: tuple[float, float, float]


def timed(cmd: Sequence[str], cwd: Path, timeout: float | None = None) -> Timed:
    """Run cmd; wall time from a blocking wait4 in a thread (Popen.wait(timeout) polls up to 50 ms late)."""
    os.sync()  # earlier runs' dirty pages would otherwise be written back during this timed run
    load = os.getloadavg()
    me0 = os.times()
    out, err = open(cwd / "stdout.txt", "wb"), open(cwd / "stderr.txt", "wb")
    started = time.time()
    t0 = time.perf_counter()
    # own session: the whole tree (a shell loop and its children) can be killed on timeout
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            start_new_session=True)
    res: dict[str, Any] = {}
    finished = threading.Event()

    def waiter() -> None:
        _, status, ru = os.wait4(proc.pid, 0)
        res.update(t1=time.perf_counter(), status=status, ru=ru)
        finished.set()

    threading.Thread(target=waiter, daemon=True).start()
    timed_out = False
    try:
        if not finished.wait(timeout):
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            finished.wait()
    except BaseException:  # Ctrl-C of the benchmark: do not leave the tool running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        out.close()
        err.close()
    proc.returncode = os.waitstatus_to_exitcode(res["status"])  # tell Popen the child is reaped
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left behind in its session
    me1 = os.times()
    ru = res["ru"]
    return Timed(proc.returncode, timed_out, res["t1"] - t0, ru.ru_utime + ru.ru_stime,
                 (me1[0] - me0[0]) + (me1[1] - me0[1]), started, load)


def tail(path: Path, n: int = 6) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------- verifying --------
def read_warcs(paths: Iterable[Path]) -> dict[str, Any]:
    """Responses and paper URLs really captured, so a fast tool that skipped something is visible."""
    from warcio.archiveiterator import ArchiveIterator

    c: dict[str, Any] = {"files": 0, "records": 0, "responses": 0, "status": Counter(), "errors": []}
    uris: set[str] = set()
    for path in paths:
        c["files"] += 1
        try:
            with open(path, "rb") as fh:
                for rec in ArchiveIterator(fh):
                    c["records"] += 1
                    if rec.rec_type != "response":
                        continue
                    c["responses"] += 1
                    uris.add((rec.rec_headers.get_header("WARC-Target-URI") or "").strip("<>"))
                    status = rec.http_headers.get_statuscode() if rec.http_headers else "0"
                    c["status"][str(status)] += 1
        except Exception as e:  # an unreadable WARC is a finding to report, not a crash of the benchmark
            c["errors"].append(f"{path.name}: {type(e).__name__}: {e}")
    c["status"] = dict(c["status"])
    c["uris"] = uris
    return c


def paper_coverage(found: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    uris = found.pop("uris")
    missing = sorted(expected - uris)
    found.update(paper_urls_expected=len(expected), paper_urls_captured=len(expected & uris),
                 paper_urls_missing=len(missing), missing_sample=missing[:5])
    return found


def status_json(archiver: list[str], out: Path) -> dict[str, Any]:
    r = subprocess.run([*archiver, "status", str(out), "--json"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return {"error": f"exit {r.returncode}: {r.stderr.strip()[-300:]}"}
    data = json.loads(r.stdout)
    data.pop("failed_items", None)
    return data


def verify_run_dir(archiver: list[str], out: Path, items: int, expected: set[str]) -> dict[str, Any]:
    """status numbers, report.json against the files present, per-item timings, WARC contents."""
    v: dict[str, Any] = {"status": status_json(archiver, out)}
    report = json.loads((out / "report.json").read_text())
    entries = report["items"].values()
    recorded = {w["name"] for e in entries for w in e.get("warcs", [])}
    present = {p.name for p in out.glob("*.warc.gz")}
    v["report_done"] = sum(e["state"] == "done" for e in entries)
    v["warcs_recorded"] = len(recorded)
    v["warcs_present"] = len(present)
    v["warcs_match"] = recorded == present
    v["open_files_left"] = len(list(out.glob("*.open")))
    # Per-item crawl and check times the run records itself: with one worker they show where the wall goes.
    for key in ("crawl", "check"):
        xs = [e["timings"][key] for e in entries if key in e.get("timings", {})]
        v[f"{key}_s_sum"] = round(sum(xs), 2)
        v[f"{key}_ms_mean"] = round(1000 * statistics.fmean(xs), 2) if xs else None
    v["warc"] = paper_coverage(read_warcs(sorted(out.glob("*.warc.gz"))), expected)
    st = v["status"]
    v["ok"] = (st.get("done") == items and st.get("failed") == 0 and st.get("todo") == 0
               and v["report_done"] == items and v["warcs_match"] and not v["open_files_left"]
               and not v["warc"]["errors"] and v["warc"]["paper_urls_missing"] == 0)
    return v


# ----------------------------------------------------------------------------------------------- tools --------
GRAB_LOOP = r"""#!/bin/bash
# One `archiver grab` per paper, as someone without `archiver run` would script it. Each finished call is
# appended to $progress, so a run cut short by the time budget still says how many items it did.
set -u
archiver=$1; out=$2; urls=$3; progress=$4
while IFS= read -r url; do
    "$archiver" grab --site arxiv --delay 0 -q -o "$out" "$url" >/dev/null 2>>"$progress.stderr" \
        || echo "$url" >>"$progress.failed"
    echo "$url" >>"$progress"
done <"$urls"
"""

WGET_LOOP = r"""#!/bin/bash
# One wget per paper: its URL list (abs pages and PDFs of every version) in, one WARC out.
# robots=off: the list names only /abs and /pdf, which arXiv's robots.txt allows, and it keeps wget from
# fetching robots.txt once per call, which archiver never does.
set -u
out=$1; index=$2; progress=$3; shift 3
while read -r name list; do
    wget -q -e robots=off "$@" --warc-file="$out/$name" -P "$out/files" -i "$list" 2>>"$progress.stderr"
    rc=$?
    # 8 = some URL got an HTTP error; judged by what the WARCs hold instead, like bench/crawl.py
    if [ $rc -ne 0 ]; then echo "$name $rc" >>"$progress.failed"; fi
    echo "$name" >>"$progress"
done <"$index"
"""


@dataclass
class Measurement:
    tool: str
    round: int
    items: int  # items the tool was asked to do
    done: int  # items it finished (a loop cut short by its budget does fewer)
    ok: bool
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    requests: int  # what the fixture served during the measurement
    loadavg: tuple[float, float, float]
    error: str | None = None
    verify: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, site: ArxivSite, tmp: Path, archiver: list[str],
                 multi: MultiHostSite | None = None) -> None:
        self.args = args
        self.site = site
        self.tmp = tmp
        self.archiver = archiver
        self.baseline = [args.baseline] if args.baseline else None
        self.multi = multi
        if multi is not None:
            self.multi_items = multi.item_urls()
            self.multi_expected = multi.expected_urls()
            self.multi_manifest = tmp / "manifest-multi.yaml"
            self.multi_manifest.write_text(
                f"project: {PROJECT}-multi\nsite: generic\ndescription: bench/run.py, {len(self.multi_items)} "
                f"items on {args.hosts} hosts\nitems:\n" + "".join(f"  - {u}\n" for u in self.multi_items)
                + "options:\n  delay: 0\n")
        self.ids = list(site.papers)
        self.expected = {u for i in self.ids for u in paper_urls(site, i)}
        self.manifests = {"": self._manifest("manifest.yaml", ""),
                          "c4": self._manifest("manifest-c4.yaml", "  concurrency: 4\n")}
        (tmp / "abs-urls.txt").write_text("".join(site.url(f"/abs/{i}") + "\n" for i in self.ids))
        lists = tmp / "lists"
        lists.mkdir()
        index = []
        for i in self.ids:
            safe = i.replace("/", "_")
            (lists / f"{safe}.txt").write_text("".join(u + "\n" for u in paper_urls(site, i)))
            index.append(f"{safe} {lists / (safe + '.txt')}\n")
        (tmp / "wget-index.txt").write_text("".join(index))
        (tmp / "grab-loop.sh").write_text(GRAB_LOOP)
        (tmp / "wget-loop.sh").write_text(WGET_LOOP)

    def _manifest(self, name: str, extra: str) -> Path:
        path = self.tmp / name
        path.write_text(f"project: {PROJECT}\nsite: arxiv\ndescription: bench/run.py, {len(self.ids)} papers\n"
                        "items:\n" + "".join(f"  - {i}\n" for i in self.ids)
                        + f"options:\n  base_url: {self.site.base_url}\n  delay: 0\n{extra}")
        return path

    def _fresh(self, tool: str, rnd: int) -> Path:
        d = self.tmp / "runs" / f"{tool}-{rnd}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def measure(self, tool: str, rnd: int) -> Measurement:
        d = self._fresh(tool, rnd)
        out = d / "out"
        n = len(self.ids)
        self.site.clear_log()  # the log would grow by ~22,000 entries per run otherwise
        kind = tool.removeprefix(BASE)
        archiver = self.baseline if tool.startswith(BASE) and self.baseline else self.archiver
        if kind.startswith("multi-"):
            assert self.multi is not None
            self.multi.requests = 0
            n = done = len(self.multi_items)
            t = timed([*archiver, "run", str(self.multi_manifest), "-o", str(out), "--workers",
                       kind.removeprefix("multi-w"), "-q"], d, self.args.timeout)
        elif kind.startswith("run-"):
            workers = "1" if kind == "run-w1" else "4"
            manifest = self.manifests["c4" if kind == "run-w4c4" else ""]
            t = timed([*archiver, "run", str(manifest), "-o", str(out), "--workers", workers, "-q"], d,
                      self.args.timeout)
            done = n
        elif tool == "grab-loop":
            urls = d / "urls.txt"
            urls.write_text("".join(self.site.url(f"/abs/{i}") + "\n" for i in self.ids[: self.args.grab_n]))
            out.mkdir()
            n = self.args.grab_n
            t = timed(["bash", str(self.tmp / "grab-loop.sh"), self.archiver[0], str(out), str(urls),
                       str(d / "progress")], d, self.args.grab_budget)
            done = _lines(d / "progress")
        else:
            out.mkdir()
            extra = ["-p"] if tool == "wget-p-loop" else []
            t = timed(["bash", str(self.tmp / "wget-loop.sh"), str(out), str(self.tmp / "wget-index.txt"),
                       str(d / "progress"), *extra], d, self.args.timeout)
            done = _lines(d / "progress")
        requests = self.multi.requests if kind.startswith("multi-") and self.multi else len(self.site.requests)
        m = Measurement(tool, rnd, n, done, False, t.wall_s, t.cpu_s, t.server_cpu_s, requests, t.loadavg)
        if t.timed_out and tool != "grab-loop":
            m.error = f"timed out after {self.args.timeout:.0f} s"
        elif t.exit_code != 0 and not t.timed_out:  # the grab loop's budget ends it with SIGKILL, on purpose
            m.error = f"exit {t.exit_code}: {tail(d / 'stderr.txt')}"
        self.site.clear_log()
        m.verify = self.verify(tool, d, out, done, t)
        m.ok = m.error is None and m.verify.get("ok", False)
        if m.error is None and not m.ok:
            m.error = "verification failed (see verify)"
        if not self.args.keep:
            shutil.rmtree(out, ignore_errors=True)
        return m

    def verify(self, tool: str, d: Path, out: Path, done: int, t: Timed) -> dict[str, Any]:
        kind = tool.removeprefix(BASE)
        if kind.startswith(("run-", "multi-")):
            if not (out / "report.json").exists():
                return {"ok": False, "error": "no report.json"}
            if kind.startswith("multi-"):
                return verify_run_dir(self.archiver, out, len(self.multi_items), self.multi_expected)
            return verify_run_dir(self.archiver, out, len(self.ids), self.expected)
        ids = self.ids[:done]
        expected = {u for i in ids for u in paper_urls(self.site, i)}
        failed = _lines(d / "progress.failed")
        v: dict[str, Any] = {"calls": done, "calls_failed": failed, "budget_hit": t.timed_out}
        # A call cut off by the budget may have left a partial WARC: it is read, its paper is not expected.
        v["warc"] = paper_coverage(read_warcs(sorted(out.glob("*.warc.gz"))), expected)
        v["ok"] = (failed == 0 and v["warc"]["files"] >= done and not v["warc"]["errors"]
                   and v["warc"]["paper_urls_missing"] == 0)
        return v


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------------------------- resume --------
def resume_names(items: int, done: int, served: list[str]) -> list[str]:
    """Queue order: `done` ids of an earlier month (done), then the served papers, then more to-do ids.

    The first to-do items are papers the fixture serves, so the resumed run really fetches (and the first
    request is a real one, not a 404 the run would then retry).
    """
    names = [f"2201.{i + 1:05d}" for i in range(done)]
    rest = items - done
    todo = served[:rest]
    have = set(todo)
    k = 0
    while len(todo) < rest:
        k += 1
        for month in ("2301", "2302", "2303"):
            name = f"{month}.{k:05d}"
            if name not in have and len(todo) < rest:
                todo.append(name)
                have.add(name)
    return names + todo


def warc_name(item: str) -> str:
    return f"{PROJECT}-{item.replace('/', '_')}-20260101000000-00000.warc.gz"


def build_resume_state(path: Path, names: list[str], done: int, stale: int) -> float:
    """state.sqlite as a killed 100,000-item run leaves it, through the queue API (as bench/queue.py does)."""
    t0 = time.perf_counter()
    q = SqliteQueue(path)
    q.add(names)
    left = done
    while left:
        claims = q.claim(f"run:bench:{os.getpid()}", n=min(500, left))
        for c in claims:
            q.done(c.token, ItemOutcome(warcs=(WarcFile(warc_name(c.item), 30_000, "0" * 64),), bytes=29_000,
                                        timings={"crawl": 0.02, "check": 0.01}, extra={"urls": 22}))
        left -= len(claims)
    if stale:
        q.claim("run:bench:killed", n=stale)  # a killed run held these; the resumed one requeues them
    q.close()
    return time.perf_counter() - t0


def make_done_files(out: Path, names: list[str]) -> float:
    """The done items' WARC and CDXJ files, empty: resume globs the directory against what the queue records,
    so a real run directory's 100,000 files are part of the cost. Only the names matter to that check."""
    t0 = time.perf_counter()
    for name in names:
        for suffix in ("", ".cdxj"):
            os.close(os.open(out / (warc_name(name) + suffix), os.O_WRONLY | os.O_CREAT, 0o644))
    return time.perf_counter() - t0


def reset_resume_dir(out: Path, base: Path) -> None:
    """Back to the killed state: the base queue, no report, no files of items grabbed by an earlier rep."""
    for suffix in ("-wal", "-shm"):
        (out / ("state.sqlite" + suffix)).unlink(missing_ok=True)
    shutil.copyfile(base, out / "state.sqlite")
    (out / "report.json").unlink(missing_ok=True)
    shutil.rmtree(out / "failed", ignore_errors=True)
    for p in out.glob(f"{PROJECT}-23*"):
        p.unlink()


def first_claim_after(state: Path, t0: float) -> float | None:
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT min(claimed_at) FROM items WHERE claimed_at >= ?", (t0,)).fetchone()
    finally:
        db.close()
    return row[0] if row and row[0] is not None else None


def measure_resume(args: argparse.Namespace, site: ArxivSite, tmp: Path, archiver: list[str]) -> dict[str, Any]:
    rdir = tmp / "resume"
    rdir.mkdir()
    names = resume_names(args.resume_items, args.resume_done, list(site.papers))
    (rdir / "items.txt").write_text("".join(n + "\n" for n in names))
    manifest = rdir / "resume.yaml"
    manifest.write_text(f"project: {PROJECT}\nsite: arxiv\nitems_file: items.txt\n"
                        f"options:\n  base_url: {site.base_url}\n  delay: 0\n")
    base = rdir / "base.sqlite"
    log(f"resume: building a {args.resume_items:,}-item queue with {args.resume_done:,} done")
    build_s = build_resume_state(base, names, args.resume_done, args.resume_stale)
    dirs = {"with-files": rdir / "with-files", "empty-dir": rdir / "empty-dir"}
    for d in dirs.values():
        d.mkdir()
    files_s = make_done_files(dirs["with-files"], names[: args.resume_done])
    log(f"resume: queue built in {build_s:.1f} s, {2 * args.resume_done:,} files in {files_s:.1f} s")
    # Python + archiver start-up alone: the floor under any `archiver run` start.
    floor = []
    for _ in range(3):
        t = timed([*archiver, "--version"], rdir)
        floor.append(t.wall_s)
    variants: dict[str, Any] = {}
    for rep in range(1, args.resume_runs + 1):
        order = list(dirs) if rep % 2 else list(dirs)[::-1]
        for variant in order:
            out = dirs[variant]
            reset_resume_dir(out, base)
            site.clear_log()
            t = timed([*archiver, "run", str(manifest), "-o", str(out), "--workers", "1",
                       "--limit", str(args.resume_limit), "-q"], rdir, args.timeout)
            reqs = [r.time for r in site.requests if r.time >= t.started]
            site.clear_log()
            claim = first_claim_after(out / "state.sqlite", t.started)
            st = status_json(archiver, out)
            r = {"rep": rep, "exit_code": t.exit_code, "wall_s": t.wall_s, "cpu_s": t.cpu_s,
                 "to_first_claim_s": claim - t.started if claim else None,
                 "to_first_request_s": min(reqs) - t.started if reqs else None,
                 # from the last fetch to the exit: the last item's check, then report.json for every item
                 "after_last_request_s": t.started + t.wall_s - max(reqs) if reqs else None,
                 "requests": len(reqs), "status": st, "loadavg": t.loadavg,
                 "ok": t.exit_code == 0 and st.get("done") == args.resume_done + args.resume_limit
                 and st.get("claimed") == 0}
            if t.exit_code != 0:
                r["error"] = tail(rdir / "stderr.txt")
            variants.setdefault(variant, []).append(r)
            log(f"resume {variant:10s} rep {rep}: first claim {_f(r['to_first_claim_s'], '.3f')} s, first request "
                f"{_f(r['to_first_request_s'], '.3f')} s, exit {t.wall_s:.2f} s {'ok' if r['ok'] else 'FAIL'}")
    summary: dict[str, Any] = {}
    for variant, rs in variants.items():
        good = [r for r in rs if r["ok"] and r["to_first_request_s"] is not None]
        summary[variant] = {
            "ok_runs": len(good), "runs": len(rs),
            "to_first_request_s": med([r["to_first_request_s"] for r in good]),
            "to_first_claim_s": med([r["to_first_claim_s"] for r in good]),
            "wall_s": med([r["wall_s"] for r in good]),
            "after_last_request_s": med([r["after_last_request_s"] for r in good]),
            "met": bool(good) and med([r["to_first_request_s"] for r in good]) < TARGET_RESUME_S,
        }
    breakdown = resume_breakdown(manifest, names, dirs["with-files"], base, archiver)
    log("resume breakdown: " + ", ".join(f"{k} {v:.3f} s" for k, v in breakdown.items()))
    profile = None
    if args.profile:
        # Untimed, one rep: where the start-up goes (manifest, queue, leftovers scan) and the exit (report.json).
        out = dirs["with-files"]
        reset_resume_dir(out, base)
        prof = args.work / "profiles" / "resume.prof"
        prof.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(Path(archiver[0]).parent / "python"), "-m", "cProfile", "-o", str(prof), "-m",
                        "archiver", "run", str(manifest), "-o", str(out), "--workers", "1", "--limit",
                        str(args.resume_limit), "-q"], capture_output=True, timeout=args.timeout, check=False)
        site.clear_log()
        profile = {"file": str(prof), "top": top_functions(prof, 25)}
    if not args.keep:
        shutil.rmtree(rdir, ignore_errors=True)
    return {"profile": profile, "breakdown": breakdown, "items": args.resume_items, "done": args.resume_done, "stale_claims": args.resume_stale,
            "limit": args.resume_limit, "build_s": build_s, "files_s": files_s,
            "startup_floor_s": statistics.median(floor), "summary": summary, "runs": variants,
            "command": shlex.join([*archiver, "run", "resume.yaml", "-o", "DIR", "--workers", "1", "--limit",
                                   str(args.resume_limit), "-q"])}


def resume_breakdown(manifest: Path, names: list[str], out: Path, base: Path, archiver: list[str]) -> dict[str, float]:
    """The steps before a resumed run's first fetch, timed one by one (one pass, unprofiled).

    In-process calls of the same library functions `archiver run` makes, so each step's share of the start is
    known without cProfile's distortion; the interpreter and imports are timed as subprocesses.
    """
    from archiver.manifest import load_manifest
    from archiver.run import clean_leftovers

    py = str(Path(archiver[0]).parent / "python")
    steps: dict[str, float] = {}

    def sub(code: str) -> float:
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([py, "-c", code], check=True)
            walls.append(time.perf_counter() - t0)
        return statistics.median(walls)

    steps["python_start_s"] = sub("pass")
    steps["imports_s"] = sub("import archiver.cli, archiver.cli.run, archiver.run, archiver.manifest, "
                             "archiver.crawl.crawler") - steps["python_start_s"]
    t0 = time.perf_counter()
    m = load_manifest(manifest)
    steps["load_manifest_s"] = time.perf_counter() - t0
    assert len(m.items) == len(names)
    reset_resume_dir(out, base)
    t0 = time.perf_counter()
    q = SqliteQueue(out / "state.sqlite")
    steps["queue_open_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    clean_leftovers(out, q)
    steps["clean_leftovers_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q.requeue_claims(None, reason="bench")
    q.add(item.name for item in m.items)
    q.stats()
    steps["requeue_add_stats_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q.claim("bench", 1)
    steps["first_claim_s"] = time.perf_counter() - t0
    q.close()
    reset_resume_dir(out, base)
    return steps


# ----------------------------------------------------------------------------------------------- queue --------
def queue_overhead(items: int, work: Path) -> dict[str, Any]:
    """bench/queue.py's own measurement, imported (its module name would shadow the stdlib's `queue`)."""
    spec = importlib.util.spec_from_file_location("bench_queue", HERE / "queue.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return mod.overhead(work, items)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------- profiling --------
def profile_runs(args: argparse.Namespace, bench: Bench, site: ArxivSite, archiver_py: str) -> dict[str, Any]:
    """`archiver run --workers 1` under cProfile (the coordinator only: crawl workers are forked processes).

    Untimed: cProfile roughly doubles the wall time. The .prof file is kept for `python -m pstats`.
    """
    pdir = args.work / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    out = bench.tmp / "runs" / "profile-w1"
    shutil.rmtree(out, ignore_errors=True)
    prof = pdir / "run-w1.prof"
    site.clear_log()
    subprocess.run([archiver_py, "-m", "cProfile", "-o", str(prof), "-m", "archiver", "run",
                    str(bench.manifests[""]), "-o", str(out), "--workers", "1", "-q"],
                   capture_output=True, timeout=args.timeout, check=False)
    site.clear_log()
    shutil.rmtree(out, ignore_errors=True)
    return {"run-w1": {"file": str(prof), "top": top_functions(prof, 25)}}


def top_functions(prof: Path, n: int) -> list[dict[str, Any]]:
    """Top archiver functions by cumulative time, plus the biggest self-time entries of anything."""
    st = pstats.Stats(str(prof))
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():
        rows.append({"function": f"{_short(file)}:{line}({func})", "ncalls": ncalls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3)})
    ours = sorted((r for r in rows if r["function"].startswith("archiver/")), key=lambda r: -r["cumtime_s"])
    selfs = sorted(rows, key=lambda r: -r["tottime_s"])
    return ours[:n] + [{"self_time": True, **r} for r in selfs[:10]]


def _short(file: str) -> str:
    for marker in ("/archiver/", "site-packages/", "/lib/python"):
        if marker in file:
            rest = file.split(marker, 1)[1]
            return ("archiver/" + rest) if marker == "/archiver/" else rest
    return file


# ---------------------------------------------------------------------------------------------- report --------
def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def summarise(ms: list[Measurement]) -> dict[str, dict[str, Any]]:
    summ: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        rs = [m for m in ms if m.tool == tool]
        if not rs:
            continue
        ok = [m for m in rs if m.ok]
        # items/s per run, then the median: a loop cut short by its budget did fewer items than asked
        rates = [m.items_per_s for m in ok]
        s = {
            "label": LABELS[tool], "runs": len(rs), "ok_runs": len(ok),
            "items": ok[0].done if ok else None, "items_asked": rs[0].items,
            "median_s": med([m.wall_s for m in ok]), "min_s": min((m.wall_s for m in ok), default=None),
            "max_s": max((m.wall_s for m in ok), default=None),
            "items_per_s": med(rates), "cpu_s": med([m.cpu_s for m in ok]),
            "server_cpu_s": med([m.server_cpu_s for m in ok]),
            "requests_per_item": med([m.requests / m.done for m in ok if m.done]),
            "budget_hit": any(m.verify.get("budget_hit") for m in rs),
            "errors": sorted({m.error for m in rs if m.error}),
        }
        if s["items_per_s"]:
            s["s_per_1000"] = 1000 / s["items_per_s"]
        summ[tool] = s
    return summ


def ratio_rows(summ: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    pairs = [("run-w1", "grab-loop"), ("run-w1", "wget-loop"), ("run-w1", "wget-p-loop"),
             ("run-w4", "grab-loop"), ("run-w4", "wget-loop"), ("run-w4", "wget-p-loop"),
             ("run-w4", "run-w1"), ("run-w4c4", "run-w1"), ("multi-w4", "multi-w1"),
             (BASE + "run-w4", BASE + "run-w1"), (BASE + "multi-w4", BASE + "multi-w1"),
             *((t, BASE + t) for t in (*RUN_TOOLS, *MULTI_TOOLS))]
    rows = []
    for a, b in pairs:
        ra, rb = (summ.get(a) or {}).get("items_per_s"), (summ.get(b) or {}).get("items_per_s")
        if ra and rb:
            rows.append({"tool": a, "peer": b, "tool_items_per_s": ra, "peer_items_per_s": rb, "ratio": ra / rb})
    return rows


def tables(summ: dict[str, dict[str, Any]], rows: list[dict[str, Any]], resume: dict[str, Any] | None,
           over: dict[str, Any] | None) -> str:
    blocks: list[list[str]] = []
    if summ:
        t = ["| Tool | Items | Median s (range) | Items/s | s per 1,000 | CPU s (tool) | Server CPU s | "
             "Requests/item | OK runs |", "|---|---|---|---|---|---|---|---|---|"]
        for s in summ.values():
            items = f"{s['items']:,}" if s["items"] is not None else "–"
            if s["budget_hit"] and s["items"] is not None:
                items += f" of {s['items_asked']:,} (time budget; s per 1,000 scaled)"
            rng = f"{_f(s['median_s'])} ({_f(s['min_s'])}–{_f(s['max_s'])})" if s["ok_runs"] else "failed"
            t.append(f"| {s['label']} | {items} | {rng} | {_f(s['items_per_s'], '.1f')} | "
                     f"{_f(s.get('s_per_1000'), '.0f')} | {_f(s['cpu_s'], '.1f')} | {_f(s['server_cpu_s'], '.1f')} | "
                     f"{_f(s['requests_per_item'], '.1f')} | {s['ok_runs']}/{s['runs']} |")
        blocks.append(t)
    if rows:
        blocks.append(["| Ratio (items/s, same run) | | |", "|---|---|---|"]
                      + [f"| {r['tool']} ÷ {r['peer']} | {r['tool_items_per_s']:.1f} ÷ {r['peer_items_per_s']:.1f} | "
                         f"**{r['ratio']:.2f}×** |" for r in rows])
    targets = []
    if over:
        targets.append(f"| queue claim + done per item (bench/queue.py's function, {over['items']:,} items), mean | "
                       f"{over['mean_ms']:.3f} ms (p99 {over['p99_ms']:.2f} ms) | < {TARGET_OVERHEAD_MS:g} ms | "
                       f"{'PASS' if over['mean_ms'] < TARGET_OVERHEAD_MS else 'MISS'} "
                       f"({over['mean_ms'] / TARGET_OVERHEAD_MS:.2f}× the target) |")
    if resume:
        for variant, s in resume["summary"].items():
            what = (f"DIR holds the done items' {2 * resume['done']:,} WARC + CDXJ files"
                    if variant == "with-files" else "DIR holds only state.sqlite")
            x = s["to_first_request_s"]
            verdict = "–" if x is None else (f"{'PASS' if x < TARGET_RESUME_S else 'MISS'} "
                                             f"({x / TARGET_RESUME_S:.2f}× the target)")
            targets.append(f"| resume {resume['items']:,} items / {resume['done']:,} done: start → first request "
                           f"({what}) | {_f(x, '.3f')} s (first claim {_f(s['to_first_claim_s'], '.3f')} s) | "
                           f"< {TARGET_RESUME_S:g} s | {verdict} |")
    if targets:
        blocks.append(["| Target | Result | Target | Verdict |", "|---|---|---|---|", *targets])
    if resume:
        b = resume.get("breakdown") or {}
        t = ["| Resume detail | s |", "|---|---|",
             f"| start-up floor (`archiver --version`) | {resume['startup_floor_s']:.3f} |"]
        t += [f"| step: {k.removesuffix('_s').replace('_', ' ')} | {v:.3f} |" for k, v in b.items()]
        for variant, s in resume["summary"].items():
            t.append(f"| {variant}: exit after --limit {resume['limit']} (whole run) | {_f(s['wall_s'], '.3f')} |")
            t.append(f"| {variant}: last fetch → exit (last check, report.json of {resume['items']:,} items) | "
                     f"{_f(s.get('after_last_request_s'), '.3f')} |")
        blocks.append(t)
    return "\n\n".join("\n".join(b) for b in blocks)


def machine_info(archiver: list[str]) -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unavailable ({type(e).__name__})"

    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg(), "kernel": platform.release(),
            "python": platform.python_version(), "wget": version(["wget", "--version"]),
            "archiver": version([*archiver, "--version"]), "git_rev": rev.stdout.strip() or "unknown"}


# ------------------------------------------------------------------------------------------------ main --------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=PARTS,
                   help="parts to run; repeatable (default: all). run = the three archiver run rows")
    p.add_argument("--items", type=int, default=1000, help="papers served and in the manifest (default 1,000)")
    p.add_argument("--runs", type=int, default=3, help="rounds of the run and wget rows (default 3; medians)")
    p.add_argument("--hosts", type=int, default=4, help="multi-host fixture: sites (127.0.0.11, .12, ...)")
    p.add_argument("--multi-items", type=int, default=200, help="multi-host fixture: items in all (default 200)")
    p.add_argument("--multi-latency-ms", type=float, default=20.0,
                   help="multi-host fixture: ms each answer waits, as a remote host's round trip (default 20)")
    p.add_argument("--multi-images", type=int, default=MULTI_IMAGES, help="multi-host fixture: images per item")
    p.add_argument("--multi-image-kib", type=lambda v: tuple(int(x) for x in v.split(",")), default=MULTI_IMAGE_KIB,
                   metavar="MIN,MAX", help="multi-host fixture: image sizes in KiB (default 1024,4096)")
    p.add_argument("--baseline", metavar="ARCHIVER",
                   help="also time every archiver run row with this archiver console script, in the same "
                        "rounds (rows base-*): e.g. a wrapper running a snapshot of the code before a change")
    p.add_argument("--grab-n", type=int, help="archiver grab calls in the loop (default: --items)")
    p.add_argument("--grab-runs", type=int, default=1, help="rounds that include the grab loop (default 1)")
    p.add_argument("--grab-budget", type=float, default=600.0,
                   help="seconds before the grab loop is cut short and its rate taken over the calls done "
                        "(labelled as scaled; default 600)")
    p.add_argument("--resume-items", type=int, default=100_000)
    p.add_argument("--resume-done", type=int, default=50_000)
    p.add_argument("--resume-stale", type=int, default=4, help="claims a killed run left (requeued on resume)")
    p.add_argument("--resume-limit", type=int, default=4, help="items the resumed run grabs before it exits")
    p.add_argument("--resume-runs", type=int, default=3)
    p.add_argument("--queue-items", type=int, default=10_000, help="items in the claim + done overhead run")
    p.add_argument("--profile", action="store_true",
                   help="also run `archiver run --workers 1` under cProfile (untimed); top functions go to the "
                        "JSON, the .prof file to WORK/profiles/")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed")
    p.add_argument("--work", type=Path, default=HERE / "work" / "run", help="work dir (git-ignored)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "run.json")
    p.add_argument("--no-json", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the run directories and WARCs under WORK")
    p.add_argument("--archiver", default=str(REPO / ".venv" / "bin" / "archiver"),
                   help="archiver console script (default: the repo venv's)")
    a = p.parse_args(argv)
    a.only = [x for x in PARTS if x in (a.only or PARTS)]
    a.grab_n = a.items if a.grab_n is None else a.grab_n
    if a.runs < 1 or a.items < 1 or a.grab_n > a.items or a.resume_done >= a.resume_items:
        p.error("need --runs >= 1, --items >= 1, --grab-n <= --items, --resume-done < --resume-items")
    if not 1 <= a.hosts <= 200 or a.multi_items < a.hosts or len(a.multi_image_kib) != 2:
        p.error("need 1 <= --hosts <= 200, --multi-items >= --hosts, --multi-image-kib MIN,MAX")
    return a


def wanted(tool: str, args: argparse.Namespace) -> bool:
    if tool.startswith(BASE) and not args.baseline:
        return False
    kind = tool.removeprefix(BASE)
    return ((kind.startswith("run-") and "run" in args.only) or (kind.startswith("multi-") and "multi" in args.only)
            or (kind == "grab-loop" and "grab" in args.only) or (kind.startswith("wget") and "wget" in args.only))


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the fixture's stop and the temp dir's removal


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    archiver = [args.archiver]
    archiver_py = str(Path(args.archiver).parent / "python")
    if ("wget" in args.only) and not shutil.which("wget"):
        raise SystemExit("wget not found (apt-get install wget)")
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    info = machine_info(archiver)
    if info["loadavg_start"][0] > 0.5:
        log(f"note: 1-min load average is {info['loadavg_start'][0]:.2f}; the host is not idle")
    papers = synthetic_papers(args.items, args.seed)
    cache_pdfs(papers)
    tmp = Path(tempfile.mkdtemp(prefix="bench-run-", dir=args.work))
    measurements: list[Measurement] = []
    resume = over = profile = None
    multi_cm: Any = contextlib.nullcontext()
    if "multi" in args.only:
        multi_cm = MultiHostSite(args.hosts, args.multi_items // args.hosts, args.seed, args.multi_latency_ms / 1000,
                                 args.multi_images, args.multi_image_kib)
    try:
        with ArxivSite(papers=papers) as site, multi_cm as multi:
            log(f"fixture: {len(papers):,} papers, {sum(len(p.versions) for p in papers.values()):,} versions "
                f"at {site.base_url}")
            bench = Bench(args, site, tmp, archiver, multi)
            if multi is not None:
                log(f"multi-host fixture: {len(bench.multi_items)} items on {args.hosts} hosts, "
                    f"{len(bench.multi_expected):,} URLs")
            n_paper_urls = len(bench.expected)
            tools = [t for t in TOOLS if wanted(t, args)]
            for rnd in range(1, args.runs + 1):
                # alternate the order, so no tool always runs on the cooler (or warmer) machine
                order = [t for t in tools if t != "grab-loop" or rnd <= args.grab_runs]
                order = order if rnd % 2 else order[::-1]
                for tool in order:
                    m = bench.measure(tool, rnd)
                    measurements.append(m)
                    w = m.verify.get("warc", {})
                    log(f"round {rnd} {tool:13s} {'ok ' if m.ok else 'FAIL'} {m.done:5d} items {m.wall_s:7.2f} s "
                        f"{m.items_per_s:6.1f} items/s  cpu {m.cpu_s:5.1f} s server {m.server_cpu_s:4.1f} s  "
                        f"req {m.requests}  warcs {w.get('files', 0)} paper URLs "
                        f"{w.get('paper_urls_captured', 0)}/{w.get('paper_urls_expected', 0)}  "
                        f"load {m.loadavg[0]:.2f}" + (f"  -- {m.error}" if m.error else ""))
            if "resume" in args.only:
                resume = measure_resume(args, site, tmp, archiver)
            if args.profile and "run" in args.only:
                log("profiling archiver run --workers 1 (untimed)")
                profile = profile_runs(args, bench, site, archiver_py)
            fixture_errors = list(site.errors)
        if "queue" in args.only:
            log(f"queue: claim + done overhead on {args.queue_items:,} items (bench/queue.py's function)")
            over = queue_overhead(args.queue_items, tmp / "queue")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    summ = summarise(measurements)
    rows = ratio_rows(summ)
    info["loadavg_end"] = os.getloadavg()
    print(f"\n## bench/run.py — {time.strftime('%Y-%m-%d %H:%M')}, {info['nproc']} CPUs, load "
          f"{info['loadavg_start'][0]:.2f} at start, {info['loadavg_end'][0]:.2f} at end; {args.items:,} papers\n")
    print(tables(summ, rows, resume, over))
    for tool, s in summ.items():
        for e in s["errors"]:
            print(f"\n{tool}: {e}")
    profiles = {**(profile or {}), **({"resume": resume["profile"]} if resume and resume.get("profile") else {})}
    for name, prof in profiles.items():
        print(f"\nprofile of {name} (cProfile, coordinator process; {prof['file']}), archiver functions by "
              "cumulative time:")
        for r in [r for r in prof["top"] if not r.get("self_time")][:12]:
            print(f"  {r['cumtime_s']:8.3f} s  {r['ncalls']:>7}  {r['function']}")
    if fixture_errors:
        print(f"\nfixture server errors: {len(fixture_errors)} (first: {fixture_errors[0][-300:]})")
    met: dict[str, bool] = {}
    if over:
        met["queue_overhead"] = over["mean_ms"] < TARGET_OVERHEAD_MS
    if resume:
        met.update({f"resume_{k}": v["met"] for k, v in resume["summary"].items()})
    if not args.no_json:
        doc = {
            "benchmark": "bench/run.py", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info,
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "fixture": {"papers": args.items, "versions": sum(len(p.versions) for p in papers.values()),
                        "paper_urls": n_paper_urls,
                        "server": "tests/fixtures/arxiv_site.py in a thread of the benchmark process"},
            "multi_fixture": None if "multi" not in args.only else {
                "hosts": args.hosts, "items": args.hosts * (args.multi_items // args.hosts),
                "latency_ms": args.multi_latency_ms,
                "per_item": f"an HTML page (~30 KB) + style.css + 2 scripts + {args.multi_images} images of "
                            f"{args.multi_image_kib[0]}-{args.multi_image_kib[1]} KiB (random bytes)",
                "server": "bench/run.py MultiHostSite: http.server on 127.0.0.11.. in threads of the benchmark"},
            "targets": {"queue_overhead_ms": TARGET_OVERHEAD_MS, "resume_s": TARGET_RESUME_S}, "met": met,
            "summary": summ, "ratios": rows, "resume": resume, "queue_overhead": over, "profile": profile,
            "fixture_errors": len(fixture_errors),
            "commands": {
                "run": f"{args.archiver} run manifest.yaml -o DIR --workers N -q",
                "multi": f"{args.archiver} run manifest-multi.yaml -o DIR --workers N -q",
                "baseline": args.baseline and f"{args.baseline} run MANIFEST -o DIR --workers N -q",
                "grab-loop": f"{args.archiver} grab --site arxiv --delay 0 -q -o DIR http://127.0.0.1:PORT/abs/ID",
                "wget-loop": "wget -q -e robots=off --warc-file=DIR/ID -P DIR/files -i LIST",
                "wget-p-loop": "wget -q -e robots=off -p --warc-file=DIR/ID -P DIR/files -i LIST",
            },
            "measurements": [{**asdict(m), "items_per_s": m.items_per_s} for m in measurements],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename so a concurrent reader never sees half a file
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, suffix=".tmp", delete=False) as fh:
            json.dump(doc, fh, indent=1, default=str)
        os.chmod(fh.name, 0o644)
        os.replace(fh.name, args.json)
        log(f"wrote {args.json}")
    failed = any(s["ok_runs"] < s["runs"] for s in summ.values())
    return 1 if failed or not all(met.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
