#!/usr/bin/env python3
"""Benchmark uploading: `archiver upload`'s library (internetarchive under archiver's retry loop) against
`curl --upload-file` (what Archive Team's megawarc factory and ArchiveBot use), sending one file (1 GiB by
default) to the same local fake IA endpoint (tests/fixtures/fake_ia.py, in a process of its own), same run.

Not a test: it prints a markdown table and writes bench/results/upload.json (upload-<N>MiB.json for other sizes).

  transfer      archiver: the `upload(plan)` call (item listing, rate-limit check, the PUT, the verifying
                listing read); curl: one PUT with the same headers (Content-MD5 given, as the factory computes it
                beforehand). Target: archiver's MB/s >= 0.8x curl's.
  end to end    archiver: `plan_upload` (one MD5 pass) + `upload`; curl: `md5sum` + the PUT.
  peak RSS      the client process's maximum resident set (wait4's ru_maxrss). Target: archiver <= 100 MiB.

Each tool sends to a fresh item every run, so nothing is skipped. The file lives in bench/work/upload/
(git-ignored). The fake stores what it receives in tmpfs (/dev/shm) when there is room, so the figures compare
the clients rather than the disk's write-back (on this 2-vCPU host disk writes moved single runs by +-30 %);
`--storage DIR` puts it elsewhere. Both are removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/queue.py would shadow the standard library's queue (which urllib3 imports): bench/ is no import root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
TARGET_RATIO = 0.8
TARGET_RSS_MIB = 100
ACCESS, SECRET = "bench-access", "bench-secret"


def _serve(root: str) -> None:
    """Child mode: run the fake IA until stdin closes, printing its URL first."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.fake_ia import FakeIA

    with FakeIA(Path(root), access=ACCESS, secret=SECRET) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()


def _client(path: str, endpoint: str, identifier: str) -> None:
    """Child mode: plan and upload one file with archiver's library, printing timings as JSON."""
    sys.path.insert(0, str(ROOT))
    from archiver.upload import Credentials, plan_upload, upload

    t0 = time.perf_counter()
    plan = plan_upload([path], identifier)
    t1 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    report = upload(plan, credentials=Credentials(ACCESS, SECRET, "bench"), endpoint=endpoint)
    after = resource.getrusage(resource.RUSAGE_SELF)
    t2 = time.perf_counter()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"plan_s": t1 - t0, "upload_s": t2 - t1, "put_s": report.files[0].seconds, "cpu_s": cpu,
                      "ok": report.ok, "summary": report.summary()}))


def _timed(cmd: list[str]) -> tuple[float, float, str, int, float]:
    """(wall seconds, peak RSS MiB, stdout, exit code, CPU seconds) of a child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(err.decode(errors="replace"))
    return wall, usage.ru_maxrss / 1024, out.decode(errors="replace"), proc.returncode, \
        usage.ru_utime + usage.ru_stime


def _make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)


def _storage(given: str | None, work: Path, size: int) -> Path:
    if given:
        return Path(given)
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * size:
        return shm / f"archiver-bench-upload-{os.getpid()}"
    return work / "fake-ia"


def _curl(path: Path, md5: str, endpoint: str, identifier: str) -> dict:
    size = path.stat().st_size
    cmd = ["curl", "-sS", "--fail", "-o", "/dev/null", "--upload-file", str(path),
           "-H", f"Authorization: LOW {ACCESS}:{SECRET}", "-H", f"Content-MD5: {md5}",
           "-H", "x-archive-auto-make-bucket: 1", "-H", "x-archive-queue-derive: 0",
           "-H", f"x-archive-size-hint: {size}", "-H", "Expect:", f"{endpoint}/{identifier}/{path.name}"]
    wall, rss, _out, code, cpu = _timed(cmd)
    return {"transfer_s": wall, "cpu_s": cpu, "rss_mib": rss, "ok": code == 0}


def _archiver(path: Path, endpoint: str, identifier: str) -> dict:
    wall, rss, out, code, _cpu = _timed([sys.executable, str(Path(__file__).resolve()), "--client", str(path),
                                         endpoint, identifier])
    result = json.loads(out.strip().splitlines()[-1]) if code == 0 else {}
    return {"transfer_s": result.get("upload_s"), "put_s": result.get("put_s"), "plan_s": result.get("plan_s"),
            "cpu_s": result.get("cpu_s"), "process_s": wall, "rss_mib": rss, "ok": bool(result.get("ok"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the file sent (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="runs per tool; medians are reported (default 5)")
    parser.add_argument("--storage", metavar="DIR", help="where the fake stores uploads (default: tmpfs if roomy)")
    parser.add_argument("--keep", action="store_true", help="keep the file and the fake's storage")
    parser.add_argument("--serve", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, metavar=("FILE", "ENDPOINT", "ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return 0
    if args.client:
        _client(*args.client)
        return 0
    if shutil.which("curl") is None:
        print("curl is not installed; it is the baseline (apt-get install curl)", file=sys.stderr)
        return 2

    work = HERE / "work" / "upload"
    work.mkdir(parents=True, exist_ok=True)
    storage = _storage(args.storage, work, args.size_mib << 20)
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True)
    path = work / f"bench-{args.size_mib}MiB.bin"
    _make_file(path, args.size_mib << 20)
    size = path.stat().st_size
    load_before = os.getloadavg()

    md5_wall, _rss, md5_out, _code, _cpu = _timed(["md5sum", str(path)])
    md5 = md5_out.split()[0]
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(storage)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        endpoint = server.stdout.readline().strip() if server.stdout else ""
        runs: dict[str, list[dict]] = {"curl": [], "archiver": []}
        for n in range(args.runs):
            order = ("curl", "archiver") if n % 2 == 0 else ("archiver", "curl")
            for tool in order:
                identifier = f"bench-{tool}-{n}-{secrets.token_hex(4)}"
                result = _curl(path, md5, endpoint, identifier) if tool == "curl" else \
                    _archiver(path, endpoint, identifier)
                runs[tool].append(result)
                shutil.rmtree(storage / identifier, ignore_errors=True)  # keep the disk from filling
                print(f"run {n + 1} {tool}: {json.dumps(result)}", file=sys.stderr)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)
    load_after = os.getloadavg()

    def median(tool: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[tool])

    mb = size / 1e6
    curl_s, ours_s = median("curl", "transfer_s"), median("archiver", "transfer_s")
    ratio = (mb / ours_s) / (mb / curl_s)
    ours_rss = max(r["rss_mib"] for r in runs["archiver"])
    results = {
        "file": {"bytes": size, "md5": md5, "fake_storage": str(storage)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1],
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in load_after]},
        "runs": runs,
        "medians": {
            "curl": {"transfer_s": curl_s, "mb_per_s": mb / curl_s, "md5sum_s": md5_wall,
                     "cpu_s": median("curl", "cpu_s"),
                     "end_to_end_s": md5_wall + curl_s, "rss_mib": max(r["rss_mib"] for r in runs["curl"])},
            "archiver": {"transfer_s": ours_s, "mb_per_s": mb / ours_s, "put_s": median("archiver", "put_s"),
                         "cpu_s": median("archiver", "cpu_s"),
                         "plan_s": median("archiver", "plan_s"),
                         "end_to_end_s": median("archiver", "plan_s") + ours_s, "rss_mib": ours_rss},
        },
        "ratios": {"archiver_vs_curl_throughput": round(ratio, 3)},
        "targets": {"throughput_ratio": TARGET_RATIO, "rss_mib": TARGET_RSS_MIB,
                    "throughput_pass": ratio >= TARGET_RATIO, "rss_pass": ours_rss <= TARGET_RSS_MIB,
                    "all_ok": all(r["ok"] for rs in runs.values() for r in rs)},
    }
    out = HERE / "results" / ("upload.json" if args.size_mib == 1024 else f"upload-{args.size_mib}MiB.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)

    m = results["medians"]
    c, a = m["curl"], m["archiver"]
    print(f"\nOne {size / 2**20:.0f} MiB file to the local fake IA, {args.runs} runs each, medians "
          f"(load {load_before[0]:.2f} -> {load_after[0]:.2f}):\n")
    print("| Client | Transfer s | MB/s | Client CPU s (transfer) | End to end s (MD5 + transfer) | Peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| curl {results['machine']['curl']} (`--upload-file`) | {curl_s:.2f} | {c['mb_per_s']:.0f} | "
          f"{c['cpu_s']:.2f} | {c['end_to_end_s']:.2f} (md5sum {md5_wall:.2f}) | {c['rss_mib']:.1f} |")
    print(f"| archiver (`upload`) | {ours_s:.2f} | {a['mb_per_s']:.0f} | {a['cpu_s']:.2f} | "
          f"{a['end_to_end_s']:.2f} (plan {a['plan_s']:.2f}) | {ours_rss:.1f} |")
    print(f"| ratio | | **{ratio:.2f}x** (target >= {TARGET_RATIO}) | | | "
          f"{'PASS' if ours_rss <= TARGET_RSS_MIB else 'MISS'} (<= {TARGET_RSS_MIB}) |")
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if results["targets"]["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
