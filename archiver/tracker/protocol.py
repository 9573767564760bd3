"""What the tracker answers: Archive Team's seesaw protocol (request, done, upload, release) plus heartbeat and
fail, as plain synchronous calls over the store. archiver.tracker.app puts HTTP around them. The two calls every
worker makes per item also come as coroutines (`request_async`, `done_async`) for a store that has an event-loop
client (Redis): the same checks and answers around the store's one-step `handout` and `finish`.

Wire compatibility (see /work/shared/reference/archiveteam-distributed.md §1–2):

- ``request`` answers ``{"item_name": NAME, ...}``; with ``multi=N`` several names joined by NUL. Extra keys are
  the project's `extra` and the claim itself (tokens, lease), which seesaw copies into its item unread.
- ``done`` answers exactly ``OK``; ``release`` answers ``Released OK.``.
- ``upload`` answers ``{"upload_target": "http(s)://.../"}``: seesaw then runs ``curl --upload-file F TARGET``,
  an HTTP PUT to TARGET/<basename>. The claim tokens ride in the URL's user-info as HTTP Basic credentials,
  since seesaw cannot add headers to that curl.

Where we are stricter than universal-tracker, every refusal is a `Refusal` with a status and a reason:
``done``/``release``/``fail``/``heartbeat`` only from the item's claimant (its nick, or its claim tokens when the
worker sends them), else 409 and nothing changes; "queue empty" (404 no_items) and "your budget is spent"
(429 budget_exhausted) are told apart; 429 carries Retry-After; versions are compared as versions.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from archiver.errors import ArchiverError
from archiver.queue import Claim, ItemQueue, ItemState, NotClaimant, UnknownItem
from archiver.tracker.projects import Project
from archiver.tracker.state import MAX_BYTES, ClaimProblem, Finished, Handout, TrackerState, check_claims

NICK_RE = re.compile(r"^[-_a-zA-Z0-9]{3,30}$")  # seesaw's own rule for downloader names
MAX_MULTI = 100  # items per request; Archive Team pipelines ask for up to a few dozen
MAX_REASON = 2000
PAUSED_RETRY_AFTER = 60
EMPTY_RETRY_AFTER = 60
PROJECT_CACHE_SECONDS = 2.0  # how stale another process's project change may look (pause, limits)


class Refusal(ArchiverError):
    """A request the tracker turns down: HTTP `status`, a stable `error` code, and a message to act on."""

    def __init__(self, status: int, error: str, message: str, retry_after: float | None = None, *,
                 headers: Mapping[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.retry_after, self.details = status, error, retry_after, details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out = {"error": self.error, "message": str(self)} | self.details
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


@dataclass(frozen=True)
class Caller:
    """Who is asking: the downloader's nick, the claim tokens it sent (if any) and its address."""

    downloader: str
    ip: str = ""
    tokens: tuple[str, ...] = ()
    version: str | None = None


@dataclass
class _Cached:
    project: Project
    queue: ItemQueue
    read: float = field(default_factory=time.monotonic)


class Tracker:
    """The tracker's behaviour over one store. Thread-safe: FastAPI calls it from its thread pool."""

    def __init__(self, state: TrackerState, *, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._refreshing: dict[str, asyncio.Future[tuple[Project, ItemQueue]]] = {}  # project_async's reads

    def close(self) -> None:
        with self._lock:
            for cached in self._cache.values():
                cached.queue.close()
            self._cache.clear()
        self.state.close()

    # ---- projects ------------------------------------------------------------------------------------------
    def project(self, slug: str) -> tuple[Project, ItemQueue]:
        """The project and its queue; 404 unknown_project when there is none. Read through a short cache so a
        request does not cost a store round trip for the settings."""
        cached = self._cached(slug)
        if cached is not None:
            return cached
        project = self.state.project(slug)
        if project is None:
            raise Refusal(404, "unknown_project", f"there is no project {slug!r} on this tracker")
        return self._remember(project), self._cache[slug].queue

    async def project_async(self, slug: str) -> tuple[Project, ItemQueue]:
        """project() from the event loop. A cached project past PROJECT_CACHE_SECONDS is still answered while one
        read in a thread refreshes it: at thousands of calls a second, every call that found it stale would
        otherwise read the store (and take a thread) at once. A project not cached yet is read once for all
        the calls that ask meanwhile."""
        with self._lock:
            cached = self._cache.get(slug)
        if cached is None:
            return await asyncio.shield(self._refresh(slug))
        if time.monotonic() - cached.read >= PROJECT_CACHE_SECONDS:
            self._refresh(slug)
        return cached.project, cached.queue

    def _refresh(self, slug: str) -> asyncio.Future[tuple[Project, ItemQueue]]:
        loop = asyncio.get_running_loop()
        running = self._refreshing.get(slug)
        if running is not None and not running.done() and running.get_loop() is loop:
            return running
        task = loop.create_task(asyncio.to_thread(self.project, slug))
        self._refreshing[slug] = task

        def finished(t: asyncio.Task) -> None:
            if self._refreshing.get(slug) is t:
                del self._refreshing[slug]
            if not t.cancelled():
                t.exception()  # a refresh nobody waits for may fail (store down): the next call tries again

        task.add_done_callback(finished)
        return task

    def _cached(self, slug: str) -> tuple[Project, ItemQueue] | None:
        with self._lock:
            cached = self._cache.get(slug)
            if cached is not None and time.monotonic() - cached.read < PROJECT_CACHE_SECONDS:
                return cached.project, cached.queue
        return None

    def _remember(self, project: Project) -> Project:
        with self._lock:
            cached = self._cache.get(project.slug)
            if cached is not None and (cached.project.lease, cached.project.max_attempts) == \
                    (project.lease, project.max_attempts):
                cached.project, cached.read = project, time.monotonic()
            else:
                # The old handle is left to the garbage collector, not closed: a request in another thread may
                # still be using it.
                self._cache[project.slug] = _Cached(project, self.state.open_queue(project, self.clock))
        return project

    def save_project(self, project: Project) -> None:
        self.state.save_project(project)
        self._remember(project)

    # ---- the seesaw protocol -------------------------------------------------------------------------------
    def request(self, slug: str, caller: Caller, n: int = 1) -> dict[str, Any]:
        """Claim up to `n` items for the caller. The answer's item_name joins several names with NUL."""
        project, queue = self.project(slug)
        self._check_request(project, caller, n)
        handout = self.state.handout(project, queue, caller.downloader, caller.ip, n, self.clock())
        return self._handed(project, caller, handout)

    async def request_async(self, slug: str, caller: Caller, n: int = 1) -> dict[str, Any]:
        """request() on the event loop, for a store with an event-loop client (`state.aio`)."""
        if self.state.aio is None:
            raise TypeError("this tracker's store has no event-loop client: call request() in a thread")
        project, queue = await self.project_async(slug)
        self._check_request(project, caller, n)
        handout = await self.state.aio.handout(project, queue, caller.downloader, caller.ip, n, self.clock())
        return self._handed(project, caller, handout)

    def _check_request(self, project: Project, caller: Caller, n: int) -> None:
        _check_nick(caller.downloader)
        if not 1 <= n <= MAX_MULTI:
            raise Refusal(400, "bad_multi", f"multi={n}: ask for 1 to {MAX_MULTI} items at once")
        if project.paused:
            raise Refusal(404, "project_paused", f"{project.slug} is paused: no items are handed out for now",
                          PAUSED_RETRY_AFTER)
        why = project.version_too_old(caller.version)
        if why:
            raise Refusal(455, "version_too_old", why + "; update the pipeline (restart the warrior)")

    def _handed(self, project: Project, caller: Caller, handout: Handout) -> dict[str, Any]:
        """The answer to a request, or the refusal its admission or an empty queue calls for."""
        slug, admission, claims = project.slug, handout.admission, handout.claims
        if admission.refused == "blocked":
            raise Refusal(403, "blocked", f"{caller.downloader} (or this address) may not work on {slug}")
        if admission.refused == "budget":
            raise Refusal(429, "budget_exhausted", f"{caller.downloader} holds {admission.held} items of {slug}, "
                          f"its budget: finish (done) or release one before asking for more",
                          admission.retry_after, held=admission.held, budget=project.budget)
        if admission.refused == "rate":
            raise Refusal(429, "rate_limited", f"{slug} hands out {project.rate_limit:g} items per minute; ask "
                          "again after Retry-After seconds", admission.retry_after)
        if not claims:
            raise Refusal(404, "no_items", f"no items left to hand out in {slug} ({handout.claimed} are claimed "
                          "and come back if their leases end)", EMPTY_RETRY_AFTER, todo=0, claimed=handout.claimed)
        # the site module goes with every answer: a worker validates each name with it before fetching anything
        return {"site": project.site, **project.extra, "item_name": "\0".join(c.item for c in claims),
                "claim_tokens": [c.token for c in claims], "attempts": [c.attempts for c in claims],
                "lease_seconds": project.lease, "lease_expires": min(c.lease_expires for c in claims)}

    def done(self, slug: str, caller: Caller, item: str, domain_bytes: Mapping[str, int],
             extra: Mapping[str, Any] | None = None) -> None:
        """Finish the caller's items (NUL-joined). A repeat by the same claimant is accepted and changes nothing.
        A problem with any of the items (not the caller's, unknown) finishes none of them."""
        project, queue = self.project(slug)
        names, shares, outcome = self._check_done(caller, item, domain_bytes, extra)
        finished = self.state.finish(project, queue, caller.downloader, caller.tokens, names, shares, outcome,
                                     domain_bytes, caller.version, self.clock())
        self._finished(slug, caller, finished)

    async def done_async(self, slug: str, caller: Caller, item: str, domain_bytes: Mapping[str, int],
                         extra: Mapping[str, Any] | None = None) -> None:
        """done() on the event loop, for a store with an event-loop client (`state.aio`)."""
        if self.state.aio is None:
            raise TypeError("this tracker's store has no event-loop client: call done() in a thread")
        project, queue = await self.project_async(slug)
        names, shares, outcome = self._check_done(caller, item, domain_bytes, extra)
        finished = await self.state.aio.finish(project, queue, caller.downloader, caller.tokens, names, shares,
                                               outcome, domain_bytes, caller.version, self.clock())
        self._finished(slug, caller, finished)

    def _check_done(self, caller: Caller, item: str, domain_bytes: Mapping[str, int],
                    extra: Mapping[str, Any] | None) -> tuple[list[str], list[int], dict[str, Any]]:
        """The names, each one's share of the bytes, and what is kept with each item."""
        names = _names(item)
        self._check_caller(caller, names)
        total = sum(domain_bytes.values())
        if total > MAX_BYTES or any(not isinstance(v, int) or v < 0 for v in domain_bytes.values()):
            raise Refusal(400, "bad_bytes", f"bytes are whole numbers from 0, at most {MAX_BYTES} in all")
        shares = [total // len(names) + (1 if i < total % len(names) else 0)  # the batch's bytes, spread out
                  for i in range(len(names))]
        return names, shares, {"bytes": dict(domain_bytes), "batch": len(names), **(extra or {})}

    def _finished(self, slug: str, caller: Caller, finished: Finished) -> None:
        if finished.problem is not None:
            raise _problem_refusal(slug, caller, finished.problem)

    def release(self, slug: str, caller: Caller, item: str) -> None:
        project, queue = self.project(slug)
        names = _names(item)
        for name, claim in zip(names, self._claims(slug, queue, caller, names), strict=True):
            self._apply(lambda c=claim: queue.release(c.token), name)
        if project.budget > 0:
            self.state.let_go(slug, caller.downloader, names)

    def fail(self, slug: str, caller: Caller, item: str, reason: str, retry: bool = True) -> dict[str, str]:
        """Give up the caller's items with a reason; each goes back to todo or, out of tries, to failed."""
        project, queue = self.project(slug)
        if not reason.strip() or len(reason) > MAX_REASON:
            raise Refusal(400, "bad_reason", f"a fail needs a reason of 1 to {MAX_REASON} characters")
        names = _names(item)
        states = {}
        for name, claim in zip(names, self._claims(slug, queue, caller, names), strict=True):
            states[name] = self._apply(lambda c=claim: queue.fail(c.token, reason, retry), name).value
        if project.budget > 0:
            self.state.let_go(slug, caller.downloader, names)
        return states

    def heartbeat(self, slug: str, caller: Caller, item: str) -> dict[str, Any]:
        """Extend the caller's leases by the project's lease time."""
        project, queue = self.project(slug)
        names = _names(item)
        renewed = [self._apply(lambda c=claim: queue.heartbeat(c.token, project.lease), name)
                   for name, claim in zip(names, self._claims(slug, queue, caller, names), strict=True)]
        if project.budget > 0:
            self.state.hold(slug, caller.downloader, {c.item: c.lease_expires for c in renewed})
        return {"item_name": item, "lease_seconds": project.lease,
                "lease_expires": min(c.lease_expires for c in renewed)}

    def upload_target(self, slug: str, caller: Caller, item: str, base_url: str) -> str:
        """Where the caller PUTs the WARC of its items: our upload target, with its claim tokens as the
        password of the URL (seesaw's curl sends them as HTTP Basic credentials)."""
        _project, queue = self.project(slug)
        names = _names(item)
        claims = self._claims(slug, queue, caller, names)
        parts = urlsplit(base_url)
        netloc = f"{quote(caller.downloader, safe='')}:{'.'.join(c.token for c in claims)}@{parts.netloc}"
        path = f"{parts.path.rstrip('/')}/{slug}/upload/{quote(item, safe='')}/"
        return urlunsplit((parts.scheme, netloc, path, "", ""))

    def check_upload(self, slug: str, item: str, tokens: tuple[str, ...]) -> tuple[Project, str]:
        """The project and claimant an upload of `item`'s file belongs to, when `tokens` are the current claims
        of every name in it (in order); otherwise a Refusal."""
        project, queue = self.project(slug)
        names = _names(item)
        if len(tokens) != len(names):
            raise Refusal(403, "not_claimant", f"an upload for {len(names)} item(s) needs as many claim tokens, "
                                               f"got {len(tokens)}")
        claimants = set()
        for name, token in zip(names, tokens, strict=True):
            claim = self._claim_of(queue, slug, name)
            if claim is None or claim.token != token:
                raise Refusal(403, "not_claimant", f"that is not the current claim token of {name}: only its "
                                                   "claimant may upload for it, while it is claimed")
            claimants.add(claim.claimant)
        return project, ",".join(sorted(claimants))

    def claim_status(self, slug: str, token: str) -> tuple[str, ItemState] | None:
        """What became of a claim (ItemQueue.claim_status): the upload target keeps a claim's files by it."""
        _project, queue = self.project(slug)
        return queue.claim_status(token)

    # ---- reading -------------------------------------------------------------------------------------------
    def stats(self, slug: str) -> dict[str, Any]:
        """universal-tracker's stats.json, plus failed counts."""
        _project, queue = self.project(slug)
        s = queue.stats()
        tally = self.state.tally(slug)
        return {
            "counts": {"todo": s.todo, "out": s.claimed, "done": s.done, "failed": s.failed},
            "total_items": s.total, "total_items_todo": s.todo, "total_items_out": s.claimed,
            "total_items_done": s.done, "total_items_failed": s.failed,
            "total_bytes": sum(tally.bytes.values()), "domain_bytes": dict(tally.domains),
            "downloader_bytes": dict(tally.bytes), "downloader_count": dict(tally.items),
            "downloaders": sorted(tally.items, key=lambda d: (-tally.bytes.get(d, 0), d)),
        }

    # ---- helpers -------------------------------------------------------------------------------------------
    def _claim_of(self, queue: ItemQueue, slug: str, name: str) -> Claim | None:
        try:
            return queue.claim_of(name)
        except UnknownItem:
            raise Refusal(409, "unknown_item", f"{name!r} is not an item of {slug}") from None

    def _claims(self, slug: str, queue: ItemQueue, caller: Caller, names: list[str],
                allow_done: bool = False) -> list[Claim | None]:
        """The current claim on each name, checked to be the caller's (by token when it sent tokens, else by
        nick). With `allow_done`, an item the caller already finished gives None instead of a refusal."""
        self._check_caller(caller, names)
        current = check_claims(queue, caller.downloader, caller.tokens, names, allow_done)
        if isinstance(current, ClaimProblem):
            raise _problem_refusal(slug, caller, current)
        return current

    @staticmethod
    def _check_caller(caller: Caller, names: list[str]) -> None:
        _check_nick(caller.downloader)
        if caller.tokens and len(caller.tokens) != len(names):
            raise Refusal(400, "bad_tokens", f"{len(caller.tokens)} claim tokens for {len(names)} items")

    def _apply(self, call: Callable[[], Any], name: str) -> Any:
        try:
            return call()
        except NotClaimant as e:  # lost a race with another request on the same claim
            raise Refusal(409, "not_claimant", f"{name}: {e}") from None


def _problem_refusal(slug: str, caller: Caller, problem: ClaimProblem) -> Refusal:
    name, state = problem.name, problem.state
    if problem.error == "unknown_item":
        return Refusal(409, "unknown_item", f"{name!r} is not an item of {slug}")
    if problem.error == "not_claimed":
        return Refusal(409, "not_claimed", f"{name} is {state}, not claimed by {caller.downloader}"
                       + (" (its lease ended and it went back to the queue)" if state == "todo" else ""), state=state)
    return Refusal(409, "not_claimant", f"{name} is claimed by another downloader or under another claim (was your "
                   "lease over and the item handed out again?)")


def _check_nick(downloader: str) -> None:
    if not isinstance(downloader, str) or not NICK_RE.fullmatch(downloader):  # fullmatch: `$` lets "jane\n" in
        raise Refusal(400, "bad_downloader", f"{downloader!r} is not a downloader name: 3 to 30 letters, digits, "
                                             "'-' or '_' (seesaw's rule)")


def _names(item: str) -> list[str]:
    names = item.split("\0") if isinstance(item, str) else []
    if not names or any(not n or n != n.strip() for n in names) or len(names) > MAX_MULTI \
            or len(set(names)) != len(names):
        raise Refusal(400, "bad_item", f"{item!r} is not an item name or a NUL-joined list of up to {MAX_MULTI} "
                                       "distinct names")
    return names


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """Retry-After in whole seconds, rounded up (a client that waits the rounded-down time is refused again)."""
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}
