"""arXiv identifiers: parsing, validation and normalisation.

Two id schemes exist (info.arxiv.org/help/arxiv_identifier.html, arxiv-base `arxiv/identifier`):

* old style, 1991-08 to 2007-03: ``archive[.SC]/YYMMNNN`` (``hep-th/9901001``, ``math.GT/0309136``); the
  subject class ``.SC`` is not part of the identity, so the canonical form drops it (arXiv 301s to it);
* new style, from 2007-04: ``YYMM.NNNN`` up to 1412, ``YYMM.NNNNN`` from 1501.

Either may carry a version ``vN`` (N >= 1, no leading zero). Users paste ids in many shapes (``arXiv:`` prefix,
``.pdf`` file names, abs/pdf/html URLs), so `parse_arxiv_id` accepts all of them and, when it refuses, says
exactly which rule the input breaks: a grab that silently targets the wrong paper is worse than an error.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, replace
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from archiver.errors import TargetError

# Hosts that serve arXiv's paper URL space (abs/pdf/html/src). Other *.arxiv.org hosts (static, info, ar5iv)
# serve different things and are not paper hosts.
ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})

# First path segments that name one paper: /abs/ID, /pdf/ID, /html/ID, /src/ID, /e-print/ID, /format/ID.
PAPER_KINDS = frozenset({"abs", "pdf", "html", "src", "e-print", "format"})

# Every archive that ever issued old-style ids (arxiv-base `arxiv/taxonomy/definitions.py`, archives whose
# start date is before 2007-04). stat, q-fin, eess and econ only ever had new-style ids.
OLD_STYLE_ARCHIVES = frozenset({
    "acc-phys", "adap-org", "alg-geom", "ao-sci", "astro-ph", "atom-ph", "bayes-an", "chao-dyn", "chem-ph",
    "cmp-lg", "comp-gas", "cond-mat", "cs", "dg-ga", "funct-an", "gr-qc", "hep-ex", "hep-lat", "hep-ph",
    "hep-th", "math", "math-ph", "mtrl-th", "nlin", "nucl-ex", "nucl-th", "patt-sol", "physics", "plasm-ph",
    "q-alg", "q-bio", "quant-ph", "solv-int", "supr-con", "test",
})

EXAMPLES = ("2108.07258, 2108.07258v2, hep-th/9901001, arxiv:2108.07258 "
            "or https://arxiv.org/abs/2108.07258")

# Loose shapes: they accept more than is valid on purpose, so that validation can name the broken rule
# ("month 13 does not exist") instead of a bare "no match".
_LOOSE_ID = re.compile(
    r"(?:(?P<archive>[A-Za-z][A-Za-z-]*)(?:\.(?P<sc>[A-Za-z][A-Za-z-]*))?/(?P<digits>\d+)"
    r"|(?P<yymm>\d+)\.(?P<num>\d+))"
    r"(?:[vV](?P<version>\d+))?"
)
_PREFIX = re.compile(r"^arxiv:", re.I)
_FILE_SUFFIX = re.compile(r"\.(?:ps\.gz|pdf|ps|gz)$", re.I)
_SLASHES = re.compile(r"/{2,}")
_URLISH = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//|^(?:www\.|export\.)?arxiv\.org(?:[:/]|$)", re.I)
_NEWISH = re.compile(r"\d{4}\.\d")
_OLDISH = re.compile(r"(?P<archive>[A-Za-z][A-Za-z-]*)(?:\.[A-Za-z-]+)?/+\d")

# Old-style ids run 1991-08 .. 2007-03, new-style ones start 2007-04; compared as year * 12 + month - 1.
_OLD_FIRST = 1991 * 12 + 7
_OLD_LAST = 2007 * 12 + 2
_NEW_FIRST = 2007 * 12 + 3
_FIVE_DIGITS_FIRST = 2015 * 12 + 0


@dataclass(frozen=True)
class ArxivId:
    """A valid arXiv identifier.

    `id` is canonical and versionless (``2108.07258``, ``math/0309136``); `version` is the version asked for,
    if any. `archive` is the old-style archive, or ``"arxiv"`` for new-style ids (arXiv's own convention,
    used in its storage paths). `yymm` is the submission year and month as four digits.
    """

    id: str
    version: int | None
    old_style: bool
    archive: str
    yymm: str

    @property
    def number(self) -> str:
        """The paper's number within its month, as written (``07258``, ``001``)."""
        return self.id[-3:] if self.old_style else self.id.split(".", 1)[1]

    @property
    def year(self) -> int:
        yy = int(self.yymm[:2])
        return (1900 if self.old_style and yy >= 91 else 2000) + yy

    @property
    def month(self) -> int:
        return int(self.yymm[2:])

    @property
    def versioned(self) -> str:
        """The id with its version suffix when it has one (``2108.07258v2``)."""
        return f"{self.id}v{self.version}" if self.version else self.id

    def with_version(self, version: int | None) -> ArxivId:
        return replace(self, version=version)

    def __str__(self) -> str:
        return self.versioned


class PaperPath(NamedTuple):
    """A URL path inside one paper's URL space, e.g. ``/html/2108.07258v3/x1.png``."""

    kind: str  # first path segment: "abs", "pdf", "html", "src", "e-print" or "format"
    arxiv_id: ArxivId
    rest: str  # what follows the id and version: "", "/", ".pdf", "/x1.png", "/anc/data.csv", ...


class _Invalid(Exception):
    """Why a string is not a valid id; turned into a TargetError (or None) by the public functions."""


def parse_arxiv_id(text: str) -> ArxivId:
    """Parse an arXiv id or paper URL in any of the forms people paste; raise TargetError saying why not.

    Accepted: ``2108.07258``, ``2108.07258v2``, ``hep-th/9901001``, ``math.GT/0309136`` (→ ``math/0309136``),
    an ``arxiv:`` prefix in any case, ``.pdf``/``.ps``/``.gz``/``.ps.gz`` file-name suffixes, and URLs on
    arxiv.org, www.arxiv.org or export.arxiv.org: ``/abs/ID``, ``/pdf/IDvN(.pdf)``, ``/html/IDvN(/...)``,
    ``/src/ID``, ``/abs?id=ID`` (http or https, scheme optional).
    """
    s = text.strip()
    is_url = bool(_URLISH.match(s))
    try:
        if not s:
            raise _Invalid("it is empty")
        return _parse_url(s) if is_url else _parse_bare(s)
    except _Invalid as e:
        what = "an arXiv paper URL" if is_url else "a valid arXiv id"
        raise TargetError(f"{text!r} is not {what}: {e}. Valid ids look like {EXAMPLES}") from None


def parse_arxiv_path(path: str, query: str = "") -> ArxivId:
    """Parse the path (and query) of an arXiv paper URL such as ``/abs/2108.07258v2``; TargetError if not one.

    Used for URLs on a configured mirror root, where only the part after the root is arXiv's.
    """
    try:
        return _parse_path(path, query).arxiv_id
    except _Invalid as e:
        shown = path + (f"?{query}" if query else "")
        raise TargetError(f"{shown!r} is not an arXiv paper URL path: {e}. Paper URLs look like /abs/2108.07258, "
                          f"/pdf/2108.07258v2 or /html/2108.07258v3; valid ids look like {EXAMPLES}") from None


def split_paper_path(path: str, query: str = "") -> PaperPath | None:
    """The paper a crawled URL path belongs to, or None. Never raises: it runs on every URL of a crawl."""
    try:
        return _parse_path(path, query)
    except _Invalid:
        return None


def looks_like_arxiv(text: str) -> bool:
    """True when `text` is clearly meant as an arXiv id or paper URL, valid or not.

    Cheap, for picking a site module: an invalid id such as ``2113.01234`` should get the arXiv error message
    (which says what is wrong) rather than "unknown target". arxiv.org URLs outside the paper URL space
    (listings, help pages) are not claimed, so the generic module can still archive them.
    """
    s = text.strip()
    if not s or any(ch.isspace() for ch in s):
        return False
    if _PREFIX.match(s):
        return True
    if _URLISH.match(s):
        parts = urlsplit(_with_scheme(s))
        if (parts.hostname or "").lower() not in ARXIV_HOSTS:
            return False
        first = _SLASHES.sub("/", parts.path).lstrip("/").split("/", 1)[0].lower()
        return first in PAPER_KINDS
    if _NEWISH.match(s):
        return True
    m = _OLDISH.match(s)
    return bool(m and m.group("archive").lower() in OLD_STYLE_ARCHIVES)


# ---- internals ---------------------------------------------------------------------------------------------

def _with_scheme(s: str) -> str:
    """`s` as an absolute URL: people paste "arxiv.org/abs/..." and protocol-relative "//arxiv.org/..."."""
    if s.startswith("//"):
        return "https:" + s
    if not re.match(r"[a-z][a-z0-9+.-]*://", s, re.I):
        return "https://" + s
    return s


def _parse_url(s: str) -> ArxivId:
    parts = urlsplit(_with_scheme(s))
    if parts.scheme.lower() not in ("http", "https"):
        raise _Invalid(f"only http and https URLs name papers, not {parts.scheme}:")
    host = (parts.hostname or "").lower()
    if host not in ARXIV_HOSTS:
        raise _Invalid(f"{host or 'the URL'} is not an arXiv paper host (arxiv.org, www.arxiv.org, export.arxiv.org)")
    return _parse_path(parts.path, parts.query).arxiv_id


def _parse_path(path: str, query: str) -> PaperPath:
    path = _SLASHES.sub("/", path)
    kind, _, rest = path.lstrip("/").partition("/")
    kind = kind.lower()
    if kind not in PAPER_KINDS:
        raise _Invalid(f"{path or '/'} is not a paper URL (paper URLs are /abs/ID, /pdf/ID, /html/ID, /src/ID)")
    if not rest:
        # /abs?id=ID is an old form arXiv still answers.
        ids = parse_qs(query).get("id") if kind == "abs" else None
        if not ids:
            raise _Invalid(f"/{kind}/ is missing the paper id")
        rest = ids[0]
    aid, after = _match_id(_PREFIX.sub("", rest, count=1))
    if after and not _FILE_SUFFIX.fullmatch(after) and not after.startswith("/"):
        raise _Invalid(_junk_reason(aid, after))
    if after.startswith("/") and kind in ("abs", "pdf") and after != "/":
        raise _Invalid(f"unexpected {after!r} after the id {aid.versioned}")
    return PaperPath(kind, aid, after)


def _parse_bare(s: str) -> ArxivId:
    s = _PREFIX.sub("", s, count=1)
    s = _SLASHES.sub("/", s)
    aid, after = _match_id(s)
    if after and not _FILE_SUFFIX.fullmatch(after):
        raise _Invalid(_junk_reason(aid, after))
    return aid


def _junk_reason(aid: ArxivId, after: str) -> str:
    if re.match(r"[vV](?!\d)", after):
        return "'v' must be followed by a version number, as in v2"
    return f"unexpected {after!r} after the id {aid.versioned}"


def _match_id(s: str) -> tuple[ArxivId, str]:
    """Parse the id at the start of `s`; return it and whatever follows it."""
    m = _LOOSE_ID.match(s)
    if not m:
        if re.match(r"\d+$", s):
            raise _Invalid("a new-style id has a dot after the year and month (YYMM.NNNNN)")
        if re.match(r"[A-Za-z][A-Za-z-]*(?:\.[A-Za-z-]+)?$", s):
            raise _Invalid("an old-style id needs '/' and the number after the archive (archive/YYMMNNN)")
        raise _Invalid("it is neither a new-style id (YYMM.NNNNN) nor an old-style one (archive/YYMMNNN)")
    version = _version(m.group("version"))
    if m.group("digits") is not None:
        aid = _old_style(m.group("archive"), m.group("digits"), version)
    else:
        aid = _new_style(m.group("yymm"), m.group("num"), version)
    return aid, s[m.end():]


def _version(v: str | None) -> int | None:
    if v is None:
        return None
    if v.startswith("0"):
        if int(v) == 0:
            raise _Invalid("versions start at v1 (v0 does not exist)")
        raise _Invalid(f"version numbers have no leading zero (v{v} should be v{int(v)})")
    return int(v)


def _month(yymm: str) -> int:
    mm = int(yymm[2:])
    if not 1 <= mm <= 12:
        raise _Invalid(f"month {yymm[2:]} does not exist (YYMM: {yymm})")
    return mm


def _new_style(yymm: str, num: str, version: int | None) -> ArxivId:
    if len(yymm) != 4:
        raise _Invalid(f"a new-style id starts with 4 digits, year and month (YYMM), not {yymm!r}")
    mm = _month(yymm)
    year = 2000 + int(yymm[:2])
    when = year * 12 + mm - 1
    if when < _NEW_FIRST:
        raise _Invalid(f"arXiv began new-style ids in 2007-04 (0704), so {yymm} cannot be one; "
                       "papers before that have old-style ids like hep-th/9901001")
    today = datetime.date.today()
    # One month of grace: the submitter's clock, or ours, may be ahead across a month boundary.
    if when > today.year * 12 + today.month:
        raise _Invalid(f"{year}-{mm:02d} ({yymm}) is in the future")
    if when < _FIVE_DIGITS_FIRST:
        if len(num) == 5:
            raise _Invalid(f"5-digit numbers start in 2015 (1501); ids from 0704 to 1412, like {yymm}, "
                           "have 4-digit numbers (YYMM.NNNN)")
        if len(num) != 4:
            raise _Invalid(f"ids from 0704 to 1412 have 4-digit numbers (YYMM.NNNN), not {len(num)}")
    elif len(num) != 5:
        raise _Invalid(f"ids from 2015 (1501) on, like {yymm}, have 5-digit numbers (YYMM.NNNNN), not {len(num)}")
    if int(num) == 0:
        raise _Invalid(f"paper numbers start at {'0' * (len(num) - 1)}1")
    return ArxivId(id=f"{yymm}.{num}", version=version, old_style=False, archive="arxiv", yymm=yymm)


def _old_style(archive: str, digits: str, version: int | None) -> ArxivId:
    archive = archive.lower()
    if archive not in OLD_STYLE_ARCHIVES:
        raise _Invalid(f"{archive!r} is not an arXiv archive that had old-style ids "
                       "(such as hep-th, math, cond-mat, astro-ph, cs)")
    if len(digits) < 4:
        raise _Invalid("an old-style id is archive/YYMMNNN: year, month and a 3-digit number")
    yymm, num = digits[:4], digits[4:]
    mm = _month(yymm)
    yy = int(yymm[:2])
    year = (1900 if yy >= 91 else 2000) + yy
    when = year * 12 + mm - 1
    if not _OLD_FIRST <= when <= _OLD_LAST:
        raise _Invalid(f"old-style ids run from 1991-08 (9108) to 2007-03 (0703), not {year}-{mm:02d} ({yymm}); "
                       "later papers have new-style ids like 2108.07258")
    if len(num) != 3:
        raise _Invalid(f"old-style ids have 3-digit numbers after YYMM (archive/YYMMNNN), not {len(num)}")
    if int(num) == 0:
        raise _Invalid("paper numbers start at 001")
    return ArxivId(id=f"{archive}/{yymm}{num}", version=version, old_style=True, archive=archive, yymm=yymm)
