"""The checker's finding codes: each with its severity, what it means and how to fix it.

Codes are stable: scripts match on them, and docs/checks.md documents each one (a test keeps the two in step).
Content codes come from archiver.content and site modules; their severity depends on whether a site module
vouched for the verdict (error) or the shared heuristics did (warning), so they are listed separately.
"""

from __future__ import annotations

from typing import NamedTuple

ERROR = "error"
WARNING = "warning"
NOTICE = "notice"
SEVERITIES = (ERROR, WARNING, NOTICE)


class Code(NamedTuple):
    severity: str
    meaning: str
    fix: str


CODES: dict[str, Code] = {
    # ---- file and container ------------------------------------------------------------------------------
    "unreadable": Code(ERROR, "the file cannot be opened or its compression is not supported",
                       "check the path and permissions; recompress zstd files with gzip for now"),
    "empty-file": Code(ERROR, "the file holds no WARC record", "re-create the WARC from its source"),
    "gzip-corrupt": Code(ERROR, "a gzip member cannot be decompressed (bad header or deflate data)",
                         "the bytes are damaged: restore the file from another copy or re-grab; "
                         "checking resumes at the next intact member"),
    "gzip-crc-error": Code(ERROR, "a gzip member's CRC-32 or ISIZE does not match its data (bit rot, bad copy)",
                           "restore the file from another copy or re-grab the affected record"),
    "gzip-truncated": Code(ERROR, "the file ends inside a gzip member (cut off during copy or write)",
                           "re-copy or re-grab; the last record is incomplete"),
    "gzip-garbage": Code(ERROR, "bytes between gzip members that are not gzip data",
                         "remove the stray bytes (e.g. `warcio recompress IN OUT`) or re-create the file"),
    "trailing-garbage": Code(ERROR, "bytes after the last record that belong to no record",
                             "truncate the file after the last record's CRLF CRLF, or recompress it"),
    "gzip-single-member": Code(ERROR, "the whole file is one gzip member, so no record can be read on its own "
                                      "(random access, CDX offsets, upload all need one member per record)",
                               "run `warcio recompress IN OUT` to write one gzip member per record"),
    "gzip-multi-record-member": Code(ERROR, "a gzip member holds more than one record",
                                     "run `warcio recompress IN OUT` to write one gzip member per record"),
    "gzip-record-spans-members": Code(ERROR, "a record continues across gzip members",
                                      "run `warcio recompress IN OUT` to write one gzip member per record"),
    "compression-name-mismatch": Code(WARNING, "the file name's extension does not match its compression",
                                      "rename the file (.warc.gz for gzip, .warc for uncompressed)"),
    "resynchronised": Code(NOTICE, "after damage, checking skipped bytes to the next readable record",
                           "see the error reported just before; records in the skipped bytes are lost"),
    # ---- record syntax -----------------------------------------------------------------------------------
    "data-before-version": Code(ERROR, "bytes where a record's `WARC/1.x` version line was expected",
                                "remove the stray bytes; a reader that is not lenient stops here"),
    "invalid-version": Code(ERROR, "the version line is not `WARC/1.0` or `WARC/1.1`",
                            "rewrite the record with a supported version"),
    "bare-lf": Code(ERROR, "header lines end with LF instead of CRLF", "fix the writer; rewrite the file"),
    "invalid-header-line": Code(ERROR, "a WARC header line has no `name: value` form (or is a folded line)",
                                "fix the writer; rewrite the record"),
    "header-not-utf8": Code(WARNING, "a WARC header is not valid UTF-8", "fix the writer's header encoding"),
    "invalid-content-length": Code(ERROR, "`Content-Length` is not a non-negative integer",
                                   "rewrite the record with the block's real length"),
    "content-length-too-short": Code(ERROR, "`Content-Length` is smaller than the block actually present",
                                     "rewrite the record with the block's real length"),
    "content-length-too-long": Code(ERROR, "`Content-Length` is larger than the block actually present",
                                    "rewrite the record with the block's real length"),
    "record-truncated": Code(ERROR, "the file ends inside a record", "re-copy or re-grab; the record is incomplete"),
    "missing-record-trailer": Code(ERROR, "the block is not followed by exactly CRLF CRLF",
                                   "fix the writer; rewrite the record"),
    # ---- WARC fields -------------------------------------------------------------------------------------
    "missing-mandatory-field": Code(ERROR, "a field the record type requires is absent "
                                           "(WARC-Record-ID, Content-Length, WARC-Date, WARC-Type, "
                                           "WARC-Profile on revisits, segment fields on continuations)",
                                    "fix the writer; rewrite the record with the field"),
    "repeated-field": Code(ERROR, "a field that may appear once appears more than once",
                           "keep one value (only WARC-Concurrent-To may repeat)"),
    "invalid-record-id": Code(ERROR, "`WARC-Record-ID` is not `<scheme:...>` without whitespace",
                              "write ids as `<urn:uuid:...>`"),
    "invalid-reference": Code(ERROR, "a WARC-Concurrent-To / Refers-To / Warcinfo-ID / Segment-Origin-ID value "
                                     "is not `<scheme:...>`", "write record references as `<urn:uuid:...>`"),
    "invalid-date": Code(ERROR, "`WARC-Date` (or WARC-Refers-To-Date) is not a W3C-ISO8601 UTC date the "
                                "record's WARC version allows", "write `YYYY-MM-DDThh:mm:ssZ` (1.1 may add .fraction)"),
    "date-precision": Code(WARNING, "a WARC/1.0 record has a sub-second `WARC-Date`, which only WARC/1.1 allows",
                           "write WARC/1.1 records, or round dates to seconds"),
    "missing-target-uri": Code(ERROR, "`WARC-Target-URI` is absent on a record type that requires it",
                               "fix the writer; the capture cannot be replayed without its URI"),
    "invalid-target-uri": Code(WARNING, "`WARC-Target-URI` has `<...>` around it or contains whitespace",
                               "write the bare URI, percent-encoding spaces (the `<>` form is a wget 1.19 bug)"),
    "field-not-allowed": Code(WARNING, "a field appears on a record type that shall not carry it "
                                       "(e.g. WARC-Target-URI on warcinfo)", "drop the field from that record type"),
    "invalid-segment-number": Code(ERROR, "`WARC-Segment-Number` is not a positive integer (≥ 2 on continuations)",
                                   "fix the writer's segmentation"),
    "invalid-truncated-value": Code(WARNING, "`WARC-Truncated` is not length, time, disconnect or unspecified",
                                    "use one of the four standard reasons"),
    "warc-truncated": Code(NOTICE, "the record says it is truncated (`WARC-Truncated`): the capture is partial",
                           "re-grab with higher size or time limits if the full content matters"),
    "revisit-profile-missing": Code(ERROR, "a revisit record has no `WARC-Profile`",
                                    "add the profile URI (identical-payload-digest or server-not-modified)"),
    "revisit-profile-unknown": Code(WARNING, "a revisit record's `WARC-Profile` is not a standard profile URI",
                                    "use http://netpreserve.org/warc/1.1/revisit/identical-payload-digest or "
                                    ".../server-not-modified (or the 1.0 forms)"),
    "missing-content-type": Code(WARNING, "a non-empty block has no `Content-Type`",
                                 "write `Content-Type` (e.g. application/http;msgtype=response)"),
    "unknown-record-type": Code(WARNING, "`WARC-Type` is not one of the eight standard types",
                                "readers will ignore the record; use a standard type if it matters"),
    # ---- digests -----------------------------------------------------------------------------------------
    "block-digest-mismatch": Code(ERROR, "`WARC-Block-Digest` does not match the block",
                                  "the block is damaged (or the writer is wrong): restore or re-grab"),
    "payload-digest-mismatch": Code(ERROR, "`WARC-Payload-Digest` matches the payload under neither convention",
                                    "the payload is damaged (or the writer is wrong): restore or re-grab"),
    "payload-digest-raw": Code(NOTICE, "`WARC-Payload-Digest` covers the raw chunked bytes (wget/warcio "
                                       "convention), not the entity body with transfer-encoding removed (ISO 28500)",
                               "nothing to fix; archiver's writer uses the ISO 28500 convention"),
    "invalid-digest": Code(ERROR, "a digest field is not `algorithm:value` in base32, base16 or base64",
                           "fix the writer; digests cannot be verified"),
    "unknown-digest-algorithm": Code(WARNING, "a digest uses an algorithm the checker does not know",
                                     "use sha1, sha256, sha512 or md5"),
    "missing-digest": Code(WARNING, "a request, response, resource or revisit record has no `WARC-Block-Digest`",
                           "enable digests in the writer; without them bit rot goes unnoticed"),
    # ---- cross-record ------------------------------------------------------------------------------------
    "duplicate-record-id": Code(ERROR, "two records share a `WARC-Record-ID`",
                                "ids must be unique: fix the writer (use fresh urn:uuid ids) and rewrite"),
    "dangling-concurrent-to": Code(ERROR, "`WARC-Concurrent-To` names a record that is not in the file set",
                                   "write the records of one capture into the same file"),
    "dangling-refers-to": Code(WARNING, "`WARC-Refers-To` names a record that is not in the file set",
                               "check that the original capture is kept with the revisit (or pass its file too)"),
    "dangling-warcinfo-id": Code(WARNING, "`WARC-Warcinfo-ID` names a warcinfo record that is not in the file set",
                                 "write the warcinfo record at the start of each file"),
    "response-without-request": Code(ERROR, "a response or revisit has no request record "
                                            "(linked by WARC-Concurrent-To or sharing URI and date)",
                                     "fix the writer to record the request; replay tools and audits need it"),
    "request-without-response": Code(WARNING, "a request has no response, revisit or metadata record with it",
                                     "the fetch probably failed; re-grab the URL if it matters"),
    "capture-date-mismatch": Code(WARNING, "records of one capture (linked by WARC-Concurrent-To) have "
                                           "different `WARC-Date`s", "give all records of a capture its start time"),
    # ---- HTTP inside records -----------------------------------------------------------------------------
    "http-status-line-invalid": Code(ERROR, "the HTTP status or request line cannot be parsed",
                                     "the block is not HTTP (wrong Content-Type?) or is damaged"),
    "http-header-invalid": Code(ERROR, "an HTTP header line cannot be parsed, or the headers never end",
                                "the block is damaged or not HTTP"),
    "chunked-encoding-invalid": Code(ERROR, "`Transfer-Encoding: chunked` over a body that is not validly chunked "
                                            "(pywb#584: replay breaks)",
                                     "rewrite the record without the Transfer-Encoding header, or re-grab"),
    "http-silent-truncation": Code(ERROR, "the stored body is shorter than HTTP Content-Length (or the last chunk "
                                          "is missing) and the record has no `WARC-Truncated`",
                                   "re-grab; a writer must mark known truncation with WARC-Truncated"),
    "http-body-too-long": Code(WARNING, "the stored body is longer than HTTP `Content-Length`",
                               "check the capture: the server or the writer added bytes"),
    "content-encoding-invalid": Code(WARNING, "the body does not decode with its `Content-Encoding`",
                                     "re-grab: the body is damaged or mislabelled"),
    # ---- site modules ------------------------------------------------------------------------------------
    "site-error": Code(ERROR, "the site module failed while judging a capture (a bug in the site module)",
                       "report the message to archiver's developers; the capture was not judged"),
}

# Content verdicts (archiver.content and site modules): warnings from the shared heuristics,
# errors when a site module vouches for them.
CONTENT_CODES: dict[str, Code] = {
    "rate-limited": Code(WARNING, "an HTTP 429 or a 'Rate exceeded.' page was archived as the capture",
                         "re-grab the URL more slowly"),
    "js-challenge": Code(WARNING, "a JavaScript challenge page (Cloudflare and similar) was archived instead of "
                                  "the content", "re-grab with a browser-based crawler or after the block lifts"),
    "bot-block-page": Code(WARNING, "a 403 robot-detection page (e.g. arXiv's) was archived instead of the content",
                           "wait for the block to lift, re-grab slowly (arXiv: Crawl-delay 15)"),
    "server-unavailable": Code(WARNING, "an HTTP 503 was archived as the capture", "re-grab later"),
    "pdf-not-pdf": Code(WARNING, "a URL under /pdf/ or with a PDF content type whose body is not a PDF",
                        "re-grab; the server sent an error or block page instead of the paper"),
    "empty-200": Code(WARNING, "an HTTP 200 with an empty body", "re-grab the URL"),
}


def severity_of(code: str) -> str:
    """The fixed severity of a container/record/field/digest/cross-record/HTTP code."""
    return CODES[code].severity
