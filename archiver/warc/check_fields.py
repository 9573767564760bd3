"""WARC named fields: the mandatory-field matrix per record type and version, and the form of each value.

The rules are WARC 1.1 §5–6 (and 1.0 where it differs), as summarised in reference/warc-checking.md §4.
Field names are case-insensitive, so `fields` maps lower-case names to the first value seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

RECORD_TYPES = frozenset({"warcinfo", "response", "resource", "request", "metadata", "revisit", "conversion",
                          "continuation"})
MANDATORY = ("warc-record-id", "content-length", "warc-date", "warc-type")
REPEATABLE = frozenset({"warc-concurrent-to"})
STANDARD_FIELDS = frozenset({
    "warc-type", "warc-record-id", "warc-date", "content-length", "content-type", "warc-concurrent-to",
    "warc-block-digest", "warc-payload-digest", "warc-ip-address", "warc-refers-to", "warc-refers-to-target-uri",
    "warc-refers-to-date", "warc-target-uri", "warc-truncated", "warc-warcinfo-id", "warc-filename",
    "warc-profile", "warc-identified-payload-type", "warc-segment-number", "warc-segment-origin-id",
    "warc-segment-total-length",
})
TARGET_REQUIRED = frozenset({"response", "resource", "request", "revisit", "conversion", "continuation"})
# field -> record types that shall not carry it
NOT_ON = {
    "warc-target-uri": frozenset({"warcinfo"}),
    "warc-concurrent-to": frozenset({"warcinfo", "conversion", "continuation"}),
    "warc-refers-to": frozenset({"warcinfo", "response", "resource", "request", "continuation"}),
    "warc-ip-address": frozenset({"warcinfo", "conversion", "continuation"}),
}
# field -> the only record types that may carry it
ONLY_ON = {
    "warc-filename": frozenset({"warcinfo"}),
    "warc-refers-to-target-uri": frozenset({"revisit"}),
    "warc-refers-to-date": frozenset({"revisit"}),
    "warc-profile": frozenset({"revisit"}),
    "warc-segment-origin-id": frozenset({"continuation"}),
    "warc-segment-total-length": frozenset({"continuation"}),
}
REFERENCE_FIELDS = ("warc-refers-to", "warc-warcinfo-id", "warc-segment-origin-id")
TRUNCATED_VALUES = frozenset({"length", "time", "disconnect", "unspecified"})
REVISIT_PROFILES = frozenset({
    "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest",
    "http://netpreserve.org/warc/1.0/revisit/server-not-modified",
    "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest",
    "http://netpreserve.org/warc/1.1/revisit/server-not-modified",
})

RECORD_ID = re.compile(r"<[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>]+>")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")
_DATE_10 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
# W3CDTF at any granularity; WARC 1.1 allows a fraction of 1 to 9 digits.
_DATE_11 = re.compile(r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,9})?)?Z)?)?)?")
_LIMITS = (None, 12, 31, 23, 59, 60)

Problems = list[tuple[str, str]]


def check_date(value: str, version: str, name: str = "WARC-Date") -> Problems:
    """Problems with a date field's value for the record's WARC version."""
    m = _DATE_10.fullmatch(value)
    if m is None:
        m = _DATE_11.fullmatch(value)
        if m is None:
            return [("invalid-date", f"{name} {value!r} is not a W3C-ISO8601 UTC date")]
        if version == "1.0":
            full = value[:19] + "Z"
            if "." in value and _DATE_10.fullmatch(full):
                return [("date-precision", f"{name} {value!r} has sub-second precision, which WARC/1.0 does not "
                                           "allow")] + _ranges(m, name, value)
            return [("invalid-date", f"{name} {value!r} is not YYYY-MM-DDThh:mm:ssZ as WARC/1.0 requires")]
    return _ranges(m, name, value)


def _ranges(m: re.Match, name: str, value: str) -> Problems:
    for group, limit in zip(m.groups()[1:], _LIMITS[1:], strict=True):
        if group is not None and (int(group) > limit or (limit in (12, 31) and int(group) == 0)):
            return [("invalid-date", f"{name} {value!r} is out of range")]
    return []


def check_fields(version: str, fields: Mapping[str, str], repeated: list[str], concurrent: list[str],
                 block_length: int) -> Problems:
    """Problems with a record's named fields (not its digests, which need the block)."""
    problems: Problems = []
    for name in MANDATORY:
        if name not in fields:
            problems.append(("missing-mandatory-field", f"the record has no {_display(name)} field"))
    for name in repeated:
        problems.append(("repeated-field", f"{_display(name)} appears more than once"))

    record_id = fields.get("warc-record-id")
    if record_id is not None and not RECORD_ID.fullmatch(record_id):
        problems.append(("invalid-record-id", f"WARC-Record-ID {record_id!r} is not '<scheme:...>' without "
                                              "whitespace"))
    date = fields.get("warc-date")
    if date is not None:
        problems += check_date(date, version)
    rtype = fields.get("warc-type")
    if rtype is not None and rtype not in RECORD_TYPES:
        problems.append(("unknown-record-type", f"WARC-Type {rtype!r} is not a standard record type"))
        rtype = None

    for value in concurrent:
        if not RECORD_ID.fullmatch(value):
            problems.append(("invalid-reference", f"WARC-Concurrent-To {value!r} is not '<scheme:...>'"))
    for name in REFERENCE_FIELDS:
        value = fields.get(name)
        if value is not None and not RECORD_ID.fullmatch(value):
            problems.append(("invalid-reference", f"{_display(name)} {value!r} is not '<scheme:...>'"))

    target = fields.get("warc-target-uri")
    if target is not None:
        if target.startswith("<") and target.endswith(">"):
            problems.append(("invalid-target-uri", f"WARC-Target-URI {target!r} is wrapped in <> (wget 1.19 bug); "
                                                   "readers strip them"))
        elif not _URI.fullmatch(target):
            problems.append(("invalid-target-uri", f"WARC-Target-URI {target!r} is not an absolute URI without "
                                                   "whitespace"))
    elif rtype in TARGET_REQUIRED:
        problems.append(("missing-target-uri", f"a {rtype} record must have WARC-Target-URI"))

    if rtype is not None:
        for name, types in NOT_ON.items():
            if rtype in types and (name in fields or (name == "warc-concurrent-to" and concurrent)):
                problems.append(("field-not-allowed", f"a {rtype} record shall not have {_display(name)}"))
        for name, types in ONLY_ON.items():
            if name in fields and rtype not in types:
                problems.append(("field-not-allowed", f"{_display(name)} is allowed only on "
                                                      f"{' and '.join(sorted(types))} records"))
        problems += _type_rules(rtype, fields, block_length)

    truncated = fields.get("warc-truncated")
    if truncated is not None and truncated.lower() not in TRUNCATED_VALUES:
        problems.append(("invalid-truncated-value", f"WARC-Truncated {truncated!r} is not one of "
                                                    f"{', '.join(sorted(TRUNCATED_VALUES))}"))
    refers_date = fields.get("warc-refers-to-date")
    if refers_date is not None:
        problems += check_date(refers_date, version, "WARC-Refers-To-Date")
    segment = fields.get("warc-segment-number")
    if segment is not None and (not segment.isdigit() or int(segment) < (2 if rtype == "continuation" else 1)):
        problems.append(("invalid-segment-number", f"WARC-Segment-Number {segment!r} is not a valid segment number"))
    if block_length > 0 and "content-type" not in fields and rtype != "continuation":
        problems.append(("missing-content-type", f"a {block_length}-byte block has no Content-Type"))
    return problems


def _type_rules(rtype: str, fields: Mapping[str, str], block_length: int) -> Problems:
    problems: Problems = []
    if rtype == "revisit":
        profile = fields.get("warc-profile")
        if profile is None:
            problems.append(("revisit-profile-missing", "a revisit record must have WARC-Profile"))
        elif profile not in REVISIT_PROFILES:
            problems.append(("revisit-profile-unknown", f"WARC-Profile {profile!r} is not a standard revisit "
                                                        "profile"))
        elif profile.endswith("identical-payload-digest") and "warc-payload-digest" not in fields:
            problems.append(("missing-mandatory-field", "an identical-payload-digest revisit must have "
                                                        "WARC-Payload-Digest"))
    elif rtype == "continuation":
        for name in ("warc-segment-origin-id", "warc-segment-number"):
            if name not in fields:
                problems.append(("missing-mandatory-field", f"a continuation record must have {_display(name)}"))
    return problems


def _display(name: str) -> str:
    """'warc-record-id' -> 'WARC-Record-ID' for messages."""
    return "-".join("WARC" if p == "warc" else "ID" if p == "id" else "IP" if p == "ip" else "URI" if p == "uri"
                    else p.capitalize() for p in name.split("-"))
