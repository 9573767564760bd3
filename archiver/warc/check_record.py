"""One record's block, checked as it streams past: block and payload digests, the HTTP message inside, the head
that content checks look at.

The walker (check_walk) finds the block's bytes and feeds them here piece by piece; nothing here ever holds a
whole block, except an abs page or other body a site module asks for (≤ 8 MiB).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from archiver.sites.base import HEAD_BYTES
from archiver.warc.check_digest import DigestError, hasher, parse_digest
from archiver.warc.check_http import HttpBlock, HttpResult

BODY_LIMIT = 8 << 20  # the most of a payload a site module gets whole (Capture.body)
_NO_BODY_STATUS = frozenset({204, 304})
_DIGESTED_TYPES = frozenset({"request", "response", "resource", "revisit"})

Problems = list[tuple[str, str]]


@dataclass
class RecordFacts:
    """What the walker and the content checks need once the block has been read."""

    http: HttpResult | None
    head: bytes  # first HEAD_BYTES of the payload (content-encoding removed where possible)
    body: bytes | None
    empty_body_pending: bool  # the body is empty but HTTP said otherwise: fine if the request was HEAD


class RecordCheck:
    def __init__(self, rtype: str | None, fields: Mapping[str, str], block_length: int, *, want_head: bool,
                 want_body: bool) -> None:
        self.rtype = rtype
        self.fields = fields
        self.block_length = block_length
        self.problems: Problems = []
        self._block_expected = self._digest("warc-block-digest")
        skip_payload = rtype == "revisit" or "warc-segment-number" in fields
        self._payload_expected = None if skip_payload else self._digest("warc-payload-digest")
        self._block_hash = hasher(self._block_expected[0])() if self._block_expected else None
        content_type = fields.get("content-type", "").lower()
        uri = fields.get("warc-target-uri", "")
        is_http = content_type.startswith("application/http") or (
            not content_type and rtype in ("response", "request", "revisit") and uri.startswith(("http:", "https:")))
        self.http: HttpBlock | None = None
        self._payload_hash = None  # a non-HTTP payload digest in another algorithm than the block digest's
        self._head = bytearray()
        self._head_limit = HEAD_BYTES if want_head else 0
        self._body: bytearray | None = bytearray() if want_body else None
        if is_http and block_length:
            self.http = HttpBlock(is_request=rtype == "request",
                                  digest=hasher(self._payload_expected[0]) if self._payload_expected else None,
                                  want_head=want_head, body_limit=BODY_LIMIT if want_body else None)
        elif self._payload_expected and (not self._block_expected
                                         or self._payload_expected[0] != self._block_expected[0]):
            self._payload_hash = hasher(self._payload_expected[0])()
        if self._block_expected is None and "warc-block-digest" not in fields and rtype in _DIGESTED_TYPES:
            self.problems.append(("missing-digest", f"the {rtype} record has no WARC-Block-Digest"))

    def _digest(self, name: str) -> tuple[str, bytes] | None:
        value = self.fields.get(name)
        if value is None:
            return None
        try:
            return parse_digest(value)
        except DigestError as e:
            self.problems.append((e.code, f"{'WARC-Block-Digest' if 'block' in name else 'WARC-Payload-Digest'}: {e}"))
            return None

    def feed(self, data: memoryview) -> None:
        if self._block_hash is not None:
            self._block_hash.update(data)
        if self.http is not None:
            self.http.feed(data)
            return
        if self._payload_hash is not None:
            self._payload_hash.update(data)
        if len(self._head) < self._head_limit:
            self._head += data[:self._head_limit - len(self._head)]
        if self._body is not None:
            self._body += data
            if len(self._body) > BODY_LIMIT:
                self._body = None

    def finish(self, *, framing_ok: bool, check_digests: bool, truncated: str | None) -> RecordFacts:
        """Compare digests (unless the block is known to be incomplete) and check the HTTP message; HTTP body
        lengths only mean something when the record's own framing is right."""
        http = self.http.finish() if self.http is not None else None
        block_digest = self._block_hash.digest() if self._block_hash is not None else None
        if check_digests:
            self._compare_block(block_digest)
            self._compare_payload(block_digest, http)
        pending = False
        if http is not None:
            if truncated:
                # a capture cut short and declared so (WARC-Truncated) may end inside its chunk framing
                self.problems += [p for p in http.problems if p[0] != "chunked-encoding-invalid"]
            else:
                self.problems += http.problems
            pending = framing_ok and self._check_http_length(http, truncated)
            return RecordFacts(http, http.head, http.body, pending)
        return RecordFacts(None, bytes(self._head), bytes(self._body) if self._body is not None else None, False)

    def _compare_block(self, computed: bytes | None) -> None:
        if computed is None or self._block_expected is None:
            return
        algorithm, expected = self._block_expected
        if computed != expected:
            self.problems.append(("block-digest-mismatch", f"WARC-Block-Digest is {_show(algorithm, expected)} but "
                                                           f"the block hashes to {_show(algorithm, computed)}"))

    def _compare_payload(self, block_digest: bytes | None, http: HttpResult | None) -> None:
        if self._payload_expected is None:
            return
        algorithm, expected = self._payload_expected
        if http is not None:
            if expected == http.entity_digest:
                return
            if expected == http.raw_digest:
                if http.chunked and http.entity_digest is not None:
                    self.problems.append(("payload-digest-raw", "WARC-Payload-Digest covers the raw chunked "
                                                                "bytes, not the de-chunked entity body"))
                return
            got = http.entity_digest or http.raw_digest
            if http.chunked and http.entity_digest is not None:
                detail = (f"the de-chunked entity hashes to {_show(algorithm, http.entity_digest)} and the raw "
                          f"bytes to {_show(algorithm, http.raw_digest)}")
            else:
                detail = f"the payload hashes to {_show(algorithm, got)}"
            self.problems.append(("payload-digest-mismatch", f"WARC-Payload-Digest is {_show(algorithm, expected)} "
                                                             f"but {detail}"))
            return
        if self._payload_hash is not None:
            computed = self._payload_hash.digest()
        elif self.block_length == 0 and block_digest is None:
            computed = hasher(algorithm)().digest()
        else:
            computed = block_digest
        if computed is not None and computed != expected:
            self.problems.append(("payload-digest-mismatch", f"WARC-Payload-Digest is {_show(algorithm, expected)} "
                                                             f"but the payload hashes to {_show(algorithm, computed)}"))

    def _check_http_length(self, http: HttpResult, truncated: str | None) -> bool:
        """Silent truncation and over-long bodies; True when an empty body must wait for the request's method."""
        if self.rtype not in ("response", "request") or http.header_length == 0:
            return False
        if http.chunked:
            if http.chunked_valid and not http.chunked_complete and truncated is None:
                self.problems.append(("http-silent-truncation", "the chunked body ends before its last chunk "
                                                                "and the record has no WARC-Truncated"))
            return False
        declared = http.headers.get("content-length")
        if declared is None or (http.status is not None and (http.status < 200 or http.status in _NO_BODY_STATUS)):
            return False
        try:
            expected = int(declared.split(",")[0].strip())
        except ValueError:
            self.problems.append(("http-header-invalid", f"HTTP Content-Length {declared!r} is not a number"))
            return False
        stored = http.raw_length
        if stored < expected:
            if stored == 0 and self.rtype == "response" and http.status is not None:
                return True
            if truncated is None:
                self.problems.append(("http-silent-truncation", f"HTTP Content-Length is {expected} but only {stored} "
                                                                "bytes are stored and the record has no "
                                                                "WARC-Truncated"))
        elif stored > expected:
            self.problems.append(("http-body-too-long", f"HTTP Content-Length is {expected} but {stored} bytes "
                                                        "are stored"))
        return False


def _show(algorithm: str, digest: bytes | None) -> str:
    if digest is None:
        return "nothing"
    if algorithm == "sha1":
        return "sha1:" + base64.b32encode(digest).decode("ascii")
    return f"{algorithm}:{digest.hex()}"
