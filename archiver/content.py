"""Is this answer what it claims to be? Bot-block pages, rate limits, JavaScript challenges, fake PDFs.

Shared by the crawler (a block page is never counted as the capture of the URL it answered) and the checker
(such a page archived as if it were the paper is a finding). The codes are stable: they are finding codes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from archiver.sites.base import BACKOFF, REJECT, Verdict

# arXiv's robot-detection page (arxiv.org/denied.html) and its export.arxiv.org variant.
_ARXIV_BLOCK = re.compile(rb"automatic robot detection|<title>\s*Access Denied\s*</title>|Play nice", re.I)
# Cloudflare, DDoS-Guard, Sucuri and similar interstitials.
_JS_CHALLENGE = re.compile(
    rb"<title>\s*(Just a moment\.\.\.|Attention Required! \| Cloudflare|DDoS-Guard|Checking your browser[^<]*)\s*</title>"
    rb"|/cdn-cgi/challenge-platform/|window\._cf_chl_opt|Sucuri WebSite Firewall - Access Denied",
    re.I,
)
_RATE_EXCEEDED = re.compile(rb"^\s*Rate exceeded\.?\s*$")


def assess_response(url: str, status: int, headers: Mapping[str, str], head: bytes) -> Verdict | None:
    """Classify one HTTP answer. `headers` has lower-case names; `head` is the decoded start of the body.

    BACKOFF means "the server is refusing us: wait and ask again; this is not a capture".
    REJECT means "a real answer, but not the thing the URL names" (a PDF URL answered with HTML, an empty 200).
    """
    if status == 429 or _RATE_EXCEEDED.match(head[:64]):
        return Verdict(BACKOFF, "rate-limited", f"HTTP {status} rate limit ({_snippet(head)})")
    if headers.get("cf-mitigated", "").lower() == "challenge" or (
            status in (403, 503, 200) and _maybe_challenge(head) and _JS_CHALLENGE.search(head)):
        return Verdict(BACKOFF, "js-challenge", f"HTTP {status} JavaScript challenge page instead of content")
    if status == 403 and _ARXIV_BLOCK.search(head):
        return Verdict(BACKOFF, "bot-block-page", f"HTTP 403 robot-detection page ({_snippet(head)})")
    if status == 503:
        return Verdict(BACKOFF, "server-unavailable", "HTTP 503: the server asks us to come back later")
    if status == 200:
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        path = urlsplit(url).path
        if (path.startswith("/pdf/") or ctype == "application/pdf") and not head.startswith(b"%PDF"):
            return Verdict(REJECT, "pdf-not-pdf", f"a PDF was expected but the body starts {head[:16]!r} ({ctype or 'no type'})")
        if not head:
            return Verdict(REJECT, "empty-200", "HTTP 200 with an empty body")
    return None


def _maybe_challenge(head: bytes) -> bool:
    """A cheap pre-filter (substring tests run at memchr speed) before the regex, which runs on every page."""
    low = head.lower()
    return b"challenge" in low or b"just a moment" in low or b"ddos-guard" in low or b"checking your browser" in low \
        or b"sucuri" in low or b"attention required" in low


def _snippet(head: bytes) -> str:
    text = re.sub(rb"<[^>]*>|\s+", b" ", head[:400]).strip()
    return text[:80].decode("utf-8", "replace") or "empty body"
