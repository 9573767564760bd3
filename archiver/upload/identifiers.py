"""Internet Archive identifiers: IA's rules, checked before anything is sent, and the names runs give items."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from archiver.errors import UsageError

# IA's metadata schema: ASCII letters, digits, '_', '-', '.', starting with a letter or digit, at most 100
# characters. IA-S3's own check (quoted in its error text) also wants at least 5.
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{4,99}$")
_ALLOWED = re.compile(r"[A-Za-z0-9_.-]")

# Archive Team's megawarc factory names items archiveteam_<project>_<YYYYmmddHHMMSS>_<8 hex>; ours say who made them.
RUN_IDENTIFIER_TEMPLATE = "archiver_{project}_{timestamp}_{rand8}"
EXAMPLE = "archiver_my-project_20240501120000_1a2b3c4d"


class InvalidIdentifier(UsageError):
    """An identifier IA would refuse; the message says why and what a valid one looks like."""


def validate_identifier(identifier: str) -> str:
    """Return `identifier` when IA accepts it, else raise InvalidIdentifier saying what is wrong."""
    if _VALID.match(identifier):
        return identifier
    if len(identifier) < 5:
        why = f"it has {len(identifier)} characters, fewer than 5"
    elif len(identifier) > 100:
        why = f"it has {len(identifier)} characters, more than 100"
    elif not re.match(r"[A-Za-z0-9]", identifier[0]):
        why = f"it starts with {identifier[0]!r}"
    else:
        bad = sorted({ch for ch in identifier if not _ALLOWED.match(ch)})
        why = "it contains " + ", ".join(repr(ch) for ch in bad)
    raise InvalidIdentifier(f"{identifier!r} is not a valid Internet Archive identifier: {why} (expected 5 to 100 "
                            "ASCII letters, digits, '_', '-' or '.', starting with a letter or digit, e.g. "
                            f"{EXAMPLE})")


def run_identifier(project: str, template: str = RUN_IDENTIFIER_TEMPLATE, *, now: datetime | None = None,
                   rand8: str | None = None) -> str:
    """A fresh identifier for an upload of `project` from `template` ({project}, {timestamp}, {rand8}), checked."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")
    try:
        made = template.format(project=project, timestamp=stamp, rand8=rand8 or secrets.token_hex(4))
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidIdentifier(f"identifier template {template!r} cannot be filled in ({e}); it may use "
                                "{project}, {timestamp} and {rand8}") from None
    return validate_identifier(made)
