#!/usr/bin/env python3
"""Benchmark the SQLite item queue: per-item overhead, and resuming a large run.

Not a test: it prints a table and writes bench/results/queue.json.

  overhead  claim(1) + done(outcome with one WARC file) per item, on a 10,000-item queue   target < 5 ms
  resume    open a 100,000-item queue with 50,000 done and 1,000 stale claims (a killed run),
            requeue the stale claims, and claim the first item                             target < 2 s

The queue file lives in bench/work/queue/ (git-ignored); `--keep` leaves it there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from archiver.queue import ItemOutcome, WarcFile  # noqa: E402
from archiver.queue.sqlite import SqliteQueue  # noqa: E402

TARGET_OVERHEAD_MS = 5.0
TARGET_RESUME_S = 2.0


def _outcome(name: str) -> ItemOutcome:
    return ItemOutcome(warcs=(WarcFile(f"{name}-00000.warc.gz", 123_456, "0" * 64),), bytes=123_000,
                       timings={"crawl": 12.5, "check": 0.4})


def overhead(work: Path, items: int) -> dict:
    path = work / "overhead.sqlite"
    for f in work.glob("overhead.sqlite*"):
        f.unlink()
    q = SqliteQueue(path)
    q.add(f"{2100 + i // 100000:04d}.{i % 100000:05d}" for i in range(items))
    per_item = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        claims = q.claim("bench", n=1)
        if not claims:
            break
        q.done(claims[0].token, _outcome(claims[0].item))
        per_item.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    q.close()
    ms = sorted(x * 1000 for x in per_item)
    return {"items": len(per_item), "mean_ms": statistics.fmean(ms), "p50_ms": ms[len(ms) // 2],
            "p99_ms": ms[int(len(ms) * 0.99)], "max_ms": ms[-1], "items_per_s": len(per_item) / total}


def build_resume_queue(path: Path, items: int, done: int, stale: int) -> float:
    for f in path.parent.glob(path.name + "*"):
        f.unlink()
    t0 = time.perf_counter()
    q = SqliteQueue(path, lease=60.0)
    q.add(f"{2100 + i // 100000:04d}.{i % 100000:05d}" for i in range(items))
    left = done
    while left:
        claims = q.claim("first-run", n=min(500, left))
        for c in claims:
            q.done(c.token, _outcome(c.item))
        left -= len(claims)
    q.claim("first-run", n=stale)  # killed while these were claimed
    q.close()
    return time.perf_counter() - t0


def resume(path: Path) -> dict:
    t0 = time.perf_counter()
    q = SqliteQueue(path, lease=60.0)
    opened = time.perf_counter()
    requeued = q.requeue_claims("first-run", reason="run restarted")
    [first] = q.claim("second-run", n=1)
    claimed = time.perf_counter()
    stats = q.stats()
    q.close()
    return {"open_s": opened - t0, "to_first_claim_s": claimed - t0, "requeued": requeued,
            "first_item": first.item, "stats": stats.line()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000, help="items in the overhead run (default 10,000)")
    ap.add_argument("--resume-items", type=int, default=100_000)
    ap.add_argument("--resume-done", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3, help="resume timings to take (median reported)")
    ap.add_argument("--keep", action="store_true", help="keep bench/work/queue/")
    args = ap.parse_args()

    work = HERE / "work" / "queue"
    work.mkdir(parents=True, exist_ok=True)
    over = overhead(work, args.items)
    build_s = build_resume_queue(work / "resume.sqlite", args.resume_items, args.resume_done, stale=1000)
    base = work / "resume-base.sqlite"
    shutil.copyfile(work / "resume.sqlite", base)
    runs = []
    for _ in range(args.runs):
        # Each run resumes the same killed state, not the previous run's.
        for suffix in ("-wal", "-shm"):
            (work / ("resume.sqlite" + suffix)).unlink(missing_ok=True)
        shutil.copyfile(base, work / "resume.sqlite")
        runs.append(resume(work / "resume.sqlite"))
    resume_s = statistics.median(r["to_first_claim_s"] for r in runs)

    rows = [
        ("claim + done per item (mean)", f"{over['mean_ms']:.3f} ms", f"< {TARGET_OVERHEAD_MS} ms",
         over["mean_ms"] < TARGET_OVERHEAD_MS),
        ("claim + done per item (p99)", f"{over['p99_ms']:.3f} ms", "", None),
        ("items per second, one worker", f"{over['items_per_s']:,.0f}", "", None),
        (f"resume: open + requeue + first claim ({args.resume_items:,} items, {args.resume_done:,} done)",
         f"{resume_s:.3f} s", f"< {TARGET_RESUME_S} s", resume_s < TARGET_RESUME_S),
        ("  of which opening the file", f"{statistics.median(r['open_s'] for r in runs):.3f} s", "", None),
        ("(setup: building that queue through the API)", f"{build_s:.1f} s", "", None),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>12}  {'target':>9}  ok")
    for name, value, target, ok in rows:
        print(f"{name:<{width}}  {value:>12}  {target:>9}  {'' if ok is None else ('yes' if ok else 'NO')}")

    result = {
        "host": {"python": platform.python_version(), "platform": platform.platform(),
                 "cpus": os.cpu_count(), "load": os.getloadavg()},
        "overhead": over, "resume": {"runs": runs, "median_to_first_claim_s": resume_s, "build_s": build_s,
                                     "items": args.resume_items, "done": args.resume_done},
        "targets": {"overhead_ms": TARGET_OVERHEAD_MS, "resume_s": TARGET_RESUME_S},
        "met": {"overhead": over["mean_ms"] < TARGET_OVERHEAD_MS, "resume": resume_s < TARGET_RESUME_S},
    }
    out = HERE / "results" / "queue.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(HERE.parent)}")
    if not args.keep:
        shutil.rmtree(work)
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
