#!/usr/bin/env python3
"""Benchmark the tracker over HTTP: simulated workers doing request -> done, with the Redis store and the SQLite
store, against the same Redis measured raw by redis-benchmark (the ceiling).

Not a test: it prints a markdown table and writes bench/results/tracker.json.

    .venv/bin/python bench/tracker.py                    # both stores, ~2 minutes
    .venv/bin/python bench/tracker.py --stores redis --duration 10

Everything runs on 127.0.0.1. The tracker is `archiver tracker serve --workers N` in its own processes; the
workers are `wrk` (Debian's, a compiled load generator) running a Lua script: each of C connections claims an
item (POST /<p>/request, api_version 2), then reports it done (POST /<p>/done) under the same nick, as a seesaw
pipeline does, so the load generator takes little of the two cores the tracker needs. Measured per store:

  closed   C connections back to back for D seconds: request+done pairs per second, latency of every HTTP
           call (p50/p99/max, from wrk's histogram), CPU seconds of tracker / Redis / wrk (from /proc)
  paced    the same C connections, each pausing between pairs so the whole offered load is about a given
           rate: the latency a worker sees when the tracker is not saturated
  checks   no name is handed out twice: wrk writes each name it is handed (a repeat is a duplicate claim), and
           the store itself must hold no item claimed more than once (attempts > 1; nothing here fails,
           releases or outlives a lease); the tracker's done count matches the pairs wrk counted; no 5xx

Targets (Redis store, closed loop at 200 connections): >= 3,000 pairs/s, p99 < 50 ms, zero duplicate claims.
universal-tracker publishes no throughput figures (reference: archiveteam-distributed.md §2), so the ceiling is
redis-benchmark against the same redis-server: as many clients, one command per round trip (no pipelining), as
a tracker process talks to it. The table gives tracker pairs/s over its GET operations/s, and the round trips
and Redis commands one pair costs (INFO commandstats). redis-benchmark writes keys of its own (key:*, myhash,
...): with --redis-url, point it at a Redis whose database may take them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# bench/queue.py would shadow the standard library's queue module (which requests needs) for a script run
# from bench/, so bench/ leaves the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import requests  # noqa: E402
from redis_server import RedisServer  # noqa: E402  (tests/redis_server.py: a throwaway redis-server)

TOKEN = "bench-admin-token-0123456789abcdef"
VERSION = "20240101.10"
TARGET_PAIRS = 3000.0
TARGET_P99_MS = 50.0
TARGET_CONNECTIONS = 200

# The simulated workers. wrk calls request() whenever a connection may send, response() for each answer, and
# delay() before each request when defined. A claimed name waits in the thread's `pending` list until the next
# connection that may send reports it done; each wrk thread is one downloader (its nick), so whichever of the
# thread's connections sends the done, it is the claimant's. Each name handed out is written to a file of the
# thread's own so the harness can look for duplicates afterwards.
WRK_SCRIPT = r"""
local counter, threads = 0, {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  slug, version, outdir, pause = args[1], args[2], args[3], tonumber(args[4])
  nick = "benchworker" .. id
  headers = {["Content-Type"] = "application/json"}
  request_path, done_path = "/" .. slug .. "/request", "/" .. slug .. "/done"
  request_body = '{"downloader":"' .. nick .. '","api_version":"2","version":"' .. version .. '"}'
  done_head = '{"downloader":"' .. nick .. '","version":"' .. version .. '","bytes":{"data":1000},"item":"'
  pending = {}
  claimed, finished, empty, other, server_errors = 0, 0, 0, 0, 0
  names = io.open(outdir .. "/claims-" .. id .. ".txt", "w")
end

function delay()
  if #pending > 0 or pause == 0 then return 0 end
  return math.random(0, 2 * pause)  -- jittered, so the connections do not march in step
end

function request()
  local item = table.remove(pending)
  if item then return wrk.format("POST", done_path, headers, done_head .. item .. '"}') end
  return wrk.format("POST", request_path, headers, request_body)
end

function response(status, hdrs, body)
  if status == 200 then
    if body == "OK" then
      finished = finished + 1
      return
    end
    local name = string.match(body, '"item_name":"([^"]+)"')
    if name then
      claimed = claimed + 1
      pending[#pending + 1] = name
      names:write(name, "\n")
      return
    end
    other = other + 1
  elseif status == 404 then
    empty = empty + 1
  elseif status >= 500 then
    server_errors = server_errors + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local totals = {claimed = 0, finished = 0, empty = 0, other = 0, server_errors = 0}
  for _, t in ipairs(threads) do
    for k, _ in pairs(totals) do totals[k] = totals[k] + t:get(k) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"claimed":%d,"finished":%d,"empty":%d,"other":%d,"server_errors":%d,"requests":%d,' ..
    '"duration_us":%d,"socket_errors":%d,"non2xx":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d}\n',
    totals.claimed, totals.finished, totals.empty, totals.other, totals.server_errors, summary.requests,
    summary.duration, e.connect + e.read + e.write + e.timeout, e.status, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- CPU accounting ----------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of these processes so far (clock ticks from /proc/PID/stat)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


# ---- the tracker under test --------------------------------------------------------------------------------
class Tracker:
    """`archiver tracker serve` in its own processes, on a free loopback port."""

    def __init__(self, store: str, work: Path, workers: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (work / "token").write_text(TOKEN + "\n")
        self.cmd = [sys.executable, "-m", "archiver", "tracker", "serve", "--store", store, "--bind",
                    f"127.0.0.1:{self.port}", "--workers", str(workers), "--admin-token-file", str(work / "token"),
                    "--uploads", str(work / "uploads"), "--no-access-log"]
        self.log = open(work / "tracker.log", "w")  # closed in __exit__
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def __enter__(self) -> Tracker:
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if self.http.get(self.base + "/openapi.json", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"the tracker did not start; see {self.log.name}")
            time.sleep(0.1)
        time.sleep(1.0)  # the first worker process to answer may be the only one up yet: give the others a moment
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def pids(self) -> list[int]:
        assert self.proc is not None
        return tree(self.proc.pid)

    def project(self, slug: str) -> None:
        r = self.http.put(f"{self.base}/admin/projects/{slug}", json={"site": "arxiv", "min_version": "20240101.01"})
        assert r.status_code == 201, r.text
        self.added = 0

    def top_up(self, slug: str, todo: int) -> int:
        """Add items until at least `todo` are waiting (arXiv ids, as the project's site module wants them)."""
        missing = todo - self.counts(slug)["todo"]
        names = [f"{2001 + i // 99999 % 900:04d}.{i % 99999 + 1:05d}" for i in range(self.added, self.added + missing)]
        for i in range(0, len(names), 20000):
            r = self.http.post(f"{self.base}/admin/projects/{slug}/items", data="\n".join(names[i:i + 20000]),
                               headers={"Content-Type": "text/plain"}, timeout=300)
            assert r.status_code == 200, r.text
        self.added += max(missing, 0)
        return max(missing, 0)

    def counts(self, slug: str) -> dict[str, int]:
        return self.http.get(f"{self.base}/admin/projects/{slug}", timeout=30).json()["counts"]


# ---- one load run ------------------------------------------------------------------------------------------
def run_wrk(wrk: str, script: Path, base: str, slug: str, out: Path, connections: int, duration: float,
            pause_ms: int, watch: dict[str, list[int]]) -> dict[str, Any]:
    """wrk against the tracker; the answer has wrk's figures and the CPU each watched process group used."""
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("claims-*.txt"):
        f.unlink()
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(script), base, "--",
           slug, VERSION, str(out), str(pause_ms)]
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wrk_cpu_pid = proc.pid
    wrk_cpu = 0.0
    try:
        while proc.poll() is None:  # sample wrk's own CPU while it lives: /proc/PID goes once it is reaped
            wrk_cpu = cpu_seconds([wrk_cpu_pid]) or wrk_cpu
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    wall = time.monotonic() - started
    after = {name: cpu_seconds(pids) for name, pids in watch.items()}
    line = next((x for x in stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {stderr or stdout}")
    result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
    seconds = result["duration_us"] / 1e6
    result["pairs_per_s"] = result["finished"] / seconds
    result["http_per_s"] = result["requests"] / seconds
    cpu = {name: after[name] - before[name] for name in watch} | {"wrk": wrk_cpu}
    result["cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    result["cores_used"] = {k: round(v / wall, 2) for k, v in cpu.items()}
    names: list[str] = []
    for f in sorted(out.glob("claims-*.txt")):
        names += f.read_text().split()
    result["names_logged"] = len(names)
    result["duplicate_claims"] = len(names) - len(set(names))
    result["wrk_output"] = [x for x in stdout.splitlines() if not x.startswith("WRKJSON ")]
    return result


def redis_commands(url: str) -> dict[str, int]:
    import valkey

    client = valkey.Valkey.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


def claimed_more_than_once(kind: str, redis_url: str, prefix: str, store_dir: Path) -> int:
    """Items the store itself says were claimed more than once (`attempts` > 1: nothing in these runs fails,
    releases or lets a lease run out, so each item is claimed at most once unless a claim was handed out twice)."""
    if kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(f"file:{store_dir}/store/queues/bench.sqlite?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM items WHERE attempts > 1").fetchone()[0]
        finally:
            db.close()
    import valkey

    client = valkey.Valkey.from_url(redis_url, decode_responses=True)
    q = f"{prefix}p:bench:q:"
    try:
        names = [n for state in ("claimed", "done", "failed") for n in client.zrange(q + "s:" + state, 0, -1)]
        over = 0
        for i in range(0, len(names), 5000):
            pipe = client.pipeline(transaction=False)
            for name in names[i:i + 5000]:
                pipe.hget(q + "i:" + name, "attempts")
            over += sum(1 for a in pipe.execute() if int(a or 0) > 1)
        return over
    finally:
        client.close()


def bench_store(kind: str, redis_url: str, wrk: str, script: Path, work: Path, args: argparse.Namespace) -> dict:
    store_dir = work / f"store-{kind}"
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir(parents=True)
    prefix = f"bench:{os.getpid()}:"
    store = f"{redis_url}?prefix={prefix}" if kind == "redis" else f"sqlite:///{store_dir}/store"
    log(f"{kind}: starting the tracker ({args.workers} worker processes)")
    out: dict[str, Any] = {"store": kind, "workers": args.workers, "connections": args.connections}
    with Tracker(store, store_dir, args.workers) as tracker:
        watch = {"tracker": tracker.pids()}
        if kind == "redis":
            watch["redis"] = [args.redis_pid] if args.redis_pid else []
        # Enough items that the queue never runs dry: the closed run at up to --max-rate, then the paced run.
        tracker.project("bench")
        t0 = time.monotonic()
        items = tracker.top_up("bench", int(args.max_rate * (args.duration + args.warmup)))
        out["add_seconds"] = round(time.monotonic() - t0, 2)
        log(f"{kind}: added {items:,} items in {out['add_seconds']:g} s; warm-up {args.warmup:g} s")
        run_wrk(wrk, script, tracker.base, "bench", work / "claims", args.connections, args.warmup, 0, watch)
        done_before = tracker.counts("bench")["done"]
        commands_before = redis_commands(redis_url) if kind == "redis" else {}
        log(f"{kind}: closed loop, {args.connections} connections, {args.duration:g} s")
        closed = run_wrk(wrk, script, tracker.base, "bench", work / "claims", args.connections, args.duration, 0,
                         watch)
        done_after = tracker.counts("bench")["done"]
        closed["tracker_done_delta"] = done_after - done_before
        if kind == "redis":
            delta = {k: v - commands_before.get(k, 0) for k, v in redis_commands(redis_url).items()}
            delta = {k: v for k, v in delta.items() if v > 0 and k not in ("info",)}
            closed["redis_commands"] = delta
            closed["redis_commands_per_pair"] = round(sum(delta.values()) / max(closed["finished"], 1), 2)
        out["closed"] = closed
        # Paced: each connection pauses about `pause` ms between pairs, so the offered load is about
        # connections / pause pairs per second (plus the time the pairs themselves take).
        pause = max(1, round(args.connections / args.paced_rate * 1000))
        tracker.top_up("bench", int(args.paced_rate * args.duration * 2) + args.connections)
        log(f"{kind}: paced, {args.connections} connections pausing ~{pause} ms (~{args.paced_rate:g} pairs/s)")
        paced = run_wrk(wrk, script, tracker.base, "bench", work / "claims", args.connections, args.duration,
                        pause, watch)
        paced["pause_ms"] = pause
        out["paced"] = paced
        out["items"] = tracker.added
        out["final_counts"] = tracker.counts("bench")
        out["claimed_more_than_once"] = claimed_more_than_once(kind, redis_url, prefix, store_dir)
    return out


def redis_ceiling(url: str, clients: int, requests_n: int) -> dict[str, float]:
    """redis-benchmark's operations per second on the same redis-server, one command per round trip."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    host, port = re.match(r"redis://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    r = subprocess.run([binary, "-h", host, "-p", port, "-c", str(clients), "-n", str(requests_n), "-P", "1",
                        "-t", "ping_mbulk,get,set,hset,zadd", "--csv"], capture_output=True, text=True, timeout=600)
    out = {}
    for fields in list(csv.reader(r.stdout.splitlines()))[1:]:
        with contextlib.suppress(ValueError, IndexError):
            out[fields[0].split()[0].lower()] = float(fields[1])
    # A script call as the tracker makes them (EVALSHA of a small script doing a few commands) is the
    # closest raw stand-in for one tracker round trip.
    lua = "redis.call('INCR', KEYS[1]); redis.call('HSET', KEYS[2], 'f', ARGV[1]); return 1"
    r = subprocess.run([binary, "-h", host, "-p", port, "-c", str(clients), "-n", str(requests_n), "-P", "1",
                        "--csv", "EVAL", lua, "2", "bench:ceiling:{__rand_int__}", "bench:ceiling:h", "x"],
                       capture_output=True, text=True, timeout=600)
    for fields in list(csv.reader(r.stdout.splitlines()))[1:]:
        with contextlib.suppress(ValueError, IndexError):
            out["eval"] = float(fields[1])
    return out


def _version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"


def find_wrk(install: bool) -> str:
    wrk = shutil.which("wrk")
    if wrk is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True,
                       env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"})
        wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench/tracker.py needs wrk, the compiled HTTP load generator: apt-get install wrk")
    return wrk


@contextlib.contextmanager
def redis(url: str | None) -> Iterator[tuple[str, int | None]]:
    os.environ.pop("REDIS_URL", None)
    if url:
        os.environ["REDIS_URL"] = url
    with RedisServer() as server:
        pid = server.process.pid if server.process else None
        yield server.url, pid


def fmt(x: float, spec: str = ",.0f") -> str:
    return format(x, spec)


def table(results: dict[str, Any]) -> str:
    ceiling = results["ceiling"]
    rows = ["| Store | Run | Pairs/s | HTTP calls/s | p50 ms | p99 ms | max ms | Duplicate claims | 5xx | "
            "CPU cores: tracker / Redis / wrk | Pairs/s ÷ ceiling |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in results["stores"]:
        for mode in ("closed", "paced"):
            r = run[mode]
            cores = r["cores_used"]
            share = f"{r['pairs_per_s'] / ceiling['get']:.3f}" if ceiling.get("get") else ""
            rows.append(f"| {run['store']} | {mode} ({run['connections']} conn"
                        f"{', ~' + str(r['pause_ms']) + ' ms pauses' if mode == 'paced' else ''}) | "
                        f"{fmt(r['pairs_per_s'])} | {fmt(r['http_per_s'])} | {r['p50_us'] / 1000:.1f} | "
                        f"{r['p99_us'] / 1000:.1f} | {r['max_us'] / 1000:.1f} | {r['duplicate_claims']} | "
                        f"{r['server_errors']} | {cores.get('tracker', 0):.2f} / {cores.get('redis', 0):.2f} / "
                        f"{cores.get('wrk', 0):.2f} | {share} |")
    if ceiling:
        rows.append("")
        rows.append("| redis-benchmark (same Redis, same clients, no pipelining) | ops/s |")
        rows.append("|---|---|")
        for k, v in ceiling.items():
            rows.append(f"| {k.upper()} | {fmt(v)} |")
    for run in results["stores"]:
        c = run["closed"]
        if "redis_commands" in c:
            trips = c["redis_commands"].get("evalsha", 0) / max(c["finished"], 1)
            rows.append("")
            rows.append(f"Redis store, closed loop: {trips:.2f} round trips (EVALSHA) and "
                        f"{c['redis_commands_per_pair']:.1f} Redis commands per pair; {c['pairs_per_s'] * trips:,.0f} "
                        f"round trips/s = {c['pairs_per_s'] * trips / ceiling.get('get', 1):.2f} of the GET "
                        "ceiling." if ceiling.get("get") else "")
        bad = {k: c[k] for k in ("empty", "other", "server_errors", "socket_errors") if c[k]}
        if bad:
            rows.append(f"WARNING: {run['store']} closed run had {bad}: its figures are not a clean measurement")
    return "\n".join(rows)


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    redis_run = next((r for r in results["stores"] if r["store"] == "redis"), None)
    if redis_run is None:
        return {}
    c = redis_run["closed"]
    dupes = sum(r[m]["duplicate_claims"] for r in results["stores"] for m in ("closed", "paced"))
    dupes += sum(r["claimed_more_than_once"] for r in results["stores"])
    # wrk stops mid-call: the tracker may finish up to one call per connection that wrk no longer counts.
    counted = all(0 <= r["closed"]["tracker_done_delta"] - r["closed"]["finished"] <= r["connections"]
                  for r in results["stores"])
    # A run that ran out of items or got answers other than a claim or OK measured something else.
    clean = all(r[m]["empty"] == 0 and r[m]["other"] == 0 and r[m]["server_errors"] == 0 and r[m]["socket_errors"] == 0
                for r in results["stores"] for m in ("closed", "paced"))
    return {"pairs_per_s": c["pairs_per_s"] >= TARGET_PAIRS and clean,
            "p99_ms": c["p99_us"] / 1000 < TARGET_P99_MS and redis_run["connections"] >= TARGET_CONNECTIONS and clean,
            "no_duplicates": dupes == 0 and counted}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", default="redis,sqlite", help="comma-separated: redis, sqlite (default both)")
    ap.add_argument("--workers", type=int, default=2, help="tracker processes (default 2, one per core)")
    ap.add_argument("--connections", type=int, default=TARGET_CONNECTIONS, help="wrk connections (default 200)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per measured run (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up before measuring (default 3)")
    ap.add_argument("--paced-rate", type=float, default=1000.0,
                    help="offered pairs per second in the paced run (default 1000)")
    ap.add_argument("--max-rate", type=float, default=10000.0,
                    help="pairs per second the item count allows for in the closed run (default 10000)")
    ap.add_argument("--redis-url", help="benchmark this Redis instead of a throwaway redis-server")
    ap.add_argument("--ceiling-requests", type=int, default=200_000, help="redis-benchmark requests per test")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install wrk when it is missing")
    ap.add_argument("--keep", action="store_true", help="keep bench/work/tracker/")
    args = ap.parse_args()
    if args.workers < 1 or args.connections < 1 or args.duration <= 0:
        ap.error("--workers, --connections and --duration must be positive")

    wrk = find_wrk(not args.no_install)
    work = HERE / "work" / "tracker"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    script = work / "pairs.lua"
    script.write_text(WRK_SCRIPT)
    load_before = os.getloadavg()
    results: dict[str, Any] = {"stores": []}
    with redis(args.redis_url) as (url, pid):
        args.redis_pid = pid
        for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
            if kind not in ("redis", "sqlite"):
                ap.error(f"unknown store {kind!r}")
            results["stores"].append(bench_store(kind, url, wrk, script, work, args))
        log("redis-benchmark: the ceiling")
        results["ceiling"] = redis_ceiling(url, args.connections, args.ceiling_requests)
    met = verdicts(results)
    uvloop = subprocess.run([sys.executable, "-c", "import uvloop, httptools"], capture_output=True).returncode == 0
    results |= {
        "targets": {"pairs_per_s": TARGET_PAIRS, "p99_ms": TARGET_P99_MS, "connections": TARGET_CONNECTIONS,
                    "duplicate_claims": 0},
        "met": met,
        "host": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                 "load_before": load_before, "load_after": os.getloadavg(), "wrk": _version([wrk, "-v"]),
                 "redis": _version(["redis-server", "--version"]), "uvloop_httptools": uvloop,
                 "date": time.strftime("%Y-%m-%d %H:%M:%S %z")},
        "options": {k: v for k, v in vars(args).items() if k != "redis_pid"},
    }
    print(table(results))
    print()
    for name, ok in met.items():
        print(f"- {name}: {'met' if ok else 'NOT met'}")
    out = HERE / "results" / "tracker.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if met and all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
