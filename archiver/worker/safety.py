"""What a tracker can and cannot make a volunteer's worker do.

A tracker is a server somebody else runs, and every answer it gives is input. It chooses *which items* a worker
grabs; it must not choose *what the worker fetches* or *where the worker sends things*:

- Fetching: the site module derives every URL from an item name, and the name must be one the module accepts
  exactly as written (its canonical form). A name the module would merely interpret (a URL, `arxiv:IDvN`) is
  refused. The generic site module's item names are URLs, so a generic project needs the volunteer's own
  `--site generic`; a tracker-chosen base_url (a mirror, a test site) needs `--allow-base-url`.
- Sending: files and claim tokens go only to the tracker's own origin (scheme, host and port), whatever upload
  target it names; the credentials it writes into that URL are dropped, the worker sends its own.
- Naming: the nick follows Archive Team's rule, so it is safe in leaderboards, logs and file names.
- Politeness: a project's admins may ask for more of it (`delay`, `max_concurrency` in the answers), never less:
  the worker uses the longer delay and the smaller number of items at once of theirs and the volunteer's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from archiver.errors import ArchiverError, UsageError
from archiver.sites import get_site, site_names
from archiver.sites.base import Item, Site, SiteOptions
from archiver.worker.errors import UPDATE_HINT, UploadRefused, WorkerError

NICK_RE = re.compile(r"^[-_a-zA-Z0-9]{3,30}$")  # Archive Team's rule for downloader names (seesaw, trackers)
MAX_TRACKER_DELAY = 3600.0  # seconds: more is a typo (ms for s?) that would park every volunteer for hours per URL
_DEFAULT_PORTS = {"http": 80, "https": 443}


def validate_nick(nick: str) -> str:
    if not isinstance(nick, str) or not NICK_RE.fullmatch(nick):  # fullmatch: `$` lets "jane\n" through
        raise UsageError(f"--nick {nick!r} is not a downloader name: 3 to 30 letters, digits, '-' or '_' (Archive "
                         "Team's rule, so the tracker's leaderboard can show it), e.g. --nick jane_doe")
    return nick


# ---- where the worker sends things ---------------------------------------------------------------------------
def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL; None for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def redact(url: str) -> str:
    """A URL without its user-info: an upload target carries claim tokens there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def check_upload_target(target: Any, tracker_base: str, item: str) -> str:
    """The upload target as the worker will use it (no user-info), or UploadRefused when it is anywhere but the
    tracker's own origin: a tracker must not make volunteers send captures, or claim tokens, to a third party."""
    if not isinstance(target, str) or not target:
        raise UploadRefused(f"the tracker named no upload target for {item} (answer {str(target)[:100]!r})")
    if origin(target) is None or origin(target) != origin(tracker_base) or not urlsplit(target).path.endswith("/"):
        raise UploadRefused(f"the tracker named {redact(target)[:200]!r} as the upload target of {item}; this worker "
                            f"uploads only to the tracker itself ({tracker_base}), to a URL ending in '/', so "
                            "nothing was sent", error="foreign_target")
    return redact(target)


# ---- what the worker fetches ---------------------------------------------------------------------------------
def choose_site(extra: Mapping[str, Any], slug: str, *, expected: str | None, allow_base_url: bool,
                delay: float | None) -> tuple[str, SiteOptions, Site]:
    """The site module a project's items are grabbed with, and from where: the tracker says (its answers' `site`
    and `base_url` keys), the volunteer allows. WorkerError says what the volunteer would have to allow."""
    site = extra.get("site", expected)
    if site is None:
        raise WorkerError(f"the tracker does not say which site module grabs the items of {slug} (a 'site' key in "
                          "its answers, from the project's extra settings); pass --site NAME if the project's "
                          "admins told you which")
    if not isinstance(site, str) or site not in site_names():
        raise WorkerError(f"the tracker says {slug} is grabbed with site module {site!r}, which this archiver does "
                          f"not have (it has {', '.join(site_names())}); {UPDATE_HINT}")
    if expected and site != expected:
        raise WorkerError(f"the tracker says {slug} is grabbed with site module {site!r}, but you asked for --site "
                          f"{expected}; check the --tracker URL")
    if site == "generic" and expected != "generic":
        raise WorkerError(f"{slug} uses the generic site module, whose item names are URLs: the tracker would choose "
                          "every address this worker fetches. Pass --site generic if you trust it with that")
    base_url = extra.get("base_url")
    if base_url is not None and not allow_base_url:
        raise WorkerError(f"the tracker asks this worker to fetch {site} items from {base_url!r} instead of the "
                          "site's own address (meant for tests and mirrors); pass --allow-base-url if you trust "
                          "this tracker to choose where you fetch from")
    if base_url is not None and not isinstance(base_url, str):
        raise WorkerError(f"the tracker's base_url for {slug} is not a URL: {base_url!r}")
    options = SiteOptions(base_url=base_url, delay=delay)
    try:
        return site, options, get_site(site, options)
    except UsageError as e:
        raise WorkerError(f"the tracker's settings for {slug} cannot be used: {e}") from None


def item_from_name(site: Site, name: str) -> Item:
    """The item for a name the tracker handed out, or ArchiverError (or ValueError) when the site module does not
    accept it exactly as written."""
    item = site.parse_target(name)
    if item.name != name:
        raise ArchiverError(f"the {site.name} module reads it as {item.name!r}, and a tracker hands out names "
                            "exactly as the site module writes them")
    return item


# ---- how politely the worker fetches -------------------------------------------------------------------------
@dataclass(frozen=True)
class Politeness:
    """What a project's admins ask of every worker (keys of the project's extra settings, in every answer)."""

    delay: float | None = None  # seconds between requests to one host
    max_concurrency: int | None = None  # items one worker may grab at once

    def limit(self, concurrency: int) -> int:
        """Items at once for a volunteer who asked for `concurrency`: the tracker may only lower it."""
        return min(concurrency, self.max_concurrency or concurrency)

    def delay_over(self, own: float) -> float:
        """The delay to use when the volunteer's (or the site module's) is `own`: the tracker may only raise it."""
        return own if self.delay is None else max(self.delay, own)


class PolitenessValueError(ValueError):
    """A politeness key with a value no worker can use: `key`, `value`, and what it should be (`wanted`)."""

    def __init__(self, key: str, value: Any, wanted: str) -> None:
        super().__init__(f"{key!r} is {value!r}, not {wanted}")
        self.key, self.value, self.wanted = key, value, wanted


def read_politeness(extra: Mapping[str, Any]) -> Politeness:
    """The politeness keys of a project's extra settings, or PolitenessValueError for the first bad one. The
    tracker refuses such a project when it is saved; a worker checks again, since other trackers may not."""
    delay, cap = extra.get("delay"), extra.get("max_concurrency")
    if delay is not None and not (_is_number(delay) and 0 <= delay <= MAX_TRACKER_DELAY):
        raise PolitenessValueError("delay", delay, f"a number of seconds from 0 to {MAX_TRACKER_DELAY:g}")
    if cap is not None and not (_is_number(cap) and cap >= 1 and float(cap).is_integer()):
        raise PolitenessValueError("max_concurrency", cap, "a whole number of items of at least 1")
    return Politeness(None if delay is None else float(delay), None if cap is None else int(cap))


def tracker_politeness(extra: Mapping[str, Any], slug: str) -> Politeness:
    """The politeness a tracker's answer asks for, or WorkerError naming the bad key: a value the worker cannot
    read is not ignored, since the admins meant something by it and guessing could make volunteers rude."""
    try:
        return read_politeness(extra)
    except PolitenessValueError as e:
        raise WorkerError(f"the tracker's {e.key!r} for {slug} is {e.value!r}, not {e.wanted}; nothing was fetched. "
                          "Tell the project's admins (it is in the project's extra settings)") from None


def _is_number(value: Any) -> bool:
    # bool is an int to Python, but `true` is not a number of seconds; NaN and infinity compare as nothing useful
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
