"""The checker's library API: streaming findings, per-file reports, file sets, JSON, and the documented codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from warc_factory import (
    PDF,
    capture,
    chunk,
    http_request,
    member,
    member_offsets,
    new_id,
    record,
    revisit,
    serialise,
    valid_records,
    warcinfo,
    write_warc,
)

from archiver.warc.check import Finding, WarcUnreadable, check_file, check_files, iter_findings
from archiver.warc.check_codes import CODES, CONTENT_CODES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "checks.md"


def test_iter_findings_streams_findings_with_offset_record_id_and_url(tmp_path: Path) -> None:
    good = capture("https://example.org/a")
    bad = capture("https://example.org/b", b"body")
    bad[0] = bad[0].set("WARC-Block-Digest", "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    path = write_warc(tmp_path / "x.warc.gz", [warcinfo(), *good, *bad])
    offsets = member_offsets(path.read_bytes())
    findings = list(iter_findings(path))
    assert [f.code for f in findings] == ["block-digest-mismatch"]
    f = findings[0]
    assert isinstance(f, Finding)
    assert (f.severity, f.file, f.offset, f.record_id, f.url) == ("error", str(path), offsets[3], bad[0].id,
                                                                 "https://example.org/b")
    assert "sha1:AAAA" in f.message


def test_iter_findings_raises_a_clear_error_for_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WarcUnreadable, match="cannot open"):
        list(iter_findings(tmp_path / "nope.warc.gz"))


def test_check_file_never_raises_and_marks_unreadable_files(tmp_path: Path) -> None:
    report = check_file(tmp_path / "nope.warc.gz")
    assert report.unreadable and report.counts == {"unreadable": 1}
    assert check_files([tmp_path / "nope.warc.gz"]).exit_code == 2


def test_a_directory_is_unreadable_not_a_traceback(tmp_path: Path) -> None:
    assert check_files([tmp_path]).exit_code == 2


def test_checking_resumes_after_a_gzip_crc_error(tmp_path: Path) -> None:
    records = [warcinfo()] + [r for i in range(5) for r in capture(f"https://example.org/{i}", b"x%d" % i * 999)]
    data = serialise(records)
    offsets = member_offsets(data)
    crc = offsets[2] - 8  # first response's member trailer
    broken = tmp_path / "crc.warc.gz"
    broken.write_bytes(data[:crc] + bytes([data[crc] ^ 1]) + data[crc + 1:])
    report = check_file(broken)
    assert report.counts["gzip-crc-error"] == 1
    assert sum(report.records.values()) == len(records) - 1  # every other record was still read and checked
    [crc_finding] = [f for f in report.findings if f.code == "gzip-crc-error"]
    assert crc_finding.offset == offsets[1]


def test_three_content_length_defects_are_told_apart(tmp_path: Path) -> None:
    from dataclasses import replace

    base = [warcinfo(), *capture("https://example.org/a", b"a" * 500)]
    short = write_warc(tmp_path / "short.warc.gz", [base[0], replace(base[1], length_delta=-7), base[2]])
    long = write_warc(tmp_path / "long.warc.gz", [base[0], replace(base[1], length_delta=7), base[2]])
    whole = serialise(base)
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(whole[:member_offsets(whole)[2] - 30] + whole[member_offsets(whole)[2]:][:0])
    assert "content-length-too-short" in check_file(short).counts
    assert "content-length-too-long" in check_file(long).counts
    codes = check_file(cut).counts
    assert "record-truncated" in codes and "content-length-too-long" not in codes


def test_content_length_too_long_says_whether_the_digest_matches_the_bytes_present(tmp_path: Path) -> None:
    from dataclasses import replace

    base = [warcinfo(), *capture("https://example.org/a", b"a" * 500)]
    path = write_warc(tmp_path / "long.warc.gz", [base[0], replace(base[1], length_delta=7), base[2]])
    [f] = [f for f in check_file(path).findings if f.code == "content-length-too-long"]
    assert "block digest matches" in f.message


def test_payload_digest_conventions_iso_silent_raw_notice_other_error(tmp_path: Path) -> None:
    body = b"<li>entry</li>" * 300
    iso = capture("https://example.org/iso", body, chunked=True, payload_convention="iso")
    raw = capture("https://example.org/raw", body, chunked=True, payload_convention="raw")
    path = write_warc(tmp_path / "c.warc.gz", [warcinfo(), *iso, *raw])
    findings = check_file(path).findings
    assert [(f.code, f.url) for f in findings] == [("payload-digest-raw", "https://example.org/raw")]
    assert findings[0].severity == "notice"


@pytest.mark.parametrize("algorithm,encode", [
    ("sha1", lambda d: d.hex()),
    ("sha256", lambda d: d.hex()),
    ("sha256", lambda d: __import__("base64").b32encode(d).decode()),
    ("md5", lambda d: __import__("base64").b64encode(d).decode()),
    ("sha512", lambda d: __import__("base64").b64encode(d).decode()),
])
def test_digests_in_any_algorithm_and_encoding_are_verified(tmp_path: Path, algorithm: str, encode) -> None:
    import hashlib

    rec = record("resource", "https://example.org/r", b"resource body", content_type="text/plain", digests=False)
    digest = f"{algorithm}:{encode(hashlib.new(algorithm, rec.block).digest())}"
    good = rec.set("WARC-Block-Digest", digest).set("WARC-Payload-Digest", digest)
    wrong = f"{algorithm}:{encode(hashlib.new(algorithm, b'another block').digest())}"
    bad = rec.set("WARC-Record-ID", new_id()).set("WARC-Block-Digest", wrong)
    path = write_warc(tmp_path / "d.warc.gz", [warcinfo(), good, bad])
    assert [f.code for f in check_file(path).findings] == ["block-digest-mismatch"]


def test_revisit_payload_digest_is_not_checked_against_its_empty_payload(tmp_path: Path) -> None:
    original = capture("https://example.org/a", b"original body")
    again = revisit("https://example.org/a", original[0])
    path = write_warc(tmp_path / "r.warc.gz", [warcinfo(), *original, *again])
    assert check_file(path).findings == []


def test_head_request_with_empty_body_is_not_truncation(tmp_path: Path) -> None:
    url = "https://example.org/big.pdf"
    resp = capture(url, b"", content_length=5000, content_type="application/pdf", method="HEAD")
    path = write_warc(tmp_path / "h.warc.gz", [warcinfo(), *resp])
    assert check_file(path).findings == []
    get = capture(url, b"", content_length=5000, content_type="application/pdf")
    path = write_warc(tmp_path / "g.warc.gz", [warcinfo(), *get])
    assert "http-silent-truncation" in check_file(path).counts


def test_not_modified_and_no_content_need_no_body(tmp_path: Path) -> None:
    recs = [warcinfo(), *capture("https://example.org/a", b"", 304, content_length=1234, reason="Not Modified"),
            *capture("https://example.org/b", b"", 204, content_length=0, reason="No Content")]
    assert check_file(write_warc(tmp_path / "n.warc.gz", recs)).findings == []


def test_chunked_body_with_trailer_fields_is_fine(tmp_path: Path) -> None:
    body = b"hello chunked world" * 100
    stored = chunk(body)[:-2] + b"X-Checksum: abc\r\n\r\n"
    recs = [warcinfo(), *capture("https://example.org/t", body, chunked=True, stored_body=stored)]
    codes = check_file(write_warc(tmp_path / "t.warc.gz", recs)).counts
    assert "chunked-encoding-invalid" not in codes and "http-silent-truncation" not in codes


def test_warc_truncated_record_is_a_notice_and_not_silent_truncation(tmp_path: Path) -> None:
    recs = [warcinfo(), *capture("https://example.org/big", PDF[:100], content_type="application/pdf",
                                 content_length=len(PDF), response_extra=[("WARC-Truncated", "length")])]
    findings = check_file(write_warc(tmp_path / "t.warc.gz", recs)).findings
    assert [(f.code, f.severity) for f in findings] == [("warc-truncated", "notice")]


def test_request_paired_by_uri_and_date_without_concurrent_to(tmp_path: Path) -> None:
    response, request = capture("https://example.org/a")
    request = request.set("WARC-Concurrent-To", None)
    path = write_warc(tmp_path / "p.warc.gz", [warcinfo(), response, request])
    assert check_file(path).findings == []


def test_records_by_type_and_counts_by_code(tmp_path: Path) -> None:
    recs = valid_records() + [record("request", "https://example.org/lonely", http_request("https://example.org/x"),
                                     content_type="application/http; msgtype=request", payload=b"")]
    report = check_file(write_warc(tmp_path / "c.warc.gz", recs))
    assert report.records["request"] == 6
    assert report.counts == {"request-without-response": 1}
    assert (report.errors, report.warnings, report.notices) == (0, 1, 0)


def test_check_files_finds_duplicate_ids_across_files_and_resolves_references(tmp_path: Path) -> None:
    original = capture("https://example.org/a", b"same body")
    again = revisit("https://example.org/a", original[0])
    first = write_warc(tmp_path / "1.warc.gz", [warcinfo(), *original])
    second = write_warc(tmp_path / "2.warc.gz", [warcinfo(), *again])
    alone = check_file(second)
    assert "dangling-refers-to" in alone.counts  # on its own, the original is elsewhere
    report = check_files([first, second])
    assert report.ok and report.all_findings() == []
    copy = tmp_path / "3.warc.gz"
    copy.write_bytes(first.read_bytes())
    report = check_files([first, copy])
    assert not report.ok
    assert {f.code for f in report.findings} == {"duplicate-record-id"}


def test_check_files_with_two_jobs_gives_the_same_report(tmp_path: Path) -> None:
    paths = [write_warc(tmp_path / f"{i}.warc.gz", [warcinfo(), *capture(f"https://example.org/{i}", b"<html>" * i)])
             for i in range(3)]
    paths.append(write_warc(tmp_path / "bad.warc.gz", [warcinfo(), capture("https://example.org/z")[0]]))
    one = check_files(paths)
    two = check_files(paths, jobs=2)
    assert [(r.file, r.counts, dict(r.records)) for r in one.files] == \
           [(r.file, r.counts, dict(r.records)) for r in two.files]
    assert two.files[-1].counts == {"response-without-request": 1}


def test_strict_makes_warnings_fail(tmp_path: Path) -> None:
    recs = [warcinfo(), *capture("https://example.org/x", b"", content_length=0)]  # an empty 200: a warning
    path = write_warc(tmp_path / "w.warc.gz", recs)
    assert check_files([path]).ok
    assert not check_files([path], strict=True).ok


def test_json_report_is_machine_readable(tmp_path: Path) -> None:
    path = write_warc(tmp_path / "j.warc.gz", [warcinfo(), capture("https://example.org/a")[0]])
    data = json.loads(check_files([path]).to_json())
    assert data["ok"] is False and data["exit_code"] == 1
    [file] = data["files"]
    assert file["records"] == {"warcinfo": 1, "response": 1}
    assert file["counts"] == {"response-without-request": 1}
    assert file["findings"][0]["code"] == "response-without-request"
    assert data["totals"]["errors"] == 1


def test_summary_lists_findings_and_a_total(tmp_path: Path) -> None:
    path = write_warc(tmp_path / "s.warc.gz", [warcinfo(), capture("https://example.org/a")[0]])
    text = check_files([path]).summary()
    assert "response-without-request" in text
    assert re.search(r"total: 1 files, 2 records, 1 errors, 0 warnings, 0 notices: NOT OK", text)


def test_uncompressed_file_is_read_directly(tmp_path: Path) -> None:
    path = write_warc(tmp_path / "u.warc", valid_records())
    report = check_file(path)
    assert report.compression == "plain" and report.findings == []
    assert "gzip" not in " ".join(report.counts)


def test_one_member_per_record_is_required_and_the_fix_is_named(tmp_path: Path) -> None:
    path = tmp_path / "one.warc.gz"
    path.write_bytes(member(serialise(valid_records(), compress=False)))
    [f] = check_file(path).findings
    assert f.code == "gzip-single-member" and "warcio recompress" in f.message


def test_every_code_is_documented_in_docs_checks_md() -> None:
    text = DOCS.read_text()
    for code in [*CODES, *CONTENT_CODES]:
        assert f"`{code}`" in text, code
