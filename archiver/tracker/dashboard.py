"""A project's live dashboard: GET /<project>/ is a page that keeps itself current by polling
GET /<project>/dashboard.json every few seconds.

It shows what universal-tracker's dashboard shows (reference: archiveteam-distributed.md §2, "Live stats"), from
the tracker's own store: items todo / claimed / done / failed, bytes, items per minute (the last minute and a
ten-minute chart), a leaderboard of downloaders by items and by bytes, recent completions, and the pipeline
versions active downloaders run.

Polling, not a push stream: universal-tracker needed a separate Node broadcaster and a Redis channel for its live
feed, and a held-open stream per viewer would keep every tracker process from restarting until each viewer left.
A snapshot costs a handful of store reads and is shared, per process, by everyone who asks within SNAPSHOT_TTL
seconds, so a thousand viewers cost what one does. The page itself is static: it fetches the snapshot from a
path relative to its own, writes values only as text (never as HTML: nicks, item names and versions come from
workers) and is served with a Content-Security-Policy that allows just its own inline script and style.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from archiver.tracker.protocol import Tracker
from archiver.tracker.state import RATE_BUCKET, RATE_KEPT, rate_bucket

SNAPSHOT_TTL = 1.0  # seconds a snapshot is shared between viewers (and tracker processes each make their own)
POLL_SECONDS = 2  # how often the page asks for a new snapshot
LEADERS = 50  # downloaders on the leaderboard (the top ones by bytes and the top ones by items)
ACTIVE_WINDOW = 3600  # seconds: a downloader whose last done is older does not count toward "active versions"
RATE_WINDOW = 60  # seconds of completions the items-per-minute figure counts
CHART_SECONDS = 600  # the chart's span
assert CHART_SECONDS <= RATE_KEPT and RATE_WINDOW <= RATE_KEPT


def snapshot(tracker: Tracker, slug: str) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values (404 unknown_project when there is no such project)."""
    project, queue = tracker.project(slug)
    now = tracker.clock()
    stats = queue.stats()
    tally = tracker.state.tally(slug)
    activity = tracker.state.activity(slug, now)

    current = rate_bucket(now)
    first_in_window = current - (RATE_WINDOW - RATE_BUCKET)
    in_window = sum(n for start, n in activity.buckets.items() if start >= first_in_window)
    # The newest bucket is still filling: divide by the time the counted buckets really cover.
    covered = RATE_WINDOW - RATE_BUCKET + max(now - current, 1.0)
    chart_start = current - CHART_SECONDS + RATE_BUCKET
    chart = [activity.buckets.get(start, 0) for start in range(chart_start, current + 1, RATE_BUCKET)]

    by_bytes = sorted(tally.items, key=lambda d: (-tally.bytes.get(d, 0), -tally.items[d], d))[:LEADERS]
    by_items = sorted(tally.items, key=lambda d: (-tally.items[d], -tally.bytes.get(d, 0), d))[:LEADERS]
    leaders = [{"downloader": d, "items": tally.items[d], "bytes": tally.bytes.get(d, 0)}
               for d in dict.fromkeys(by_bytes + by_items)]

    versions: dict[str, dict[str, Any]] = {}
    for _downloader, (at, version) in activity.active.items():
        if at <= now - ACTIVE_WINDOW:
            continue
        entry = versions.setdefault(version or "", {"version": version, "downloaders": 0, "last_seen": at})
        entry["downloaders"] += 1
        entry["last_seen"] = max(entry["last_seen"], at)

    return {
        "project": slug, "title": project.title or slug, "paused": project.paused,
        "min_version": project.min_version, "now": now,
        "counts": {"todo": stats.todo, "claimed": stats.claimed, "done": stats.done, "failed": stats.failed,
                   "total": stats.total},
        "bytes": sum(tally.bytes.values()), "domain_bytes": dict(tally.domains),
        "downloaders": len(tally.items),
        "items_per_minute": round(in_window * 60.0 / covered, 1),
        "chart": {"bucket_seconds": RATE_BUCKET, "items": chart},
        "leaderboard": leaders,
        "recent": [{"at": c.at, "downloader": c.downloader, "items": c.items, "names": list(c.names),
                    "bytes": c.bytes, "version": c.version} for c in activity.recent],
        "versions": sorted(versions.values(), key=lambda v: (-v["downloaders"], v["version"] or "")),
        "poll_seconds": POLL_SECONDS,
    }


class _Snapshots:
    """A snapshot per project, shared by every viewer for SNAPSHOT_TTL seconds. Snapshots are made one at a time:
    whoever finds one stale makes the next while the others wait for it instead of reading the store too."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._making = threading.Lock()
        self._made: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, slug: str) -> dict[str, Any]:
        with self._making:
            made = self._made.get(slug)
            if made is not None and time.monotonic() - made[0] < SNAPSHOT_TTL:
                return made[1]
            value = snapshot(self.tracker, slug)  # only projects that exist get this far (else 404)
            self._made[slug] = (time.monotonic(), value)
            return value


@cache
def page() -> tuple[str, str]:
    """The page, and a Content-Security-Policy that allows its inline script and style by their hashes."""
    html = resources.files("archiver.tracker").joinpath("dashboard.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                        for b in bodies)

    policy = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return html, policy


def dashboard_routes(tracker: Tracker) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    snapshots = _Snapshots(tracker)

    @router.get("/{slug}/", summary="The project's live dashboard (HTML)", response_class=HTMLResponse)
    async def dashboard(slug: str) -> HTMLResponse:
        await tracker.project_async(slug)  # 404 unknown_project for a slug that is none
        html, policy = page()
        return HTMLResponse(html, headers={"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})

    @router.get("/{slug}/dashboard.json", summary="What the dashboard shows: counts, bytes, items per minute, "
                                                  "leaderboard, recent completions, active versions")
    async def dashboard_json(slug: str) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(snapshots.get, slug), headers={"Cache-Control": "no-store"})

    return router
