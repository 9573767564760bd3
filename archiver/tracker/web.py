"""HTTP plumbing shared by the tracker's routes: bodies read within a size limit, JSON checked against a model,
and refusals turned into answers.

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

from archiver.tracker.protocol import Refusal, retry_after_header

JSON_LIMIT = 64 * 1024  # a worker's request, done or fail body; seesaw's are a few hundred bytes
ADMIN_LIMIT = 64 * 1024 * 1024  # an admin's item list or manifest

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too_large", f"the body is {declared} bytes; this endpoint takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "too_large", f"the body is over {limit} bytes, the most this endpoint takes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_model(request: Request, model: type[M], limit: int = JSON_LIMIT) -> M:
    """The body as `model`, or 400 naming the first thing wrong with it."""
    raw = await read_body(request, limit)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal(400, "bad_json", f"the body is not JSON: {e}") from None
    return parse_model(model, data)


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
