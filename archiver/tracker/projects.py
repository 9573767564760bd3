"""A tracker project: what it grabs (its site module), who may work on it (minimum version), and its limits.

Projects are kept in the tracker's store as JSON (archiver.tracker.state), so every tracker process behind a load
balancer reads the same configuration. `Project.from_mapping` is the one place input is checked: an admin's
request body and a stored record go through it alike.

`upload` says where the project's packs go on the Internet Archive (archiver.tracker.publish), with a manifest's
`upload` settings and their checks: {"collection", "identifier" (a template of {project}, {timestamp},
{rand8}), "metadata"}. Without it (null, the default) packs stay on disk in <uploads>/<slug>/packs/.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from packaging.version import InvalidVersion, Version

from archiver.errors import ArchiverError, TargetError, UsageError
from archiver.manifest import UPLOAD, UploadSettings
from archiver.queue import DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS
from archiver.sites import get_site, site_names
from archiver.upload.identifiers import run_identifier
from archiver.upload.metadata import check_key
from archiver.worker.safety import PolitenessValueError, read_politeness

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Words a slug cannot be, because they are paths of the tracker itself.
RESERVED_SLUGS = frozenset({"admin", "docs", "redoc", "openapi.json", "projects.json", "health"})
DEFAULT_MAX_UPLOAD = 20 * 1024**3  # bytes per uploaded file; Archive Team's WARCs rotate at a few GiB


class ProjectError(UsageError):
    """A project setting that cannot work; the message says which and what would."""


@dataclass(frozen=True)
class Project:
    slug: str
    site: str  # site module that validates item names (archiver.sites)
    title: str = ""
    min_version: str | None = None  # workers below it get 455 (compared as versions: 1.10 > 1.9)
    lease: float = DEFAULT_LEASE  # seconds a claim lasts without a heartbeat
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # tries before an item is failed
    rate_limit: float = 0.0  # items handed out per minute over the whole project (0: no limit)
    budget: int = 0  # items one downloader may hold at once (0: no limit)
    max_upload: int = DEFAULT_MAX_UPLOAD  # bytes per file the upload target accepts
    paused: bool = False  # hand out nothing (done, fail and uploads still work)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys added to every `request` answer
    upload: UploadSettings | None = None  # Internet Archive item settings for its packs; None: packs stay on disk

    @classmethod
    def from_mapping(cls, slug: str, data: Mapping[str, Any], base: Project | None = None) -> Project:
        """A project from JSON-like settings, on top of `base` (an update) or the defaults (a new project)."""
        if not isinstance(data, Mapping):
            raise ProjectError("project settings are a JSON object, e.g. {\"site\": \"arxiv\"}")
        known = {f.name for f in dataclasses.fields(cls)} - {"slug"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProjectError(f"unknown project setting {', '.join(map(repr, unknown))} (known: "
                               f"{', '.join(sorted(known))})")
        values: dict[str, Any] = dataclasses.asdict(base) if base else {"slug": slug}
        values.update(data)
        values["slug"] = slug
        if "site" not in values:
            raise ProjectError(f"a new project needs a site module (one of: {', '.join(site_names())})")
        project = cls(**{k: _convert(k, v) for k, v in values.items()})
        project.check()
        return project

    def check(self) -> None:
        if not SLUG_RE.match(self.slug) or self.slug in RESERVED_SLUGS:
            raise ProjectError(f"{self.slug!r} is not a project slug: lower-case letters, digits and '-', at most "
                               "63, starting with a letter or digit (and not a tracker path such as 'admin')")
        if self.site not in site_names():
            raise ProjectError(f"site {self.site!r} is not a site module (one of: {', '.join(site_names())})")
        if self.min_version is not None:
            parse_version(self.min_version, "min_version")
        if not (self.lease > 0 and math.isfinite(self.lease)):
            raise ProjectError(f"lease must be a positive number of seconds, not {self.lease}")
        if self.max_attempts < 1:
            raise ProjectError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if not (self.rate_limit >= 0 and math.isfinite(self.rate_limit)):
            raise ProjectError(f"rate_limit is items per minute, 0 for none, not {self.rate_limit}")
        if self.budget < 0 or self.max_upload < 1:
            raise ProjectError("budget must be 0 (none) or more, and max_upload a positive number of bytes")
        try:
            read_politeness(self.extra)
        except PolitenessValueError as e:
            raise ProjectError(f"extra: {e}; every worker would refuse the project's items") from None
        if "item_name" in self.extra:
            raise ProjectError("extra cannot set item_name: the tracker sets it")
        try:
            json.dumps(dict(self.extra))
        except (TypeError, ValueError) as e:
            raise ProjectError(f"extra must be JSON: {e}") from None
        if self.upload is not None:
            # The template passed alone; with this slug (up to 63 characters) it must still fit IA's 100.
            try:
                run_identifier(self.slug, self.upload.identifier, now=datetime(2026, 1, 1, tzinfo=timezone.utc),
                               rand8="abcd1234")
            except UsageError as e:
                raise ProjectError(f"upload.identifier {self.upload.identifier!r} does not work for project "
                                   f"{self.slug!r}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"extra": dict(self.extra)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Project:
        data = json.loads(text)
        return cls.from_mapping(data.pop("slug"), data)

    def replace(self, **changes: Any) -> Project:
        return dataclasses.replace(self, **changes)

    # ---- what the project accepts --------------------------------------------------------------------------
    def version_too_old(self, version: str | None) -> str | None:
        """Why a worker of `version` may not work on this project, or None when it may."""
        if self.min_version is None:
            return None
        if not version:
            return f"this project needs pipeline version {self.min_version} or newer, and the request named none"
        try:
            theirs = parse_version(version, "version")
        except ProjectError as e:
            return str(e)
        if theirs < parse_version(self.min_version, "min_version"):
            return f"pipeline version {version} is older than {self.min_version}, the oldest this project accepts"
        return None

    def parse_items(self, targets: Iterable[str]) -> tuple[list[str], list[str]]:
        """Canonical item names for `targets` by the project's site module, and the reasons some are not
        items (each naming the target), in order. The caller adds nothing when there is any reason."""
        site = get_site(self.site)
        names: list[str] = []
        problems: list[str] = []
        for target in targets:
            try:
                names.append(site.parse_target(target).name)
            except (TargetError, ArchiverError, ValueError) as e:
                problems.append(str(e))
        return names, problems


_CONVERT = {"lease": float, "rate_limit": float, "max_attempts": int, "budget": int, "max_upload": int}


def _convert(key: str, value: Any) -> Any:
    """JSON numbers and strings to the field's type, with a message naming the setting when they do not fit."""
    if key in _CONVERT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProjectError(f"{key} must be a number, not {value!r}")
        if _CONVERT[key] is int and value != int(value):
            raise ProjectError(f"{key} must be a whole number, not {value!r}")
        return _CONVERT[key](value)
    if key == "paused":
        if not isinstance(value, bool):
            raise ProjectError(f"paused must be true or false, not {value!r}")
        return value
    if key == "upload":
        return None if value is None else _upload(value)
    if key == "extra":
        if not isinstance(value, Mapping):
            raise ProjectError(f"extra must be a JSON object of keys added to each answer, not {value!r}")
        return dict(value)
    if key in ("slug", "site", "title") or (key == "min_version" and value is not None):
        if not isinstance(value, str):
            raise ProjectError(f"{key} must be text, not {value!r}")
        return value.strip()
    return value


_UPLOAD_KEYS = ("collection", "identifier", "metadata")


def _upload(value: Any) -> UploadSettings:
    """A manifest's upload settings from JSON, checked by the manifest's own rules (archiver.manifest.UPLOAD)."""
    if isinstance(value, UploadSettings):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ProjectError(f"upload must be a JSON object such as {{\"collection\": \"my_collection\"}}, or null "
                           f"to keep packs on disk, not {value!r}")
    if value.get("max_pack_size") is not None:
        # Kept by the dataclass for runs; here a pack is one batch, cut at the tracker's --chunk-size.
        raise ProjectError("upload.max_pack_size is not a tracker setting: each batch of accepted uploads becomes "
                           "one pack, cut at `archiver tracker serve --chunk-size`")
    unknown = sorted(set(value) - set(_UPLOAD_KEYS) - {"max_pack_size"})
    if unknown:
        raise ProjectError(f"unknown upload setting {', '.join(map(repr, unknown))} (known: "
                           f"{', '.join(_UPLOAD_KEYS)})")
    fields: dict[str, Any] = {}
    for key in ("identifier", "collection"):
        if value.get(key) is not None:
            try:
                fields[key] = UPLOAD[key].check(value[key])
            except ValueError as e:
                raise ProjectError(f"upload.{key}: {e} (expected {UPLOAD[key].expected})") from None
    fields["metadata"] = _metadata(value.get("metadata"))
    return UploadSettings(**fields)  # the identifier template defaults as in a manifest


def _metadata(value: Any) -> dict[str, str | list[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProjectError(f"upload.metadata must be a JSON object of metadata names to text, not {value!r}")
    out: dict[str, str | list[str]] = {}
    for key, v in value.items():
        if key == "identifier":
            raise ProjectError("upload.metadata: the identifier is made from upload.identifier (a template), not "
                               "given as metadata")
        try:
            check_key(key, "upload.metadata")
        except UsageError as e:
            raise ProjectError(str(e)) from None
        if isinstance(v, str) and v.strip():
            out[key] = v
        elif isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v):
            out[key] = list(v)
        else:
            raise ProjectError(f"upload.metadata.{key}: {v!r} is not text (expected text or a list of text)")
    return out


def parse_version(text: str, what: str) -> Version:
    """A pipeline version, compared as a version (20240101.01 < 20240101.10, 1.9 < 1.10)."""
    try:
        return Version(text.strip())
    except InvalidVersion:
        raise ProjectError(f"{what} {text!r} is not a version this tracker can compare (expected e.g. 20240101.01 "
                           "or 1.2.3)") from None
