"""robots.txt as RFC 9309 (the Robots Exclusion Protocol) reads it: parsing, group choice and path matching.

Hand-rolled rather than `urllib.robotparser`, which gets these wrong for a standards-following crawler
(each one checked, and the RFC behaviour tested in tests/test_grab_robots.py):

- rule precedence: robotparser applies the *first* rule in file order that matches; RFC 9309 §2.2.2 says the
  *most specific* (longest) match wins and an Allow wins a tie, so `Disallow: /a` + `Allow: /a/b` allows /a/b;
- user-agent matching: robotparser matches a group when its name is a *substring* of our token (so
  `User-agent: a` applies to "archiver"); §2.2.1 wants the product token, compared case-insensitively;
- several groups naming our token: robotparser uses the first, §2.2.1 says their rules are combined;
- `*` and `$` in paths (§2.2.3): robotparser treats them as literal characters;
- status codes: `RobotFileParser.read` takes 401/403 as "disallow everything"; §2.3.1.3 says any 4xx means
  "no robots.txt" (everything allowed). Statuses are handled by the crawler here; this module parses bytes.

`Crawl-delay` is not in RFC 9309; it is read from the chosen group(s) as most crawlers that honour it do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# §2.5: a parsing limit of at least 500 kibibytes; what lies beyond it is ignored.
MAX_ROBOTS_BYTES = 512 * 1024
# §2.3.1.2: follow at least five consecutive redirects; after that the file counts as unavailable.
MAX_ROBOTS_REDIRECTS = 5
# §2.4: a cached robots.txt should not be used for more than 24 hours.
ROBOTS_MAX_AGE = 24 * 3600.0
# Crawl-delay is honoured up to this many seconds (Heritrix caps it at 300 s; a minute per request already
# makes a crawl of a few thousand pages take days).
MAX_CRAWL_DELAY = 60.0

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_TOKEN = re.compile(r"[A-Za-z_-]+")


def product_token(user_agent: str) -> str:
    """The product token robots.txt groups name, from a User-Agent: "archiver/0.1.0 (+...)" -> "archiver"."""
    m = _TOKEN.match(user_agent.strip())
    return m.group(0).lower() if m else ""


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of an http(s) URL, default port left out, lower case; None for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def _normalise(path: str) -> str:
    """One spelling for paths and patterns before they are compared (§2.2.2): non-ASCII characters
    percent-encoded as UTF-8, escapes of unreserved characters decoded, other escapes in upper case."""
    if not path.isascii():
        path = "".join(c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in path)

    def fix(m: re.Match) -> str:
        byte = int(m.group(1), 16)
        return chr(byte) if byte in _UNRESERVED else f"%{byte:02X}"

    return _PCT.sub(fix, path) if "%" in path else path


def path_of(url: str) -> str:
    """The part of a URL robots rules match: path and query ("/" when the path is empty)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _normalise(path)


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str  # normalised, as written otherwise (its length decides precedence)
    _rx: re.Pattern | None = field(default=None, compare=False)

    @classmethod
    def make(cls, allow: bool, pattern: str) -> Rule:
        pattern = _normalise(pattern)
        rx = None
        if "*" in pattern or pattern.endswith("$"):
            body, anchored = (pattern[:-1], True) if pattern.endswith("$") else (pattern, False)
            rx = re.compile(".*".join(re.escape(p) for p in body.split("*")) + (r"\Z" if anchored else ""),
                            re.DOTALL)
        return cls(allow, pattern, rx)

    def matches(self, path: str) -> bool:
        if self._rx is None:
            return path.startswith(self.pattern)
        return self._rx.match(path) is not None

    def __str__(self) -> str:
        return f"{'Allow' if self.allow else 'Disallow'}: {self.pattern}"


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    crawl_delay: float | None = None


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one robots.txt that apply to one product token."""

    rules: tuple[Rule, ...] = ()
    crawl_delay: float | None = None
    disallow_all: bool = False  # robots.txt unreachable or 5xx: §2.3.1.4 says assume complete disallow
    group: str = "*"  # which group applied: the product token, "*", or "" when none did

    @classmethod
    def allow_everything(cls) -> RobotsRules:
        return cls(group="")

    @classmethod
    def disallow_everything(cls) -> RobotsRules:
        return cls(disallow_all=True, group="")

    def verdict(self, url: str) -> Rule | None:
        """The rule that disallows `url`, or None when it may be fetched."""
        path = path_of(url)
        if path == "/robots.txt":
            return None  # §2.2.2: implicitly allowed
        if self.disallow_all:
            return Rule(False, "/")
        best: Rule | None = None
        for rule in self.rules:
            if not rule.matches(path):
                continue
            if best is None or len(rule.pattern) > len(best.pattern) or (
                    len(rule.pattern) == len(best.pattern) and rule.allow and not best.allow):
                best = rule
        return best if best is not None and not best.allow else None

    def allowed(self, url: str) -> bool:
        return self.verdict(url) is None


def parse_robots(data: bytes, token: str) -> RobotsRules:
    """The rules of a robots.txt body that apply to product token `token` (lower case); `*` when no group
    names it, and no rules at all when neither is there."""
    text = data[:MAX_ROBOTS_BYTES].decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    groups: list[_Group] = []
    current: _Group | None = None
    in_agents = False  # the previous group line was a user-agent line: another one joins the same group
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        key = key.strip().lower()
        value = value.strip()
        if key in ("user-agent", "useragent", "user agent"):
            if current is None or not in_agents:
                current = _Group()
                groups.append(current)
            current.agents.append(_agent_name(value))
            in_agents = True
        elif key in ("allow", "disallow"):
            in_agents = False
            if current is not None and value:  # an empty Disallow allows everything: no rule
                current.rules.append(Rule.make(key == "allow", value))
        elif key == "crawl-delay":
            in_agents = False
            if current is not None:
                try:
                    delay = float(value)
                except ValueError:
                    continue
                if delay >= 0 and delay == delay and delay != float("inf"):
                    current.crawl_delay = delay if current.crawl_delay is None else max(current.crawl_delay, delay)
        # sitemap and unknown lines neither start nor end a group
    for name in (token, "*"):
        chosen = [g for g in groups if name and name in g.agents]
        if chosen:
            delays = [g.crawl_delay for g in chosen if g.crawl_delay is not None]
            return RobotsRules(tuple(r for g in chosen for r in g.rules), max(delays) if delays else None,
                               group=name)
    return RobotsRules.allow_everything()


def _agent_name(value: str) -> str:
    """A user-agent line's name as compared with our token: lower case, without a version ("Foo/1.2")."""
    value = value.strip().lower()
    if value == "*":
        return value
    m = _TOKEN.match(value)
    return m.group(0) if m else value


def dechunk(raw: bytes) -> bytes:
    """The data of a chunked transfer-coded body; as much as can be read when it is cut short or malformed."""
    out = bytearray()
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(raw[pos:end].split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            break
        if size <= 0:
            break
        start = end + 2
        out += raw[start:start + size]
        if start + size > len(raw):
            break
        pos = start + size + 2
    return bytes(out)
