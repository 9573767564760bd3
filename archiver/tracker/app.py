"""The tracker's HTTP API: FastAPI on uvicorn, OpenAPI at /openapi.json (browsable at /docs).

    app = create_app("sqlite:///tracker", admin_token)          # or "redis://127.0.0.1:6379/0"
    uvicorn.run(app, host="127.0.0.1", port=9080)

Worker routes (seesaw-compatible; each command also answers with a double slash before it, as seesaw sends when
a pipeline's tracker URL ends in '/'):

    POST /{slug}/request                 {downloader, api_version: "2", version}  -> {"item_name", ...}
    POST /{slug}/multi={n}/request       the same, up to n items, names joined by NUL
    POST /{slug}/done                    {downloader, item, bytes, version, id}   -> OK
    POST /{slug}/upload                  {downloader, item_name, version}         -> {"upload_target": ".../"}
    PUT  /{slug}/upload/{item}/{file}    the WARC, with the claim token(s) as Basic password or Bearer token
    POST /{slug}/release                 {downloader, item}                       -> Released OK.
    POST /{slug}/heartbeat               {downloader, item}                       -> {"lease_expires", ...}
    POST /{slug}/fail                    {downloader, item, reason, retry}        -> {"states": {...}}
    GET  /{slug}/stats.json

Admin routes are under /admin with `Authorization: Bearer <token>` (archiver.tracker.admin).

Handlers are async only to read bodies within their limits; the store calls run in the thread pool, one hop
per request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt
from starlette.concurrency import run_in_threadpool

from archiver import __version__
from archiver.errors import UsageError
from archiver.queue import QueueError
from archiver.tracker import TOKEN_ENV
from archiver.tracker.admin import admin_router
from archiver.tracker.projects import ProjectError
from archiver.tracker.protocol import Caller, Refusal, Tracker
from archiver.tracker.state import open_state
from archiver.tracker.uploads import Handoff, Sweeper, UploadRefused, UploadTarget, check_file_name
from archiver.tracker.web import documented, read_model, refusal_response

MIN_TOKEN_LENGTH = 16
STORE_RETRY_AFTER = 30
SETTINGS_ENV = "ARCHIVER_TRACKER_SETTINGS"  # create_app's keyword arguments as JSON, for uvicorn's workers


# ---- bodies (seesaw sends more keys than these; they are allowed and ignored) ------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    downloader: str = Field(description="the worker's nick: 3 to 30 letters, digits, '-' or '_'")


class RequestBody(_Body):
    api_version: str | None = Field(None, description='"2" for a JSON answer; otherwise the bare item name')
    version: str | None = Field(None, description="the pipeline's version, checked against the project's minimum")


class _ItemBody(_Body):
    item: str = Field(description="an item name, or several joined by NUL (\\u0000)")
    claim_tokens: list[str] | None = Field(None, description="the tokens from `request`, one per item: when "
                                                             "given, they must be the current claims")


class DoneBody(_ItemBody):
    bytes: dict[str, NonNegativeInt] = Field(default_factory=dict, description="bytes per kind, e.g. {\"data\": N}")
    version: str | None = None
    id: Any = Field(None, description="the pipeline's provenance (hashes), kept with the item")


class FailBody(_ItemBody):
    reason: str = Field(description="why the item could not be grabbed, kept as its last error")
    retry: bool = Field(True, description="false: fail it for good now, whatever attempts are left")


class UploadBody(_Body):
    item_name: str
    version: str | None = None
    claim_tokens: list[str] | None = None


def create_app(store_url: str | Path, admin_token: str, *, uploads_dir: str | Path | None = None,
               public_url: str | None = None, chunk_bytes: int = 10 * 1024**3, chunk_age: float = 3600.0,
               sweep_interval: float | None = 60.0, handoff: Handoff | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The tracker app over the store at `store_url` (archiver.tracker.state.open_state).

    `admin_token` guards /admin and must be at least 16 characters. Uploads are kept in `uploads_dir` (default:
    beside a SQLite store; required with Redis). `public_url` is the tracker's address as workers reach it
    (default: the address each request came to), used in upload targets. Accepted uploads are batched at
    `chunk_bytes` or after `chunk_age` seconds, checked every `sweep_interval` seconds (None: only when an admin
    asks), and each batch goes to `handoff` (default: megawarc packing).
    """
    if not admin_token or len(admin_token) < MIN_TOKEN_LENGTH:
        raise UsageError(f"the tracker needs an admin token of at least {MIN_TOKEN_LENGTH} characters; make one "
                         "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    state = open_state(store_url)
    if uploads_dir is None:
        if state.default_uploads is None:
            state.close()
            raise UsageError("with a Redis store, say where uploads go (uploads_dir / --uploads DIR)")
        uploads_dir = state.default_uploads
    tracker = Tracker(state, clock=clock)
    uploads = UploadTarget(uploads_dir, chunk_bytes=chunk_bytes, chunk_age=chunk_age, handoff=handoff)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = None
        if sweep_interval:
            sweeper = Sweeper(uploads, lambda: [p.slug for p in state.projects()], sweep_interval)
            sweeper.start()
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.stop()
            tracker.close()

    app = FastAPI(title="archiver tracker", version=__version__, lifespan=lifespan,
                  description="An Archive Team compatible tracker: seesaw workers and archiver workers claim items, "
                              "upload checked WARCs and report them done.")
    app.state.tracker, app.state.uploads = tracker, uploads

    @app.exception_handler(Refusal)
    async def _refused(_request: Request, e: Refusal) -> Response:
        return refusal_response(e)

    @app.exception_handler(UploadRefused)
    async def _upload_refused(_request: Request, e: UploadRefused) -> Response:
        return JSONResponse({"error": e.error, "message": str(e), "findings": e.findings}, status_code=e.status)

    @app.exception_handler(ProjectError)
    async def _bad_project(_request: Request, e: ProjectError) -> Response:
        return JSONResponse({"error": "bad_project", "message": str(e)}, status_code=422)

    @app.exception_handler(QueueError)
    async def _store_down(_request: Request, e: QueueError) -> Response:
        return JSONResponse({"error": "store_unavailable", "message": str(e)}, status_code=503,
                            headers={"Retry-After": str(STORE_RETRY_AFTER)})

    app.include_router(admin_router(tracker, uploads, admin_token))
    _worker_routes(app, tracker, uploads, public_url)
    return app


def app_from_environment() -> FastAPI:
    """The app as uvicorn's worker processes build it (`archiver tracker serve --workers N`): the store URL and
    options from $ARCHIVER_TRACKER_SETTINGS, the admin token from $ARCHIVER_TRACKER_TOKEN."""
    settings = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    store = settings.pop("store_url", None)
    if not store:
        raise UsageError(f"${SETTINGS_ENV} names no store_url; start the tracker with `archiver tracker serve`")
    return create_app(store, os.environ.get(TOKEN_ENV, ""), **settings)


def _ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _route(app: FastAPI, command: str, handler: Callable, method: str = "POST", **options: Any) -> None:
    """Register /{slug}/<command> and seesaw's /{slug}//<command> (the latter left out of the OpenAPI)."""
    app.add_api_route("/{slug}/" + command, handler, methods=[method], **options)
    app.add_api_route("/{slug}//" + command, handler, methods=[method], include_in_schema=False, **options)


def _worker_routes(app: FastAPI, tracker: Tracker, uploads: UploadTarget, public_url: str | None) -> None:
    @app.get("/", summary="This tracker and its projects")
    async def index() -> dict[str, Any]:
        projects = await run_in_threadpool(tracker.state.projects)
        return {"tracker": "archiver", "version": __version__, "projects": [p.slug for p in projects]}

    async def request_items(slug: str, request: Request, n: int = 1) -> Response:
        body = await read_model(request, RequestBody)
        answer = await run_in_threadpool(tracker.request, slug, Caller(body.downloader, _ip(request),
                                                                      version=body.version), n)
        if body.api_version != "2":  # universal-tracker's first protocol: the bare name as text
            return PlainTextResponse(answer["item_name"])
        return JSONResponse(answer)

    async def request_multi(slug: str, n: str, request: Request) -> Response:
        if not n.isdigit():
            raise Refusal(400, "bad_multi", f"multi={n}: N must be a whole number of items")
        return await request_items(slug, request, int(n))

    _route(app, "request", request_items, summary="Claim an item", openapi_extra=documented(RequestBody))
    app.add_api_route("/{slug}/multi={n}/request", request_multi, methods=["POST"], openapi_extra=documented(
        RequestBody), summary="Claim up to n items (names joined by NUL)")
    app.add_api_route("/{slug}/multi={n}//request", request_multi, methods=["POST"], include_in_schema=False)

    async def done(slug: str, request: Request) -> Response:
        body = await read_model(request, DoneBody)
        caller = Caller(body.downloader, _ip(request), tuple(body.claim_tokens or ()), body.version)
        await run_in_threadpool(tracker.done, slug, caller, body.item, body.bytes,
                                {"version": body.version, "id": body.id})
        return PlainTextResponse("OK")

    _route(app, "done", done, summary="Report items done (answers exactly OK)", openapi_extra=documented(DoneBody))

    async def upload_target(slug: str, request: Request) -> Response:
        body = await read_model(request, UploadBody)
        caller = Caller(body.downloader, _ip(request), tuple(body.claim_tokens or ()), body.version)
        base = public_url or str(request.base_url)
        url = await run_in_threadpool(tracker.upload_target, slug, caller, body.item_name, base)
        return JSONResponse({"upload_target": url})

    _route(app, "upload", upload_target, summary="Where to PUT an item's WARC", openapi_extra=documented(UploadBody))

    async def release(slug: str, request: Request) -> Response:
        body = await read_model(request, _ItemBody)
        caller = Caller(body.downloader, _ip(request), tuple(body.claim_tokens or ()))
        await run_in_threadpool(tracker.release, slug, caller, body.item)
        return PlainTextResponse("Released OK.")

    _route(app, "release", release, summary="Hand items back untried", openapi_extra=documented(_ItemBody))

    async def heartbeat(slug: str, request: Request) -> Response:
        body = await read_model(request, _ItemBody)
        caller = Caller(body.downloader, _ip(request), tuple(body.claim_tokens or ()))
        return JSONResponse(await run_in_threadpool(tracker.heartbeat, slug, caller, body.item))

    _route(app, "heartbeat", heartbeat, summary="Extend the leases of items being worked on",
           openapi_extra=documented(_ItemBody))

    async def fail(slug: str, request: Request) -> Response:
        body = await read_model(request, FailBody)
        caller = Caller(body.downloader, _ip(request), tuple(body.claim_tokens or ()))
        states = await run_in_threadpool(tracker.fail, slug, caller, body.item, body.reason, body.retry)
        return JSONResponse({"states": states})

    _route(app, "fail", fail, summary="Give items up with a reason", openapi_extra=documented(FailBody))

    @app.get("/{slug}/stats.json", summary="Counts and per-downloader totals (universal-tracker's shape)")
    async def stats(slug: str) -> dict[str, Any]:
        return await run_in_threadpool(tracker.stats, slug)

    @app.put("/{slug}/upload/{target:path}", summary="Upload an item's WARC (the built-in upload target)",
             status_code=201, openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
    async def put_file(slug: str, target: str, request: Request) -> Response:
        item, _, file = target.rpartition("/")  # file names hold no '/', item names may (hep-th/9901001)
        if not item or not file:
            raise Refusal(404, "bad_upload_path", "upload to /<project>/upload/<item>/<file>, the upload_target "
                                                  "that POST /<project>/upload answered, plus the file name")
        tokens = _claim_tokens(request.headers.get("authorization"))
        project, claimant = await run_in_threadpool(tracker.check_upload, slug, item, tokens)
        check_file_name(file)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > project.max_upload:
            raise UploadRefused(413, "too_large", f"{file} is {declared} bytes; {slug} takes files of at most "
                                                  f"{project.max_upload} bytes")
        path = uploads.incoming(slug, file)
        await uploads.receive(request.stream(), path, project.max_upload)
        accepted = await run_in_threadpool(uploads.accept, slug, path, tuple(item.split("\0")), claimant)
        return JSONResponse({"file": accepted.file, "size": accepted.size, "sha256": accepted.sha256,
                             "items": list(accepted.items), "already": accepted.already},
                            status_code=200 if accepted.already else 201)


def _claim_tokens(header: str | None) -> tuple[str, ...]:
    """The claim tokens an upload carries: the Basic password seesaw's curl sends from the upload_target URL,
    or a Bearer token; several (a multi-item claim) are joined with '.'."""
    challenge = {"WWW-Authenticate": 'Basic realm="claim token"'}
    scheme, _, value = (header or "").partition(" ")
    secret = ""
    if scheme.lower() == "basic":
        try:
            secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            secret = ""
    elif scheme.lower() == "bearer":
        secret = value.strip()
    tokens = tuple(secret.split(".")) if secret else ()
    if not tokens or not all(tokens):
        raise Refusal(401, "claim_token_required", "an upload needs the item's claim token: use the upload_target "
                                                   "URL from POST /<project>/upload as it is (its password is the "
                                                   "token), or send Authorization: Bearer <token>", headers=challenge)
    return tokens
