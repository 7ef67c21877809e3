"""The service's application: ``create_app(settings)``.

Routers: documents (workspaces, patchsets), jobs, endpoints and the caller (``/me``),
all under ``/api/v1`` with bearer tokens; the web page at ``/``. Errors are JSON with a
``detail`` in words, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fitaas._version import __version__
from fitaas.errors import InputError
from fitaas.service import api_documents, api_job_results, api_jobs
from fitaas.service.accounts import usable_endpoints
from fitaas.service.db import connect, storage_reason
from fitaas.service.deps import CurrentUser, Database
from fitaas.service.documents import UploadChecker
from fitaas.service.limits import BodySizeLimit, FailedAuthLimiter, SecurityHeaders
from fitaas.service.pictures import PictureCache
from fitaas.service.responses import errors
from fitaas.service.runner import JobRunner
from fitaas.service.settings import ServiceSettings
from fitaas.store.sql import SqlResultStore

__all__ = ["create_app"]

log = logging.getLogger("fitaas.service")

_account = APIRouter(tags=["account"], responses=errors(401, 413, 429, 503))


@_account.get("/me")
def me(user: CurrentUser) -> dict[str, Any]:
    """The caller's name and groups."""
    return {"name": user.name, "groups": list(user.groups)}


@_account.get("/endpoints")
def endpoints(user: CurrentUser, database: Database) -> list[dict[str, Any]]:
    """The endpoints the caller may use."""
    return [e.to_dict() for e in usable_endpoints(database, user)]


@_account.get("/health", tags=["service"], responses=errors(413))
def health(request: Request) -> dict[str, Any]:
    """Whether the service can take new work (no token needed): ``ok``, or ``degraded``
    with the storage problem that makes it refuse new work."""
    problem = request.app.state.runner.storage.problem
    return {"status": "degraded" if problem else "ok", "storage": problem, "version": __version__}


def _web(name: str) -> bytes:
    return resources.files("fitaas.service").joinpath("web", name).read_bytes()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The service application (the database is opened and migrated here).

    Args:
        settings: Database, upload limit, local workers.
    """
    settings = settings or ServiceSettings()
    database = connect(settings.database)
    store = SqlResultStore(database)
    runner = JobRunner(
        database, store, settings.workers, settings.keep_workers, settings.limits.running_jobs
    )
    uploads = UploadChecker()
    pictures = PictureCache()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        pictures.warm()
        yield
        runner.stop()
        uploads.close()
        database.dispose()

    app = FastAPI(
        title="fitaas",
        version=__version__,
        description="Fitting as a Service: pyhf inference for every point of a likelihood.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.store = store
    app.state.runner = runner
    app.state.pictures = pictures
    app.state.uploads = uploads
    app.state.auth_limiter = FailedAuthLimiter(settings.auth_failures_per_minute, 60.0)
    api = APIRouter(prefix="/api/v1")
    api.include_router(_account)
    api.include_router(api_documents.router)
    api.include_router(api_jobs.router)
    api.include_router(api_job_results.router)
    app.include_router(api)

    _handle_errors(app, runner)
    _serve_page(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def _handle_errors(app: FastAPI, runner: JobRunner) -> None:
    """One JSON answer per kind of failure: 503 without storage, 422 for bad input (named),
    500 without internals."""

    @app.middleware("http")
    async def _refuse_writes_without_storage(request: Request, call_next: Any) -> Any:
        problem = runner.storage.problem
        if problem and request.method not in ("GET", "HEAD", "OPTIONS"):
            problem = runner.storage.check()  # (looked at again: space may have returned)
        if problem and request.method not in ("GET", "HEAD", "OPTIONS"):
            return JSONResponse({"detail": problem}, status_code=503, headers={"Retry-After": "30"})
        return await call_next(request)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, which JSON cannot carry when it holds
        # NaN or Infinity: that was a 500. Locations and messages are what a client needs.
        # (one line, as every other error: "body.task: Input should be ...; ...")
        lines = [
            ".".join(str(part) for part in error.get("loc", ())) + f": {error.get('msg')}"
            for error in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(lines)}, status_code=422)

    @app.exception_handler(sa.exc.OperationalError)
    async def _storage(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        reason = storage_reason(exc)
        log.error("%s %s: %s", request.method, request.url.path, reason)
        runner.storage.noted(reason)
        return JSONResponse({"detail": reason}, status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (see the service log)"}, status_code=500)


def _serve_page(app: FastAPI) -> None:
    """The web page and its script and style."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_web("index.html"))

    @app.get("/static/app.js", include_in_schema=False)
    def script() -> Response:
        return Response(_web("app.js"), media_type="text/javascript")

    @app.get("/static/app.css", include_in_schema=False)
    def style() -> Response:
        return Response(_web("app.css"), media_type="text/css")
