"""The rules of the crawl's cookie jar (cookies.py), and the cookies.txt reader.

The rules are the standard library's (`http.cookiejar.CookieJar` with a `DefaultCookiePolicy`): domain and
path matching, Secure only over https, Expires and Max-Age (Max-Age wins; 0 or a past date deletes), host-only
cookies when Set-Cookie names no Domain, no cookie for a bare TLD or a known two-letter-country second level
(`co.uk`). Thin adapters stand in for urllib's request and response objects, since our HTTP client is our own.

Where the standard library is wrong for a crawler, `CrawlPolicy` and `load_cookie_file` correct it (each
correction is tested in tests/test_grab_cookies.py):
- `DefaultCookiePolicy` sends a host-only cookie to every subdomain of its host unless told
  `DomainStrictNonDomain` (RFC 6265 §5.3 step 6: host-only means that host only);
- it accepts a Domain that is a suffix of an IP address (127.0.0.1 setting `Domain=0.0.1`, then sent to
  10.0.0.1), and `Domain=local` from a dotless host (it calls `localhost` "localhost.local", so that cookie
  would go to every dotless host); RFC 6265 §5.1.3 lets an IP address match only itself;
- it stores `Domain=localhost` from `localhost` under ".localhost" and then never sends it back (the host is
  "localhost.local" to it): we keep such a cookie as the host-only cookie it amounts to;
- it accepts a Secure cookie over plain http, and `__Secure-`/`__Host-` cookies that break their prefix's
  rules; browsers refuse both (RFC 6265bis §4.1.3, §5.7);
- it sets no limits: we refuse a cookie over 4096 bytes (as browsers do) and keep at most 50 per domain (RFC
  6265 §6.1's minimum), so a hostile site cannot grow every request without bound;
- `MozillaCookieJar` drops cookies whose expiry is 0 (curl and browser exporters write session cookies so: a
  login cookie would silently vanish), drops session cookies unless asked, requires the "# Netscape HTTP Cookie
  File" first line (wget does not), rejects a TRUE domain flag without a leading dot, and its errors give no
  line number but do quote the line, cookie value included. `load_cookie_file` reads the same format (7 tab-
  separated fields, `#HttpOnly_` prefix) into the same `http.cookiejar.Cookie` objects, without those faults.

Imported only once a cookie is stored or loaded (http.cookiejar imports urllib.request, ~1.7 MiB in each of a
crawl's processes), so a crawl of sites that set none pays nothing for it.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from archiver.errors import UsageError

MAX_COOKIE_BYTES = 4096  # name + value; RFC 6265 §6.1, browsers refuse larger
MAX_COOKIES_PER_DOMAIN = 50  # RFC 6265 §6.1 minimum; past it, new names are refused (browsers evict the oldest)
_FLAGS = {"TRUE": True, "FALSE": False}
_FIELDS = ("domain", "include-subdomains flag", "path", "secure flag", "expiry", "name", "value")  # cookies.txt


def _ascii_host(host: str) -> str:
    try:
        host.encode("ascii")
        return host
    except UnicodeEncodeError:
        return host.encode("idna").decode("ascii")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _erhn(host: str) -> str:
    """http.cookiejar's "effective request-host name": a dotless name gets ".local" (RFC 2965)."""
    return host + ".local" if "." not in host and not _is_ip(host) else host


class _Request:
    """What http.cookiejar reads of a urllib.request.Request, for one URL of ours."""

    __slots__ = ("_url", "type", "host", "origin_req_host", "unverifiable", "hostname", "cookie")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.type = parts.scheme.lower()
        hostname = _ascii_host((parts.hostname or "").lower())
        self.hostname = hostname
        netloc = f"[{hostname}]" if ":" in hostname else hostname
        if parts.port is not None:
            netloc += f":{parts.port}"
        # no user info (http.cookiejar would take "user@host" for the host), host in IDNA, lower case
        self._url = f"{self.type}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        self.host = netloc
        self.origin_req_host = hostname
        self.unverifiable = False  # every URL of a crawl is one the "user" (the crawl) asked for
        self.cookie: str | None = None

    def get_full_url(self) -> str:
        return self._url

    def get_host(self) -> str:
        return self.host

    def get_type(self) -> str:
        return self.type

    def is_unverifiable(self) -> bool:
        return False

    def get_origin_req_host(self) -> str:
        return self.origin_req_host

    def has_header(self, name: str) -> bool:
        return False

    def get_header(self, name: str, default: str | None = None) -> str | None:
        return default

    def header_items(self) -> list[tuple[str, str]]:
        return []

    def add_unredirected_header(self, name: str, value: str) -> None:
        if name.lower() == "cookie":
            self.cookie = value


class _Response:
    """What http.cookiejar reads of a response: `info().get_all("Set-Cookie")`."""

    __slots__ = ("_set_cookies",)

    def __init__(self, set_cookies: Sequence[str]) -> None:
        self._set_cookies = list(set_cookies)

    def info(self) -> _Response:
        return self

    def get_all(self, name: str, default=None):
        if name.lower() == "set-cookie" and self._set_cookies:
            return list(self._set_cookies)
        return default


class CrawlPolicy(http.cookiejar.DefaultCookiePolicy):
    """DefaultCookiePolicy with RFC 6265's host-only rule and the corrections listed in the module docstring."""

    def __init__(self) -> None:
        super().__init__(rfc2965=False, netscape=True, strict_domain=True,
                         strict_ns_domain=http.cookiejar.DefaultCookiePolicy.DomainStrictNonDomain)

    def set_ok(self, cookie: http.cookiejar.Cookie, request) -> bool:
        if not super().set_ok(cookie, request):
            return False
        size = len(cookie.name or "") + len(cookie.value or "")
        if size > MAX_COOKIE_BYTES:
            return False
        if any(ord(c) < 32 or ord(c) == 127 for c in (cookie.name or "") + (cookie.value or "")):
            return False
        secure_origin = request.type == "https"
        if cookie.secure and not secure_origin:
            return False
        if cookie.name.startswith("__Secure-") and not (cookie.secure and secure_origin):
            return False
        if cookie.name.startswith("__Host-") and not (cookie.secure and secure_origin and not cookie.domain_specified
                                                      and cookie.path == "/"):
            return False
        if cookie.domain_specified:
            host = request.hostname
            domain = cookie.domain.lstrip(".")
            if _is_ip(host):
                if domain != host:
                    return False  # an IP address domain-matches only itself (RFC 6265 §5.1.3)
            elif "." not in domain and domain != host:
                return False  # a bare TLD, or "local" from a dotless host
            if domain == host and (_is_ip(host) or "." not in host):
                # Domain=localhost from localhost (or an IP address naming itself): no other host can match
                # it, and http.cookiejar would file the dotless one where it never matches: keep it host-only
                cookie.domain = http.cookiejar.eff_request_host(request)[1]
                cookie.domain_specified = False
                cookie.domain_initial_dot = False
        return True


class CrawlJar(http.cookiejar.CookieJar):
    """CookieJar with a per-domain limit (set_cookie is the one door every cookie goes through)."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        # `_cookies` (domain -> path -> name -> Cookie) is CookieJar's documented-in-source store, unchanged
        # since Python 2.4; reading it is the only way to count a domain's cookies without walking the jar.
        paths = self._cookies.get(cookie.domain)
        if paths is not None and cookie.name not in paths.get(cookie.path, {}):
            if sum(len(names) for names in paths.values()) >= MAX_COOKIES_PER_DOMAIN:
                return
        super().set_cookie(cookie)


def new_jar() -> CrawlJar:
    return CrawlJar(CrawlPolicy())


def header_for(jar: http.cookiejar.CookieJar, url: str) -> str | None:
    """The Cookie header the jar gives a request to `url` (None: no cookie applies)."""
    request = _Request(url)
    jar.add_cookie_header(request)
    return request.cookie


def extract(jar: http.cookiejar.CookieJar, url: str, set_cookies: Sequence[str]) -> None:
    """Keep (or delete, or refuse) the cookies of a response to `url`'s Set-Cookie headers."""
    jar.extract_cookies(_Response(set_cookies), _Request(url))


def load_cookie_file(path: str) -> list[http.cookiejar.Cookie]:
    """Cookies of a Netscape/Mozilla cookies.txt (as wget --load-cookies, curl -c and browser exporters write).

    Lines: domain, include-subdomains (TRUE/FALSE), path, secure (TRUE/FALSE), expiry (seconds since 1970; 0 or
    empty: a session cookie), name, value, separated by tabs; `#` starts a comment, except the `#HttpOnly_`
    domain prefix. Expired cookies are left out. A malformed line raises a UsageError naming the file, the line
    and the field, never the cookie's value (the file holds secrets). Read as latin-1, so the bytes of a value
    go out as they are in the file."""
    try:
        with open(path, encoding="latin-1", newline=None) as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise UsageError(f"cannot read cookies file {path}: {e.strerror or e}") from e
    now = time.time()
    cookies: list[http.cookiejar.Cookie] = []
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        rest = {}
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_"):]
            rest["HttpOnly"] = ""
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            raise UsageError(f"{path}:{n}: not a Netscape cookies.txt line: expected 7 tab-separated fields "
                             f"({', '.join(_FIELDS)}), got {len(fields)}")
        domain, sub, cpath, secure, expiry, name, value = fields
        domain = domain.strip().lower()
        def bad(field: int, expected: str, n: int = n) -> UsageError:
            return UsageError(f"{path}:{n}: field {field} ({_FIELDS[field - 1]}): expected {expected}")

        if not domain.lstrip(".") or any(c.isspace() for c in domain) or not domain.isascii():
            raise bad(1, "a host or .domain name")
        if sub.strip().upper() not in _FLAGS:
            raise bad(2, "TRUE or FALSE")
        if not cpath.startswith("/"):
            raise bad(3, "a path starting with /")
        if secure.strip().upper() not in _FLAGS:
            raise bad(4, "TRUE or FALSE")
        expiry = expiry.strip()
        if expiry and not (expiry.isascii() and expiry.isdigit()):
            raise bad(5, "a whole number of seconds since 1970 (0 or empty for a session cookie)")
        if any(ord(c) < 32 or ord(c) == 127 for c in name + value):
            raise bad(6 if any(ord(c) < 32 or ord(c) == 127 for c in name) else 7, "no control characters")
        expires = int(expiry) if expiry and int(expiry) > 0 else None
        if expires is not None and expires <= now:
            continue  # expired, as wget and MozillaCookieJar do
        if name == "":  # as MozillaCookieJar: a line with no name is a cookie sent as its value alone
            name, value = value, None
        host = domain.lstrip(".")
        if _FLAGS[sub.strip().upper()] and not _is_ip(host):
            cookie_domain, specified, dot = "." + host, True, True
        else:
            cookie_domain, specified, dot = _erhn(host), False, False
        cookies.append(http.cookiejar.Cookie(
            0, name, value, None, False, cookie_domain, specified, dot, cpath, True,
            _FLAGS[secure.strip().upper()], expires, expires is None, None, None, rest))
    return cookies
