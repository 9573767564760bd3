"""`archiver check` and `archiver index` on the command line: output, exit codes, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from warc_factory import capture, valid_records, warcinfo, write_warc

from archiver.cli import main


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_warc(tmp_path / "good.warc.gz", valid_records())


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return write_warc(tmp_path / "broken.warc.gz", [warcinfo(), capture("https://example.org/a")[0]])


@pytest.fixture
def doubtful(tmp_path: Path) -> Path:
    return write_warc(tmp_path / "doubtful.warc.gz", [warcinfo(), *capture("https://example.org/e", b"")])


def test_sound_file_exits_0_with_a_summary(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{good}: 13 records (metadata 1, request 5, resource 1, response 4, revisit 1, warcinfo 1)" in out
    assert out.rstrip().endswith("0 errors, 0 warnings, 0 notices: OK")


def test_errors_exit_1(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(good), str(broken)]) == 1
    assert "response-without-request" in capsys.readouterr().out


def test_warnings_pass_unless_strict(doubtful: Path) -> None:
    assert main(["check", str(doubtful)]) == 0
    assert main(["check", "--strict", str(doubtful)]) == 1


def test_unreadable_file_exits_2(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(good), str(tmp_path / "missing.warc.gz")]) == 2
    assert "cannot open" in capsys.readouterr().out


def test_json_report(good: Path, broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(good), str(broken)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["file"] for f in data["files"]] == [str(good), str(broken)]
    assert data["files"][1]["counts"] == {"response-without-request": 1}
    assert data["totals"]["record_count"] == 15


def test_jobs_checks_files_in_parallel(good: Path, broken: Path, doubtful: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--jobs", "2", "--json", str(good), str(broken), str(doubtful)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["errors"] for f in data["files"]] == [0, 1, 0]


def test_usage_errors_exit_2(good: Path) -> None:
    assert main(["check", "--jobs", "0", str(good)]) == 2
    assert main(["check", "--site", "no-such-site", str(good)]) == 2
    with pytest.raises(SystemExit) as e:
        main(["check"])
    assert e.value.code == 2


def test_verbose_lists_notices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_warc(tmp_path / "n.warc.gz", [warcinfo(), *capture("https://example.org/raw", b"x" * 3000,
                                                                     chunked=True, payload_convention="raw")])
    assert main(["check", str(path)]) == 0
    assert "payload-digest-raw: 1 (use -v to list them)" in capsys.readouterr().out
    assert main(["check", "-v", str(path)]) == 0
    assert "https://example.org/raw: WARC-Payload-Digest covers the raw" in capsys.readouterr().out


def test_index_writes_a_cdxj_beside_each_warc(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(good)]) == 0
    cdxj = good.with_name(good.name + ".cdxj")
    assert capsys.readouterr().out.strip() == str(cdxj)
    lines = cdxj.read_text().splitlines()
    urls = [json.loads(line.split(" ", 2)[2])["url"] for line in lines]
    assert "https://arxiv.org/abs/2108.07258" in urls and "https://arxiv.org/pdf/2108.07258v3" in urls
    assert lines == sorted(lines)


def test_index_of_several_files_into_one(good: Path, broken: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.cdxj"
    assert main(["index", "-o", str(out), str(good), str(broken)]) == 0
    names = {json.loads(line.split(" ", 2)[2])["filename"] for line in out.read_text().splitlines()}
    assert names == {good.name, broken.name}


def test_index_of_a_missing_file_fails_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "none.warc.gz")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
