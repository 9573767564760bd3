"""Where `internetarchive` sends its requests: Internet Archive itself, or a test or staging endpoint.

The library hard-codes https://s3.us.archive.org for uploads and builds https://archive.org URLs for metadata,
so its host settings cannot point it elsewhere. The seam is the transport: an HTTPAdapter mounted on the session
for those two origins rewrites each request's URL to the endpoint, path and query kept, after the library has
built it exactly as in production. With an endpoint every other URL is refused, so nothing reaches the real IA.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import urllib3
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter, HTTPAdapter

from archiver import __version__
from archiver.errors import ArchiverError, UsageError
from archiver.upload.credentials import Credentials

ENDPOINT_ENV = "ARCHIVER_IA_ENDPOINT"
IA_ORIGINS = ("s3.us.archive.org", "archive.org")
# Bytes per socket write of an upload body. urllib3 defaults to 16 KiB: for multi-GB bodies that is a Python
# call per 16 KiB; 1 MiB keeps the per-block cost negligible and memory bounded.
BODY_BLOCK = 1 << 20


class EndpointRefused(ArchiverError):
    """A request for a URL the endpoint does not stand in for; sending it would leave the endpoint."""


def resolve_endpoint(value: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The endpoint URL from `--ia-endpoint` or ARCHIVER_IA_ENDPOINT (None: the real Internet Archive)."""
    env = os.environ if environ is None else environ
    raw = (value or env.get(ENDPOINT_ENV) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        source = "--ia-endpoint" if value else ENDPOINT_ENV
        raise UsageError(f"{source} {raw!r} is not an endpoint URL (expected http(s)://HOST[:PORT][/PREFIX], "
                         "e.g. http://127.0.0.1:8080)")
    return raw.rstrip("/")


class EndpointAdapter(HTTPAdapter):
    """Sends requests meant for an IA origin to `endpoint` (None: unchanged), with large body writes."""

    def __init__(self, endpoint: str | None = None, **kwargs: Any) -> None:
        self.endpoint = endpoint
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if "key_blocksize" in urllib3.poolmanager.PoolKey._fields:  # urllib3 >= 2 passes it to connections
            kwargs.setdefault("blocksize", BODY_BLOCK)
        super().init_poolmanager(*args, **kwargs)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        if self.endpoint is not None:
            parts = urlsplit(request.url or "")
            # Which IA service the library meant; the endpoint may route on it (the path alone is ambiguous
            # for an item named "metadata").
            request.headers["X-Forwarded-Host"] = parts.netloc
            request.url = self.endpoint + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


class RefuseAdapter(BaseAdapter):
    """Refuses every request: mounted for all other URLs when an endpoint stands in for IA."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        raise EndpointRefused(f"refused {request.method} {request.url}: with the IA endpoint {self.endpoint} "
                              "only archive.org and s3.us.archive.org requests are sent, to the endpoint")

    def close(self) -> None:
        pass


def make_session(credentials: Credentials, endpoint: str | None = None) -> Any:
    """An `internetarchive` session with these keys, talking to IA or, with `endpoint`, only to the endpoint.

    The user's config file is not read here (keys come from `credentials`), so its cookies and logging
    settings never travel to an endpoint.
    """
    from internetarchive.session import ArchiveSession

    config = {"s3": {"access": credentials.access, "secret": credentials.secret},
              "general": {"secure": True, "user_agent_suffix": f"archiver/{__version__}"}}
    session = ArchiveSession(config=config, config_file=os.devnull)
    if endpoint is None:
        session.mount("https://s3.us.archive.org/", EndpointAdapter(None))
        return session
    # The library's own adapters go: its "https://archive.org" prefix also matches https://archive.org.evil/.
    session.adapters.clear()
    session.mount("https://", RefuseAdapter(endpoint))
    session.mount("http://", RefuseAdapter(endpoint))
    for host in IA_ORIGINS:
        for scheme in ("https", "http"):
            session.mount(f"{scheme}://{host}/", EndpointAdapter(endpoint))
    return session
