"""The worker's side of the tracker protocol: claim, heartbeat, upload, done, fail, release over HTTP.

seesaw retries every failed call forever, 60 s plus 10 s per failure with no jitter, and the delay is shared by
every item, so one 429 slows them all and a crowd of warriors comes back in step (reference:
archiveteam-distributed.md §1 and §5). Here each call waits on its own jittered exponential back-off (`Backoff`),
never sooner than the tracker's Retry-After, and gives up after `RetryPolicy.give_up` seconds so that a tracker
that stays down costs an item its claim (which then times out and goes to someone else), not the worker forever.

`claim` never waits: it makes one try and, when told to come back later, remembers when (`wait()`), so the crawl
loop that calls it between fetches keeps grabbing what is in flight meanwhile. Several free slots are filled with
one `POST /<project>/multi=<n>/request` (names joined by NUL, a claim token each); a tracker that does not know that
route (universal-tracker: 404, ours beyond its limit: 400 bad_multi) is asked for one item at a time instead.

Uploads go only to the tracker's own origin, with the claim token as the HTTP Basic password (safety.py).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from archiver import PROJECT_URL, __version__
from archiver.crawl.politeness import parse_retry_after
from archiver.digests import file_sha256
from archiver.errors import UsageError
from archiver.worker.errors import UPDATE_HINT, TrackerError, TrackerRefused, UploadRefused, VersionTooOld
from archiver.worker.safety import check_upload_target, origin, validate_nick

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DEFAULT_LEASE = 900.0  # what a tracker that names no lease (universal-tracker) is assumed to give
_CLAIM_KEYS = frozenset({"item_name", "claim_tokens", "attempts", "lease_seconds", "lease_expires"})
# what our tracker says with a 404 on the request route; any other 404 to multi=N may be "no such route"
_REQUEST_404 = frozenset({"no_items", "project_paused", "unknown_project"})


def parse_tracker_url(url: str) -> tuple[str, str]:
    """(tracker base URL, project slug) from `http(s)://HOST[:PORT][/PATH]/PROJECT`."""
    parts = urlsplit(url.strip())
    base_path, _, slug = parts.path.rstrip("/").rpartition("/")
    if origin(url.strip()) is None or parts.username or parts.query or parts.fragment or not SLUG_RE.fullmatch(slug):
        raise UsageError(f"--tracker {url!r}: expected the tracker's address followed by the project, e.g. "
                         "--tracker https://tracker.example.org/myproject")
    return urlunsplit((parts.scheme, parts.netloc, base_path, "", "")), slug


# ---- waiting -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between tries of a call, and for how long to keep trying."""

    base: float = 2.0  # the first wait; each failure doubles it
    cap: float = 300.0  # the longest wait of our own choosing (seesaw's cap)
    ceiling: float = 3600.0  # the longest wait at all, Retry-After included: a tracker cannot park us for days
    give_up: float = 900.0  # done, upload, fail: stop trying after this long (the claim then times out)
    timeout: float = 60.0  # seconds to connect and between bytes of an answer
    quick_timeout: float = 15.0  # request and heartbeat hold up the crawl loop, so they wait less


class Backoff:
    """Jittered exponential waits: each failure doubles the range, and the wait is drawn from its upper half, so
    volunteers told to wait at the same moment do not come back at the same moment. A Retry-After is a floor
    (plus up to 20%, for the same reason), cut only at the policy's ceiling."""

    def __init__(self, policy: RetryPolicy, rng: Callable[[], float] = random.random) -> None:
        self.policy, self.rng = policy, rng
        self.failures = 0

    def next(self, retry_after: float | None = None) -> float:
        p = self.policy
        span = min(p.cap, p.base * 2 ** min(self.failures, 30))
        self.failures += 1
        wait = span * (0.5 + 0.5 * self.rng())
        if retry_after is not None:
            wait = max(wait, retry_after * (1.0 + 0.2 * self.rng()))
        return min(wait, p.ceiling)

    def reset(self) -> None:
        self.failures = 0


def retryable(status: int) -> bool:
    """Answers worth trying again later: rate limits and the tracker's own troubles."""
    return status in (420, 429) or status >= 500


# ---- answers -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the JSON answer, or the text
    retry_after: float | None = None

    @property
    def error(self) -> str:
        return str(self.body.get("error", "")) if isinstance(self.body, dict) else ""

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message") or self.body)[:500]
        return str(self.body).strip()[:300] or "(no message)"


@dataclass(frozen=True)
class Claimed:
    """One item the tracker handed to this worker."""

    name: str
    token: str  # "" from a tracker without claim tokens (universal-tracker): then the nick alone identifies us
    lease: float  # seconds a heartbeat extends the claim by
    attempts: int
    extra: Mapping[str, Any] = field(default_factory=dict)  # the project's keys from the answer (site, ...)


@dataclass(frozen=True)
class Uploaded:
    name: str
    size: int
    sha256: str


class TrackerClient:
    """One worker's connection to one project of one tracker."""

    def __init__(self, url: str, nick: str, *, version: str = __version__, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.base, self.slug = parse_tracker_url(url)
        self.nick = validate_nick(nick)
        self.version = version
        self.policy = policy or RetryPolicy()
        self.sleep, self.clock, self.rng = sleep, clock, rng
        self.http = requests.Session()
        self.http.trust_env = False  # a volunteer's proxy settings must not silently reroute claims and uploads
        self.http.headers["User-Agent"] = f"archiver-worker/{version} (+{PROJECT_URL})"
        self._claim_backoff = Backoff(self.policy, rng)
        self.not_before = 0.0
        self.drained = False  # the last claim heard: no items left and none claimed by anyone
        self.multi = True  # ask for several items in one request; False once the tracker turned that down

    @property
    def url(self) -> str:
        return f"{self.base}/{self.slug}"

    def close(self) -> None:
        self.http.close()

    # ---- one try ---------------------------------------------------------------------------------------------
    def post(self, command: str, body: Mapping[str, Any], timeout: float | None = None) -> Answer:
        """One POST of a command; raises requests.RequestException when there is no answer."""
        r = self.http.post(f"{self.url}/{command}", data=json.dumps(body), timeout=timeout or self.policy.timeout,
                           headers={"Content-Type": "application/json"})
        return _answer(r)

    # ---- claiming (never waits) ------------------------------------------------------------------------------
    def wait(self) -> float:
        """Seconds until `claim` will ask the tracker again."""
        return max(0.0, self.not_before - self.clock())

    def claim(self, n: int = 1) -> list[Claimed]:
        """Ask for up to `n` items in one request (multi=n): one try, no waiting. [] when there is none now or the
        tracker asked us to wait (see `wait`); TrackerRefused when it will not give this worker work at all. The
        tracker may answer fewer names than asked for, or (a broken one) more: the caller decides what it keeps."""
        if self.clock() < self.not_before:
            return []
        try:
            a = self._request(n if self.multi else 1)
            if n > 1 and self.multi and _multi_refused(a):
                single = self._request(1)
                # bad_multi is unambiguous; a bare 404 is also universal-tracker's "queue empty", so multi is
                # given up only when the single request then gets an item
                if a.status == 400 or single.status == 200:
                    self.multi = False
                a = single
        except requests.RequestException:
            self._later(None)
            return []
        if a.status == 200:
            claims = _claims(a.body)
            if claims is None:  # seesaw's "empty response": try again later
                self._later(None)
                return []
            self._claim_backoff.reset()
            self.drained = False
            return claims
        if a.status == 455:
            raise VersionTooOld(f"the tracker no longer accepts this worker for {self.slug} (archiver {self.version}): "
                                f"{a.message}. To keep helping, {UPDATE_HINT}")
        if a.status == 404 and a.error == "unknown_project":
            raise TrackerRefused(f"{self.base} has no project {self.slug!r}: check the --tracker URL ({a.message})")
        if a.status == 404:
            # universal-tracker answers a bare 404 for an empty queue; ours says how many items are still claimed
            claimed = a.body.get("claimed") if isinstance(a.body, dict) else 0
            self.drained = a.error in ("no_items", "") and not claimed
            self._later(a.retry_after)
            return []
        if retryable(a.status):
            self._later(a.retry_after)
            return []
        if a.status == 403:
            raise TrackerRefused(f"the tracker refuses work on {self.slug} to {self.nick}: {a.message} (ask the "
                                 "project's admins why)")
        raise TrackerRefused(f"the tracker answered HTTP {a.status} to a request for work on {self.slug}: "
                             f"{a.message}")

    def _request(self, n: int) -> Answer:
        command = f"multi={n}/request" if n > 1 else "request"
        return self.post(command, {"downloader": self.nick, "api_version": "2", "version": self.version},
                         timeout=self.policy.quick_timeout)

    def defer(self) -> None:
        """Ask for nothing more for one back-off step: the last claim was one this worker could not use."""
        self._later(None)

    def _later(self, retry_after: float | None) -> None:
        self.not_before = self.clock() + self._claim_backoff.next(retry_after)

    # ---- calls that must get through -------------------------------------------------------------------------
    def call(self, command: str, body: Mapping[str, Any], *, give_up: float | None = None) -> Answer:
        """POST a command until it gets an answer that is not a rate limit or a server error (returned as it is,
        for the caller to judge), waiting a jittered back-off between tries; TrackerError after `give_up`."""
        return self._retry(lambda: self.post(command, body), f"{command} of {body.get('item', '')}".strip(),
                           give_up)

    def _retry(self, attempt: Callable[[], Answer], what: str, give_up: float | None) -> Answer:
        backoff = Backoff(self.policy, self.rng)
        end = self.clock() + (self.policy.give_up if give_up is None else give_up)
        while True:
            try:
                a = attempt()
            except requests.RequestException as e:
                why, retry_after = f"no answer ({type(e).__name__}: {e})", None
            else:
                if not retryable(a.status):
                    return a
                why, retry_after = f"HTTP {a.status}: {a.message}", a.retry_after
            wait = backoff.next(retry_after)
            if self.clock() + wait > end:
                raise TrackerError(f"gave up on {what} at {self.url} after {backoff.failures} tries: {why}")
            self.sleep(wait)

    def _item_body(self, claim: Claimed, **more: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"downloader": self.nick, "item": claim.name, **more}
        if claim.token:
            body["claim_tokens"] = [claim.token]  # so the tracker checks the claim itself, not only the nick
        return body

    def heartbeat(self, claim: Claimed) -> Answer | None:
        """Extend a claim's lease: one short try (the crawl loop waits for it); None when there is no answer."""
        try:
            return self.post("heartbeat", self._item_body(claim), timeout=self.policy.quick_timeout)
        except requests.RequestException:
            return None

    def done(self, claim: Claimed, data_bytes: int, provenance: Mapping[str, Any]) -> Answer:
        return self.call("done", self._item_body(claim, version=self.version, bytes={"data": data_bytes},
                                                 id=dict(provenance)))

    def fail(self, claim: Claimed, reason: str, retry: bool = True) -> Answer:
        return self.call("fail", self._item_body(claim, reason=reason[:2000], retry=retry))

    def release(self, claim: Claimed, give_up: float = 30.0) -> Answer:
        return self.call("release", self._item_body(claim), give_up=give_up)

    # ---- uploading -------------------------------------------------------------------------------------------
    def upload_target(self, claim: Claimed) -> str:
        body: dict[str, Any] = {"downloader": self.nick, "item_name": claim.name, "version": self.version}
        if claim.token:
            body["claim_tokens"] = [claim.token]
        a = self.call("upload", body)
        if a.status != 200 or not isinstance(a.body, dict):
            raise UploadRefused(f"the tracker gave no upload target for {claim.name}: HTTP {a.status}: {a.message}",
                                a.status, a.error)
        return check_upload_target(a.body.get("upload_target"), self.base, claim.name)

    def upload(self, claim: Claimed, paths: Sequence[str | Path]) -> list[Uploaded]:
        """PUT each file to the claim's upload target (on the tracker's origin only), checking that the tracker
        kept exactly the bytes we have."""
        target = self.upload_target(claim)
        return [self._put(claim, target, Path(p)) for p in paths]

    def _put(self, claim: Claimed, target: str, path: Path) -> Uploaded:
        size, sha = file_sha256(path)
        url = target + quote(path.name, safe="")
        auth = (self.nick, claim.token) if claim.token else None

        def attempt() -> Answer:
            with open(path, "rb") as f:  # reopened on every try: a retried PUT sends the whole file again
                r = self.http.put(url, data=f, auth=auth, timeout=self.policy.timeout,
                                  headers={"Content-Type": "application/octet-stream"})
            return _answer(r)

        a = self._retry(attempt, f"the upload of {path.name}", None)
        if a.status not in (200, 201):
            raise UploadRefused(f"the tracker refused {path.name} of {claim.name}: HTTP {a.status}: {a.message}"
                                + _findings(a.body), a.status, a.error)
        kept = a.body.get("sha256") if isinstance(a.body, dict) else None
        if kept is not None and kept != sha:
            raise UploadRefused(f"the tracker kept {path.name} with sha256 {kept}, but the file's is {sha}: it was "
                                "damaged on the way", a.status, "digest_mismatch")
        return Uploaded(path.name, size, sha)


def _answer(r: requests.Response) -> Answer:
    try:
        body: Any = r.json()
    except ValueError:
        body = r.text
    return Answer(r.status_code, body, parse_retry_after(r.headers.get("Retry-After")))


def _multi_refused(a: Answer) -> bool:
    """A multi=N request turned down for being one (not for anything a single request would get too)."""
    return (a.status == 400 and a.error == "bad_multi") or a.status == 405 or \
        (a.status == 404 and a.error not in _REQUEST_404)


def _claims(body: Any) -> list[Claimed] | None:
    """The claims in a request answer, or None when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("item_name"), str) or not body["item_name"]:
        return None
    names = body["item_name"].split("\0")
    tokens = body.get("claim_tokens") or [""] * len(names)
    attempts = body.get("attempts") or [1] * len(names)
    if not (isinstance(tokens, list) and isinstance(attempts, list) and len(tokens) == len(attempts) == len(names)):
        return None
    try:
        lease = float(body.get("lease_seconds") or DEFAULT_LEASE)
    except (TypeError, ValueError):
        lease = DEFAULT_LEASE
    extra = {k: v for k, v in body.items() if k not in _CLAIM_KEYS}
    return [Claimed(n, str(t), lease if lease > 0 else DEFAULT_LEASE, int(a) if isinstance(a, int) else 1, extra)
            for n, t, a in zip(names, tokens, attempts, strict=True)]


def _findings(body: Any) -> str:
    findings = body.get("findings") if isinstance(body, dict) else None
    return (" (" + "; ".join(str(f) for f in findings[:3]) + ")") if isinstance(findings, list) and findings else ""
