"""The record layer of the checker: splits a WARC's decompressed bytes into records and checks their framing.

One pass, streaming: the walker keeps a small buffer of decompressed bytes, finds each record's header, feeds
its block to a RecordCheck piece by piece, then checks the two CRLFs after it. Where the framing is wrong it
works out what the bytes actually hold (a Content-Length too short or too long, a record cut off at end of
file) and carries on at the next record, so one defect never hides the rest of the file.

For gzip files it also knows where each member starts, which is how it tells a record that is one member
(the norm) from a member holding several records or a record split over several members.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from archiver.content import assess_response
from archiver.sites.base import Capture
from archiver.warc.check_codes import ERROR, WARNING, severity_of
from archiver.warc.check_container import BREAK, DATA, MEMBER, Event
from archiver.warc.check_fields import STANDARD_FIELDS, check_fields
from archiver.warc.check_links import RecordLinks
from archiver.warc.check_record import RecordCheck, RecordFacts
from archiver.warc.check_report import Finding

if TYPE_CHECKING:
    from archiver.sites.base import Site

VERSIONS = {"WARC/1.0": "1.0", "WARC/1.1": "1.1"}
CRLFCRLF = b"\r\n\r\n"
MAX_WARC_HEADER = 1 << 20  # a WARC header longer than this is reported as never ending
LOOKBACK = 1 << 16  # uncompressed files: bytes kept behind the read position to find a record a block swallowed
_NEXT_RECORD = b"\nWARC/1."
_CAPTURED_TYPES = frozenset({"response", "resource", "revisit"})


class _DataLost(Exception):
    """The container lost bytes (a damaged gzip member): the record being read cannot be finished."""


class WarcWalker:
    """Walk one file's records, yielding findings; afterwards `records`, `captures` and `links` hold the facts."""

    def __init__(self, file: str, events: Iterator[Event], *, gzip: bool, site: Site | None = None,
                 keep_captures: bool = False) -> None:
        self.file = file
        self.events = events
        self.gzip = gzip
        self.site = site
        self.keep_captures = keep_captures
        self.records: Counter[str] = Counter()
        self.captures: list[Capture] = []
        self.links = RecordLinks()
        self.queue: list[Finding] = []  # findings not yet yielded (container reports land here too)
        self._waiting: list[tuple[Finding, str | None, str | None, str | None]] = []  # empty bodies: HEAD?
        # decompressed-byte buffer; `base` is the stream position of buf[0]
        self.buf = b""
        self.pos = 0
        self.base = 0
        self.members: deque[tuple[int, int]] = deque()  # (stream position, file offset) of member starts
        self.member_total = 0
        self._member_offset = -1  # file offset of the member the last record started in
        self._member_records = 0
        self._crowded_members: list[tuple[int, int]] = []  # (offset, records) of members with several records

    # ---- findings ------------------------------------------------------------------------------------------
    def report(self, code: str, message: str, offset: int | None, record_id: str | None = None,
               url: str | None = None, target: str | None = None, severity: str | None = None) -> None:
        self.queue.append(Finding(severity or severity_of(code), code, message, self.file, offset, record_id, url,
                                  target))

    container_truncated = False

    def container_report(self, code: str, message: str, offset: int) -> None:
        if code == "gzip-truncated":
            self.container_truncated = True
        self.report(code, message, offset)

    # ---- the walk ------------------------------------------------------------------------------------------
    def run(self) -> Iterator[Finding]:
        more = True
        while more:
            try:
                more = self._record()
            except _DataLost:
                self.base += len(self.buf)
                self.buf, self.pos = b"", 0
            if self.queue:
                yield from self.queue
                self.queue.clear()
        self._finish()
        yield from self.queue
        self.queue.clear()

    def _record(self) -> bool:
        """Check the next record; False at end of file."""
        if not self._ensure(8):
            rest = self.buf[self.pos:]
            self.pos = len(self.buf)
            if rest:
                self.report("trailing-garbage", f"{len(rest)} bytes after the last record: {rest[:16]!r}",
                            self._offset_here())
            return False
        if not self.buf.startswith(b"WARC/", self.pos):
            return self._skip_junk()
        start = self.base + self.pos
        offset = self._record_offset(start)
        header_end, sep = self._find_header_end()
        if header_end < 0:
            if self.eof:
                self.report("record-truncated", "the file ends inside a WARC header", offset)
                self.pos = len(self.buf)
                return False
            self.report("invalid-header-line", f"the WARC header does not end within {MAX_WARC_HEADER} bytes", offset)
            self.pos += 1
            self._skip_to_record()
            return True
        raw_header = self.buf[self.pos:header_end]
        self.pos = header_end + sep
        return self._record_body(raw_header, sep, offset)

    def _record_body(self, raw_header: bytes, sep: int, offset: int) -> bool:
        problems: list[tuple[str, str]] = []
        version, fields, repeated, concurrent = _parse_header(raw_header, sep, problems)
        record_id = fields.get("warc-record-id")
        rtype = fields.get("warc-type")
        url = fields.get("warc-target-uri")
        if url is not None and url.startswith("<") and url.endswith(">"):
            url = url[1:-1]
        length_text = fields.get("content-length")
        length = int(length_text) if length_text is not None and length_text.isdigit() else -1
        problems += check_fields(version, fields, repeated, concurrent, max(length, 0))
        if length < 0:
            if length_text is not None:
                problems.append(("invalid-content-length", f"Content-Length {length_text!r} is not a number; "
                                                           "the record cannot be delimited"))
            self._emit(problems, offset, record_id, url)
            self._skip_to_record()
            return True

        truncated = fields.get("warc-truncated")
        if truncated is not None:
            problems.append(("warc-truncated", f"the record is marked WARC-Truncated: {truncated}"))
        capture = self.keep_captures and rtype in _CAPTURED_TYPES
        want_body = bool(capture and url and self.site is not None and self._site_call(self.site.wants_body, url, offset, record_id))
        check = RecordCheck(rtype, fields, length, want_head=capture or rtype == "response", want_body=want_body)
        block_start = self.base + self.pos
        present, state = self._read_block(check, length)
        framing_ok = state == "ok" and self._trailer(length, block_start, problems)
        if state == "eof":
            problems.append(("record-truncated", f"the file ends {present} bytes into a block of {length} bytes"))
        facts = check.finish(framing_ok=framing_ok, check_digests=framing_ok or state == "member-end",
                             truncated=truncated)
        if state == "member-end":
            mismatch = any(code == "block-digest-mismatch" for code, _ in check.problems)
            digest_note = "" if mismatch or "warc-block-digest" not in fields else \
                " (the block digest matches those bytes, so Content-Length is what is wrong)"
            problems.append(("content-length-too-long", f"Content-Length is {length} but the record's gzip member "
                                                        f"holds only {present} block bytes{digest_note}"))
        problems += check.problems
        self._emit(problems, offset, record_id, url)
        if state == "eof":
            return False
        self.records[rtype or "(no type)"] += 1
        http = facts.http
        problem = self.links.add(rtype or "", record_id, fields.get("warc-date"), url, offset, concurrent,
                                 fields.get("warc-refers-to"), fields.get("warc-warcinfo-id"),
                                 http.method if http is not None else None)
        if problem is not None:
            self.report(problem.code, problem.message, offset, record_id, url)
        if rtype == "response" and http is not None and http.status is not None and url:
            self._judge_content(url, http.status, http.headers, facts, offset, record_id, fields.get("warc-date"))
        if capture and url:
            self._capture(rtype or "", url, fields, facts, offset, record_id, truncated)
        return True

    def _emit(self, problems: list[tuple[str, str]], offset: int, record_id: str | None, url: str | None) -> None:
        for code, message in problems:
            self.report(code, message, offset, record_id, url)

    # ---- content -------------------------------------------------------------------------------------------
    def _judge_content(self, url: str, status: int, headers: dict[str, str], facts: RecordFacts, offset: int,
                       record_id: str | None, date: str | None) -> None:
        if self.site is not None:
            verdict = self._site_call(self.site.classify, url, offset, record_id, status, headers, facts.head)
            severity = ERROR
        else:
            verdict = assess_response(url, status, headers, facts.head)
            severity = WARNING
        if facts.empty_body_pending:
            finding = Finding(severity_of("http-silent-truncation"), "http-silent-truncation",
                              f"HTTP Content-Length is {headers.get('content-length')} but no body is stored and the "
                              "record has no WARC-Truncated", self.file, offset, record_id, url)
            self._waiting.append((finding, record_id, url, date))
        if verdict:
            finding = Finding(severity, verdict.code, verdict.message, self.file, offset, record_id, url)
            if verdict.code in ("empty-200", "pdf-not-pdf") and facts.http is not None and not facts.http.raw_length:
                self._waiting.append((finding, record_id, url, date))  # no body is right if the request was HEAD
            else:
                self.queue.append(finding)

    def _site_call(self, method, url: str, offset: int, record_id: str | None, *args):  # noqa: ANN001, ANN202
        """Call a site module method; a site module bug becomes a finding, not a traceback."""
        try:
            return method(url, *args)
        except Exception as e:  # any failure of third-party site code is reported the same way
            self.report("site-error", f"{type(e).__name__} in {type(self.site).__name__}.{method.__name__}: {e}",
                        offset, record_id, url)
            return None

    def _capture(self, rtype: str, url: str, fields: dict[str, str], facts: RecordFacts, offset: int,
                 record_id: str | None, truncated: str | None) -> None:
        http = facts.http
        if http is not None:
            content_type = http.headers.get("content-type", "")
        else:
            content_type = fields.get("content-type", "")
        self.captures.append(Capture(
            url=url, status=http.status if http is not None else None,
            content_type=content_type.split(";", 1)[0].strip().lower(), head=facts.head, body=facts.body,
            record_id=record_id or "", filename=self.file, offset=offset, truncated=truncated, record_type=rtype))

    # ---- framing -------------------------------------------------------------------------------------------
    def _read_block(self, check: RecordCheck, length: int) -> tuple[int, str]:
        """Feed `length` block bytes to `check`. Returns (bytes fed, state): state is "ok", "eof" (the file
        ended) or "member-end" (gzip: the record's member ended first and the next member starts a record)."""
        remaining = length
        members = self.members
        spanned = False
        while remaining:
            buf, pos = self.buf, self.pos
            avail = len(buf) - pos
            take = remaining if remaining < avail else avail
            if len(members) > 1:
                to_boundary = members[1][0] - (self.base + pos)
                if to_boundary < remaining + 4:
                    if to_boundary <= 4:
                        if self._starts_record_at(members[1][0]):
                            self.pos += to_boundary  # the bytes before the boundary are the trailer
                            return length - remaining, "member-end"
                        if not spanned:
                            spanned = True
                            self.report("gzip-record-spans-members", "the record continues into the gzip member "
                                        f"at offset {members[1][1]}", members[1][1])
                        members.popleft()
                        take = min(take, to_boundary)
                    else:
                        take = min(take, to_boundary - 4)
            if take == avail and remaining > avail:
                take -= 4  # hold back a possible trailer until we know whether a member ends here
            if take <= 0:
                if not self._pull():
                    self.pos = len(self.buf)
                    # a gzip member that ended cleanly just holds less than Content-Length says
                    ended_cleanly = self.gzip and not self.container_truncated
                    return length - remaining, "member-end" if ended_cleanly else "eof"
                continue
            check.feed(memoryview(buf)[pos:pos + take])
            self.pos = pos + take
            remaining -= take
        return length, "ok"

    def _starts_record_at(self, position: int) -> bool:
        while self.base + len(self.buf) < position + 5:
            if not self._pull():
                return False
        i = position - self.base
        return self.buf[i:i + 5] == b"WARC/"

    def _trailer(self, length: int, block_start: int, problems: list[tuple[str, str]]) -> bool:
        """Check the CRLF CRLF after a complete block; True when it is there."""
        if self._ensure(4) and self.buf.startswith(CRLFCRLF, self.pos):
            self.pos += 4
            return True
        if not self.gzip:
            swallowed = self._find_swallowed_record(block_start)
            if swallowed:
                problems.append(("content-length-too-long", f"Content-Length is {length} but the next record starts "
                                                            f"{length - swallowed} bytes into the block"))
                return False
        if self.eof and CRLFCRLF.startswith(self.buf[self.pos:]):
            self.pos = len(self.buf)
            problems.append(("record-truncated", "the file ends before the CRLF CRLF that closes the record"))
            return False
        skipped, found, last4 = self._skip_to_record()
        if skipped > 4 and last4 == CRLFCRLF:
            problems.append(("content-length-too-short", f"Content-Length is {length} but the block is "
                                                         f"{length + skipped - 4} bytes"))
        elif skipped <= 4:
            problems.append(("missing-record-trailer", "the block is not followed by CRLF CRLF"))
        else:
            problems.append(("content-length-too-short", f"Content-Length is {length} but {skipped} more bytes "
                                                         "follow the block, without a CRLF CRLF before the next "
                                                         "record"))
        return False

    def _find_swallowed_record(self, block_start: int) -> int:
        """Uncompressed files: when the block ran into the next record, unread it; returns the real block size."""
        lo = max(block_start - self.base, self.pos - LOOKBACK, 0)
        i = self.buf.find(CRLFCRLF + b"WARC/1.", lo, self.pos + 11)
        if i < 0 or i >= self.pos:
            return 0
        self.pos = i + 4
        return self.base + i - block_start

    def _skip_junk(self) -> bool:
        start = self.pos
        first = self.buf[start:start + 16]
        offset = self._offset_here()
        skipped, found, _ = self._skip_to_record()
        if found:
            self.report("data-before-version", f"{skipped} bytes that are not a record ({first!r}...) where a "
                                               "WARC version line was expected", offset)
        else:
            self.report("trailing-garbage", f"{skipped} bytes after the last record ({first!r}...)", offset)
        return found

    def _skip_to_record(self) -> tuple[int, bool, bytes]:
        """Advance to the next record start; returns (bytes skipped, found one, the last ≤4 bytes skipped)."""
        start = self.base + self.pos
        while True:
            buf, pos, base = self.buf, self.pos, self.base
            limit = len(buf)
            for boundary, _ in self.members:
                if boundary > base + pos:
                    limit = min(limit, boundary - base)
                    break
            i = buf.find(_NEXT_RECORD, pos, limit)
            if i >= 0:
                self.pos = i + 1
                return self._skipped(start, True)
            if limit < len(buf):
                self.pos = limit
                if self._ensure(5) and self.buf.startswith(b"WARC/", self.pos):
                    return self._skipped(start, True)
                continue
            self.pos = max(pos, len(buf) - len(_NEXT_RECORD))
            if not self._pull():
                self.pos = len(self.buf)
                return self._skipped(start, False)

    def _skipped(self, start: int, found: bool) -> tuple[int, bool, bytes]:
        return self.base + self.pos - start, found, self.buf[max(0, self.pos - 4):self.pos]

    def _find_header_end(self) -> tuple[int, int]:
        """(index of the empty line that ends the WARC header, its length), or (-1, 0)."""
        while True:
            buf, pos = self.buf, self.pos
            end = buf.find(CRLFCRLF, pos)
            lf = buf.find(b"\n\n", pos, end if end >= 0 else len(buf))
            if lf >= 0:
                return lf, 2
            if end >= 0:
                return end, 4
            if len(buf) - pos > MAX_WARC_HEADER or not self._pull():
                return -1, 0

    # ---- buffer --------------------------------------------------------------------------------------------
    eof = False

    def _pull(self) -> bool:
        """Append the next piece of decompressed data; False at end of file."""
        for kind, value in self.events:
            if kind == DATA:
                keep = self.pos if self.gzip else max(0, self.pos - LOOKBACK)
                if keep == len(self.buf):
                    self.base += keep
                    self.buf = value  # type: ignore[assignment]
                else:
                    self.base += keep
                    self.buf = self.buf[keep:] + value  # type: ignore[operator]
                self.pos -= keep
                return True
            if kind == MEMBER:
                self.members.append((self.base + len(self.buf), value))  # type: ignore[arg-type]
                self.member_total += 1
            elif kind == BREAK:
                raise _DataLost
        self.eof = True
        return False

    def _ensure(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            if not self._pull():
                return False
        return True

    def _offset_here(self) -> int:
        position = self.base + self.pos
        if not self.gzip:
            return position
        offset = 0
        for boundary, member_offset in self.members:
            if boundary > position:
                break
            offset = member_offset
        return offset

    def _record_offset(self, start: int) -> int:
        """The file offset to report for a record starting at stream position `start`; counts records per member."""
        members = self.members
        while len(members) > 1 and members[1][0] <= start:
            members.popleft()
        if not self.gzip:
            return start
        if not members:
            return 0
        boundary, offset = members[0]
        if boundary == start or offset != self._member_offset:
            self._close_member()
            self._member_offset = offset
            self._member_records = 1
        else:
            self._member_records += 1
        return offset

    def _close_member(self) -> None:
        if self._member_records > 1:
            self._crowded_members.append((self._member_offset, self._member_records))
        self._member_records = 0

    # ---- end of file ---------------------------------------------------------------------------------------
    def _finish(self) -> None:
        self._close_member()
        if self.gzip and self.member_total == 1 and self._crowded_members:
            n = self._crowded_members[0][1]
            self.report("gzip-single-member", f"the whole file is one gzip member holding {n} records; run "
                                              "`warcio recompress IN OUT` to write one member per record", 0)
        else:
            for offset, n in self._crowded_members:
                self.report("gzip-multi-record-member", f"the gzip member at offset {offset} holds {n} records",
                            offset)
        if not self.records:
            self.report("empty-file", "the file holds no complete WARC record", 0)
        for p in self.links.finish():
            self.report(p.code, p.message, p.offset, p.record_id, p.url, p.target)
        for finding, record_id, url, date in self._waiting:
            if not self.links.answers_head_request(record_id, url, date):
                self.queue.append(finding)


def _parse_header(raw: bytes, sep: int, problems: list[tuple[str, str]]
                  ) -> tuple[str, dict[str, str], list[str], list[str]]:
    """(version, fields by lower-case name, repeated standard fields, WARC-Concurrent-To values)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        problems.append(("header-not-utf8", "the WARC header is not valid UTF-8"))
    crlf = text.count("\r\n")
    if sep == 2 or text.count("\n") != crlf:
        problems.append(("bare-lf", "WARC header lines end with LF instead of CRLF"))
        lines = [line.rstrip("\r") for line in text.split("\n")]
    else:
        lines = text.split("\r\n")
    version = VERSIONS.get(lines[0])
    if version is None:
        problems.append(("invalid-version", f"version line {lines[0][:40]!r} is not WARC/1.0 or WARC/1.1"))
        version = "1.1"
    fields: dict[str, str] = {}
    repeated: list[str] = []
    concurrent: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t" or name != name.strip():
            problems.append(("invalid-header-line", f"WARC header line {line[:60]!r} is not 'Name: value'"))
            continue
        key = name.lower()
        value = value.strip()
        if key == "warc-concurrent-to":
            concurrent.append(value)
        elif key not in fields:
            fields[key] = value
        elif key in STANDARD_FIELDS:
            repeated.append(key)
    return version, fields, repeated, concurrent
