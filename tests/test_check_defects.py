"""Every defect of the checker's table is caught, with the right code and severity; sound files pass clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from warc_factory import build_defects, capture, valid_records, warcinfo, write_warc

from archiver.warc import check_container
from archiver.warc.check import check_file, check_files
from archiver.warc.check_codes import CODES, CONTENT_CODES


@pytest.fixture(scope="module")
def defects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return {d.name: d for d in build_defects(tmp_path_factory.mktemp("defects"))}


def _names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [d.name for d in build_defects(Path(tmp))]


@pytest.mark.parametrize("name", _names())
def test_defect_is_caught_with_its_code_and_severity(defects: dict, name: str) -> None:
    defect = defects[name]
    report = check_file(defect.path)
    codes = report.counts
    for code in [defect.code, *defect.notes]:
        assert code in codes, f"{name}: expected {code}, got {[f.line() for f in report.findings]}"
    assert {f.severity for f in report.findings if f.code == defect.code} == {defect.severity}


@pytest.mark.parametrize("name", _names())
def test_defect_gives_the_right_verdict(defects: dict, name: str) -> None:
    defect = defects[name]
    report = check_files([defect.path])
    if defect.code == "unreadable":
        assert report.exit_code == 2
    elif defect.severity == "error":
        assert not report.ok and report.exit_code == 1
    else:
        assert check_files([defect.path], strict=True).exit_code == (0 if defect.severity == "notice" else 1)


def test_every_documented_code_has_a_defect_that_produces_it(defects: dict) -> None:
    produced = {c for d in defects.values() for c in [d.code, *d.notes]}
    produced |= {"site-error"}  # a site module bug: tests/test_check_site.py
    assert set(CODES) | set(CONTENT_CODES) <= produced


@pytest.mark.parametrize("suffix", [".warc.gz", ".warc"])
def test_a_sound_grab_has_no_findings(tmp_path: Path, suffix: str) -> None:
    path = write_warc(tmp_path / f"good{suffix}", valid_records())
    report = check_file(path)
    assert report.findings == []
    assert report.records == {"warcinfo": 1, "response": 4, "request": 5, "revisit": 1, "resource": 1,
                              "metadata": 1}
    assert report.compression == ("gzip" if suffix == ".warc.gz" else "plain")


def test_sound_files_also_pass_warcio_check_so_the_factory_is_a_fair_peer(tmp_path: Path) -> None:
    records = [warcinfo(), *capture("https://example.org/a"), *capture("https://example.org/b", b"x" * 5000)]
    path = write_warc(tmp_path / "peer.warc.gz", records)
    warcio = Path(sys.executable).parent / "warcio"
    assert subprocess.run([str(warcio), "check", str(path)], capture_output=True).returncode == 0
    assert check_file(path).findings == []


def test_container_defects_are_caught_with_plain_zlib_too(defects: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    monkeypatch.setattr(check_container, "inflate", zlib)
    for name in ("gzip-crc-error", "gzip-isize-error", "gzip-bad-header-flags", "cut-3000-bytes-short",
                 "content-length-7-long", "whole-file-one-member", "record-spans-members"):
        defect = defects[name]
        assert defect.code in check_file(defect.path).counts, name
