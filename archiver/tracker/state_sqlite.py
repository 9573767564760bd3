"""The tracker's state in SQLite: DIR/tracker.sqlite, with each project's queue in DIR/queues/<slug>.sqlite.

Same discipline as the SQLite item store: WAL, and every change one `BEGIN IMMEDIATE` transaction, so tracker
processes on one machine (uvicorn --workers) see one consistent state.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from archiver.queue import ItemQueue, QueueError
from archiver.queue.sqlite import SqliteQueue
from archiver.tracker.budgets import (
    BUDGET_RETRY_AFTER,
    Admission,
    budget_left,
    gcra,
    rate_burst,
    rate_interval,
)
from archiver.tracker.projects import Project
from archiver.tracker.state import (
    ACTIVE_KEPT,
    NAMES_KEPT,
    RATE_KEPT,
    RECENT_KEPT,
    Activity,
    Completion,
    DoneTally,
    TrackerState,
    rate_bucket,
)

STATE_FILE = "tracker.sqlite"
QUEUES_DIR = "queues"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (slug TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (slug TEXT NOT NULL, who TEXT NOT NULL, PRIMARY KEY (slug, who)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rates (slug TEXT PRIMARY KEY, tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS holds (
    slug TEXT NOT NULL, downloader TEXT NOT NULL, item TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (slug, downloader, item)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done_by (
    slug TEXT NOT NULL, downloader TEXT NOT NULL, items INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (slug, downloader)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done_domains (
    slug TEXT NOT NULL, domain TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (slug, domain)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done_recent (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS done_recent_slug ON done_recent (slug, id);
CREATE TABLE IF NOT EXISTS done_active (
    slug TEXT NOT NULL, downloader TEXT NOT NULL, at REAL NOT NULL, version TEXT, PRIMARY KEY (slug, downloader)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done_rate (
    slug TEXT NOT NULL, bucket INTEGER NOT NULL, items INTEGER NOT NULL, PRIMARY KEY (slug, bucket)
) WITHOUT ROWID;
"""


class SqliteState(TrackerState):
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).resolve()
        self.url = "sqlite:///" + str(self.dir)
        self.default_uploads = self.dir / "uploads"
        self._lock = threading.RLock()
        try:
            (self.dir / QUEUES_DIR).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.dir / STATE_FILE), timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except sqlite3.DatabaseError as e:
            raise QueueError(f"cannot open the tracker store {self.dir / STATE_FILE}: {e}") from None
        except OSError as e:
            raise QueueError(f"cannot open the tracker store in {self.dir}: {e.strerror or e}") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- projects ------------------------------------------------------------------------------------------
    def projects(self) -> list[Project]:
        return [Project.from_json(c) for (c,) in self._read("SELECT config FROM projects ORDER BY slug")]

    def project(self, slug: str) -> Project | None:
        rows = self._read("SELECT config FROM projects WHERE slug = ?", (slug,))
        return Project.from_json(rows[0][0]) if rows else None

    def save_project(self, project: Project) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO projects (slug, config) VALUES (?, ?)", (project.slug, project.to_json()))

    def open_queue(self, project: Project, clock: Callable[[], float] = time.time) -> ItemQueue:
        return SqliteQueue(self.dir / QUEUES_DIR / f"{project.slug}.sqlite", lease=project.lease,
                           max_attempts=project.max_attempts, clock=clock)

    # ---- admission -----------------------------------------------------------------------------------------
    def admit(self, project: Project, downloader: str, ip: str, n: int, now: float) -> Admission:
        slug = project.slug
        if project.budget <= 0 and not rate_interval(project.rate_limit):
            # Nothing to charge: the block list is all there is to read, and a read needs no write lock.
            if self._read("SELECT 1 FROM blocks WHERE slug = ? AND who IN (?, ?)", (slug, downloader, ip)):
                return Admission(refused="blocked")
            return Admission(granted=n)
        with self._write() as db:
            if db.execute("SELECT 1 FROM blocks WHERE slug = ? AND who IN (?, ?)", (slug, downloader, ip)).fetchone():
                return Admission(refused="blocked")
            held = 0
            if project.budget > 0:
                db.execute("DELETE FROM holds WHERE slug = ? AND downloader = ? AND expires <= ?",
                           (slug, downloader, now))
                held = db.execute("SELECT count(*) FROM holds WHERE slug = ? AND downloader = ?",
                                  (slug, downloader)).fetchone()[0]
                left = budget_left(project.budget, held)
                if left == 0:
                    return Admission(refused="budget", retry_after=BUDGET_RETRY_AFTER, held=held)
                n = min(n, left)
            interval = rate_interval(project.rate_limit)
            if interval:
                row = db.execute("SELECT tat FROM rates WHERE slug = ?", (slug,)).fetchone()
                tat, wait = gcra(row[0] if row else None, now, n, interval, rate_burst(project.rate_limit))
                if wait:
                    return Admission(refused="rate", retry_after=wait, held=held)
                db.execute("INSERT OR REPLACE INTO rates (slug, tat) VALUES (?, ?)", (slug, tat))
            return Admission(granted=n, held=held)

    def refund(self, project: Project, n: int) -> None:
        interval = rate_interval(project.rate_limit)
        if interval and n > 0:
            with self._write() as db:
                db.execute("UPDATE rates SET tat = tat - ? WHERE slug = ?", (n * interval, project.slug))

    def hold(self, slug: str, downloader: str, leases: Mapping[str, float]) -> None:
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO holds (slug, downloader, item, expires) VALUES (?, ?, ?, ?)",
                           [(slug, downloader, item, expires) for item, expires in leases.items()])

    def let_go(self, slug: str, downloader: str, items: Iterable[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM holds WHERE slug = ? AND downloader = ? AND item = ?",
                           [(slug, downloader, item) for item in items])

    def forget_holds(self, slug: str, downloader: str | None = None) -> None:
        with self._write() as db:
            if downloader is None:
                db.execute("DELETE FROM holds WHERE slug = ?", (slug,))
            else:
                db.execute("DELETE FROM holds WHERE slug = ? AND downloader = ?", (slug, downloader))

    # ---- block lists ---------------------------------------------------------------------------------------
    def block(self, slug: str, who: str) -> bool:
        with self._write() as db:
            return db.execute("INSERT OR IGNORE INTO blocks (slug, who) VALUES (?, ?)", (slug, who)).rowcount == 1

    def unblock(self, slug: str, who: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM blocks WHERE slug = ? AND who = ?", (slug, who)).rowcount == 1

    def blocked(self, slug: str) -> list[str]:
        return [w for (w,) in self._read("SELECT who FROM blocks WHERE slug = ? ORDER BY who", (slug,))]

    # ---- tallies -------------------------------------------------------------------------------------------
    def record_done(self, slug: str, downloader: str, names: Sequence[str], domain_bytes: Mapping[str, int],
                    version: str | None, now: float) -> None:
        total = sum(domain_bytes.values())
        entry = json.dumps({"at": now, "downloader": downloader, "items": len(names),
                            "names": list(names[:NAMES_KEPT]), "bytes": total, "version": version or None})
        bucket = rate_bucket(now)
        with self._write() as db:
            db.execute("INSERT INTO done_by (slug, downloader, items, bytes) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (slug, downloader) DO UPDATE SET items = items + excluded.items, "
                       "bytes = bytes + excluded.bytes", (slug, downloader, len(names), total))
            db.executemany("INSERT INTO done_domains (slug, domain, bytes) VALUES (?, ?, ?) "
                           "ON CONFLICT (slug, domain) DO UPDATE SET bytes = bytes + excluded.bytes",
                           [(slug, domain, n) for domain, n in domain_bytes.items()])
            # The dashboard's records, each kept bounded as it is written: no sweeper needed.
            db.execute("INSERT INTO done_recent (slug, entry) VALUES (?, ?)", (slug, entry))
            db.execute("DELETE FROM done_recent WHERE slug = ? AND id <= (SELECT id FROM done_recent WHERE slug = ? "
                       "ORDER BY id DESC LIMIT 1 OFFSET ?)", (slug, slug, RECENT_KEPT))
            db.execute("INSERT OR REPLACE INTO done_active (slug, downloader, at, version) VALUES (?, ?, ?, ?)",
                       (slug, downloader, now, version or None))
            db.execute("INSERT INTO done_rate (slug, bucket, items) VALUES (?, ?, ?) ON CONFLICT (slug, bucket) "
                       "DO UPDATE SET items = items + excluded.items", (slug, bucket, len(names)))
            db.execute("DELETE FROM done_rate WHERE slug = ? AND bucket < ?", (slug, bucket - RATE_KEPT))

    def tally(self, slug: str) -> DoneTally:
        rows = self._read("SELECT downloader, items, bytes FROM done_by WHERE slug = ?", (slug,))
        domains = self._read("SELECT domain, bytes FROM done_domains WHERE slug = ?", (slug,))
        return DoneTally({d: i for d, i, _b in rows}, {d: b for d, _i, b in rows}, dict(domains))

    def activity(self, slug: str, now: float) -> Activity:
        recent = self._read("SELECT entry FROM done_recent WHERE slug = ? ORDER BY id DESC LIMIT ?", (slug, RECENT_KEPT))
        active = self._read("SELECT downloader, at, version FROM done_active WHERE slug = ? AND at > ?",
                            (slug, now - ACTIVE_KEPT))
        buckets = self._read("SELECT bucket, items FROM done_rate WHERE slug = ? AND bucket >= ?",
                             (slug, rate_bucket(now) - RATE_KEPT))
        return Activity(tuple(Completion.from_mapping(json.loads(e)) for (e,) in recent),
                        {d: (at, v) for d, at, v in active}, dict(buckets))
