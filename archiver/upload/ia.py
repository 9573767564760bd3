"""Sending a plan to the Internet Archive through `internetarchive`, safely, and checking what IA holds.

One PUT per file (`Item.upload_file`), each retried by our loop, not the library's: the library retries only
HTTP 503, with a fixed sleep, and never a dropped connection. Our loop retries 503 SlowDown and other transient
answers, connection errors, resets and timeouts, with exponential back-off and jitter, for a bounded time per
file; before every PUT it asks IA-S3's rate-limit check (the library's `s3_is_overloaded`), because IA answers
an over-limit PUT only after receiving its whole body.

Idempotent: a file IA already lists with the same MD5 is skipped, so sending a plan twice sends nothing the
second time, and an upload cut short resumes where it stopped. After a PUT whose answer was lost the listing is
read again before re-sending, since a PUT can land all the same. Verified: at the end the item's file list is
read back and every name, size and MD5 compared.

The MD5 is computed once, when planning, and sent as Content-MD5 (IA then refuses a body that differs, with
400 BadDigest). The library's `verify=True` and `checksum=True` would each hash the whole file again before
sending, and its checksum skip compares with metadata read when the item object was made and refuses to skip
while the item has tasks pending (internetarchive #278, #289).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import requests

from archiver.errors import ArchiverError
from archiver.faults import crash_point
from archiver.upload.credentials import Credentials, load_credentials
from archiver.upload.endpoint import EndpointRefused, make_session
from archiver.upload.plan import PlannedFile, UploadPlan
from archiver.upload.report import (
    FAILED,
    NOT_SENT,
    SKIPPED,
    UPLOADED,
    FileOutcome,
    UploadListener,
    UploadReport,
)

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                     ConnectionError, TimeoutError)
_READ_BLOCK = 1 << 20


class ListingError(ArchiverError):
    """The item's file list could not be read (and retrying will not help, or the time for it is up)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry. The defaults suit IA; tests use tiny ones."""

    first_wait: float = 5.0  # the first back-off (then doubling, with jitter)
    max_wait: float = 300.0  # the longest single wait
    give_up_after: float = 2 * 3600.0  # per file: no retry starts later than this after its first failure
    timeout: float = 300.0  # seconds a connection may stay silent (connecting, sending, awaiting the answer)
    verify_wait: float = 3600.0  # how long to wait for IA to list what was sent (it lists a file once processed)
    verify_poll: float = 10.0  # the first wait between two reads of the listing (then doubling)

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row: half to all of the doubled wait ("equal jitter"),
        so uploaders that failed together do not come back together."""
        cap = min(self.max_wait, self.first_wait * 2 ** min(failures - 1, 40))
        return cap / 2 + random.uniform(0, cap / 2)


# ---- the item as IA lists it ----------------------------------------------------------------------------------
class RemoteFile(NamedTuple):
    size: int | None
    md5: str | None


@dataclass
class Listing:
    exists: bool
    files: dict[str, RemoteFile]
    pending: bool  # IA has tasks queued for the item: its file list may be about to change

    def holds(self, f: PlannedFile) -> bool:
        remote = self.files.get(f.name)
        return remote is not None and remote.md5 == f.md5 and remote.size in (None, f.size)


def _read_listing(session: Any, identifier: str, credentials: Credentials, retry: RetryPolicy,
                  listener: UploadListener) -> Listing:
    """GET /metadata/<identifier>, retried like a PUT. Done here rather than by the library's `get_metadata`,
    which replaces an HTTP error by a new exception without its status, so a 503 could not be told from a 404."""
    from internetarchive.auth import S3Auth

    url = f"{session.protocol}//{session.host}/metadata/{identifier}"
    first_failure = None
    failures = 0
    while True:
        try:
            r = session.get(url, auth=S3Auth(credentials.access, credentials.secret),
                            timeout=(retry.timeout, retry.timeout))
            if r.status_code == 200:
                return _parse_listing(r, url)
            if r.status_code not in TRANSIENT_STATUSES:
                raise ListingError(f"cannot read the file list of {identifier} from {url}: HTTP {r.status_code} "
                                   f"{r.reason}")
            error = f"HTTP {r.status_code} {r.reason}"
        except _TRANSIENT_ERRORS as e:
            error = f"{type(e).__name__}: {e}"
        failures += 1
        now = time.monotonic()
        first_failure = first_failure or now
        delay = retry.delay(failures)
        if now + delay - first_failure > retry.give_up_after:
            raise ListingError(f"cannot read the file list of {identifier} from {url}: {error} (gave up after "
                               f"{failures} tries over {now - first_failure:.0f} s); run the same command again later")
        listener.note(f"reading the file list of {identifier}: {error}; retrying in {delay:.1f} s")
        time.sleep(delay)


def _parse_listing(r: requests.Response, url: str) -> Listing:
    try:
        data = r.json()
    except ValueError:
        raise ListingError(f"{url} did not answer JSON (is it an IA metadata endpoint?)") from None
    if not isinstance(data, dict):
        raise ListingError(f"{url} answered {type(data).__name__}, not an item's metadata")
    files = {}
    for entry in data.get("files") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            size = entry.get("size")
            files[entry["name"]] = RemoteFile(int(size) if str(size).isdigit() else None, entry.get("md5"))
    pending = bool(data.get("pending_tasks")) or bool(data.get("tasks"))
    return Listing(bool(data.get("metadata") or files), files, pending)


# ---- sending --------------------------------------------------------------------------------------------------
class _Body:
    """A file's bytes as the PUT body: read in blocks straight from disk (never held in memory), telling the
    listener how far it got. Sized, so requests sends Content-Length (IA-S3 refuses chunked bodies)."""

    def __init__(self, file: PlannedFile, listener: UploadListener) -> None:
        self.file = file
        self.name = str(file.path)
        self.listener = listener
        self.sent = 0
        self._f = open(file.path, "rb")  # noqa: SIM115 - closed by the library after the PUT, or by us

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self.sent += len(data)
            self.listener.bytes_sent(self.file, self.sent)
        return data

    def __iter__(self) -> Iterator[bytes]:  # a file-like body: requests treats it as a stream
        return iter(lambda: self.read(_READ_BLOCK), b"")

    def __len__(self) -> int:
        return self.file.size

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._f.seek(offset, whence)
        if position == 0:
            self.sent = 0
        return position

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


class _Permanent(Exception):
    """A failure retrying cannot fix."""


def _put(item: Any, plan: UploadPlan, f: PlannedFile, derive: bool, retry: RetryPolicy,
         listener: UploadListener) -> None:
    """One PUT of `f`. Raises _Permanent, or a transient error (one of _TRANSIENT_ERRORS, or requests.HTTPError
    with a status in TRANSIENT_STATUSES)."""
    headers = {
        "Content-MD5": f.md5,  # hex, as IA-S3 wants it
        "x-archive-size-hint": str(plan.total_size),  # the whole item, so IA picks a server with room for it
        "x-archive-keep-old-version": "1",  # a re-sent file that differs keeps the old one under history/
    }
    body = _Body(f, listener)
    try:
        item.upload_file(body, key=f.name, metadata=plan.metadata, headers=headers, queue_derive=derive,
                         retries=0, request_kwargs={"timeout": (retry.timeout, retry.timeout)})
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        message = str(e).strip()
        if status == 503 and e.response is not None and b"appears to be spam" in (e.response.content or b""):
            raise _Permanent(f"IA flagged the upload as spam ({message}); ask IA (info@archive.org) to review "
                             "the account") from None
        if status not in TRANSIENT_STATUSES:
            raise _Permanent(f"HTTP {status}: {message}{_hint(status, message)}") from None
        raise
    finally:
        body.close()


def _hint(status: int | None, message: str) -> str:
    if status == 400 and ("BadDigest" in message or "Content-MD5" in message):
        return " (the file changed after it was planned; run the command again)"
    if status in (401, 403) or "bucket is not valid" in message:
        return (". Check the keys (https://archive.org/account/s3.php), that the item is yours (identifiers are "
                "unique across all of IA) and that you may upload to its collection")
    return ""


def _send(session: Any, item: Any, plan: UploadPlan, f: PlannedFile, derive: bool, retry: RetryPolicy,
          listener: UploadListener, credentials: Credentials) -> FileOutcome:
    started = time.monotonic()
    attempts = failures = 0
    first_failure: float | None = None

    def outcome(status: str, error: str | None = None, detail: str | None = None) -> FileOutcome:
        return FileOutcome(f.name, f.size, f.md5, status, attempts, time.monotonic() - started, error, detail)

    while True:
        answer_lost = False  # the PUT went out and no answer came back: it may have landed all the same
        try:
            if _overloaded(session, plan.identifier, credentials):
                error = "IA-S3 is over its rate limit for this key (check_limit)"
            else:
                attempts += 1
                listener.file_started(f, attempts)
                _put(item, plan, f, derive, retry, listener)
                return outcome(UPLOADED)
        except (_Permanent, EndpointRefused) as e:
            return outcome(FAILED, str(e))
        except requests.HTTPError as e:  # a transient status (the others became _Permanent): IA kept nothing
            error = str(e).strip()
        except _TRANSIENT_ERRORS as e:
            error, answer_lost = f"{type(e).__name__}: {e}", True
        failures += 1
        now = time.monotonic()
        first_failure = first_failure or now
        if answer_lost:  # look before sending again (internetarchive #397: PUTs that fail at the very end)
            try:
                if _read_listing(session, plan.identifier, credentials, retry, listener).holds(f):
                    return outcome(UPLOADED, detail=f"IA has it although the PUT failed: {error}")
            except ListingError as e:
                error += f"; then {e}"
        delay = retry.delay(failures)
        if now + delay - first_failure > retry.give_up_after:
            return outcome(FAILED, f"gave up after {attempts} attempts over {now - first_failure:.0f} s: {error}. "
                                   "Run the same upload again to resume (files IA already holds are skipped)")
        listener.note(f"{f.name}: {error}; retrying in {delay:.1f} s")
        time.sleep(delay)


def _overloaded(session: Any, identifier: str, credentials: Credentials) -> bool:
    """IA-S3's rate-limit check, through the library; an unanswered check counts as "over", as there."""
    try:
        return bool(session.s3_is_overloaded(identifier=identifier, access_key=credentials.access))
    except EndpointRefused:
        raise
    except (requests.RequestException, ValueError, OSError):
        return True


# ---- the whole upload -----------------------------------------------------------------------------------------
def upload(plan: UploadPlan, *, credentials: Credentials | None = None, endpoint: str | None = None,
           retry: RetryPolicy | None = None, listener: UploadListener | None = None,
           derive: bool = True) -> UploadReport:
    """Send the files of `plan` that IA does not already hold, then verify the whole item.

    Credentials default to `load_credentials()`; `endpoint` (see archiver.upload.endpoint) replaces IA for tests
    and staging servers. Per-file failures are in the report (`report.ok`), not raised; a failed file stops the
    files after it, since IA's refusals (keys, permissions, item limits) hold for the whole item. With `derive`,
    the last file sent asks IA to derive the item (indexes for web items).
    """
    from internetarchive import Item

    retry = retry or RetryPolicy()
    listener = listener or UploadListener()
    credentials = credentials or load_credentials()
    session = make_session(credentials, endpoint)
    started = time.monotonic()
    report = UploadReport(plan.identifier, endpoint=endpoint)
    try:
        before = _read_listing(session, plan.identifier, credentials, retry, listener)
        to_send = [f for f in plan.files if not before.holds(f)]
        if before.exists and to_send:
            report.notes.append("the item already exists: IA applies metadata only when it creates an item, so its "
                                "metadata stays as it is")
        item = Item(session, plan.identifier, {})
        outcomes: dict[str, FileOutcome] = {}
        for f in plan.files:
            if before.holds(f):
                outcomes[f.name] = FileOutcome(f.name, f.size, f.md5, SKIPPED, detail="IA holds it with this MD5")
                listener.file_finished(outcomes[f.name])
        failed = False
        for n, f in enumerate(to_send, 1):
            if failed:
                outcomes[f.name] = FileOutcome(f.name, f.size, f.md5, NOT_SENT, error="an earlier file failed")
            else:
                outcomes[f.name] = _send(session, item, plan, f, derive and n == len(to_send), retry, listener,
                                         credentials)
                failed = outcomes[f.name].status == FAILED
            listener.file_finished(outcomes[f.name])
        report.files = [outcomes[f.name] for f in plan.files]
        crash_point("upload-before-verify")
        if not failed:
            report.problems = _verify(session, plan.identifier, plan.files, credentials, retry, listener)
            report.verified = not report.problems
    finally:
        report.elapsed = time.monotonic() - started
        session.close()
    return report


def verify_item(identifier: str, files: Iterable[PlannedFile], *, credentials: Credentials | None = None,
                endpoint: str | None = None, retry: RetryPolicy | None = None,
                listener: UploadListener | None = None) -> list[str]:
    """Compare IA's listing of `identifier` with `files` (name, size, MD5): the problems, [] when all match.
    Waits up to `retry.verify_wait` for files IA has not listed yet (it lists a file once it has processed it)."""
    credentials = credentials or load_credentials()
    session = make_session(credentials, endpoint)
    try:
        return _verify(session, identifier, list(files), credentials, retry or RetryPolicy(),
                       listener or UploadListener())
    finally:
        session.close()


def _verify(session: Any, identifier: str, files: list[PlannedFile], credentials: Credentials,
            retry: RetryPolicy, listener: UploadListener) -> list[str]:
    deadline = time.monotonic() + retry.verify_wait
    wait = retry.verify_poll
    while True:
        listing = _read_listing(session, identifier, credentials, retry, listener)
        missing = [f for f in files if f.name not in listing.files]
        wrong = [(f, listing.files[f.name]) for f in files if f.name in listing.files and not listing.holds(f)]
        if not missing and not wrong:
            return []
        problems = [f"{f.name}: IA holds md5 {r.md5} ({r.size if r.size is not None else '?'} bytes) but this file "
                    f"is md5 {f.md5} ({f.size:,} bytes); run the same upload again to send it again"
                    for f, r in wrong]
        # While IA has tasks queued, a file may be unlisted or listed as its old version: wait for it.
        if wrong and not listing.pending:
            return problems
        if time.monotonic() + wait > deadline:
            names = ", ".join(f.name for f in missing[:5]) + (" ..." if len(missing) > 5 else "")
            tail = [f"IA does not list {len(missing)} sent file{'s' if len(missing) != 1 else ''} yet ({names}) after "
                    f"{retry.verify_wait:.0f} s; it lists files once it has processed them: run the same upload "
                    "later to verify (nothing IA holds is sent again)"] if missing else []
            return problems + tail
        listener.note(f"waiting {wait:.1f} s for IA to list {len(missing) + len(wrong)} file(s) of {identifier}")
        time.sleep(wait)
        wait = min(wait * 2, retry.max_wait)
