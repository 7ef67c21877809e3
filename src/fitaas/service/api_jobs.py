"""``/api/v1/jobs``: submit, list, follow, fetch results, cancel."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, status

from fitaas.errors import InputError
from fitaas.inference import InferenceOptions
from fitaas.inference.likelihood_scan import check_grid
from fitaas.inputs.pallets import Pallet
from fitaas.service import db
from fitaas.service.accounts import User, usable_endpoints
from fitaas.service.deps import CurrentUser, Database, Runner, Settings, Uploads
from fitaas.service.documents import load_document, model_lines, owns_document, store_document
from fitaas.service.fit_tasks import FIT_TASKS
from fitaas.service.job_inputs import JobInputs, check_job_options
from fitaas.service.job_schemas import JobCreate, JobPublic
from fitaas.service.responses import errors

__all__ = [
    "UNPROCESSABLE",
    "job_row",
    "router",
]

router = APIRouter(tags=["jobs"], responses=errors(401, 413, 422, 429, 503))

UNPROCESSABLE = status.HTTP_422_UNPROCESSABLE_CONTENT


def _select() -> Any:
    owners = db.users.alias("owners")
    return (
        sa.select(
            db.jobs,
            owners.c.name.label("owner"),
            db.endpoints.c.name.label("endpoint"),
            db.groups.c.name.label("group_name"),
        )
        .join(owners, owners.c.id == db.jobs.c.owner_id)
        .join(db.endpoints, db.endpoints.c.id == db.jobs.c.endpoint_id)
        .outerjoin(db.groups, db.groups.c.id == db.jobs.c.group_id)
    )


def _visible(user: User) -> Any:
    shared = sa.select(db.memberships.c.group_id).where(db.memberships.c.user_id == user.id)
    return sa.or_(db.jobs.c.owner_id == user.id, db.jobs.c.group_id.in_(shared))


def _public(row: Any) -> JobPublic:
    end = row.finished or (time.time() if row.state == "running" else None)
    return JobPublic(
        id=row.id,
        owner=row.owner,
        endpoint=row.endpoint,
        group=row.group_name,
        task=row.task,
        state=row.state,
        total=row.total,
        done=row.done,
        failed=row.failed,
        error=row.error,
        workspace=row.workspace_digest,
        patchset=row.patchset_digest,
        patches=row.patches,
        options=row.options,
        params=row.params,
        inputs=row.inputs,
        created=row.created,
        started=row.started,
        finished=row.finished,
        elapsed=round(end - row.started, 3) if end and row.started else None,
    )


# The shortest prefix of a job id accepted for the whole id (the page and `fitaas jobs` show 8).
MIN_PREFIX = 6


def job_row(database: sa.Engine, user: User, job_id: str) -> Any:
    """The job with this id, or the one job whose id starts with it, among the visible."""
    with database.connect() as conn:
        row = conn.execute(_select().where(db.jobs.c.id == job_id, _visible(user))).first()
        if row is None and MIN_PREFIX <= len(job_id) < 32:
            found = conn.execute(
                _select()
                .where(db.jobs.c.id.startswith(job_id, autoescape=True), _visible(user))
                .limit(2)
            ).all()
            if len(found) > 1:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"several of your jobs start with {job_id}: give more of the id",
                )
            row = found[0] if found else None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id} visible to you")
    return row


def _endpoint_for(database: sa.Engine, user: User, name: str) -> tuple[int, dict[str, Any]]:
    """The endpoint's id and settings, if the user may use it (else 403)."""
    with database.connect() as conn:
        found = conn.execute(
            sa.select(db.endpoints.c.id, db.endpoints.c.settings).where(db.endpoints.c.name == name)
        ).first()
    usable = [e.name for e in usable_endpoints(database, user)]
    if found is None or name not in usable:
        # the same answer whether it does not exist or is not the user's: names of other
        # groups' endpoints cannot be probed
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"no endpoint '{name}' that you may use (yours: {', '.join(usable) or 'none'})",
        )
    return int(found.id), dict(found.settings or {})


def _patchset(
    request: JobCreate, user: User, database: sa.Engine, settings: Any, uploads: Any
) -> tuple[str | None, Any]:
    if request.patchset is None:
        return None, None
    if isinstance(request.patchset, str):
        _owned(database, user, request.patchset, "patchset")
        return request.patchset, load_document(database, request.patchset)
    raw = json.dumps(request.patchset).encode()
    key, _ = store_document(database, raw, "patchset", user.id, settings.max_upload_bytes, uploads)
    return key, request.patchset


@router.post("/jobs", status_code=201, responses=errors(400, 403))
def submit_job(
    request: JobCreate,
    user: CurrentUser,
    database: Database,
    runner: Runner,
    settings: Settings,
    uploads: Uploads,
) -> JobPublic:
    """Submit a scan of a stored workspace (and patchset) on an endpoint."""
    endpoint = request.endpoint or "local"
    endpoint_id, _ = _endpoint_for(database, user, endpoint)
    group_id = None
    if request.group is not None and request.group not in user.groups:
        raise HTTPException(
            UNPROCESSABLE,
            f"you are not in the group '{request.group}' (yours: {', '.join(user.groups)})",
        )
    limits = settings.limits
    try:
        options = InferenceOptions.from_dict(request.options)
        if options.toybased and request.task != "hypotest":
            raise InputError("toys (calctype toybased) compute hypothesis tests only")
        # (sizes the request states are refused before any document is read)
        limits.check_sizes(
            len(request.patches or ()),
            len(request.pallets or ()),
            len(request.labels or ()),
            _grid_size(request.grid),
        )
        limits.check_options(options, max(len(request.patches or ()), 1))
        scanned = _scanned(request, user, database, settings, uploads)
        if options.toybased and scanned.inputs.kind == "models":
            raise InputError("theory scans use the asymptotic calculator; toys need a patchset")
        params = _fit_params(request, scanned.pallet)
        points = 1 if params is not None else scanned.total
        limits.check_sizes(points)
        limits.check_options(options, points)
        check_job_options(options, scanned.pallet, request.patches, request.task)
    except InputError as exc:
        raise HTTPException(UNPROCESSABLE, str(exc)) from None
    job_id = uuid.uuid4().hex
    with database.begin() as conn:
        if request.group is not None:
            group_id = conn.execute(
                sa.select(db.groups.c.id).where(db.groups.c.name == request.group)
            ).scalar()
        conn.execute(
            sa.insert(db.jobs).values(
                id=job_id,
                owner_id=user.id,
                endpoint_id=endpoint_id,
                group_id=group_id,
                workspace_digest=scanned.workspace,
                patchset_digest=scanned.patchset,
                patches=request.patches,
                task=request.task,
                options=options.to_dict(),
                params=params,
                inputs=scanned.inputs.to_json(),
                state="queued",
                total=0 if params is not None else scanned.total,
                done=0,
                failed=0,
                created=time.time(),
            )
        )
    runner.submit(job_id, endpoint, user.id)
    return _public(job_row(database, user, job_id))


@dataclass(frozen=True)
class _Scanned:
    """What a job request scans, checked: the digests its row keeps, its inputs, its
    (first) pallet and how many points it has."""

    workspace: str
    patchset: str | None
    inputs: JobInputs
    pallet: Pallet
    total: int


def _owned(database: sa.Engine, user: User, key: str | None, kind: str, where: str = "") -> None:
    if key is not None and not owns_document(database, key, user.id, kind):
        raise InputError(f"no {kind} {key} among your uploads{where} (POST /api/v1/{kind}s)")


def _scanned(
    request: JobCreate, user: User, database: sa.Engine, settings: Any, uploads: Any
) -> _Scanned:
    """Check a request's inputs: owned, valid, combinable; count its points.

    Raises:
        InputError: Inputs missing, clashing, not the user's, or unusable (named).
    """
    if request.pallets is not None:
        return _scanned_pallets(request, user, database)
    if request.combine is not None:
        raise InputError("'combine' combines 'pallets': give two or more")
    if request.workspace is None:
        raise InputError("a job needs 'workspace' (or 'pallets' for a sweep or combination)")
    _owned(database, user, request.workspace, "workspace")
    if request.models is not None:
        return _scanned_models(request, user, database)
    if request.labels is not None:
        raise InputError("'labels' names the values of 'models'")
    patchset_digest, patchset = _patchset(request, user, database, settings, uploads)
    pallet = Pallet.from_specs(load_document(database, request.workspace), patchset)
    total = len(pallet.select(request.patches))
    return _Scanned(request.workspace, patchset_digest, JobInputs(), pallet, total)


def _scanned_models(request: JobCreate, user: User, database: sa.Engine) -> _Scanned:
    """A theory scan: the models streamed over the workspace (counted, not read whole)."""
    if request.patchset is not None or request.patches is not None:
        raise InputError("a theory scan scans its 'models': no 'patchset' or 'patches'")
    if request.task not in ("hypotest", "upper_limit", "fit"):
        raise InputError(f"a theory scan computes hypotest, upper_limit or fit, not {request.task}")
    _owned(database, user, request.models, "models")
    assert request.workspace is not None and request.models is not None
    pallet = Pallet.from_specs(load_document(database, request.workspace))
    total = sum(1 for line in model_lines(database, request.models) if line.strip())
    inputs = JobInputs(models=request.models, labels=tuple(request.labels or ()))
    return _Scanned(request.workspace, None, inputs, pallet, total)


def _scanned_pallets(request: JobCreate, user: User, database: sa.Engine) -> _Scanned:
    """A sweep (each pallet scanned) or a combination (one combined pallet scanned)."""
    assert request.pallets is not None
    if request.workspace or request.patchset or request.models or request.labels:
        raise InputError("'pallets' replaces 'workspace', 'patchset', 'models' and 'labels'")
    if request.task in FIT_TASKS:
        raise InputError(f"a {request.task} job fits one point of one pallet, not 'pallets'")
    names = [p.name for p in request.pallets]
    if len(set(names)) < len(names):
        raise InputError(f"pallet names must be unique: {', '.join(names)}")
    named = []
    for ref in request.pallets:
        where = f" (pallet '{ref.name}')"
        _owned(database, user, ref.workspace, "workspace", where)
        _owned(database, user, ref.patchset, "patchset", where)
        patchset = load_document(database, ref.patchset) if ref.patchset else None
        spec = load_document(database, ref.workspace)
        named.append((ref.name, Pallet.from_specs(spec, patchset, source=ref.name)))
    combine = request.combine.model_dump() if request.combine is not None else None
    inputs = JobInputs(pallets=tuple(p.model_dump() for p in request.pallets), combine=combine)
    first = request.pallets[0]
    if combine is None:
        if request.patches is not None:
            raise InputError("a sweep scans every point of its pallets: no 'patches'")
        total = sum(len(pallet.points) for _, pallet in named)
        return _Scanned(first.workspace, first.patchset, inputs, named[0][1], total)
    if len(named) < 2:
        raise InputError("a combination needs two pallets or more")
    from fitaas.jobs.combined_scans import combine_pallets

    pallet = combine_pallets(named, join=combine["join"], match=combine["match"]).pallet
    total = len(pallet.select(request.patches))
    return _Scanned(first.workspace, first.patchset, inputs, pallet, total)


def _fit_params(request: JobCreate, pallet: Pallet) -> dict[str, Any] | None:
    """A ranking's or likelihood scan's parameters (``None`` for scans).

    Raises:
        InputError: Not exactly one point, or a grid for another task.
    """
    if request.task not in FIT_TASKS:
        if request.parameter is not None or request.grid is not None:
            raise InputError("'parameter' and 'grid' belong to ranking and nll_scan jobs")
        return None
    if request.grid is not None and request.task != "nll_scan":
        raise InputError("'grid' belongs to nll_scan jobs")
    if request.grid is not None:  # (its bounds are held to the parameter's on the worker)
        check_grid(*request.grid)
    if request.patches is not None and len(request.patches) > 1:
        raise InputError(f"a {request.task} job fits one point: give one patch name")
    pallet.point(request.patches[0] if request.patches else None)  # exactly one
    return {"parameter": request.parameter, "grid": request.grid}


def _grid_size(grid: tuple[float, float, int] | None) -> int | None:
    return None if grid is None else int(grid[2])


@router.get("/jobs")
def list_jobs(user: CurrentUser, database: Database) -> list[JobPublic]:
    """Your jobs and those shared with your groups, newest first."""
    with database.connect() as conn:
        rows = conn.execute(_select().where(_visible(user)).order_by(db.jobs.c.created.desc()))
        return [_public(row) for row in rows]


@router.get("/jobs/{job_id}", responses=errors(404))
def get_job(job_id: str, user: CurrentUser, database: Database) -> JobPublic:
    """State, counts and timings of one job."""
    return _public(job_row(database, user, job_id))


@router.delete("/jobs/{job_id}", responses=errors(403, 404))
def cancel_job(job_id: str, user: CurrentUser, database: Database, runner: Runner) -> JobPublic:
    """Cancel a job: its running tasks stop being waited for; finished results stay."""
    row = job_row(database, user, job_id)
    if row.owner_id != user.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the job's owner may cancel it")
    if row.state in ("queued", "running"):
        with database.begin() as conn:
            conn.execute(
                sa.update(db.jobs)
                .where(db.jobs.c.id == row.id)
                .values(state="cancelled", finished=time.time())
            )
        runner.cancel(row.id)
    return _public(job_row(database, user, row.id))
