"""Benchmark `archiver check` against `warcio check` and against the practical floor.

    .venv/bin/python bench/check.py [--target-mb 300] [--runs 3] [--workdir /tmp/archiver-bench]

Generates a realistic gzipped WARC (one member per record: thousands of HTML responses, some chunked, PDFs of
0.1–4 MB and 5–20 MB, request records, a few revisits), then times, round-robin, median of --runs:

  floor        a bare Python loop that only decompresses the members and SHA-1-hashes the data
  warcio       `warcio check FILE` (digests only)
  archiver     `archiver check FILE` (everything in docs/checks.md)
  archiver -j2 `archiver check --jobs 2 FILE COPY`, for throughput against one job on one file

Peak RSS is each command's own (os.wait4). Results go to bench/results/check.json and a markdown table is printed.
Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
WORDS = ("the of and model language foundation training data arxiv paper abstract learning neural network "
         "transformer attention we our results show that this approach bias evaluation risk opportunities "
         "<div class=\"authors\"> <a href=\"/a/bommasani_r_1\"> </a> <span> </span> <p> </p> <li> </li> "
         "submitted version v1 v2 v3 pdf html cs.LG cs.AI stat.ML 2021 2022 2023").split()


# ---- the test file ---------------------------------------------------------------------------------------
def _b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _record(rtype: str, url: str, block: bytes, payload: bytes | None, date: str, content_type: str,
            extra: list[tuple[str, str]] = ()) -> tuple[str, bytes]:
    rid = f"<urn:uuid:{uuid.UUID(int=random.getrandbits(128))}>"
    fields = [("WARC-Type", rtype), ("WARC-Record-ID", rid), ("WARC-Date", date), ("WARC-Target-URI", url),
              *extra, ("WARC-Block-Digest", _b32(block))]
    if payload is not None:
        fields.append(("WARC-Payload-Digest", _b32(payload)))
    fields += [("Content-Type", content_type), ("Content-Length", str(len(block)))]
    head = "WARC/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    return rid, head.encode() + block + b"\r\n\r\n"


def _member(data: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _chunked(body: bytes) -> bytes:
    out, i = [], 0
    while i < len(body):
        n = random.randint(4000, 16000)
        piece = body[i:i + n]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += n
    return b"".join(out) + b"0\r\n\r\n"


def generate(path: Path, target_mb: int, seed: int = 1, level: int = 6) -> dict[str, int]:
    """Write the benchmark WARC; returns counts of what it holds."""
    random.seed(seed)
    pool = " ".join(random.choice(WORDS) for _ in range(1_500_000)).encode()
    target = target_mb << 20
    counts = {"records": 0, "html": 0, "chunked": 0, "pdf_small": 0, "pdf_large": 0, "revisits": 0}
    payload_digests: list[tuple[str, str, str]] = []
    with open(path, "wb") as f:
        info = b"software: archiver bench/check.py\r\nformat: WARC File Format 1.1\r\n"
        _, rec = _record("warcinfo", "", info, None, "2024-05-01T12:00:00Z", "application/warc-fields")
        f.write(_member(rec.replace(b"WARC-Target-URI: \r\n", b""), level))
        counts["records"] += 1
        n = 0
        while f.tell() < target:
            n += 1
            date = f"2024-05-01T12:{n // 60 % 60:02d}:{n % 60:02d}Z"
            roll = random.random()
            if roll < 0.002:
                kind, url = "pdf_large", f"https://arxiv.org/pdf/2108.{n:05d}v1"
                body = b"%PDF-1.5\n" + random.randbytes(random.randint(5 << 20, 20 << 20))
                ctype = "application/pdf"
            elif roll < 0.014:
                kind, url = "pdf_small", f"https://arxiv.org/pdf/2108.{n:05d}v2"
                size = random.randint(100_000, 4_000_000)
                body = b"%PDF-1.5\n" + random.randbytes(size // 2) + pool[:size // 2]
                ctype = "application/pdf"
            elif roll < 0.024 and payload_digests:
                url, digest, original = random.choice(payload_digests)
                block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
                rid, rec = _record("revisit", url, block, None, date, "application/http; msgtype=response",
                                   [("WARC-Profile", "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"),
                                    ("WARC-Refers-To", original), ("WARC-Payload-Digest", digest)])
                f.write(_member(rec, level))
                _, req = _record("request", url, b"GET /x HTTP/1.1\r\nHost: arxiv.org\r\n\r\n", b"", date,
                                 "application/http; msgtype=request", [("WARC-Concurrent-To", rid)])
                f.write(_member(req, level))
                counts["revisits"] += 1
                counts["records"] += 2
                continue
            else:
                kind, url = "html", f"https://arxiv.org/abs/2108.{n:05d}"
                size = random.randint(18_000, 60_000)
                start = random.randrange(len(pool) - size)
                body = b"<html><head><title>arXiv</title></head><body>" + pool[start:start + size] + b"</body></html>"
                ctype = "text/html; charset=utf-8"
            chunked = kind == "html" and random.random() < 0.05
            headers = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nServer: bench\r\n"
            if chunked:
                stored = _chunked(body)
                headers += "Transfer-Encoding: chunked\r\n\r\n"
                counts["chunked"] += 1
            else:
                stored = body
                headers += f"Content-Length: {len(body)}\r\n\r\n"
            block = headers.encode() + stored
            rid, rec = _record("response", url, block, body, date, "application/http; msgtype=response",
                               [("WARC-IP-Address", "192.0.2.1")])
            f.write(_member(rec, level))
            request = f"GET {url[17:]} HTTP/1.1\r\nHost: arxiv.org\r\nUser-Agent: archiver-bench\r\n\r\n".encode()
            _, req = _record("request", url, request, b"", date, "application/http; msgtype=request",
                             [("WARC-Concurrent-To", rid)])
            f.write(_member(req, level))
            if kind == "html" and len(payload_digests) < 500:
                payload_digests.append((url, _b32(body), rid))
            counts[kind] += 1
            counts["records"] += 2
    return counts


# ---- measuring -------------------------------------------------------------------------------------------
FLOOR = r'''
import hashlib, sys, zlib
h = hashlib.sha1()
with open(sys.argv[1], "rb") as f:
    d = zlib.decompressobj(31)
    while True:
        data = f.read(1 << 20)
        if not data:
            break
        while data:
            out = d.decompress(data, 1 << 20)
            h.update(out)
            while d.unconsumed_tail and not d.eof:
                h.update(d.decompress(d.unconsumed_tail, 1 << 20))
            if d.eof:
                data = d.unused_data
                d = zlib.decompressobj(31)
            else:
                data = b""
print(h.hexdigest())
'''


def run(cmd: list[str]) -> tuple[float, int, int, float]:
    """(wall seconds, peak RSS in MiB, exit code, CPU seconds) of one command (CPU includes its workers)."""
    before = os.times()
    started = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - started
    p.returncode = os.waitstatus_to_exitcode(status)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, usage.ru_maxrss // 1024, p.returncode, cpu


def main() -> int:
    if sys.argv[1:2] == ["--generate"]:
        path, target_mb, seed, meta = sys.argv[2:6]
        Path(meta).write_text(json.dumps(generate(Path(path), int(target_mb), int(seed))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-mb", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/archiver-bench"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "check.json")
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    warc = args.workdir / f"bench-{args.target_mb}.warc.gz"
    meta = args.workdir / f"bench-{args.target_mb}.json"
    # A second file like the first (another seed: a byte copy would rightly fail on duplicate record ids).
    copy = args.workdir / f"bench-{args.target_mb}-second.warc.gz"
    for path, seed in ((warc, 1), (copy, 2)):
        if not path.exists() or not meta.exists():
            # In a child process: Linux carries a parent's peak RSS over fork and exec into its children,
            # so generating here would inflate every measured command's peak RSS.
            print(f"generating {path} ...", file=sys.stderr)
            subprocess.run([sys.executable, __file__, "--generate", str(path), str(args.target_mb), str(seed),
                            str(meta if seed == 1 else path.with_suffix(".json"))], check=True)
    counts = json.loads(meta.read_text())
    for p in (warc, copy):  # warm the page cache
        with open(p, "rb") as f:
            while f.read(8 << 20):
                pass

    python = sys.executable
    commands = {
        "floor (zlib + sha1)": [python, "-c", FLOOR, str(warc)],
        # the same loop with ISA-L's inflate, which archiver check uses when the isal package is installed
        "floor (isal + sha1)": [python, "-c", FLOOR.replace("import hashlib, sys, zlib",
                                                            "import hashlib, sys\nfrom isal import isal_zlib as zlib"),
                                str(warc)],
        "warcio check": [str(VENV_BIN / "warcio"), "check", str(warc)],
        "archiver check": [python, "-m", "archiver", "check", str(warc)],
        "archiver check -j2 (2 files)": [python, "-m", "archiver", "check", "--jobs", "2", str(warc), str(copy)],
    }
    load_before = [round(x, 2) for x in os.getloadavg()]
    samples: dict[str, list[tuple[float, int, int, float]]] = {k: [] for k in commands}
    for i in range(args.runs):
        for name, cmd in commands.items():
            samples[name].append(run(cmd))
            print(f"run {i + 1}: {name}: {samples[name][-1][0]:.2f} s", file=sys.stderr)

    size = warc.stat().st_size
    rows = {}
    for name, got in samples.items():
        wall = statistics.median(s[0] for s in got)
        files = 2 if "2 files" in name else 1
        rows[name] = {"wall_s": round(wall, 3), "cpu_s": round(statistics.median(s[3] for s in got), 3),
                      "peak_rss_mib": max(s[1] for s in got),
                      "exit_codes": sorted({s[2] for s in got}),
                      "mb_per_s": round(files * size / 1e6 / wall, 1)}
    warcio_t = rows["warcio check"]["wall_s"]
    floor_t = rows["floor (zlib + sha1)"]["wall_s"]
    isal_floor_t = rows["floor (isal + sha1)"]["wall_s"]
    ours = rows["archiver check"]["wall_s"]
    two = rows["archiver check -j2 (2 files)"]["wall_s"]
    result = {
        "file": {"path": str(warc), "bytes": size, **counts},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_avg_before": load_before, "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "runs": args.runs, "results": rows,
        "ratios": {"archiver_vs_warcio": round(ours / warcio_t, 3), "archiver_vs_floor": round(ours / floor_t, 3),
                   "archiver_vs_isal_floor": round(ours / isal_floor_t, 3),
                   "jobs2_throughput_vs_1": round(2 * ours / two, 3)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{size / 2**20:.0f} MiB gzipped WARC, {counts['records']} records ({counts['html']} HTML of which "
          f"{counts['chunked']} chunked, {counts['pdf_small']} PDFs 0.1–4 MB, {counts['pdf_large']} PDFs 5–20 MB, "
          f"{counts['revisits']} revisits); median of {args.runs} runs, {os.cpu_count()} CPUs, load average "
          f"{load_before[0]} before the runs (other work on the machine slows every row)\n")
    print("| command | wall (median) | CPU (median) | MB/s compressed | peak RSS | exit |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']:.2f} s | {r['cpu_s']:.2f} s | {r['mb_per_s']} | {r['peak_rss_mib']} MiB | "
              f"{','.join(map(str, r['exit_codes']))} |")
    ratios = result["ratios"]
    print(f"\narchiver / warcio: {ratios['archiver_vs_warcio']:.2f}×; archiver / floor: "
          f"{ratios['archiver_vs_floor']:.2f}× (zlib), {ratios['archiver_vs_isal_floor']:.2f}× (isal); --jobs 2 on "
          f"two files: {ratios['jobs2_throughput_vs_1']:.2f}× the throughput of one job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
