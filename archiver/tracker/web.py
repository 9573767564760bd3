"""HTTP plumbing shared by the tracker's routes: bodies read within a size limit, JSON checked against a model,
and refusals (and a store that is down) turned into answers.

Bodies are read by hand rather than by FastAPI's body parameters so that a size limit holds before anything is
parsed: a 1 MB body sent to /request is refused with 413 after 64 KiB, whatever it contains. The pydantic models
still describe the bodies in the OpenAPI document (`documented`).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope

from archiver.queue import QueueError
from archiver.tracker.projects import ProjectError
from archiver.tracker.protocol import Refusal, retry_after_header

JSON_LIMIT = 64 * 1024  # a worker's request, done or fail body; seesaw's are a few hundred bytes
ADMIN_LIMIT = 64 * 1024 * 1024  # an admin's item list or manifest
STORE_RETRY_AFTER = 30  # seconds a worker waits when the store is unreachable

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too_large", f"the body is {declared} bytes; this endpoint takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "too_large", f"the body is over {limit} bytes, the most this endpoint takes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """read_body for plain ASGI (archiver.tracker.app.WorkerFastPath); None when the client went away."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise Refusal(413, "too_large", f"the body is {value.decode()} bytes; this endpoint takes at most {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "too_large", f"the body is over {limit} bytes, the most this endpoint takes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_model(request: Request, model: type[M], limit: int = JSON_LIMIT) -> M:
    """The body as `model`, or 400 naming the first thing wrong with it."""
    return parse_model(model, json_body(await read_body(request, limit)))


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal(400, "bad_json", f"the body is not JSON: {e}") from None


def parse_model(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise Refusal(400, "bad_json", f"the body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Refusal(400, "bad_body", f"{where}: {first['msg']} ({e.error_count()} problem(s) in the body)") from None


def documented(model: type[BaseModel], content_type: str = "application/json") -> dict[str, Any]:
    """openapi_extra describing a body that the route reads itself."""
    return {"requestBody": {"required": True, "content": {content_type: {"schema": model.model_json_schema()}}}}


def refusal_response(refusal: Refusal) -> JSONResponse:
    return JSONResponse(refusal.body(), status_code=refusal.status,
                        headers=retry_after_header(refusal.retry_after) | refusal.headers)


def error_response(error: Exception) -> JSONResponse | None:
    """The answer to a refusal, a bad stored project or an unreachable store; None for anything else (a bug)."""
    if isinstance(error, Refusal):
        return refusal_response(error)
    if isinstance(error, ProjectError):
        return JSONResponse({"error": "bad_project", "message": str(error)}, status_code=422)
    if isinstance(error, QueueError):
        return JSONResponse({"error": "store_unavailable", "message": str(error)}, status_code=503,
                            headers={"Retry-After": str(STORE_RETRY_AFTER)})
    return None
