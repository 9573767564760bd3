"""The SQLite store: the shared queue contract, plus what only this store does (FIFO order, WAL, packs, URLs)."""

from __future__ import annotations

import sqlite3

import pytest
from queue_contract import LEASE, ManualClock, QueueContract  # tests/ is on sys.path (conftest.py)

from archiver.errors import UsageError
from archiver.queue import ItemOutcome, QueueError, UnknownItem, WarcFile, open_store
from archiver.queue.sqlite import SqliteQueue


class TestSqliteContract(QueueContract):
    @pytest.fixture
    def make_queue(self, tmp_path):
        def make(**options):
            return SqliteQueue(tmp_path / "state.sqlite", **options)
        return make


@pytest.fixture
def q(tmp_path):
    queue = SqliteQueue(tmp_path / "state.sqlite", lease=LEASE, clock=ManualClock())
    yield queue
    queue.close()


def test_items_are_claimed_in_the_order_they_were_added(q):
    q.add(["c", "a", "b"])
    assert [c.item for c in q.claim("w", n=3)] == ["c", "a", "b"]


def test_the_database_runs_in_wal_mode(q):
    with sqlite3.connect(q.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_store_understands_sqlite_urls_and_plain_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///run/state.sqlite")
    assert relative.path == tmp_path / "run" / "state.sqlite"
    absolute = open_store(f"sqlite:///{tmp_path}/abs.sqlite")
    assert absolute.path == tmp_path / "abs.sqlite"
    plain = open_store(tmp_path / "plain.sqlite", max_attempts=5)
    assert plain.max_attempts == 5
    again = open_store(relative.url)
    assert again.path == relative.path
    for queue in (relative, absolute, plain, again):
        queue.close()


@pytest.mark.parametrize("url, message", [
    ("postgres://db/x", "unknown queue store 'postgres'"),
    ("sqlite://", "sqlite:///relative/path"),
    ("", "needs a file path"),
])
def test_open_store_says_which_urls_work(url, message):
    with pytest.raises(UsageError, match=message):
        open_store(url)


def test_a_file_that_is_not_a_queue_is_refused_with_its_name(tmp_path):
    junk = tmp_path / "state.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(QueueError, match="state.sqlite"):
        SqliteQueue(junk)


def test_a_queue_from_a_newer_archiver_is_refused(tmp_path):
    SqliteQueue(tmp_path / "state.sqlite").close()
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(QueueError, match="newer archiver"):
        SqliteQueue(tmp_path / "state.sqlite")


@pytest.mark.parametrize("options", [{"lease": 0}, {"max_attempts": 0}])
def test_nonsense_limits_are_refused(tmp_path, options):
    with pytest.raises(QueueError):
        SqliteQueue(tmp_path / "state.sqlite", **options)


def _finish(q: SqliteQueue, warcs: dict[str, list[str]]) -> None:
    q.add(warcs)
    for claim in q.claim("w", n=len(warcs)):
        files = tuple(WarcFile(f, 100, f"{len(f):064x}") for f in warcs[claim.item])
        q.done(claim.token, ItemOutcome(warcs=files))


def test_warc_files_maps_each_file_to_the_items_that_wrote_it(q):
    _finish(q, {"2108.07258": ["a-1.warc.gz", "a-2.warc.gz"], "1706.03762": ["b-1.warc.gz"]})
    files = q.warc_files()
    assert sorted(files) == ["a-1.warc.gz", "a-2.warc.gz", "b-1.warc.gz"]
    assert files["b-1.warc.gz"][1] == ["1706.03762"]
    assert files["a-1.warc.gz"][0] == WarcFile("a-1.warc.gz", 100, f"{11:064x}")


def test_record_pack_remembers_its_items_and_files(q):
    _finish(q, {"2108.07258": ["a-1.warc.gz"], "1706.03762": ["b-1.warc.gz"]})
    q.record_pack("run-20260101000000-0001", ["2108.07258", "1706.03762"], ["a-1.warc.gz", "b-1.warc.gz"],
                  info={"warc_size": 200})
    [pack] = q.packs()
    assert pack.name == "run-20260101000000-0001"
    assert pack.items == ("2108.07258", "1706.03762")
    assert pack.files == ("a-1.warc.gz", "b-1.warc.gz")
    assert pack.info == {"warc_size": 200}
    assert q.packed_files() == {"a-1.warc.gz", "b-1.warc.gz"}


def test_record_pack_refuses_unknown_items_and_reused_names(q):
    _finish(q, {"2108.07258": ["a-1.warc.gz"]})
    with pytest.raises(UnknownItem, match="9999.99999"):
        q.record_pack("p1", ["9999.99999"])
    assert q.packs() == []
    q.record_pack("p1", ["2108.07258"])
    with pytest.raises(QueueError, match="already recorded"):
        q.record_pack("p1", ["2108.07258"])
