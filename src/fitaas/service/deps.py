"""Dependencies of the routes: the database, the results store, the runner, the caller."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fitaas.service.accounts import User, authenticate
from fitaas.service.documents import UploadChecker
from fitaas.service.limits import FailedAuthLimiter
from fitaas.service.runner import JobRunner
from fitaas.service.settings import ServiceSettings
from fitaas.store.sql import SqlResultStore

__all__ = ["CurrentUser", "Database", "Runner", "Settings", "Store", "Uploads"]

_bearer = HTTPBearer(auto_error=False, description="the token from `fitaas admin user add`")


def _database(request: Request) -> sa.Engine:
    return request.app.state.database


def _store(request: Request) -> SqlResultStore:
    return request.app.state.store


def _runner(request: Request) -> JobRunner:
    return request.app.state.runner


def _settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def _uploads(request: Request) -> UploadChecker:
    return request.app.state.uploads


Database = Annotated[sa.Engine, Depends(_database)]
Store = Annotated[SqlResultStore, Depends(_store)]
Runner = Annotated[JobRunner, Depends(_runner)]
Settings = Annotated[ServiceSettings, Depends(_settings)]
Uploads = Annotated[UploadChecker, Depends(_uploads)]


def _current_user(
    request: Request,
    database: Database,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    limiter: FailedAuthLimiter = request.app.state.auth_limiter
    client = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed authentications from {client}: try again in {wait:.0f} s",
            headers={"Retry-After": str(int(wait + 0.999))},
        )
    user = authenticate(database, credentials.credentials) if credentials else None
    if user is None:
        if credentials:  # a wrong token, not a request that carried none
            limiter.failed(client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid token (send 'Authorization: Bearer <token>')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(_current_user)]
