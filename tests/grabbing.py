"""Helpers for tests that run the real `archiver` command and read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

ROOT = Path(__file__).resolve().parent.parent
# Short back-off timings so refusal tests finish in seconds (production defaults are minutes).
FAST_BACKOFF = ["--backoff-base", "0.2", "--backoff-give-up", "5"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    out_dir: Path

    @property
    def warcs(self) -> list[Path]:
        return sorted(self.out_dir.glob("*.warc.gz"))

    def responses(self) -> dict[str, list[int]]:
        """Target URI -> HTTP statuses of its response records, across every WARC written."""
        out: dict[str, list[int]] = {}
        for rec in records(self.warcs):
            if rec.rec_type == "response":
                out.setdefault(rec.rec_headers.get_header("WARC-Target-URI"), []).append(
                    int(rec.http_headers.get_statuscode()))
        return out


def archiver(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archiver", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def grab(out_dir: Path, *args: str, timeout: float = 120) -> Run:
    p = archiver("grab", "-q", "--delay", "0", "-o", str(out_dir), *args, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr, out_dir)


def records(paths):
    """Every record of the WARCs, read fully with warcio (so digests and framing are exercised)."""
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, check_digests=False):
                rec.content_stream().read()
                yield rec
