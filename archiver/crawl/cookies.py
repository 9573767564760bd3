"""Cookies kept during a crawl, as wget --keep-session-cookies and grab-site do, and loaded from a cookies.txt.

The jar lives in the crawl coordinator (crawler.py): it adds the Cookie header to each task it dispatches and
stores the Set-Cookie headers workers send back with each result, redirect hops included (the worker never
follows a redirect itself: each hop is a task of its own). Its rules are http.cookiejar's, corrected where they
are wrong for a crawler: cookie_rules.py, imported only when a site sets a cookie or a cookies file is loaded.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import http.cookiejar


class Cookies:
    """One crawl's (or one bulk-run item's) cookies: `header(url)` to send, `store(url, set_cookies)` to keep."""

    def __init__(self, loaded: Iterable[http.cookiejar.Cookie] = ()) -> None:
        self.jar: Any = None  # a cookie_rules.CrawlJar, made when the first cookie comes
        self._empty = True
        for cookie in loaded:
            self._jar().set_cookie(copy.copy(cookie))
        self._update()

    def _jar(self):
        if self.jar is None:
            from archiver.crawl.cookie_rules import new_jar

            self.jar = new_jar()
        return self.jar

    def _update(self) -> None:
        self._empty = self.jar is None or not any(True for _ in self.jar)

    def header(self, url: str) -> str | None:
        """The Cookie header value for a request to `url`, or None when no cookie applies."""
        if self._empty:  # the common case (no site has set one yet) costs nothing per request
            return None
        from archiver.crawl.cookie_rules import header_for

        value = header_for(self.jar, url)
        if value is None:
            self._update()  # perhaps every cookie ran out
        return value

    def store(self, url: str, set_cookies: Sequence[str]) -> None:
        """Keep (or delete, or refuse) the cookies of the Set-Cookie headers of a response to `url`."""
        if not set_cookies:
            return
        from archiver.crawl.cookie_rules import extract

        extract(self._jar(), url, set_cookies)
        self._update()

    def __len__(self) -> int:
        return 0 if self.jar is None else sum(1 for _ in self.jar)

    def __iter__(self):
        return iter([] if self.jar is None else list(self.jar))


def set_cookie_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The Set-Cookie values of a response's header fields, in order."""
    return tuple(v for k, v in headers if len(k) == 10 and k.lower() == "set-cookie")


def load_cookie_file(path: str) -> list[http.cookiejar.Cookie]:
    """The cookies of a Netscape cookies.txt (`cookie_rules.load_cookie_file`); a bad line is a UsageError."""
    from archiver.crawl.cookie_rules import load_cookie_file as load

    return load(path)
