"""WARC/1.1 record headers for what a capture produced: warcinfo, request, response, metadata, resource.

Building headers as bytes directly (rather than through warcio's StatusAndHeaders and RecordBuilder) keeps
each record to one join, and lets the request and the response share the capture-start WARC-Date.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

WARC_VERSION = b"WARC/1.1\r\n"


def new_record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def header_block(fields: Iterable[tuple[str, str | int]]) -> bytes:
    """The version line and fields of a record, ending with the blank line that precedes the block."""
    lines = [f"{name}: {value}\r\n" for name, value in fields]
    return WARC_VERSION + "".join(lines).encode("utf-8") + b"\r\n"


def warc_fields(values: Iterable[tuple[str, str]]) -> bytes:
    """An application/warc-fields block (warcinfo and metadata records)."""
    out = []
    for name, value in values:
        value = str(value).replace("\r", " ").replace("\n", " ")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("utf-8")


def safe_uri(url: str) -> str:
    """A WARC-Target-URI may hold no whitespace or control characters; percent-encode them if present."""
    if url.isprintable() and " " not in url:
        return url
    return "".join(c if c.isprintable() and c != " " else "".join(f"%{b:02X}" for b in c.encode()) for c in url)
