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

    GET  /{slug}/                        the project's live dashboard (archiver.tracker.dashboard)

Admin routes are under /admin with `Authorization: Bearer <token>` (archiver.tracker.admin).

request and done, the two calls every worker makes per item, are answered by `WorkerFastPath` before anything of
FastAPI's runs, by the same `ItemCalls` as their documented routes: with the Redis store on the event loop, one
Redis round trip each; with SQLite in one store thread. Other handlers are async only to read bodies within
their limits; their store calls run in the thread pool, one hop per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import functools
import gc
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from archiver import __version__
from archiver.errors import UsageError
from archiver.queue import QueueError
from archiver.tracker import TOKEN_ENV
from archiver.tracker.admin import admin_router
from archiver.tracker.dashboard import dashboard_routes
from archiver.tracker.projects import ProjectError
from archiver.tracker.protocol import Caller, Refusal, Tracker
from archiver.tracker.publish import Publisher, PublishingTarget
from archiver.tracker.state import MAX_BYTES, open_state
from archiver.tracker.uploads import Handoff, Sweeper, UploadRefused, UploadTarget, check_file_name
from archiver.tracker.web import (
    JSON_LIMIT,
    documented,
    error_response,
    json_body,
    parse_model,
    read_asgi_body,
    read_body,
    read_model,
)
from archiver.upload.credentials import Credentials
from archiver.upload.endpoint import resolve_endpoint
from archiver.upload.ia import RetryPolicy as IARetryPolicy

MIN_TOKEN_LENGTH = 16
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
    bytes: dict[str, Annotated[int, Field(ge=0, le=MAX_BYTES)]] = Field(
        default_factory=dict, description="bytes per kind, e.g. {\"data\": N}")
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
               clock: Callable[[], float] = time.time, tune_gc: bool | None = None,
               ia_endpoint: str | None = None, ia_credentials: Credentials | None = None,
               ia_retry: IARetryPolicy | None = None) -> FastAPI:
    """The tracker app over the store at `store_url` (archiver.tracker.state.open_state).

    `admin_token` guards /admin and must be at least 16 characters. Uploads are kept in `uploads_dir` (default:
    beside a SQLite store; required with Redis). `public_url` is the tracker's address as workers reach it
    (default: the address each request came to), used in upload targets. Accepted uploads are batched at
    `chunk_bytes` or after `chunk_age` seconds, checked every `sweep_interval` seconds (None: only when an admin
    asks), and each batch goes to `handoff` (default: megawarc packing). Each sweep then publishes the packs of
    projects with upload settings to the Internet Archive (archiver.tracker.publish): at `ia_endpoint` (default
    $ARCHIVER_IA_ENDPOINT, else IA itself), with `ia_credentials` (default: read from the environment or
    `ia configure`'s file when there is something to send) and `ia_retry`. `tune_gc` sets the process's garbage
    collector up for serving while the app runs (`serving_gc`); by default it does when the app is served from
    the main thread (`archiver tracker serve`), not when a bigger program (a test) serves it from a thread of
    its own, since the collector is the whole process's.
    """
    if not admin_token or len(admin_token) < MIN_TOKEN_LENGTH:
        raise UsageError(f"the tracker needs an admin token of at least {MIN_TOKEN_LENGTH} characters; make one "
                         "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    endpoint = resolve_endpoint(ia_endpoint)  # a bad value stops the start, not the first publish
    state = open_state(store_url)
    if uploads_dir is None:
        if state.default_uploads is None:
            state.close()
            raise UsageError("with a Redis store, say where uploads go (uploads_dir / --uploads DIR)")
        uploads_dir = state.default_uploads
    tracker = Tracker(state, clock=clock)
    publisher = Publisher(uploads_dir, state.project, endpoint=endpoint, credentials=ia_credentials, retry=ia_retry)
    uploads = PublishingTarget(uploads_dir, publisher, chunk_bytes=chunk_bytes, chunk_age=chunk_age,
                               handoff=handoff, claim_status=tracker.claim_status)
    calls = ItemCalls(tracker)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = None
        if sweep_interval:
            sweeper = Sweeper(uploads, lambda: [p.slug for p in state.projects()], sweep_interval)
            sweeper.start()
        tune = tune_gc if tune_gc is not None else threading.current_thread() is threading.main_thread()
        try:
            with serving_gc() if tune else contextlib.nullcontext():
                yield
        finally:
            if sweeper is not None:
                sweeper.stop()
            calls.close()
            if state.aio is not None:
                await state.aio.close()  # its connection lives on this event loop
            tracker.close()

    app = TrackerApp(title="archiver tracker", version=__version__, lifespan=lifespan,
                  description="An Archive Team compatible tracker: seesaw workers and archiver workers claim items, "
                              "upload checked WARCs and report them done.")
    app.state.tracker, app.state.uploads = tracker, uploads
    app.state.fast_path = WorkerFastPath(calls)

    async def _answer_error(_request: Request, e: Exception) -> Response:
        response = error_response(e)
        assert response is not None, e  # registered only for the errors error_response answers
        return response

    for kind in (Refusal, ProjectError, QueueError):
        app.add_exception_handler(kind, _answer_error)

    @app.exception_handler(UploadRefused)
    async def _upload_refused(_request: Request, e: UploadRefused) -> Response:
        return JSONResponse({"error": e.error, "message": str(e), "findings": e.findings}, status_code=e.status)

    app.include_router(admin_router(tracker, uploads, admin_token))
    _worker_routes(app, tracker, calls, uploads, public_url)
    app.include_router(dashboard_routes(tracker))
    return app


class TrackerApp(FastAPI):
    """FastAPI, with request and done answered by WorkerFastPath before anything of FastAPI's runs (even its
    per-request telemetry check, which alone costs some 6% of a call: those two calls are not traced)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.state.fast_path.answer(scope, receive, send):
            await super().__call__(scope, receive, send)


def app_from_environment() -> FastAPI:
    """The app as uvicorn's worker processes build it (`archiver tracker serve --workers N`): the store URL and
    options from $ARCHIVER_TRACKER_SETTINGS, the admin token from $ARCHIVER_TRACKER_TOKEN."""
    settings = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    store = settings.pop("store_url", None)
    if not store:
        raise UsageError(f"${SETTINGS_ENV} names no store_url; start the tracker with `archiver tracker serve`")
    return create_app(store, os.environ.get(TOKEN_ENV, ""), **settings)


GC_YOUNG_THRESHOLD = 10_000  # tracked objects allocated (net) between young collections; Python's default is 700


@contextlib.contextmanager
def serving_gc() -> Iterator[None]:
    """The garbage collector as a busy tracker process wants it, restored afterwards.

    Measured on one worker process at ~8,500 calls/s from 200 connections (Redis store): with Python's defaults
    the collector ran ~250 times a second (the objects of the calls in flight alone outnumber its threshold of
    700) and took over a tenth of the process's time; its full collections, each walking every object of
    FastAPI, pydantic and the app, stopped the event loop for up to 51 ms, and the calls' p99 was 76 ms.
    Freezing what exists once the app is up (it lives as long as the process) and letting the young generation
    grow to 10,000 objects (the calls in flight stay below that) left 4 collections in 8 s and a p99 of 39-47 ms
    on the same load."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _ip(request: Request) -> str:
    return request.client.host if request.client else ""


# ---- request and done: the calls of every item, answered by ItemCalls on either path ------------------------
class ItemCalls:
    """request and done, from a body to the answer: one object that WorkerFastPath and the documented routes
    share. With a store that has an event-loop client (Redis) the calls run on the event loop. Otherwise they
    run in one thread of their own rather than the shared pool: SQLite serialises writes anyway, and forty pool
    threads queueing for its locks and for the GIL made each call wait on the others (measured on one process
    at 200 connections: ~700 pairs/s with the pool, ~1,000 with one thread, p99 230 -> 130 ms)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._thread = None if tracker.state.aio is not None else \
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tracker-store")

    async def request(self, slug: str, raw: bytes, ip: str, multi: str | None = None) -> Response:
        """The answer to POST /<slug>[/multi=<multi>]/request with body `raw`."""
        n = 1
        if multi is not None:
            if not (multi.isascii() and multi.isdigit()):  # str.isdigit alone takes '³', which int() refuses
                raise Refusal(400, "bad_multi", f"multi={multi}: N must be a whole number of items")
            n = int(multi)
        body = parse_model(RequestBody, json_body(raw))
        caller = Caller(body.downloader, ip, version=body.version)
        if self._thread is None:
            answer = await self.tracker.request_async(slug, caller, n)
        else:
            answer = await asyncio.get_running_loop().run_in_executor(self._thread, self.tracker.request, slug,
                                                                      caller, n)
        if body.api_version != "2":  # universal-tracker's first protocol: the bare name as text
            return PlainTextResponse(answer["item_name"])
        return JSONResponse(answer)

    async def done(self, slug: str, raw: bytes, ip: str) -> Response:
        """The answer to POST /<slug>/done with body `raw`: exactly OK."""
        body = parse_model(DoneBody, json_body(raw))
        caller = Caller(body.downloader, ip, tuple(body.claim_tokens or ()), body.version)
        kept = {"version": body.version, "id": body.id}
        if self._thread is None:
            await self.tracker.done_async(slug, caller, body.item, body.bytes, kept)
        else:
            await asyncio.get_running_loop().run_in_executor(
                self._thread, functools.partial(self.tracker.done, slug, caller, body.item, body.bytes, kept))
        return PlainTextResponse("OK")

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)


_REQUEST_PATH = re.compile(r"/([^/]+)/(?:multi=([^/]+)/)?/?request")  # the paths of the request routes below
_DONE_PATH = re.compile(r"/([^/]+)//?done")


class WorkerFastPath:
    """request and done as plain ASGI, without FastAPI's middleware, routing and dependency layers, which cost
    about as much as the rest of the call (measured with wrk on one core: ~5,300 calls/s for a trivial FastAPI
    route, ~17,000/s for the same answer from plain ASGI). The routes the OpenAPI document shows for these two
    answer through the same ItemCalls. An unexpected error here reaches uvicorn,
    which logs it and answers 500, as FastAPI's ServerErrorMiddleware would."""

    def __init__(self, calls: ItemCalls) -> None:
        self.calls = calls

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the call if it is a request or a done; False (nothing read, nothing sent) for anything else."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        request, done = _REQUEST_PATH.fullmatch(path), None
        if request is None:
            done = _DONE_PATH.fullmatch(path)
            if done is None:
                return False
        response = await self._answer(scope, receive, request, done)
        if response is not None:
            await response(scope, receive, send)
        return True

    async def _answer(self, scope: Scope, receive: Receive, request: re.Match[str] | None,
                      done: re.Match[str] | None) -> Response | None:
        client = scope.get("client")
        ip = client[0] if client else ""
        try:
            raw = await read_asgi_body(scope, receive, JSON_LIMIT)
            if raw is None:
                return None  # the client went away before sending its body
            if request is not None:
                return await self.calls.request(request[1], raw, ip, request[2])
            assert done is not None
            return await self.calls.done(done[1], raw, ip)
        except Exception as e:
            response = error_response(e)
            if response is None:
                raise  # a bug: ServerErrorMiddleware answers 500 and logs it, as for any route
            return response


def _route(app: FastAPI, command: str, handler: Callable, method: str = "POST", **options: Any) -> None:
    """Register /{slug}/<command> and seesaw's /{slug}//<command> (the latter left out of the OpenAPI)."""
    app.add_api_route("/{slug}/" + command, handler, methods=[method], **options)
    app.add_api_route("/{slug}//" + command, handler, methods=[method], include_in_schema=False, **options)


def _worker_routes(app: FastAPI, tracker: Tracker, calls: ItemCalls, uploads: UploadTarget,
                   public_url: str | None) -> None:
    @app.get("/", summary="This tracker and its projects")
    async def index() -> dict[str, Any]:
        projects = await run_in_threadpool(tracker.state.projects)
        return {"tracker": "archiver", "version": __version__, "projects": [p.slug for p in projects]}

    async def request_items(slug: str, request: Request) -> Response:
        return await calls.request(slug, await read_body(request, JSON_LIMIT), _ip(request))

    async def request_multi(slug: str, n: str, request: Request) -> Response:
        return await calls.request(slug, await read_body(request, JSON_LIMIT), _ip(request), n)

    _route(app, "request", request_items, summary="Claim an item", openapi_extra=documented(RequestBody))
    app.add_api_route("/{slug}/multi={n}/request", request_multi, methods=["POST"], openapi_extra=documented(
        RequestBody), summary="Claim up to n items (names joined by NUL)")
    app.add_api_route("/{slug}/multi={n}//request", request_multi, methods=["POST"], include_in_schema=False)

    async def done(slug: str, request: Request) -> Response:
        return await calls.done(slug, await read_body(request, JSON_LIMIT), _ip(request))

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
        if declared.isascii() and declared.isdigit() and int(declared) > project.max_upload:
            raise UploadRefused(413, "too_large", f"{file} is {declared} bytes; {slug} takes files of at most "
                                                  f"{project.max_upload} bytes")
        path = uploads.incoming(slug, file)
        await uploads.receive(request.stream(), path, project.max_upload)
        accepted = await run_in_threadpool(uploads.accept, slug, path, tuple(item.split("\0")), claimant, tokens)
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
