"""The admin API, under /admin, open only with `Authorization: Bearer <admin token>` (401 otherwise, checked
before the body is read, so nothing changes).

    GET  /admin/projects                         every project with its counts
    PUT  /admin/projects/{slug}                  create (201) or update (200) a project: {site, min_version, ...}
    GET  /admin/projects/{slug}                  settings, counts, block list, uploads (held, accepted, packs,
                                                 published, dropped)
    POST /admin/projects/{slug}/items            add items: JSON {"items": [...]}, text/plain (one per line,
                                                 # comments: Archive Team's list format) or a YAML manifest
    POST /admin/projects/{slug}/requeue          {"downloader"?, "claims": true, "failed": false}
    POST /admin/projects/{slug}/block            {"who": nick or IP};  .../unblock the same
    POST /admin/projects/{slug}/pause            hand out nothing;     .../resume
    POST /admin/projects/{slug}/sweep            {"force": false}: batch accepted uploads for packing now, then
                                                 publish the project's packs (when it has upload settings)
    GET  /admin/projects/{slug}/items/{name}     one item's record

Item names go through the project's site module first: a list with any name it refuses adds nothing, and the
answer lists the refusals. Names are queued in their canonical form (arxiv:2108.07258v2 -> 2108.07258).

A project's `upload` ({"collection", "identifier", "metadata"}, checked by archiver.tracker.projects) sends its
packs to the Internet Archive; null or absent keeps them on disk. An update replaces the whole `upload` object.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from archiver.errors import UsageError
from archiver.queue import ItemState, QueueError, UnknownItem
from archiver.tracker.projects import Project
from archiver.tracker.protocol import Refusal, Tracker
from archiver.tracker.publish import PublishingTarget
from archiver.tracker.uploads import UploadTarget
from archiver.tracker.web import ADMIN_LIMIT, JSON_LIMIT, documented, parse_model, read_body, read_model

PROBLEMS_SHOWN = 50
_COMMENT = re.compile(r"\s+#")
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class UploadToIA(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keys reach the project's own check, which names them

    collection: str | None = Field(None, description="Internet Archive collection of the items, e.g. "
                                                     "archiveteam_myproject (you need the right to upload to it)")
    identifier: str | None = Field(None, description="item identifier template of {project}, {timestamp} and "
                                                     "{rand8}; default archiver_{project}_{timestamp}_{rand8}")
    metadata: dict[str, str | list[str]] | None = Field(None, description="item metadata on top of what is "
                                                                          "generated, e.g. {\"subject\": \"physics\"}")


class ProjectSettings(BaseModel):
    site: str | None = Field(None, description="site module that validates item names, e.g. arxiv (required to "
                                               "create)")
    title: str | None = None
    min_version: str | None = Field(None, description="oldest pipeline version accepted (455 below it)")
    lease: float | None = Field(None, description="seconds a claim lasts without a heartbeat")
    max_attempts: int | None = None
    rate_limit: float | None = Field(None, description="items per minute for the whole project, 0 for none")
    budget: int | None = Field(None, description="items one downloader may hold at once, 0 for none")
    max_upload: int | None = Field(None, description="bytes per uploaded file")
    paused: bool | None = None
    extra: dict[str, Any] | None = Field(None, description="keys added to every request answer")
    upload: UploadToIA | None = Field(None, description="send the project's packs to the Internet Archive, one "
                                                        "item per pack (null: keep them on disk)")


class ItemList(BaseModel):
    items: list[str]


class Requeue(BaseModel):
    downloader: str | None = Field(None, description="only this downloader's claims (default: everyone's)")
    claims: bool = Field(True, description="return current claims to the queue now")
    failed: bool = Field(False, description="also give failed items fresh attempts")
    reason: str = "requeued by an admin"


class Who(BaseModel):
    who: str = Field(min_length=1, max_length=100, description="a downloader's nick or an IP address")


class Sweep(BaseModel):
    force: bool = False


def admin_router(tracker: Tracker, uploads: UploadTarget, token: str) -> APIRouter:
    expected = token.encode()

    def require_admin(request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected):
            raise Refusal(401, "admin_token_required", "the admin API needs Authorization: Bearer <admin token> "
                                                       "(the token the tracker was started with)",
                          headers={"WWW-Authenticate": "Bearer"})

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    def existing(slug: str) -> Any:
        return tracker.project(slug)

    @router.get("/projects", summary="Every project with its counts")
    async def projects() -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            return [_describe(tracker, p.slug) for p in tracker.state.projects()]
        return await run_in_threadpool(run)

    @router.put("/projects/{slug}", summary="Create or update a project", openapi_extra=documented(ProjectSettings))
    async def put_project(slug: str, request: Request) -> Response:
        raw = await read_body(request, JSON_LIMIT)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise Refusal(400, "bad_json", f"the body is not JSON: {e}") from None
        parse_model(ProjectSettings, data)  # types first, for the same 400s as every other body

        def run() -> tuple[Project, bool]:
            base = tracker.state.project(slug)
            project = Project.from_mapping(slug, data, base)
            tracker.save_project(project)
            return project, base is None
        project, created = await run_in_threadpool(run)
        return JSONResponse(dataclasses.asdict(project), status_code=201 if created else 200)

    @router.get("/projects/{slug}", summary="A project's settings, counts, block list and where its uploads stand")
    async def get_project(slug: str) -> dict[str, Any]:
        return await run_in_threadpool(_describe, tracker, slug, uploads)

    @router.post("/projects/{slug}/items", summary="Add items (JSON list, plain list or YAML manifest)",
                 openapi_extra=documented(ItemList))
    async def add_items(slug: str, request: Request) -> dict[str, Any]:
        raw = await read_body(request, ADMIN_LIMIT)
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        return await run_in_threadpool(_add_items, tracker, slug, raw, kind)

    @router.post("/projects/{slug}/requeue", summary="Return claims (and failed items) to the queue",
                 openapi_extra=documented(Requeue))
    async def requeue(slug: str, request: Request) -> dict[str, int]:
        body = await read_model(request, Requeue)

        def run() -> dict[str, int]:
            _project, queue = existing(slug)
            claims = queue.requeue_claims(body.downloader, body.reason) if body.claims else 0
            if body.claims:
                tracker.state.forget_holds(slug, body.downloader)
            return {"requeued": claims, "reset_failed": queue.reset_failed() if body.failed else 0}
        return await run_in_threadpool(run)

    for action in ("block", "unblock"):
        def make(action: str = action) -> Any:
            async def change(slug: str, request: Request) -> dict[str, Any]:
                body = await read_model(request, Who)

                def run() -> dict[str, Any]:
                    existing(slug)
                    changed = getattr(tracker.state, action)(slug, body.who.strip())
                    return {"changed": changed, "blocked": tracker.state.blocked(slug)}
                return await run_in_threadpool(run)
            return change
        router.add_api_route(f"/projects/{{slug}}/{action}", make(), methods=["POST"], openapi_extra=documented(Who),
                             summary=f"{action.capitalize()} a nick or IP address")

    for action, paused in (("pause", True), ("resume", False)):
        def make_pause(paused: bool = paused) -> Any:
            async def change(slug: str) -> dict[str, Any]:
                def run() -> dict[str, Any]:
                    project, _queue = existing(slug)
                    project = project.replace(paused=paused)
                    tracker.save_project(project)
                    return dataclasses.asdict(project)
                return await run_in_threadpool(run)
            return change
        router.add_api_route(f"/projects/{{slug}}/{action}", make_pause(), methods=["POST"],
                             summary="Stop handing out items" if paused else "Hand out items again")

    @router.post("/projects/{slug}/sweep", summary="Batch accepted uploads for packing, then publish the packs",
                 openapi_extra=documented(Sweep))
    async def sweep(slug: str, request: Request) -> dict[str, Any]:
        body = await read_model(request, Sweep)

        def run() -> dict[str, Any]:
            existing(slug)
            if not isinstance(uploads, PublishingTarget):
                return {"batches": [p.name for p in uploads.sweep([slug], force=body.force)]}
            batches, published = uploads.sweep_and_publish([slug], force=body.force)
            return {"batches": [p.name for p in batches], "published": published[slug].to_dict()}
        return await run_in_threadpool(run)

    @router.get("/projects/{slug}/items/{name:path}", summary="One item's record")
    async def get_item(slug: str, name: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            _project, queue = existing(slug)
            try:
                record = queue.get(name)
            except UnknownItem as e:
                raise Refusal(404, "unknown_item", str(e)) from None
            out = dataclasses.asdict(record)
            out["state"] = record.state.value
            return out
        return await run_in_threadpool(run)

    return router


def _describe(tracker: Tracker, slug: str, uploads: UploadTarget | None = None) -> dict[str, Any]:
    project, queue = tracker.project(slug)
    s = queue.stats()
    out = {"project": dataclasses.asdict(project),
           "counts": {state.value: getattr(s, state.value) for state in ItemState} | {"bytes": s.bytes},
           "blocked": tracker.state.blocked(slug)}
    if uploads is not None:
        out["uploads"] = uploads.status(slug)
    return out


def _add_items(tracker: Tracker, slug: str, raw: bytes, kind: str) -> dict[str, Any]:
    project, queue = tracker.project(slug)
    if kind in _YAML_TYPES:
        targets = _manifest_items(raw, project)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, "bad_items", "the item list is not UTF-8 text") from None
        if kind == "text/plain":
            targets = [_COMMENT.split(line, 1)[0].strip() for line in text.splitlines()]
            targets = [t for t in targets if t and not t.startswith("#")]
        else:
            try:
                targets = parse_model(ItemList, json.loads(text)).items
            except ValueError as e:
                raise Refusal(400, "bad_json", f"the body is not JSON: {e} (send {{\"items\": [...]}}, text/plain "
                                               "or a YAML manifest)") from None
    if not targets:
        raise Refusal(400, "bad_items", "the list holds no items")
    names, problems = project.parse_items(targets)
    if problems:
        raise Refusal(422, "bad_items", f"{len(problems)} of {len(targets)} are not {project.site} items; nothing "
                      "was added", problems=problems[:PROBLEMS_SHOWN])
    try:
        added = queue.add(names)
    except QueueError as e:
        if "not an item name" not in str(e):
            raise
        raise Refusal(422, "bad_items", f"{e}; nothing was added") from None
    return {"added": added, "known": len(set(names)) - added, "listed": len(targets)}


def _manifest_items(raw: bytes, project: Project) -> list[str]:
    """The items of a manifest (validated by archiver.manifest) whose site is the project's."""
    from archiver.manifest import load_manifest

    with tempfile.TemporaryDirectory(prefix="archiver-manifest-") as tmp:
        path = Path(tmp) / "manifest.yaml"
        path.write_bytes(raw)
        try:
            manifest = load_manifest(path)
        except UsageError as e:
            raise Refusal(422, "bad_manifest", f"{e} (an uploaded manifest cannot use items_file; list the items "
                                               "or send them as text/plain)") from None
    if manifest.site != project.site:
        raise Refusal(422, "bad_manifest", f"the manifest is for site {manifest.site!r}, the project for "
                                           f"{project.site!r}")
    return [item.name for item in manifest.items]
