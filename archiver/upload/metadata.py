"""Item metadata for an upload: what the WARCs hold (captures, hosts, dates, arXiv versions), described in
words, merged with what the user gives. Also which file names IA makes itself and must never be uploaded."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from archiver import PROJECT_URL, __version__
from archiver.errors import UsageError
from archiver.sites.arxiv_ids import split_paper_path

Metadata = dict[str, str | list[str]]

# Names IA derives for web items: <warc>.warc.os.cdx.gz per WARC, <identifier>.cdx.gz and <identifier>.cdx.idx.
DERIVED_SUFFIXES = (".cdx.gz", ".cdx.idx")
WARC_SUFFIXES = (".warc", ".warc.gz", ".warc.zst")
_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")
_CAPTURE_TYPES = ("response", "resource", "revisit")


def derived_by_ia(name: str) -> bool:
    """True for a file name IA derives itself for web items (uploading one would clash with IA's own)."""
    return name.lower().endswith(DERIVED_SUFFIXES)


def is_warc(name: str) -> bool:
    return name.lower().endswith(WARC_SUFFIXES)


@dataclass
class CaptureFacts:
    """What a set of WARCs captured, for describing it: kept small (counts and sets of short keys)."""

    captures: int = 0
    first: str | None = None  # earliest WARC-Date, as YYYY-MM-DDTHH:MM:SSZ
    last: str | None = None
    hosts: Counter[str] = field(default_factory=Counter)
    papers: set[str] = field(default_factory=set)  # arXiv ids with a capture
    versions: set[tuple[str, int]] = field(default_factory=set)  # arXiv (id, version) with an abs page or PDF
    complete: bool = True  # False when a file could not be read to its end

    def add(self, url: str, when: str) -> None:
        self.captures += 1
        if when:
            self.first = when if self.first is None or when < self.first else self.first
            self.last = when if self.last is None or when > self.last else self.last
        parts = urlsplit(url)
        self.hosts[(parts.hostname or "").lower()] += 1
        paper = split_paper_path(parts.path, parts.query)
        if paper is not None:
            self.papers.add(paper.arxiv_id.id)
            if paper.kind in ("abs", "pdf") and paper.arxiv_id.version:
                self.versions.add((paper.arxiv_id.id, paper.arxiv_id.version))

    def update(self, other: CaptureFacts) -> None:
        self.captures += other.captures
        for when in (other.first, other.last):
            if when:
                self.first = when if self.first is None or when < self.first else self.first
                self.last = when if self.last is None or when > self.last else self.last
        self.hosts.update(other.hosts)
        self.papers |= other.papers
        self.versions |= other.versions
        self.complete = self.complete and other.complete


def _iso(warc_date: str) -> str:
    """2024-05-01T12:00:00.123456Z -> 2024-05-01T12:00:00Z; 20240501120000 (CDXJ) -> the same form."""
    d = warc_date.strip()
    if len(d) >= 14 and d[:14].isdigit():
        return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}Z"
    return d[:19] + "Z" if len(d) >= 19 else d


def facts_from_cdxj(path: str | Path) -> CaptureFacts:
    """Facts from a CDXJ index (`<warc>.cdxj`, as grab and run write beside each WARC): cheap, no WARC read."""
    facts = CaptureFacts()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(" ", 2)
            if len(parts) < 3:
                continue
            try:
                url = json.loads(parts[2]).get("url", "")
            except ValueError:
                continue
            if url:
                facts.add(url, _iso(parts[1]))
    return facts


def facts_from_warc(stream: BinaryIO) -> CaptureFacts:
    """Facts from the records of a WARC stream (headers only). A damaged file gives what was read before the
    damage, marked incomplete: the check reports the damage itself."""
    from warcio.archiveiterator import ArchiveIterator

    facts = CaptureFacts()
    try:
        for rec in ArchiveIterator(stream, no_record_parse=True, block_size=1 << 20):
            if rec.rec_type in _CAPTURE_TYPES:
                facts.add(rec.rec_headers.get_header("WARC-Target-URI") or "",
                          _iso(rec.rec_headers.get_header("WARC-Date") or ""))
    except Exception:  # warcio raises many types for damaged input; all mean "stop reading here"
        facts.complete = False
    return facts


@dataclass(frozen=True)
class RunInfo:
    """What a run directory says about itself (report.json and the manifest it names)."""

    directory: Path
    project: str
    done_items: int
    manifest: Path | None  # the manifest file, when it can still be found
    manifest_named: str | None = None  # what report.json calls it (to say which one is missing)
    description: str | None = None  # the manifest's description
    site: str | None = None


def read_run_info(run_dir: str | Path, *, project: str | None = None,
                  manifest: str | Path | None = None) -> RunInfo | None:
    """The run's facts from DIR/report.json and the manifest it names. None for a directory without a report
    (a grab's output, say), unless `project` is given: a run that is still going has written no report yet."""
    directory = Path(run_dir)
    try:
        report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict):
        if project is None:
            return None
        report = {}
    # The manifest as named on the run's command line (relative to where it ran, maybe moved since).
    named = str(manifest) if manifest is not None else report.get("manifest")
    path = Path(named) if isinstance(named, str) and named else None
    description = site = None
    if path is not None and path.is_file():
        description, site = _manifest_facts(path)
    stats = report.get("stats") if isinstance(report.get("stats"), dict) else {}
    return RunInfo(directory, project or str(report.get("project") or directory.name), int(stats.get("done") or 0),
                   path if path is not None and path.is_file() else None, named if isinstance(named, str) else None,
                   description, site)


def _manifest_facts(path: Path) -> tuple[str | None, str | None]:
    """The manifest's description and site, read leniently: it was valid when the run started."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, None
    if not isinstance(loaded, dict):
        return None, None
    description, site = loaded.get("description"), loaded.get("site")
    return (description if isinstance(description, str) else None, site if isinstance(site, str) else None)


# ---- the words ------------------------------------------------------------------------------------------------
def generate_metadata(facts: CaptureFacts, *, warcs: int, run: RunInfo | None = None, items: int | None = None,
                      forced: int = 0) -> Metadata:
    """mediatype, title, description, date and subject for an item holding `warcs` WARC files with `facts`.

    `items` is how many run items the upload holds (default: the run's done items); `forced` how many WARCs go
    up despite check errors (the description then says so).
    """
    out: Metadata = {}
    if warcs:
        out["mediatype"] = "web"  # with WARC files, what the Wayback Machine's ingestion looks for
    days = _day_range(facts)
    what = run.project if run else _hosts(facts, 3, counts=False) or "web captures"
    out["title"] = f"{what}: web archive" + (f", {days}" if days else "")
    out["description"] = " ".join(_description(facts, warcs, run, items, forced))
    if facts.first:
        out["date"] = facts.first[:10]
    subjects = ["web archive", "WARC", "archiver"]
    if run:
        subjects.append(run.project)
    if facts.papers:
        subjects.append("arXiv")
    out["subject"] = subjects
    return out


def _description(facts: CaptureFacts, warcs: int, run: RunInfo | None, items: int | None,
                 forced: int) -> list[str]:
    files = f"{warcs} WARC file{'s' if warcs != 1 else ''}"
    if run:
        about = f": {run.description.strip()}" if run.description and run.description.strip() else ""
        lines = [f"{files} from the archiver run of project {run.project}{about}."]
    else:
        lines = [f"Web archive in {files}."]
    if facts.captures:
        lines.append(f"{facts.captures:,} captures of {_hosts(facts, 5, counts=True)}.")
    count = items if items is not None else (run.done_items if run else None)
    if facts.papers:
        papers = count if count is not None and (run is None or run.site in (None, "arxiv")) else len(facts.papers)
        lines.append(f"{papers:,} arXiv paper{'s' if papers != 1 else ''}, {len(facts.versions):,} "
                     f"version{'s' if len(facts.versions) != 1 else ''} (abstract page and PDF of each).")
    elif count:
        lines.append(f"{count:,} item{'s' if count != 1 else ''}.")
    if facts.first:
        lines.append(f"Captured {facts.first} to {facts.last}." if facts.last != facts.first
                     else f"Captured {facts.first}.")
    checked = "every WARC was checked before upload"
    if forced:
        checked += f"; {forced} had errors and {'was' if forced == 1 else 'were'} uploaded anyway (--force)"
    lines.append(f"Made with archiver {__version__} ({PROJECT_URL}); {checked}.")
    return lines


def _hosts(facts: CaptureFacts, n: int, counts: bool) -> str:
    top = [(h or "(no host)", c) for h, c in facts.hosts.most_common(n)]
    names = [f"{h} ({c:,})" if counts else h for h, c in top]
    rest = len(facts.hosts) - len(top)
    if rest:
        names.append(f"{rest} other host{'s' if rest != 1 else ''}")
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _day_range(facts: CaptureFacts) -> str:
    if not facts.first or not facts.last:
        return ""
    first, last = facts.first[:10], facts.last[:10]
    return first if first == last else f"{first} to {last}"


# ---- what the user gives --------------------------------------------------------------------------------------
def parse_metadata_args(pairs: Iterable[str]) -> Metadata:
    """`KEY:VALUE` strings (as given to --metadata) to metadata; a repeated key gives a list, in order."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise UsageError(f"--metadata {pair!r} is not KEY:VALUE (e.g. --metadata subject:physics)")
        out.setdefault(check_key(key, f"--metadata {pair!r}"), []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def check_key(key: str, where: str) -> str:
    if not _KEY.match(key):
        raise UsageError(f"{where}: {key!r} is not a metadata name (expected lower-case letters, digits, '_' and "
                         "'-', starting with a letter, e.g. subject)")
    if key == "identifier":
        raise UsageError(f"{where}: the identifier is given with --identifier, not as metadata")
    return key


def merge_metadata(generated: Mapping[str, Any], user: Mapping[str, Any] | None = None,
                   collection: str | list[str] | None = None) -> Metadata:
    """The generated metadata with the user's on top: a key the user gives replaces the generated value.
    `collection` adds to any collection the user gave as metadata."""
    out: Metadata = {k: _values(v) for k, v in generated.items()}
    for key, value in (user or {}).items():
        out[check_key(key, "metadata")] = _values(value)
    if collection:
        given = [out["collection"]] if isinstance(out.get("collection"), str) else list(out.get("collection", []))
        extra = [collection] if isinstance(collection, str) else list(collection)
        merged = list(dict.fromkeys(given + extra))
        out["collection"] = merged[0] if len(merged) == 1 else merged
    return {k: v for k, v in out.items() if v not in ("", [])}


def _values(value: Any) -> str | list[str]:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value if str(v).strip()]
        return items[0] if len(items) == 1 else items
    return str(value)
