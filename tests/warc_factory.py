"""Build valid and deliberately broken WARC files for the checker's tests.

Records are assembled byte by byte (not through warcio) so every defect in the checker's table can be made
exactly: a wrong Content-Length, bare LF, a flipped bit in a gzip CRC, a chunked body that is not chunked.

    recs = capture("https://arxiv.org/abs/2108.07258", body=b"<html>...")   # [response, request]
    path = write_warc(tmp_path / "x.warc.gz", [warcinfo(), *recs])


The arxiv.org URLs here are data (parsed, validated, written into records), never contacted: tests that
fetch use the local fixture servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

DATE = "2024-05-01T12:00:00Z"
PDF = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 200 + b"%%EOF\n"
ARXIV_BLOCK_PAGE = (b"<html><head><title>Access Denied</title></head><body><h1>Access Denied</h1>"
                    b"<p>Sadly, you do not currently appear to have permission to access "
                    b"https://arxiv.org/pdf/2108.07258</p><p>Accesses from your site have triggered our "
                    b"automatic robot detection system.</p></body></html>")
CLOUDFLARE_PAGE = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                   b"<script>window._cf_chl_opt={cvId: '3'};</script></body></html>")
REVISIT_PROFILE = "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"


def new_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


@dataclass
class Rec:
    """One record: its header fields in order, and its block."""

    fields: list[tuple[str, str]]
    block: bytes = b""
    version: str = "WARC/1.1"
    eol: bytes = b"\r\n"  # line ending of the header lines
    trailer: bytes = b"\r\n\r\n"
    length_delta: int = 0  # added to the true Content-Length (a wrong Content-Length)
    prefix: bytes = b""  # bytes before the version line

    def get(self, name: str) -> str | None:
        for k, v in self.fields:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def id(self) -> str:
        return self.get("WARC-Record-ID") or ""

    def set(self, name: str, value: str | None) -> Rec:
        """A copy with the field replaced (or added; or removed when value is None)."""
        fields = [(k, v) for k, v in self.fields if k.lower() != name.lower()]
        if value is not None:
            at = next((i for i, (k, _) in enumerate(self.fields) if k.lower() == name.lower()), len(fields))
            fields.insert(at, (name, value))
        return replace(self, fields=fields)

    def add(self, name: str, value: str) -> Rec:
        """A copy with one more field (repeats allowed)."""
        return replace(self, fields=[*self.fields, (name, value)])

    def to_bytes(self) -> bytes:
        lines = [self.version.encode()]
        for k, v in self.fields:
            if k == "Content-Length" and v.isdigit():
                v = str(len(self.block) + self.length_delta)
            line = f"{k}: {v}" if k else v  # an empty name writes `v` as a raw line
            lines.append(line.encode("utf-8", "surrogateescape"))
        return self.prefix + self.eol.join(lines) + self.eol + self.eol + self.block + self.trailer


def record(rtype: str, url: str | None = None, block: bytes = b"", *, content_type: str | None = None,
           date: str = DATE, record_id: str | None = None, payload: bytes | None = None,
           extra: Iterable[tuple[str, str]] = (), digests: bool = True, version: str = "WARC/1.1") -> Rec:
    """A record with correct Content-Length and digests (`payload` is what the payload digest covers)."""
    fields = [("WARC-Type", rtype), ("WARC-Record-ID", record_id or new_id()), ("WARC-Date", date)]
    if url is not None:
        fields.append(("WARC-Target-URI", url))
    fields += list(extra)
    if digests:
        fields.append(("WARC-Block-Digest", sha1_b32(block)))
        if payload is not None:
            fields.append(("WARC-Payload-Digest", sha1_b32(payload)))
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.append(("Content-Length", str(len(block))))
    return Rec(fields, block, version=version)


def chunk(body: bytes, size: int = 1000) -> bytes:
    """`body` in chunked transfer coding."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def http_response(body: bytes, status: int = 200, headers: Iterable[tuple[str, str]] | None = None, *,
                  content_type: str = "text/html; charset=utf-8", chunked: bool = False,
                  content_length: int | None = None, reason: str = "OK") -> tuple[bytes, bytes]:
    """(HTTP response bytes, the bytes after the headers as stored)."""
    hs = [("Content-Type", content_type)] if content_type else []
    hs += list(headers or [])
    stored = chunk(body) if chunked else body
    if chunked:
        hs.append(("Transfer-Encoding", "chunked"))
    else:
        hs.append(("Content-Length", str(len(body) if content_length is None else content_length)))
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
    return head.encode("latin-1") + stored, stored


def http_request(url: str, method: str = "GET") -> bytes:
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    host = url.split("/")[2]
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: archiver-test\r\n\r\n".encode()


def capture(url: str, body: bytes = b"<html><body>hello</body></html>", status: int = 200, *,
            content_type: str = "text/html; charset=utf-8", headers: Iterable[tuple[str, str]] | None = None,
            chunked: bool = False, payload_convention: str = "iso", date: str = DATE, method: str = "GET",
            content_length: int | None = None, stored_body: bytes | None = None, reason: str = "OK",
            response_extra: Iterable[tuple[str, str]] = ()) -> list[Rec]:
    """A response and its request, linked by WARC-Concurrent-To, as archiver's writer makes them.

    payload_convention: "iso" digests the de-chunked entity (ISO 28500), "raw" the bytes as stored.
    stored_body replaces the bytes after the HTTP headers (to store something other than `body`).
    """
    block, stored = http_response(body, status, headers, content_type=content_type, chunked=chunked,
                                  content_length=content_length, reason=reason)
    if stored_body is not None:
        block = block[:len(block) - len(stored)] + stored_body
        stored = stored_body
    payload = body if (payload_convention == "iso" and stored_body is None) else stored
    response = record("response", url, block, content_type="application/http; msgtype=response", date=date,
                      payload=payload, extra=[("WARC-IP-Address", "192.0.2.1"), *response_extra])
    request = record("request", url, http_request(url, method), content_type="application/http; msgtype=request",
                     date=date, payload=b"", extra=[("WARC-Concurrent-To", response.id)])
    return [response, request]



def revisit(url: str, original: Rec, *, date: str = "2024-05-02T12:00:00Z") -> list[Rec]:
    """A revisit of `original` (identical payload) with its request."""
    block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    rec = record("revisit", url, block, content_type="application/http; msgtype=response", date=date,
                 extra=[("WARC-Profile", REVISIT_PROFILE), ("WARC-Refers-To", original.id),
                        ("WARC-Refers-To-Target-URI", url), ("WARC-Refers-To-Date", original.get("WARC-Date") or DATE),
                        ("WARC-Payload-Digest", original.get("WARC-Payload-Digest") or "")])
    request = record("request", url, http_request(url), content_type="application/http; msgtype=request", date=date,
                     payload=b"", extra=[("WARC-Concurrent-To", rec.id)])
    return [rec, request]


def warcinfo(filename: str = "test.warc.gz") -> Rec:
    block = f"software: archiver-tests\r\nformat: WARC File Format 1.1\r\nfilename: {filename}\r\n".encode()
    return record("warcinfo", None, block, content_type="application/warc-fields",
                  extra=[("WARC-Filename", filename)])


def valid_records() -> list[Rec]:
    """A small realistic grab: warcinfo, abs page, chunked listing, PDF, a gzip-encoded page, a revisit, a
    resource and a metadata record."""
    info = warcinfo()
    abs_page = capture("https://arxiv.org/abs/2108.07258", b"<html><title>On the Opportunities</title>" + b"x" * 3000)
    listing = capture("https://arxiv.org/list/cs.LG/recent", b"<html>" + b"<li>paper</li>" * 500 + b"</html>",
                      chunked=True)
    pdf = capture("https://arxiv.org/pdf/2108.07258v3", PDF, content_type="application/pdf")
    gz_body = gzip.compress(b"<html><body>compressed page</body></html>" * 50)
    gz_page = capture("https://example.org/page", gz_body, headers=[("Content-Encoding", "gzip")])
    again = revisit("https://arxiv.org/abs/2108.07258", abs_page[0])
    resource = record("resource", "urn:x-archiver:crawl-log", b"crawl log line\n", content_type="text/plain",
                      payload=b"crawl log line\n")
    metadata = record("metadata", "https://arxiv.org/abs/2108.07258", b"outlink: https://arxiv.org/pdf/x\r\n",
                      content_type="application/warc-fields", extra=[("WARC-Concurrent-To", abs_page[0].id)])
    records = [info, *abs_page, *listing, *pdf, *gz_page, *again, resource, metadata]
    return [r.set("WARC-Warcinfo-ID", info.id) if r is not info else r for r in records]


def member(data: bytes) -> bytes:
    """One gzip member."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def serialise(records: Iterable[Rec | bytes], *, compress: bool = True, per_record: bool = True) -> bytes:
    """File bytes; `bytes` items are written as they are (already compressed when `compress`)."""
    parts: list[bytes] = []
    for r in records:
        if isinstance(r, bytes):
            parts.append(r)
        elif compress and per_record:
            parts.append(member(r.to_bytes()))
        else:
            parts.append(r.to_bytes())
    data = b"".join(parts)
    if compress and not per_record:
        return member(data)
    return data


def write_warc(path: Path, records: Iterable[Rec | bytes], *, compress: bool | None = None,
               per_record: bool = True) -> Path:
    """Write records to `path`, gzip per record when the name ends in .gz (unless told otherwise)."""
    if compress is None:
        compress = path.name.endswith(".gz")
    path.write_bytes(serialise(records, compress=compress, per_record=per_record))
    return path


@dataclass
class Defect:
    """A broken file the checker must catch, and what it must say."""

    name: str
    path: Path
    code: str  # the finding code that must appear
    severity: str = "error"
    notes: list[str] = field(default_factory=list)


def member_offsets(data: bytes) -> list[int]:
    """Offsets of the gzip members in `data` (a file written one member per record)."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        pos = len(data) - len(d.unused_data)
    return offsets


# ---- the defect table -------------------------------------------------------------------------------------
# Each builder writes one broken file into a directory and says which codes the checker must report.

def _base(extra: Iterable[Rec] = ()) -> list[Rec]:
    info = warcinfo()
    recs = [info, *capture("https://arxiv.org/abs/2108.07258", b"<html>abs page</html>" + b"a" * 2000),
            *capture("https://arxiv.org/pdf/2108.07258v1", PDF, content_type="application/pdf"), *extra]
    return recs


def _random_pdf(size: int) -> bytes:
    import random

    return b"%PDF-1.7\n" + random.Random(size).randbytes(size)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]


def _with(recs: list[Rec], index: int, rec: Rec) -> list[Rec]:
    return recs[:index] + [rec] + recs[index + 1:]


def build_defects(directory: Path) -> list[Defect]:
    """Every defect of the checker's table (reference/warc-checking.md §3 and the issue), one file each."""
    d = Path(directory)
    out: list[Defect] = []

    def add(name: str, records: Iterable[Rec | bytes] | bytes, codes: str | list[str], severity: str = "error",
            suffix: str = ".warc.gz", **kw: object) -> None:
        path = d / f"{name}{suffix}"
        if isinstance(records, bytes):
            path.write_bytes(records)
        else:
            write_warc(path, records, **kw)  # type: ignore[arg-type]
        codes = [codes] if isinstance(codes, str) else codes
        out.append(Defect(name, path, codes[0], severity, codes[1:]))

    base = _base()
    resp = base[1]
    # digests
    add("bit-rot-in-block", _with(base, 1, replace(resp, block=resp.block[:-5] + b"XXXXX")),
        ["block-digest-mismatch", "payload-digest-mismatch"])
    add("bad-payload-digest", _with(base, 1, resp.set("WARC-Payload-Digest", sha1_b32(b"other"))),
        "payload-digest-mismatch")
    add("bad-block-digest", _with(base, 1, resp.set("WARC-Block-Digest", sha1_b32(b"other"))),
        "block-digest-mismatch")
    add("no-digests", [replace(r, fields=[(k, v) for k, v in r.fields if "Digest" not in k]) for r in base],
        "missing-digest", "warning")
    add("malformed-digest", _with(base, 1, resp.set("WARC-Block-Digest", "sha1:not-a-digest!")), "invalid-digest")
    add("unknown-digest-algorithm", _with(base, 1, resp.set("WARC-Block-Digest", "crc32:abcd")),
        "unknown-digest-algorithm", "warning")
    add("chunked-raw-payload-digest", _base(capture("https://arxiv.org/list/x", b"<li>x</li>" * 400, chunked=True,
                                                    payload_convention="raw")), "payload-digest-raw", "notice")
    # cross-record
    add("duplicate-record-id", _with(base, 3, base[3].set("WARC-Record-ID", resp.id)), "duplicate-record-id")
    add("response-without-request", base[:2] + base[3:], "response-without-request")
    add("request-without-response", [base[0], base[2], *base[3:]],
        ["request-without-response", "dangling-concurrent-to"], "warning")
    add("dangling-concurrent-to", _with(base, 2, base[2].set("WARC-Concurrent-To", new_id())),
        "dangling-concurrent-to")
    add("dangling-refers-to", _base(revisit("https://arxiv.org/abs/2108.07258", record("response", "x:"))),
        "dangling-refers-to", "warning")
    add("dangling-warcinfo-id", _with(base, 1, resp.set("WARC-Warcinfo-ID", new_id())), "dangling-warcinfo-id",
        "warning")
    add("capture-date-mismatch", _with(base, 2, base[2].set("WARC-Date", "2024-05-01T12:00:09Z")),
        "capture-date-mismatch", "warning")
    # HTTP
    add("http-silent-truncation", _base(capture("https://example.org/big", b"y" * 1000, content_length=6000)),
        "http-silent-truncation")
    add("warc-truncated-length", _base(capture("https://example.org/big", b"y" * 1000, content_length=6000,
                                               response_extra=[("WARC-Truncated", "length")])),
        "warc-truncated", "notice")
    add("http-body-too-long", _base(capture("https://example.org/x", b"y" * 1000, content_length=10)),
        "http-body-too-long", "warning")
    body = b"<html>not chunked at all</html>"
    add("chunked-over-unchunked", _base(capture("https://example.org/584", body, chunked=True, stored_body=body)),
        "chunked-encoding-invalid")
    add("chunked-without-last-chunk", _base(capture("https://example.org/c", b"z" * 3000, chunked=True,
                                                    stored_body=chunk(b"z" * 3000)[:-5])), "http-silent-truncation")
    bad_status = replace(resp, block=b"HTPT/1.1 2OO OK\r\nContent-Length: 3\r\n\r\nabc")
    add("http-status-line-invalid", _with(base, 1, _redigest(bad_status, b"abc")), "http-status-line-invalid")
    bad_header = replace(resp, block=b"HTTP/1.1 200 OK\r\nContent-Length 3\r\nContent-Type: text/plain\r\n\r\nabc")
    add("http-header-invalid", _with(base, 1, _redigest(bad_header, b"abc")), "http-header-invalid")
    add("content-encoding-invalid", _base(capture("https://example.org/gz", b"\x1f\x8b\x08\x00garbage-not-gzip" * 9,
                                                  headers=[("Content-Encoding", "gzip")])),
        "content-encoding-invalid", "warning")
    # fields
    add("missing-warc-date", _with(base, 1, resp.set("WARC-Date", None)), "missing-mandatory-field")
    add("response-missing-target-uri", _with(base, 1, resp.set("WARC-Target-URI", None)), "missing-target-uri")
    add("record-id-without-brackets", _with(base, 1, resp.set("WARC-Record-ID", resp.id.strip("<>"))),
        "invalid-record-id")
    add("bad-date", _with(base, 1, resp.set("WARC-Date", "2024-13-45 12:00")), "invalid-date")
    add("subsecond-date-in-1.0", [replace(r.set("WARC-Date", "2024-05-01T12:00:00.123456Z"), version="WARC/1.0")
                                  for r in base], "date-precision", "warning")
    add("warcinfo-with-target-uri", _with(base, 0, base[0].set("WARC-Target-URI", "https://example.org/")),
        "field-not-allowed", "warning")
    again = revisit("https://arxiv.org/abs/2108.07258", resp)
    add("revisit-without-profile", _base([again[0].set("WARC-Profile", None), again[1]]), "revisit-profile-missing")
    add("revisit-unknown-profile", _base([again[0].set("WARC-Profile", "http://example.org/my-profile"), again[1]]),
        "revisit-profile-unknown", "warning")
    add("repeated-field", _with(base, 1, resp.add("WARC-Date", DATE)), "repeated-field")
    add("invalid-truncated-value", _with(base, 1, resp.add("WARC-Truncated", "because")),
        "invalid-truncated-value", "warning")
    add("missing-content-type", _with(base, 1, resp.set("Content-Type", None)), "missing-content-type", "warning")
    add("unknown-record-type", _base([record("annotation", "https://example.org/", b"note",
                                             content_type="text/plain")]), "unknown-record-type", "warning")
    add("target-uri-in-brackets", _with(base, 1, resp.set("WARC-Target-URI", "<https://arxiv.org/abs/2108.07258>")),
        "invalid-target-uri", "warning")
    add("bad-reference", _with(base, 2, base[2].set("WARC-Concurrent-To", "urn:uuid:no-brackets")),
        ["invalid-reference", "dangling-concurrent-to"])
    add("bad-segment-number", _with(base, 1, resp.add("WARC-Segment-Number", "zero")), "invalid-segment-number")
    # record syntax
    add("bare-lf-header", _with(base, 1, replace(resp, eol=b"\n")), "bare-lf")
    add("data-before-version", _with(base, 1, replace(resp, prefix=b"junk\r\n")), "data-before-version",
        suffix=".warc")
    add("bad-version", _with(base, 1, replace(resp, version="WARC/0.18")), "invalid-version")
    add("content-length-7-short", _with(base, 1, replace(resp, length_delta=-7)), "content-length-too-short")
    add("content-length-7-short-plain", _with(base, 1, replace(resp, length_delta=-7)), "content-length-too-short",
        suffix=".warc")
    add("content-length-7-long", _with(base, 1, replace(resp, length_delta=7)), "content-length-too-long")
    add("content-length-7-long-plain", _with(base, 1, replace(resp, length_delta=7)), "content-length-too-long",
        suffix=".warc")
    add("content-length-7-long-no-digests", _with(base, 1, replace(resp, length_delta=7, fields=[
        (k, v) for k, v in resp.fields if "Digest" not in k])), "content-length-too-long")
    add("content-length-7-long-last-record", base[:-1] + [replace(base[-1], length_delta=7)],
        "content-length-too-long")
    add("content-length-not-a-number", _with(base, 1, resp.set("Content-Length", "12a")), "invalid-content-length")
    add("missing-record-trailer", _with(base, 1, replace(resp, trailer=b"\r\n")), "missing-record-trailer",
        suffix=".warc")
    add("header-not-utf8", _with(base, 1, resp.set("X-Note", "caf\udce9")), "header-not-utf8", "warning")
    add("invalid-header-line", _with(base, 1, resp.set("", "this line has no colon")), "invalid-header-line")
    # container
    plain = serialise(base, compress=False)
    add("uncompressed-named-gz", plain, "compression-name-mismatch", "warning")
    add("whole-file-one-member", base, "gzip-single-member", per_record=False)
    add("multi-record-member", [member(base[0].to_bytes()), member(base[1].to_bytes() + base[2].to_bytes()),
                                *[member(r.to_bytes()) for r in base[3:]]], "gzip-multi-record-member")
    split = base[1].to_bytes()
    add("record-spans-members", [member(base[0].to_bytes()), member(split[:300]), member(split[300:]),
                                 *[member(r.to_bytes()) for r in base[2:]]], "gzip-record-spans-members")
    big = _base(capture("https://arxiv.org/pdf/2108.07258v2", _random_pdf(20000), content_type="application/pdf"))
    good = serialise(big)
    add("cut-3000-bytes-short", good[:-3000], ["record-truncated", "gzip-truncated"])
    add("cut-3000-bytes-short-plain", serialise(big, compress=False)[:-3000], "record-truncated", suffix=".warc")
    offsets = member_offsets(good)
    crc_at = offsets[2] - 8  # the CRC-32 of the second record's member
    add("gzip-crc-error", _flip(good, crc_at), ["gzip-crc-error", "resynchronised"])
    add("gzip-isize-error", _flip(good, offsets[2] - 2), ["gzip-crc-error", "resynchronised"])
    add("gzip-bad-header-flags", _flip(good, offsets[2] + 3), ["gzip-corrupt", "resynchronised"])
    add("trailing-garbage", good + b"\x00" * 100, "trailing-garbage")
    add("garbage-between-members", good[:offsets[3]] + b"GARBAGE!" + good[offsets[3]:], "gzip-garbage")
    add("not-a-warc", b"<html>this is not a WARC file at all</html>\n", ["trailing-garbage", "empty-file"],
        suffix=".warc")
    add("empty-file", b"", "empty-file")
    add("zstd-compressed", b"\x28\xb5\x2f\xfd" + b"\x00" * 40, "unreadable", suffix=".warc.zst")
    # content
    add("arxiv-403-block-page", _base(capture("https://arxiv.org/pdf/2108.07258v2", ARXIV_BLOCK_PAGE, 403,
                                              reason="Forbidden")), "bot-block-page", "warning")
    add("rate-exceeded-429", _base(capture("https://export.arxiv.org/abs/2108.07258", b"Rate exceeded.", 429,
                                           content_type="text/plain", reason="Too Many Requests")),
        "rate-limited", "warning")
    add("js-challenge-200", _base(capture("https://example.org/paper", CLOUDFLARE_PAGE)), "js-challenge", "warning")
    add("pdf-url-with-html", _base(capture("https://arxiv.org/pdf/2108.07258v2", b"<html>oops</html>")),
        "pdf-not-pdf", "warning")
    add("pdf-type-with-html", _base(capture("https://example.org/paper.pdf", b"<html>oops</html>",
                                            content_type="application/pdf")), "pdf-not-pdf", "warning")
    add("server-unavailable-503", _base(capture("https://example.org/x", b"busy", 503)), "server-unavailable",
        "warning")
    add("empty-200", _base(capture("https://example.org/empty", b"")), "empty-200", "warning")
    return out


def _redigest(rec: Rec, payload: bytes) -> Rec:
    """`rec` with digests recomputed for its current block."""
    return rec.set("WARC-Block-Digest", sha1_b32(rec.block)).set("WARC-Payload-Digest", sha1_b32(payload))
