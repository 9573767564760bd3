"""Packing a run into megawarcs: Archive Team's format exactly, checked inputs, atomic packs, run-state records."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archiver.cli import main
from archiver.queue import ItemOutcome, WarcFile
from archiver.queue.sqlite import SqliteQueue
from archiver.warc.check import check_file
from archiver.warc.megawarc import (
    JSON_SUFFIX,
    TAR_SUFFIX,
    WARC_SUFFIX,
    MegawarcError,
    MegawarcWriter,
    pack_run,
    paths_of,
    read_index,
    restore,
)

DATE = "2024-05-01T12:00:00Z"


def make_warc(path: Path, urls: list[str], info: dict[str, str] | None = None) -> Path:
    """A small sound WARC: warcinfo, then a response and its request per URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True, warc_version="WARC/1.1")
        w.write_record(w.create_warcinfo_record(path.name, info or {"software": "test"}))
        for url in urls:
            body = f"<html><title>{url}</title></html>".encode() * 20
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html"),
                                                  ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            resp = w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers,
                                        warc_headers_dict={"WARC-Date": DATE})
            req_headers = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.org")], is_http_request=True)
            req = w.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=req_headers,
                                       warc_headers_dict={"WARC-Date": DATE})
            req.rec_headers.add_header("WARC-Concurrent-To", resp.rec_headers.get_header("WARC-Record-ID"))
            w.write_record(resp)
            w.write_record(req)
    return path


def corrupt(path: Path) -> Path:
    """Flip bytes in the middle of the file: the gzip CRC (or deflate stream) no longer matches."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def errors(path: Path) -> list[str]:
    return [f.line() for f in check_file(path).findings if f.severity == "error"]


def megawarc_restore(base: str, out: Path) -> None:
    """megawarc's MegawarcRestorer, step by step (ArchiveTeam/megawarc, `megawarc restore`): what existing
    tooling does with our index."""
    with gzip.open(base + ".megawarc.json.gz", "rb") as json_in, open(out, "wb") as tar_out:
        for line in json_in:
            entry = json.loads(line)
            target = entry["target"]
            if target["container"] == "warc":
                tar_out.write(base64.b64decode(entry["header_base64"]))
                source = base + ".megawarc.warc.gz"
            elif target["container"] == "tar":
                source = base + ".megawarc.tar"
            else:
                raise AssertionError(f"unknown container {target['container']}")
            with open(source, "rb") as f:
                f.seek(target["offset"])
                data = f.read(target["size"])
                assert len(data) == target["size"], "megawarc raises 'End of file' here"
                tar_out.write(data)
            tar_out.write(b"\0" * ((tarfile.BLOCKSIZE - target["size"]) % tarfile.BLOCKSIZE))
        tar_out.write(b"\0" * ((tarfile.RECORDSIZE - tar_out.tell()) % tarfile.RECORDSIZE))


@pytest.fixture
def run(tmp_path) -> Path:
    d = tmp_path / "run"
    make_warc(d / "a-20240501120000-00001.warc.gz", ["https://example.org/a1", "https://example.org/a2"])
    make_warc(d / "warcs" / "b-20240501120000-00002.warc.gz", ["https://example.org/b"])
    make_warc(d / "c-20240501120000-00003.warc.gz", ["https://example.org/c"])
    return d


def only_pack(report):
    assert len(report.packs) == 1, report.packs
    return report.packs[0]


# ---- the format -----------------------------------------------------------------------------------------------
def test_pack_then_restore_gives_back_every_input_byte_for_byte(run, tmp_path):
    pack = only_pack(pack_run(run, jobs=1))
    assert [p.exists() for p in pack.paths] == [True, True, True]
    assert pack.base.parent == run / "packs"
    restored = restore(pack.base, tmp_path / "restored.tar")
    with tarfile.open(restored) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert members == {
        "a-20240501120000-00001.warc.gz": (run / "a-20240501120000-00001.warc.gz").read_bytes(),
        "c-20240501120000-00003.warc.gz": (run / "c-20240501120000-00003.warc.gz").read_bytes(),
        "warcs/b-20240501120000-00002.warc.gz": (run / "warcs/b-20240501120000-00002.warc.gz").read_bytes(),
    }


def test_megawarcs_own_restore_reads_our_index_to_the_same_tar(run, tmp_path):
    pack = only_pack(pack_run(run, jobs=1))
    ours = restore(pack.base, tmp_path / "ours.tar")
    megawarc_restore(str(pack.base), tmp_path / "theirs.tar")
    assert (tmp_path / "theirs.tar").read_bytes() == ours.read_bytes()


def test_the_index_has_megawarcs_fields_in_its_order_as_compact_json(run):
    pack = only_pack(pack_run(run, jobs=1))
    with gzip.open(paths_of(pack.base)[2], "rb") as f:
        raw = f.read().decode().splitlines()
    assert len(raw) == 3
    expected_header_fields = list(tarfile.TarInfo().get_info())
    position = 0
    for line in raw:
        entry = json.loads(line)
        assert json.dumps(entry, separators=(",", ":")) == line
        assert list(entry) == ["target", "src_offsets", "header_fields", "header_base64", "wget_at"]
        assert list(entry["target"]) == ["container", "offset", "size"]
        assert list(entry["src_offsets"]) == ["entry", "data", "next_entry"]
        assert list(entry["header_fields"]) == expected_header_fields
        header = base64.b64decode(entry["header_base64"])
        # The imaginary tar: each entry starts where the previous ended; data follows its header.
        size = entry["header_fields"]["size"]
        assert entry["src_offsets"] == {"entry": position, "data": position + len(header),
                                        "next_entry": position + len(header) + size + (-size % 512)}
        position = entry["src_offsets"]["next_entry"]
        assert entry["target"]["container"] == "warc" and entry["target"]["size"] == size


def test_tar_headers_are_megawarcs_gnu_headers_built_from_stat(run):
    pack = only_pack(pack_run(run, jobs=1))
    path = run / "warcs" / "b-20240501120000-00002.warc.gz"
    st = path.stat()
    [entry] = [e for e in read_index(pack.base) if e["header_fields"]["name"].startswith("warcs/")]
    header = base64.b64decode(entry["header_base64"])
    assert header[257:265] == b"ustar  \0"  # GNU magic, as tobuf(GNU_FORMAT) writes
    info = tarfile.TarInfo.frombuf(header[:512], "utf-8", "surrogateescape")
    assert (info.name, info.size, info.mode, info.uid, info.gid, info.mtime) == (
        "warcs/b-20240501120000-00002.warc.gz", st.st_size, st.st_mode & 0o7777, st.st_uid, st.st_gid,
        int(st.st_mtime))
    assert (info.uname, info.gname, info.type) == ("", "", tarfile.REGTYPE)
    fields = entry["header_fields"]
    # header_fields is tarfile's get_info() of that entry, as megawarc stores it (the mtime is os.stat's float).
    assert fields["mode"] == st.st_mode & 0o7777 and fields["mtime"] == st.st_mtime and fields["type"] == "0"


def test_the_warc_side_is_the_inputs_concatenated_and_checks_clean(run):
    pack = only_pack(pack_run(run, jobs=1))
    warc, tar, _ = pack.paths
    inputs = [run / "a-20240501120000-00001.warc.gz", run / "c-20240501120000-00003.warc.gz",
              run / "warcs" / "b-20240501120000-00002.warc.gz"]
    assert warc.read_bytes() == b"".join(p.read_bytes() for p in inputs)
    assert tar.stat().st_size == 0  # nothing failed: megawarc leaves the tar empty too
    assert errors(warc) == []
    with open(warc, "rb") as f:
        types = [r.rec_type for r in ArchiveIterator(f)]
    assert types.count("warcinfo") == 3 and types.count("response") == 4


def test_wget_at_metadata_is_read_from_the_warcinfo_like_megawarc_does(tmp_path):
    run = tmp_path / "run"
    make_warc(run / "x.warc.gz", ["https://example.org/x"],
              info={"x-wget-at-project-name": "arxiv", "x-wget-at-project-version": "20240501.01",
                    "x-wget-at-project-item-name": "paper:2108.07258"})
    make_warc(run / "y.warc.gz", ["https://example.org/y"])
    pack = only_pack(pack_run(run, jobs=1))
    by_name = {e["header_fields"]["name"]: e["wget_at"] for e in read_index(pack.base)}
    assert by_name == {"x.warc.gz": {"project_name": ["arxiv"], "project_version": ["20240501.01"],
                                     "project_item_name": ["paper:2108.07258"]},
                       "y.warc.gz": None}


# ---- what goes where ------------------------------------------------------------------------------------------
def test_a_warc_that_fails_the_check_goes_to_the_tar_side_and_still_restores(run, tmp_path):
    bad = corrupt(run / "c-20240501120000-00003.warc.gz")
    pack = only_pack(pack_run(run, jobs=1))
    [entry] = [e for e in pack.entries if e.container == "tar"]
    assert entry.arcname == "c-20240501120000-00003.warc.gz"
    assert entry.reason.startswith("fails the check: ")
    warc, tar, _ = pack.paths
    assert errors(warc) == []
    assert tar.stat().st_size % tarfile.RECORDSIZE == 0
    with tarfile.open(tar) as t:
        assert t.extractfile("c-20240501120000-00003.warc.gz").read() == bad.read_bytes()
    restored = restore(pack.base, tmp_path / "restored.tar")
    with tarfile.open(restored) as t:
        assert t.extractfile("c-20240501120000-00003.warc.gz").read() == bad.read_bytes()
        assert len(t.getmembers()) == 3


def test_open_files_of_an_unfinished_grab_are_never_packed(run):
    (run / "d-20240501120000-00004.warc.gz.open").write_bytes(b"half a WARC")
    report = pack_run(run, jobs=1)
    names = [e.arcname for e in only_pack(report).entries]
    assert not any(".open" in n for n in names)
    assert report.open_files == 1


def test_a_run_with_nothing_finished_makes_no_pack(tmp_path):
    (tmp_path / "x.warc.gz.open").write_bytes(b"partial")
    report = pack_run(tmp_path, jobs=1)
    assert report.packs == [] and report.open_files == 1
    assert not (tmp_path / "packs").exists()


def test_packing_again_only_packs_new_files(run):
    first = only_pack(pack_run(run, jobs=1))
    make_warc(run / "e-20240501120001-00005.warc.gz", ["https://example.org/e"])
    report = pack_run(run, jobs=1)
    second = only_pack(report)
    assert second.name != first.name
    assert [e.arcname for e in second.entries] == ["e-20240501120001-00005.warc.gz"]
    assert len([s for s in report.skipped if s[1] == "already in a pack"]) == 3
    assert pack_run(run, jobs=1).packs == []


def test_max_size_splits_packs(run):
    size = (run / "a-20240501120000-00001.warc.gz").stat().st_size
    report = pack_run(run, max_size=size + 1, jobs=1)
    assert [len(p.entries) for p in report.packs] == [1, 1, 1]
    assert len({p.name for p in report.packs}) == 3
    assert all(p.name.startswith("run-") for p in report.packs)


def test_the_output_prefix_is_used(run, tmp_path):
    pack = only_pack(pack_run(run, tmp_path / "out" / "arxiv-landmarks", jobs=1))
    assert pack.base.parent == tmp_path / "out"
    assert pack.name.startswith("arxiv-landmarks-")
    assert paths_of(pack.base)[0].name == pack.name + WARC_SUFFIX


# ---- atomicity ------------------------------------------------------------------------------------------------
def test_a_pack_that_fails_midway_leaves_no_files(run, monkeypatch):
    calls = []
    real_add = MegawarcWriter.add

    def failing_add(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(MegawarcWriter, "add", failing_add)
    with pytest.raises(OSError):
        pack_run(run, jobs=1)
    assert list((run / "packs").iterdir()) == []


def test_a_megawarc_is_never_overwritten(tmp_path):
    base = tmp_path / "p"
    (tmp_path / ("p" + TAR_SUFFIX)).write_bytes(b"")
    with pytest.raises(MegawarcError, match="already exists"):
        MegawarcWriter(base)


def test_restore_never_overwrites(run, tmp_path):
    pack = only_pack(pack_run(run, jobs=1))
    out = tmp_path / "exists.tar"
    out.write_bytes(b"keep me")
    with pytest.raises(MegawarcError, match="already exists"):
        restore(pack.base, out)
    assert out.read_bytes() == b"keep me"


def test_a_truncated_megawarc_fails_to_restore_with_its_name(run, tmp_path):
    pack = only_pack(pack_run(run, jobs=1))
    warc = paths_of(pack.base)[0]
    warc.write_bytes(warc.read_bytes()[:100])
    with pytest.raises(MegawarcError, match="truncated"):
        restore(pack.base, tmp_path / "r.tar")
    assert not (tmp_path / "r.tar").exists() and not (tmp_path / "r.tar.open").exists()


# ---- with the run's queue -------------------------------------------------------------------------------------
def finish(queue: SqliteQueue, run: Path, files: dict[str, list[str]]) -> None:
    queue.add(files)
    for claim in queue.claim("test", n=len(files)):
        warcs = tuple(WarcFile(f, (run / f).stat().st_size, sha256(run / f)) for f in files[claim.item])
        queue.done(claim.token, ItemOutcome(warcs=warcs))


@pytest.fixture
def queued_run(run):
    make_warc(run / "a-20240501120000-00004.warc.gz", ["https://example.org/a3"])
    with SqliteQueue(run / "state.sqlite") as q:
        finish(q, run, {"2108.07258": ["a-20240501120000-00001.warc.gz", "a-20240501120000-00004.warc.gz"],
                        "1706.03762": ["warcs/b-20240501120000-00002.warc.gz"]})
        q.add(["1810.04805"])  # still todo: its WARC (c-...) is not finished work
    return run


def test_packs_are_recorded_in_the_queue_with_their_items(queued_run):
    report = pack_run(queued_run, jobs=1)
    pack = only_pack(report)
    assert set(pack.items) == {"2108.07258", "1706.03762"}
    assert ("c-20240501120000-00003.warc.gz", report.skipped[0][1]) in report.skipped
    assert "no done item recorded it" in report.skipped[0][1]
    with SqliteQueue(queued_run / "state.sqlite") as q:
        [recorded] = q.packs()
        assert recorded.name == pack.name
        assert set(recorded.items) == {"2108.07258", "1706.03762"}
        assert set(recorded.files) == {"a-20240501120000-00001.warc.gz", "a-20240501120000-00004.warc.gz",
                                       "warcs/b-20240501120000-00002.warc.gz"}
        assert recorded.info["warc_size"] == pack.warc_size


def test_an_items_files_stay_in_one_pack_when_splitting(queued_run):
    report = pack_run(queued_run, max_size=1, jobs=1)
    assert [sorted(p.items) for p in report.packs] == [["2108.07258"], ["1706.03762"]]
    assert len(report.packs[0].entries) == 2


def test_a_file_changed_since_its_item_was_done_goes_to_the_tar_side(queued_run):
    path = queued_run / "warcs" / "b-20240501120000-00002.warc.gz"
    make_warc(path, ["https://example.org/b-changed"])  # still a sound WARC, but not the one recorded
    pack = only_pack(pack_run(queued_run, jobs=1))
    [moved] = [e for e in pack.entries if e.container == "tar"]
    assert moved.arcname == "warcs/b-20240501120000-00002.warc.gz"
    assert "differs from the" in moved.reason and "recorded" in moved.reason
    assert errors(pack.paths[0]) == []


def test_a_pack_the_queue_missed_is_recorded_when_packing_again(queued_run):
    pack = only_pack(pack_run(queued_run, jobs=1))
    with SqliteQueue(queued_run / "state.sqlite") as q:  # as if killed between the rename and the record
        q._db.execute("DELETE FROM pack_items")
        q._db.execute("DELETE FROM pack_files")
        q._db.execute("DELETE FROM packs")
    assert pack_run(queued_run, jobs=1).packs == []
    with SqliteQueue(queued_run / "state.sqlite") as q:
        [recorded] = q.packs()
        assert recorded.name == pack.name
        assert set(recorded.items) == {"2108.07258", "1706.03762"}


# ---- the command ----------------------------------------------------------------------------------------------
def test_archiver_pack_reports_each_pack(run, tmp_path, capsys):
    corrupt(run / "c-20240501120000-00003.warc.gz")
    (run / "z.warc.gz.open").write_bytes(b"")
    assert main(["pack", str(run), "-o", str(tmp_path / "p" / "demo"), "--max-size", "1G"]) == 0
    out = capsys.readouterr().out
    assert f"packed {tmp_path}/p/demo-" in out
    assert "2 WARCs" in out and "1 files in the .tar side" in out
    assert "c-20240501120000-00003.warc.gz went to the .tar side: fails the check" in out
    assert "1 .open files of an unfinished grab were left alone" in out
    assert len(list((tmp_path / "p").glob("*" + JSON_SUFFIX))) == 1


def test_archiver_pack_on_a_missing_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
