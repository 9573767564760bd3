"""The embedded item store: one SQLite file beside a run's output (DIR/state.sqlite).

Why it is safe with several processes: the database runs in WAL mode (readers never block the writer) and every
state change is one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before reading, so two
processes claiming at once are serialised and never pick the same todo row. `synchronous=NORMAL` may lose the
last transactions on a power cut (never corrupts): at worst an item is fetched again.

Why it is fast enough for 100,000 items: claims, lease expiry and resume use partial indexes that hold only
todo or claimed rows, so a queue with 50,000 items done costs the same to resume as an empty one.

Besides the queue, the store records which items and WARC files went into which megawarc pack (`record_pack`);
packs are a local-run notion, so they are not part of the ItemQueue interface.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.queue.base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    Claim,
    ItemOutcome,
    ItemQueue,
    ItemRecord,
    ItemState,
    NotClaimant,
    QueueError,
    QueueStats,
    UnknownItem,
    WarcFile,
)

SCHEMA_VERSION = 1
_PAGE = 1000  # rows per query when iterating, so a long iteration never holds the lock between pages

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'todo' CHECK (state IN ('todo', 'claimed', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    claimant TEXT,
    token TEXT,
    lease_expires REAL,
    lease_seconds REAL,
    last_error TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    timings TEXT,
    extra TEXT,
    added REAL NOT NULL,
    claimed_at REAL,
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_token ON items(token) WHERE token IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_todo ON items(id) WHERE state = 'todo';
CREATE INDEX IF NOT EXISTS items_claimed ON items(lease_expires) WHERE state = 'claimed';
CREATE TABLE IF NOT EXISTS warc_files (
    item_id INTEGER NOT NULL REFERENCES items(id),
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (item_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS warc_files_name ON warc_files(name);
CREATE TABLE IF NOT EXISTS packs (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pack_items (
    pack TEXT NOT NULL REFERENCES packs(name),
    item_id INTEGER NOT NULL REFERENCES items(id),
    PRIMARY KEY (pack, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pack_files (
    pack TEXT NOT NULL REFERENCES packs(name),
    name TEXT NOT NULL,
    PRIMARY KEY (pack, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pack_files_name ON pack_files(name);
"""

# One statement for "these claims are over": back to todo, or failed once the tries are used up. Used for
# expired leases and for requeue_claims; parameters: max_attempts, reason, now.
_END_CLAIMS = """
UPDATE items SET
    state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'todo' END,
    last_error = ? || ' (claimed by ' || claimant || ', try ' || attempts || ')',
    token = NULL, claimant = NULL, lease_expires = NULL, lease_seconds = NULL, updated = ?
WHERE state = 'claimed'"""

_ITEM_COLUMNS = "id, name, state, attempts, claimant, lease_expires, last_error, bytes, timings, extra, updated"


@dataclass(frozen=True)
class PackRecord:
    """A megawarc pack as the run state knows it."""

    name: str
    created: float
    items: tuple[str, ...]
    files: tuple[str, ...]
    info: dict[str, Any]


class SqliteQueue(ItemQueue):
    """ItemQueue on one SQLite file. One instance per process; its methods may be called from any thread."""

    def __init__(self, path: str | Path, *, lease: float = DEFAULT_LEASE,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, clock: Callable[[], float] = time.time) -> None:
        if lease <= 0:
            raise QueueError(f"a lease must be a positive number of seconds, not {lease}")
        if max_attempts < 1:
            raise QueueError(f"max_attempts must be at least 1, not {max_attempts}")
        self.path = Path(path).resolve()
        self.url = "sqlite:///" + str(self.path)
        self.lease = float(lease)
        self.max_attempts = int(max_attempts)
        self.clock = clock
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write below opens its own BEGIN IMMEDIATE.
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._write():
                self._create_schema()
        except sqlite3.DatabaseError as e:
            raise QueueError(f"cannot open the queue {self.path}: {e} (is it an archiver state file?)") from e
        except OSError as e:
            raise QueueError(f"cannot open the queue {self.path}: {e.strerror or e}") from e

    def _create_schema(self) -> None:
        # executescript would COMMIT our transaction; run the statements one by one inside it instead.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise QueueError(f"{self.path} was written by a newer archiver (queue schema {row[0]}, this one "
                             f"reads {SCHEMA_VERSION}); upgrade archiver to resume this run")

    # ---- transactions --------------------------------------------------------------------------------------
    class _Tx:
        def __init__(self, queue: SqliteQueue) -> None:
            self.q = queue

        def __enter__(self) -> sqlite3.Connection:
            self.q._lock.acquire()
            try:
                self.q._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.q._lock.release()
                raise
            return self.q._db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            try:
                self.q._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.q._lock.release()

    def _write(self) -> SqliteQueue._Tx:
        return SqliteQueue._Tx(self)

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- the queue -----------------------------------------------------------------------------------------
    def add(self, names: Iterable[str]) -> int:
        now = self.clock()

        def rows() -> Iterator[tuple[str, float, float]]:
            for name in names:
                if not isinstance(name, str) or not name or "\0" in name or name != name.strip():
                    raise QueueError(f"{name!r} is not an item name: names are non-empty strings without NUL "
                                     "characters or surrounding spaces")
                yield name, now, now

        with self._write() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO items (name, added, updated) VALUES (?, ?, ?)", rows())
            return db.total_changes - before

    def claim(self, claimant: str, n: int = 1, lease: float | None = None) -> list[Claim]:
        if not claimant:
            raise QueueError("a claim needs a claimant id (who is working on the item)")
        if n < 1:
            return []
        seconds = self.lease if lease is None else float(lease)
        if seconds <= 0:
            raise QueueError(f"a lease must be a positive number of seconds, not {lease}")
        now = self.clock()
        expires = now + seconds
        with self._write() as db:
            db.execute(_END_CLAIMS + " AND lease_expires <= ?", (self.max_attempts, "lease expired", now, now))
            picked = db.execute("SELECT id, name, attempts FROM items WHERE state = 'todo' ORDER BY id LIMIT ?",
                                (n,)).fetchall()
            claims = [Claim(name, secrets.token_hex(16), claimant, expires, attempts + 1)
                      for _id, name, attempts in picked]
            db.executemany(
                "UPDATE items SET state = 'claimed', token = ?, claimant = ?, lease_expires = ?, lease_seconds = ?,"
                " attempts = attempts + 1, claimed_at = ?, updated = ? WHERE id = ?",
                [(c.token, claimant, expires, seconds, now, now, row[0]) for c, row in zip(claims, picked, strict=True)])
        return claims

    def _claimed(self, db: sqlite3.Connection, token: str) -> tuple:
        row = db.execute("SELECT id, name, state, attempts, claimant, lease_seconds FROM items WHERE token = ?",
                         (token,)).fetchone() if token else None
        if row is None:
            raise NotClaimant("that claim token is not current: the item was released, failed, or claimed by "
                              "someone else after the lease expired (heartbeat more often than the lease)")
        return row

    def heartbeat(self, token: str, lease: float | None = None) -> Claim:
        now = self.clock()
        with self._write() as db:
            item_id, name, state, attempts, claimant, lease_seconds = self._claimed(db, token)
            if state != ItemState.CLAIMED:
                raise NotClaimant(f"{name} is {state}, not claimed: there is no lease to extend")
            seconds = lease_seconds if lease is None else float(lease)
            if seconds <= 0:
                raise QueueError(f"a lease must be a positive number of seconds, not {lease}")
            db.execute("UPDATE items SET lease_expires = ?, lease_seconds = ?, updated = ? WHERE id = ?",
                       (now + seconds, seconds, now, item_id))
        return Claim(name, token, claimant, now + seconds, attempts)

    def done(self, token: str, outcome: ItemOutcome | None = None) -> None:
        outcome = outcome or ItemOutcome()
        now = self.clock()
        with self._write() as db:
            item_id, name, state, _attempts, _claimant, _lease = self._claimed(db, token)
            if state == ItemState.DONE:
                return  # the same claimant saying it again (a retried HTTP request): already recorded
            db.execute("UPDATE items SET state = 'done', lease_expires = NULL, lease_seconds = NULL, "
                       "last_error = NULL, bytes = ?, timings = ?, extra = ?, updated = ? WHERE id = ?",
                       (int(outcome.bytes), json.dumps(dict(outcome.timings)), json.dumps(dict(outcome.extra)),
                        now, item_id))
            db.execute("DELETE FROM warc_files WHERE item_id = ?", (item_id,))
            db.executemany("INSERT OR REPLACE INTO warc_files (item_id, name, size, sha256) VALUES (?, ?, ?, ?)",
                           [(item_id, w.name, int(w.size), w.sha256) for w in outcome.warcs])

    def fail(self, token: str, reason: str, retry: bool = True) -> ItemState:
        now = self.clock()
        with self._write() as db:
            item_id, name, state, attempts, _claimant, _lease = self._claimed(db, token)
            if state != ItemState.CLAIMED:
                raise NotClaimant(f"{name} is already {state}; only a claimed item can fail")
            new = ItemState.TODO if retry and attempts < self.max_attempts else ItemState.FAILED
            db.execute("UPDATE items SET state = ?, last_error = ?, token = NULL, claimant = NULL, "
                       "lease_expires = NULL, lease_seconds = NULL, updated = ? WHERE id = ?",
                       (new.value, str(reason), now, item_id))
        return new

    def release(self, token: str) -> None:
        now = self.clock()
        with self._write() as db:
            item_id, name, state, _attempts, _claimant, _lease = self._claimed(db, token)
            if state != ItemState.CLAIMED:
                raise NotClaimant(f"{name} is already {state}; only a claimed item can be released")
            db.execute("UPDATE items SET state = 'todo', attempts = MAX(attempts - 1, 0), token = NULL, "
                       "claimant = NULL, lease_expires = NULL, lease_seconds = NULL, updated = ? WHERE id = ?",
                       (now, item_id))

    def requeue_claims(self, claimant: str | None = None, reason: str = "claim requeued") -> int:
        now = self.clock()
        sql, params = _END_CLAIMS, (self.max_attempts, reason, now)
        if claimant is not None:
            sql, params = sql + " AND claimant = ?", params + (claimant,)
        with self._write() as db:
            return db.execute(sql, params).rowcount

    def reset_failed(self) -> int:
        with self._write() as db:
            return db.execute("UPDATE items SET state = 'todo', attempts = 0, updated = ? WHERE state = 'failed'",
                              (self.clock(),)).rowcount

    def claim_of(self, name: str) -> Claim | None:
        rows = self._read("SELECT state, token, claimant, lease_expires, attempts FROM items WHERE name = ?",
                          (name,))
        if not rows:
            raise UnknownItem(f"{name!r} is not in the queue {self.path}")
        state, token, claimant, expires, attempts = rows[0]
        return Claim(name, token, claimant, expires, attempts) if state == ItemState.CLAIMED else None

    def claim_status(self, token: str) -> tuple[str, ItemState] | None:
        # A claim's token stays on its row while claimed and once done; every other end of a claim clears it.
        rows = self._read("SELECT name, state FROM items WHERE token = ?", (token,)) if token else []
        if not rows or rows[0][1] not in (ItemState.CLAIMED, ItemState.DONE):
            return None
        return rows[0][0], ItemState(rows[0][1])

    def get(self, name: str) -> ItemRecord:
        with self._lock:
            rows = self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE name = ?", (name,)).fetchall()
            if not rows:
                raise UnknownItem(f"{name!r} is not in the queue {self.path}")
            return self._records(rows)[0]

    def items(self, state: ItemState | str | None = None) -> Iterator[ItemRecord]:
        where, params = "", ()
        if state is not None:
            try:
                where, params = "state = ? AND ", (ItemState(state).value,)
            except ValueError:
                raise QueueError(f"{state!r} is not an item state (todo, claimed, done or failed)") from None
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE {where}id > ? ORDER BY id "
                                        f"LIMIT {_PAGE}", params + (last,)).fetchall()
                records = self._records(rows)
            yield from records
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def _records(self, rows: list[tuple]) -> list[ItemRecord]:
        done_ids = [r[0] for r in rows if r[2] == ItemState.DONE]
        warcs: dict[int, list[WarcFile]] = {i: [] for i in done_ids}
        if done_ids:
            marks = ",".join("?" * len(done_ids))
            for item_id, name, size, sha in self._db.execute(
                    f"SELECT item_id, name, size, sha256 FROM warc_files WHERE item_id IN ({marks}) "
                    "ORDER BY item_id, name", done_ids):
                warcs[item_id].append(WarcFile(name, size, sha))
        out = []
        for item_id, name, state, attempts, claimant, expires, error, nbytes, timings, extra, updated in rows:
            outcome = None
            if state == ItemState.DONE:
                outcome = ItemOutcome(tuple(warcs[item_id]), nbytes, json.loads(timings or "{}"),
                                      json.loads(extra or "{}"))
            out.append(ItemRecord(name, ItemState(state), attempts, claimant, expires, error, outcome, updated))
        return out

    def stats(self) -> QueueStats:
        counts = dict(self._read("SELECT state, count(*) FROM items GROUP BY state"))
        nbytes = self._read("SELECT coalesce(sum(bytes), 0) FROM items WHERE state = 'done'")[0][0]
        return QueueStats(counts.get("todo", 0), counts.get("claimed", 0), counts.get("done", 0),
                          counts.get("failed", 0), nbytes)

    # ---- packs (local runs only) ---------------------------------------------------------------------------
    def warc_files(self) -> dict[str, tuple[WarcFile, list[str]]]:
        """Every WARC file done items produced: name -> (the file as recorded, the items that wrote to it)."""
        out: dict[str, tuple[WarcFile, list[str]]] = {}
        for file, size, sha, item in self._read(
                "SELECT w.name, w.size, w.sha256, i.name FROM warc_files w JOIN items i ON i.id = w.item_id "
                "WHERE i.state = 'done' ORDER BY w.name, i.id"):
            out.setdefault(file, (WarcFile(file, size, sha), []))[1].append(item)
        return out

    def record_pack(self, pack: str, items: Iterable[str], files: Iterable[str] = (),
                    info: dict[str, Any] | None = None) -> None:
        """Record that megawarc `pack` holds these items and files (names relative to the run directory)."""
        items, files = list(dict.fromkeys(items)), list(dict.fromkeys(files))
        with self._write() as db:
            if db.execute("SELECT 1 FROM packs WHERE name = ?", (pack,)).fetchone():
                raise QueueError(f"a pack named {pack} is already recorded in {self.path}")
            ids = []
            for name in items:
                row = db.execute("SELECT id FROM items WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise UnknownItem(f"pack {pack} names {name!r}, which is not in the queue {self.path}")
                ids.append(row[0])
            db.execute("INSERT INTO packs (name, created, info) VALUES (?, ?, ?)",
                       (pack, self.clock(), json.dumps(info or {})))
            db.executemany("INSERT INTO pack_items (pack, item_id) VALUES (?, ?)", [(pack, i) for i in ids])
            db.executemany("INSERT INTO pack_files (pack, name) VALUES (?, ?)", [(pack, f) for f in files])

    def packs(self) -> list[PackRecord]:
        out = []
        for name, created, info in self._read("SELECT name, created, info FROM packs ORDER BY created, name"):
            items = tuple(r[0] for r in self._read(
                "SELECT i.name FROM pack_items p JOIN items i ON i.id = p.item_id WHERE p.pack = ? ORDER BY i.id",
                (name,)))
            files = tuple(r[0] for r in self._read("SELECT name FROM pack_files WHERE pack = ? ORDER BY name",
                                                   (name,)))
            out.append(PackRecord(name, created, items, files, json.loads(info)))
        return out

    def packed_files(self) -> set[str]:
        """Names of the files some recorded pack already holds."""
        return {r[0] for r in self._read("SELECT name FROM pack_files")}
