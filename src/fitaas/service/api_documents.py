"""``/api/v1/workspaces``, ``/patchsets`` and ``/models``: uploads, stored once by digest."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from fitaas.errors import DocumentTooLarge, InputError
from fitaas.service import db
from fitaas.service.deps import CurrentUser, Database, Settings
from fitaas.service.documents import owns_document, store_document
from fitaas.service.responses import errors

__all__ = ["router"]

router = APIRouter(tags=["documents"], responses=errors(401, 413, 422, 429, 503))

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def _upload(
    kind: str, request: Request, user: Any, database: Any, settings: Any
) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"empty {kind} upload")
    try:
        # parsing and pyhf's schema take seconds on large uploads: off the event loop (and,
        # for large ones, in a worker process), so that every other request is served
        key, new = await run_in_threadpool(
            store_document,
            database,
            raw,
            kind,
            user.id,
            settings.max_upload_bytes,
            request.app.state.uploads,
        )
    except DocumentTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except InputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return {"digest": key, "kind": kind, "new": new}


@router.post("/workspaces", status_code=201, openapi_extra=_UPLOAD_BODY)
async def upload_workspace(
    request: Request, user: CurrentUser, database: Database, settings: Settings
) -> dict[str, Any]:
    """Upload a workspace (JSON, or gzip-compressed JSON); returns its content digest."""
    return await _upload("workspace", request, user, database, settings)


_MODELS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("/models", status_code=201, openapi_extra=_MODELS_BODY)
async def upload_models(
    request: Request, user: CurrentUser, database: Database, settings: Settings
) -> dict[str, Any]:
    """Upload theory models for a theory scan: JSON Lines (plain text or gzip), one
    ``{"name", "values", "patch"}`` per line; returns the digest of their canonical text."""
    return await _upload("models", request, user, database, settings)


@router.post("/patchsets", status_code=201, openapi_extra=_UPLOAD_BODY)
async def upload_patchset(
    request: Request, user: CurrentUser, database: Database, settings: Settings
) -> dict[str, Any]:
    """Upload a patchset (JSON, or gzip-compressed JSON); returns its content digest."""
    return await _upload("patchset", request, user, database, settings)


def _describe(kind: str, key: str, user: Any, database: Any) -> dict[str, Any]:
    if not owns_document(database, key, user.id, kind):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} {key} among your uploads")
    with database.connect() as conn:
        row = conn.execute(
            sa.select(db.documents.c.size, db.documents.c.created).where(
                db.documents.c.digest == key
            )
        ).one()
    return {"digest": key, "kind": kind, "size": row.size, "created": row.created}


@router.get("/workspaces/{digest}", responses=errors(404))
def workspace_info(digest: str, user: CurrentUser, database: Database) -> dict[str, Any]:
    """Size and upload time of one of your workspaces."""
    return _describe("workspace", digest, user, database)


@router.get("/patchsets/{digest}", responses=errors(404))
def patchset_info(digest: str, user: CurrentUser, database: Database) -> dict[str, Any]:
    """Size and upload time of one of your patchsets."""
    return _describe("patchset", digest, user, database)


@router.get("/models/{digest}", responses=errors(404))
def models_info(digest: str, user: CurrentUser, database: Database) -> dict[str, Any]:
    """Size and upload time of one of your models documents."""
    return _describe("models", digest, user, database)
