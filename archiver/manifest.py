"""Manifests: a project's item list and settings in YAML, validated without fetching anything.

The schema is documented in manifests/README.md. Validation works on PyYAML's node graph (`yaml.compose`)
rather than on loaded values, for three reasons: every node knows its line, so each problem can name
FILE:LINE and the key; duplicate keys are visible (loading silently keeps the last); and item ids keep the text
that was written (loaded, ``1412.6980`` is the float 1412.698 and names another paper).

Every problem is collected before anything is raised, so one `archiver manifest check` lists them all.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from archiver.errors import UsageError
from archiver.sites import get_site, site_names
from archiver.sites.base import ROBOTS_MODES, Item, SiteOptions

PROJECT_RE = re.compile(r"^[a-z0-9-]+$")
IDENTIFIER_FIELDS = ("project", "timestamp", "rand8")
DEFAULT_IDENTIFIER = "archiver_{project}_{timestamp}_{rand8}"  # the megawarc factory's form
# Internet Archive identifiers: letters, digits, '_', '-', '.'; starting with a letter or digit; at most 100.
_IA_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_IA_METADATA_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)
_INLINE_COMMENT = re.compile(r"\s+#")  # items never contain whitespace, so " #" always starts a comment

_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"


class ManifestError(UsageError):
    """Everything wrong with a manifest, one `FILE:LINE: key: problem (expected ...)` line each."""

    def __init__(self, path: str | Path, problems: list[Problem]) -> None:
        self.path = str(path)
        self.problems = problems
        n = len(problems)
        super().__init__(f"{path} is not a valid manifest ({n} problem{'s' if n != 1 else ''}):\n"
                         + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class UploadSettings:
    identifier: str = DEFAULT_IDENTIFIER  # Internet Archive item identifier template
    collection: str | None = None
    metadata: dict[str, str | list[str]] = field(default_factory=dict)
    max_pack_size: int | None = None  # bytes per megawarc pack

    def identifier_for(self, project: str, timestamp: str, rand8: str) -> str:
        """The identifier for one upload: `timestamp` is YYYYmmddHHMMSS, `rand8` 8 random [a-z0-9]."""
        return self.identifier.format(project=project, timestamp=timestamp, rand8=rand8)


@dataclass(frozen=True)
class Manifest:
    path: Path
    project: str
    site: str
    items: list[Item]
    options: dict[str, Any]  # only the options given, validated and converted (sizes in bytes, ignore a tuple)
    upload: UploadSettings
    description: str | None = None
    origins: dict[str, str] = field(default_factory=dict)  # item name -> "FILE:LINE" where it was listed


def parse_size(value: int | float | str) -> int:
    """Bytes from 5368709120, '5G', '5GiB', '100MB', '512k' (powers of 1024, as `archiver grab` reads them)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size")
    unit = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**unit)


# ---- value checkers: take the loaded value, return it converted or raise ValueError saying what is wrong ----
def _number(minimum: float, above: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{v!r} is not a number")
        if v < minimum or (above and v == minimum):
            raise ValueError(f"{v} is {'not more than' if above else 'less than'} {minimum}")
        return v
    return check


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{v!r} is not a whole number")
        if v < minimum:
            raise ValueError(f"{v} is less than {minimum}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{v} is more than {maximum}")
        return v
    return check


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{v!r} is not true or false")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{v!r} is not a non-empty string")
    return v


def _size(v: Any) -> int:
    return parse_size(v)


def _url(v: Any) -> str:
    parts = urlsplit(v) if isinstance(v, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{v!r} is not an http(s) URL")
    return v.rstrip("/")


def _identifier_template(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    try:
        fields = [f for _lit, f, _spec, _conv in string.Formatter().parse(v) if f is not None]
    except ValueError as e:
        raise ValueError(f"{v!r} has unbalanced braces ({e})") from None
    unknown = [f for f in fields if f not in IDENTIFIER_FIELDS]
    if unknown:
        raise ValueError(f"{v!r} uses {{{unknown[0]}}}, which is not a placeholder")
    # Rendered with the longest values the placeholders take, so a template that passes can never produce a
    # bad identifier later.
    sample = v.format(project="p", timestamp="20260101000000", rand8="abcd1234")
    if not _IA_IDENTIFIER.match(sample):
        raise ValueError(f"{v!r} does not make an Internet Archive identifier")
    return v


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in allowed:
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return v
    return check


def _collection(v: Any) -> str:
    if not isinstance(v, str) or not _IA_IDENTIFIER.match(v):
        raise ValueError(f"{v!r} is not a collection identifier")
    return v


@dataclass(frozen=True)
class _Field:
    check: Callable[[Any], Any]
    expected: str


OPTIONS: dict[str, _Field] = {
    "delay": _Field(_number(0), "seconds between requests to one host, a number >= 0"),
    "concurrency": _Field(_integer(1), "requests in flight at once, a whole number >= 1"),
    "base_url": _Field(_url, "the site's root as an http(s) URL, e.g. https://arxiv.org"),
    "include_source": _Field(_boolean, "true or false"),
    "recursive": _Field(_boolean, "true or false"),
    "depth": _Field(_integer(0), "a link depth limit, a whole number >= 0"),
    "user_agent": _Field(_text, "a User-Agent string"),
    "operator": _Field(_text, "who runs the crawl, e.g. a name and e-mail address"),
    "warc_max_size": _Field(_size, "a size such as 5GiB, 500M or 1000000 (bytes)"),
    "compress_level": _Field(_integer(0, 9), "a gzip level from 0 (none) to 9 (smallest)"),
    "timeout": _Field(_number(0, above=True), "seconds, a number > 0"),
    "max_time": _Field(_number(0, above=True), "seconds, a number > 0"),
    "max_size": _Field(_size, "a size such as 2GiB, 500M or 1000000 (bytes)"),
    "tries": _Field(_integer(1), "attempts per URL, a whole number >= 1"),
    "max_attempts": _Field(_integer(1), "attempts per item before it counts as failed, a whole number >= 1"),
    "verify_tls": _Field(_boolean, "true or false"),
    "ignore": _Field(lambda v: v, "a list of regular expressions"),  # checked element by element
    "robots": _Field(_choice(*ROBOTS_MODES), "obey (robots.txt is fetched and obeyed) or ignore"),
    "cookies": _Field(_boolean, "true (cookies kept for each item, as a browser would) or false"),
    "load_cookies": _Field(_text, "a Netscape cookies.txt file, relative to the manifest's directory"),  # read
}
UPLOAD: dict[str, _Field] = {
    "identifier": _Field(_identifier_template,
                         "an Internet Archive identifier template of letters, digits, '_', '-', '.' and "
                         "{project}, {timestamp}, {rand8}, at most 100 characters"),
    "collection": _Field(_collection, "an Internet Archive collection identifier"),
    "metadata": _Field(lambda v: v, "a mapping of metadata names to text or lists of text"),  # checked by node
    "max_pack_size": _Field(_size, "a size such as 50GiB"),
}
TOP_LEVEL = ("project", "site", "description", "items", "items_file", "options", "upload")


# ---- the validator --------------------------------------------------------------------------------------------
class _Validator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = str(path)
        self.problems: list[Problem] = []
        self._loader = yaml.SafeLoader("")

    def add(self, node: yaml.Node | None, key: str, message: str, file: str | None = None,
            line: int | None = None) -> None:
        if line is None and node is not None:
            line = node.start_mark.line + 1
        self.problems.append(Problem(file or self.shown, line, key, message))

    def value(self, node: yaml.Node) -> Any:
        return self._loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, where: str, known: tuple[str, ...] | dict,
                what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key -> (key node, value node) of a mapping node, reporting duplicates and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.add(node, where or "(top level)", f"got {_kind(node)} (expected {what})")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{where}.{key}" if where else str(key)
            if key is None:
                self.add(key_node, where or "(top level)", f"got {_kind(key_node)} as a key (expected a name)")
            elif key in out:
                self.add(key_node, path, f"given twice (first on line {out[key][0].start_mark.line + 1}; "
                                         "expected each key once)")
            elif key not in known:
                hint = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
                did = f"did you mean {hint[0]!r}? " if hint else ""
                self.add(key_node, path, f"unknown key ({did}expected one of: {', '.join(known)})")
            else:
                out[key] = (key_node, value_node)
        return out

    def fields(self, node: yaml.Node, where: str, spec: dict[str, _Field]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node.tag == _NULL:
            return out  # `options:` with every line commented out means "no options"
        for key, (_k, v) in self.mapping(node, where, spec, f"a mapping of {where} settings").items():
            f = spec[key]
            if key == "ignore":
                out[key] = self.regexes(v, f"{where}.{key}")
                continue
            if key == "metadata":
                out[key] = self.metadata(v, f"{where}.{key}")
                continue
            if key == "load_cookies":
                path = self.cookie_file(v, f"{where}.{key}", f.expected)
                if path is not None:
                    out[key] = path
                continue
            try:
                out[key] = f.check(self.value(v))
            except (ValueError, yaml.YAMLError) as e:
                self.add(v, f"{where}.{key}", f"{e} (expected {f.expected})")
        return out

    def cookie_file(self, node: yaml.Node, where: str, expected: str) -> str | None:
        """The cookies file's path (absolute), once it has been read without a fault; its problems are named by
        its own file and line, never with a cookie's value."""
        from archiver.crawl.cookies import load_cookie_file

        if not _is_text(node):
            self.add(node, where, f"got {_kind(node)} (expected {expected})")
            return None
        file = (self.path.parent / node.value).resolve()
        try:
            load_cookie_file(str(file))
        except UsageError as e:
            self.add(node, where, f"{e} (expected {expected})")
            return None
        return str(file)

    def regexes(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.add(node, where, f"got {_kind(node)} (expected a list of regular expressions)")
            return ()
        out = []
        for n, child in enumerate(node.value):
            if not isinstance(child, yaml.ScalarNode) or child.tag == _NULL:
                self.add(child, f"{where}[{n}]", f"got {_kind(child)} (expected a regular expression)")
                continue
            try:
                re.compile(child.value)
            except re.error as e:
                self.add(child, f"{where}[{n}]", f"{child.value!r} is not a valid regular expression: {e} "
                                                 "(expected Python re syntax)")
                continue
            out.append(child.value)
        return tuple(out)

    def metadata(self, node: yaml.Node, where: str) -> dict[str, str | list[str]]:
        if not isinstance(node, yaml.MappingNode):
            self.add(node, where, f"got {_kind(node)} (expected a mapping of metadata names to text)")
            return {}
        out: dict[str, str | list[str]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
            path = f"{where}.{key}"
            if not _IA_METADATA_KEY.match(key):
                self.add(key_node, path, f"{key!r} is not a metadata name (expected lower case letters, digits,"
                                         " '_' and '-', starting with a letter)")
                continue
            if key in out:
                self.add(key_node, path, "given twice (expected each key once)")
                continue
            # Text as written: `date: 2021-08-16` must stay that string, not become a date.
            if _is_text(value_node):
                out[key] = value_node.value
            elif isinstance(value_node, yaml.SequenceNode) and all(_is_text(c) for c in value_node.value) \
                    and value_node.value:
                out[key] = [c.value for c in value_node.value]
            else:
                self.add(value_node, path, f"got {_kind(value_node)} (expected text or a list of text)")
        return out


def _is_text(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag != _NULL and node.value.strip() != ""


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value)


# ---- loading --------------------------------------------------------------------------------------------------
def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest; a ManifestError lists every problem at once."""
    path = Path(path)
    v = _Validator(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, [Problem(str(path), None, "(file)", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(path, [Problem(str(path), None, "(file)", f"cannot read it: {e}")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ManifestError(path, [Problem(str(path), line, "(YAML)", f"{e.problem or e} (expected valid YAML)")])\
            from None
    if root is None:
        raise ManifestError(path, [Problem(str(path), None, "(file)", "it is empty (expected a mapping with "
                                                                      "project, site and items)")])
    top = v.mapping(root, "", TOP_LEVEL, "a mapping with project, site and items")

    project = _required_text(v, top, "project", root)
    if project is not None and not PROJECT_RE.match(project):
        v.add(top["project"][1], "project", f"{project!r} is not a slug (expected lower case letters, digits and "
                                            "'-', e.g. foundation-models)")
    site_name = _required_text(v, top, "site", root)
    if site_name is not None and site_name not in site_names():
        hint = difflib.get_close_matches(site_name, site_names(), n=1)
        did = f"did you mean {hint[0]!r}? " if hint else ""
        v.add(top["site"][1], "site", f"{site_name!r} is not a site module ({did}expected one of: "
                                      f"{', '.join(site_names())})")
        site_name = None
    description = None
    if "description" in top:
        try:
            description = _text(v.value(top["description"][1]))
        except ValueError as e:
            v.add(top["description"][1], "description", f"{e} (expected text)")

    options = v.fields(top["options"][1], "options", OPTIONS) if "options" in top else {}
    if options.get("cookies") is False and "load_cookies" in options:
        node = next(val for key, val in top["options"][1].value if key.value == "load_cookies")
        v.add(node, "options.load_cookies", "given with `cookies: false` (expected one or the other)")
    upload_fields = v.fields(top["upload"][1], "upload", UPLOAD) if "upload" in top else {}
    upload = UploadSettings(**upload_fields)
    if project and "identifier" in upload_fields:
        made = upload.identifier_for(project, "20260101000000", "abcd1234")
        if len(made) > 100:
            node = next(val for key, val in top["upload"][1].value if key.value == "identifier")
            v.add(node, "upload.identifier", f"makes {made!r}, {len(made)} characters (expected an "
                                                         "identifier of at most 100)")

    listed = _listed_items(v, top, root)
    items, origins = _parse_items(v, site_name, options, listed)
    if v.problems:
        v.problems.sort(key=lambda p: (p.file != v.shown, p.file, p.line or 0))
        raise ManifestError(path, v.problems)
    return Manifest(path, project or "", site_name or "", items, options, upload, description, origins)


def _required_text(v: _Validator, top: dict, key: str, root: yaml.Node) -> str | None:
    if key not in top:
        if isinstance(root, yaml.MappingNode):
            v.add(root, key, f"missing (expected {'a project slug' if key == 'project' else 'a site module'})")
        return None
    node = top[key][1]
    if not _is_text(node):
        v.add(node, key, f"got {_kind(node)} (expected text)")
        return None
    return node.value


# (text as written, key path, file shown, line)
_Listed = tuple[str, str, str, int]


def _listed_items(v: _Validator, top: dict, root: yaml.Node) -> list[_Listed]:
    listed: list[_Listed] = []
    if "items" in top:
        node = top["items"][1]
        if not isinstance(node, yaml.SequenceNode):
            v.add(node, "items", f"got {_kind(node)} (expected a list of items, one per '- ' line)")
        else:
            for n, child in enumerate(node.value):
                line = child.start_mark.line + 1
                if not _is_text(child):
                    v.add(child, f"items[{n}]", f"got {_kind(child)} (expected an item name)")
                else:
                    listed.append((child.value.strip(), f"items[{n}]", v.shown, line))
    if "items_file" in top:
        listed += _read_items_file(v, top["items_file"][1])
    elif "items" not in top and isinstance(root, yaml.MappingNode):
        v.add(root, "items", "missing (expected `items`, a list, and/or `items_file`, a file of one item per "
                             "line)")
    elif "items" in top and isinstance(top["items"][1], yaml.SequenceNode) and not top["items"][1].value:
        v.add(top["items"][1], "items", "the list is empty (expected at least one item)")
    return listed


def _read_items_file(v: _Validator, node: yaml.Node) -> list[_Listed]:
    if not _is_text(node):
        v.add(node, "items_file", f"got {_kind(node)} (expected a file name relative to the manifest)")
        return []
    file = v.path.parent / node.value
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        v.add(node, "items_file", f"{file} does not exist (expected a file relative to the manifest's directory)")
        return []
    except (OSError, UnicodeDecodeError) as e:
        v.add(node, "items_file", f"cannot read {file}: {e} (expected a UTF-8 text file)")
        return []
    out = []
    for n, raw in enumerate(lines, 1):
        text = _INLINE_COMMENT.split(raw, maxsplit=1)[0].strip()
        if text and not text.startswith("#"):
            out.append((text, "item", str(file), n))
    if not out:
        v.add(node, "items_file", f"{file} lists no items (expected one item per line; # starts a comment)")
    return out


def _parse_items(v: _Validator, site_name: str | None, options: dict[str, Any],
                 listed: list[_Listed]) -> tuple[list[Item], dict[str, str]]:
    if site_name is None:
        return [], {}  # without a site module the items cannot be judged; the site problem is reported
    try:
        site = get_site(site_name, SiteOptions(base_url=options.get("base_url")))
    except UsageError:
        site = get_site(site_name)  # a bad base_url is reported with options; judge the items without it
    items: list[Item] = []
    origins: dict[str, str] = {}
    first: dict[str, tuple[str, str, int]] = {}  # name -> (as written, file, line)
    for text, key, file, line in listed:
        try:
            item = site.parse_target(text)
        except UsageError as e:
            v.add(None, key, str(e), file=file, line=line)
            continue
        where = f"{file}:{line}"
        if item.name in first:
            written, at_file, at_line = first[item.name]
            at = f"line {at_line}" if at_file == file else f"{at_file}:{at_line}"
            v.add(None, key, f"{text!r} is the same item as {written!r} on {at} ({site_name}:{item.name}; "
                             "expected each item once)", file=file, line=line)
            continue
        first[item.name] = (text, file, line)
        origins[item.name] = where
        items.append(item)
    return items, origins
