"""Any input, however mangled, gives a report and an exit code, never a traceback; memory stays bounded
whatever the size of a record."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warc_factory import capture, member, serialise, sha1_b32, valid_records, warcinfo

from archiver.cli import main
from archiver.warc.check import check_file, check_files

PLAIN = serialise(valid_records(), compress=False)
RECORD_ID = "<urn:uuid:7f0e1d2c-0000-4000-8000-000000000001>"
GZIP = serialise(valid_records())


def _assert_reports(path: Path) -> None:
    report = check_file(path)
    assert report.unreadable is None or report.counts == {"unreadable": 1}
    assert check_files([path]).exit_code in (0, 1, 2)
    for f in report.findings:
        assert f.severity in ("error", "warning", "notice") and f.code and f.message


def _members(data: bytes, cuts: list[int]) -> bytes:
    """`data` gzipped as members split at `cuts` (any positions: records may span members or share them)."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = b""
    for a, b in zip(bounds, bounds[1:], strict=False):
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        out += c.compress(data[a:b]) + c.flush()
    return out


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 200)),
    st.tuples(st.just("edit"), st.sampled_from([b"Content-Length: ", b"WARC/1.1", b"\r\n", b"WARC-Record-ID: ",
                                                b"HTTP/1.1 ", b"chunked", b"0\r\n\r\n", b"sha1:", b"\r\n\r\n"]),
              st.binary(max_size=12)),
)


def _mutate(data: bytes, ops: list[tuple]) -> bytes:
    for kind, a, b in ops:
        if not data:
            break
        if kind == "flip":
            i = a % len(data)
            data = data[:i] + bytes([data[i] ^ (1 << b)]) + data[i + 1:]
        elif kind == "cut":
            data = data[:a % len(data)]
        elif kind == "insert":
            i = a % (len(data) + 1)
            data = data[:i] + b + data[i:]
        elif kind == "delete":
            i = a % len(data)
            data = data[:i] + data[i + b:]
        else:  # edit: replace one occurrence of a structural token
            starts = [i for i in range(len(data)) if data.startswith(a, i)][:50]
            if starts:
                i = starts[len(b) % len(starts)]
                data = data[:i] + b + data[i + len(a):]
    return data


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(mutation, min_size=1, max_size=4), container=st.sampled_from(["gzip", "plain", "members"]),
       cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_mutated_warcs_always_give_a_report(tmp_path: Path, ops: list[tuple], container: str,
                                            cuts: list[int]) -> None:
    if container == "gzip":
        data = _mutate(GZIP, ops)
    elif container == "plain":
        data = _mutate(PLAIN, ops)
    else:  # header edits under compression: mutate the records, then gzip them in arbitrary members
        data = _members(_mutate(PLAIN, ops), cuts)
    path = tmp_path / "m.warc.gz"
    path.write_bytes(data)
    _assert_reports(path)


@pytest.mark.parametrize("data", [GZIP, PLAIN], ids=["gzip", "plain"])
def test_every_truncation_and_many_bit_flips_give_a_report(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "t.warc.gz"
    rng = random.Random(584)
    for n in range(0, len(data), 13):
        path.write_bytes(data[:n])
        _assert_reports(path)
    for _ in range(300):
        i = rng.randrange(len(data))
        path.write_bytes(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])
        _assert_reports(path)


def test_the_cli_never_raises_on_garbage(tmp_path: Path) -> None:
    rng = random.Random(1)
    for i, data in enumerate([b"", b"\x1f\x8b", b"\x1f\x8b\x08" + rng.randbytes(500), b"WARC/1.1\r\n",
                              b"WARC/1.1\r\nContent-Length: 99999999999\r\n\r\nabc", rng.randbytes(3000),
                              b"WARC/1.1\r\n" * 1000, b"\r\n" * 5000, b"WARC/1.1\n\n" * 100]):
        path = tmp_path / f"g{i}.warc.gz"
        path.write_bytes(data)
        assert main(["check", "--json", str(path)]) in (0, 1, 2)


def _big_record_warc(path: Path, body_size: int, compress: bool) -> None:
    """A WARC with one PDF response of `body_size` bytes ("%PDF" then zeros), digests right, written in pieces."""
    url = "https://arxiv.org/pdf/2108.07258v3"
    http = f"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: {body_size}\r\n\r\n".encode()
    magic, piece = b"%PDF", b"\0" * (8 << 20)
    payload, block = hashlib.sha1(magic), hashlib.sha1(http + magic)
    left = body_size - len(magic)
    while left:
        zeros = piece[:min(left, len(piece))]
        payload.update(zeros)
        block.update(zeros)
        left -= len(zeros)
    head = (f"WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: {RECORD_ID}\r\n"
            f"WARC-Date: 2024-05-01T12:00:00Z\r\nWARC-Target-URI: {url}\r\n"
            f"WARC-Block-Digest: {_b32(block.digest())}\r\nWARC-Payload-Digest: {_b32(payload.digest())}\r\n"
            "Content-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http) + body_size}\r\n\r\n").encode() + http + magic
    request = capture(url)[1].set("WARC-Concurrent-To", RECORD_ID).to_bytes()
    with open(path, "wb") as f:
        if not compress:
            f.write(head)
            f.seek(body_size - len(magic), 1)  # a sparse hole of zeros: no disk space needed for the body
            f.write(b"\r\n\r\n" + request)
            return
        f.write(serialise([warcinfo()]))
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        f.write(c.compress(head))
        left = body_size - len(magic)
        while left:
            n = min(left, len(piece))
            f.write(c.compress(piece[:n]))
            left -= n
        f.write(c.compress(b"\r\n\r\n") + c.flush())
        f.write(member(request))


def _b32(digest: bytes) -> str:
    import base64

    return "sha1:" + base64.b32encode(digest).decode()


@pytest.mark.parametrize("size,compress", [(2 << 30, False), (1 << 30, True)], ids=["2GiB-plain", "1GiB-gzip"])
def test_a_huge_record_checks_in_bounded_memory(tmp_path: Path, size: int, compress: bool) -> None:
    path = tmp_path / ("big.warc.gz" if compress else "big.warc")
    _big_record_warc(path, size, compress)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from a big pytest process
    # would report the parent's size; VmHWM belongs to the new address space only.
    probe = ("import json, re, sys\nfrom archiver.warc.check import check_files\n"
             "report = check_files([sys.argv[1]]).to_dict()\n"
             "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024\n"
             "print(json.dumps([report, hwm]))\n")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    report, rss_mib = json.loads(out.stdout)
    assert rss_mib <= 100, f"peak RSS {rss_mib} MiB"
    assert report["ok"] and report["totals"]["counts"] == {}  # digests verified over the whole record
    assert report["totals"]["records"]["response"] == 1


def test_sha1_helper_matches_the_factory() -> None:
    assert _b32(hashlib.sha1(b"x").digest()) == sha1_b32(b"x")
