"""``/api/v1/jobs``: submit, list, follow, fetch results, cancel."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from fitaas.errors import InputError
from fitaas.inference import InferenceOptions
from fitaas.inference.results import strict_json
from fitaas.pallets import Pallet
from fitaas.scanning import stored_results
from fitaas.service import db
from fitaas.service.accounts import User, usable_endpoints
from fitaas.service.deps import CurrentUser, Database, Runner, Settings, Store, Uploads
from fitaas.service.documents import load_document, owns_document, store_document
from fitaas.service.fit_tasks import FIT_TASKS, fit_job_outcome
from fitaas.service.pictures import PictureCache

__all__ = ["JobCreate", "JobPublic", "router"]

router = APIRouter(tags=["jobs"])

_DIGEST = r"^[0-9a-f]{64}$"
_UNPROCESSABLE = status.HTTP_422_UNPROCESSABLE_CONTENT


class JobCreate(BaseModel):
    """A job request. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(pattern=_DIGEST, description="digest from POST /workspaces")
    patchset: str | dict[str, Any] | None = Field(
        None, description="digest from POST /patchsets, or the patchset itself"
    )
    patches: list[str] | None = Field(
        None, description="a subset of patch names (ranking, nll_scan: the one point)"
    )
    task: Literal["hypotest", "upper_limit", "fit", "ranking", "nll_scan"] = "hypotest"
    options: dict[str, Any] = Field(default_factory=dict, description="InferenceOptions fields")
    parameter: str | None = Field(
        None, description="ranking: the POI (default the model's); nll_scan: the parameter"
    )
    grid: tuple[float, float, int] | None = Field(
        None, description="nll_scan: [low, high, n] (default 21 values over the bounds)"
    )
    endpoint: str | None = Field(None, description="default: local")
    group: str | None = Field(None, description="one of your groups to share the job with")


class JobPublic(BaseModel):
    """What a job's owner (and its group) sees of it."""

    id: str
    owner: str
    endpoint: str
    group: str | None
    task: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    total: int
    done: int
    failed: int
    error: str | None
    workspace: str
    patchset: str | None
    patches: list[str] | None
    options: dict[str, Any]
    params: dict[str, Any] | None = Field(None, description="ranking/nll_scan parameters")
    created: float
    started: float | None
    finished: float | None
    elapsed: float | None = Field(description="seconds from start to finish (or to now)")


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
        created=row.created,
        started=row.started,
        finished=row.finished,
        elapsed=round(end - row.started, 3) if end and row.started else None,
    )


# The shortest prefix of a job id accepted for the whole id (the page and `fitaas jobs` show 8).
MIN_PREFIX = 6


def _job_row(database: sa.Engine, user: User, job_id: str) -> Any:
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


def _endpoint_for(database: sa.Engine, user: User, name: str) -> int:
    with database.connect() as conn:
        endpoint_id = conn.execute(
            sa.select(db.endpoints.c.id).where(db.endpoints.c.name == name)
        ).scalar()
    usable = [e.name for e in usable_endpoints(database, user)]
    if endpoint_id is None or name not in usable:
        # the same answer whether it does not exist or is not the user's: names of other
        # groups' endpoints cannot be probed
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"no endpoint '{name}' that you may use (yours: {', '.join(usable) or 'none'})",
        )
    return int(endpoint_id)


def _patchset(
    request: JobCreate, user: User, database: sa.Engine, settings: Any, uploads: Any
) -> tuple[str | None, Any]:
    if request.patchset is None:
        return None, None
    if isinstance(request.patchset, str):
        if not owns_document(database, request.patchset, user.id, "patchset"):
            raise HTTPException(
                _UNPROCESSABLE,
                f"no patchset {request.patchset} among your uploads (POST /api/v1/patchsets)",
            )
        return request.patchset, load_document(database, request.patchset)
    raw = json.dumps(request.patchset).encode()
    key, _ = store_document(database, raw, "patchset", user.id, settings.max_upload_bytes, uploads)
    return key, request.patchset


@router.post("/jobs", status_code=201)
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
    endpoint_id = _endpoint_for(database, user, endpoint)
    group_id = None
    if request.group is not None and request.group not in user.groups:
        raise HTTPException(
            _UNPROCESSABLE,
            f"you are not in the group '{request.group}' (yours: {', '.join(user.groups)})",
        )
    if not owns_document(database, request.workspace, user.id, "workspace"):
        raise HTTPException(
            _UNPROCESSABLE,
            f"no workspace {request.workspace} among your uploads (POST /api/v1/workspaces)",
        )
    try:
        options = InferenceOptions.from_dict(request.options)
        if options.toybased and request.task != "hypotest":
            raise InputError("toys (calctype toybased) compute hypothesis tests only")
        patchset_digest, patchset = _patchset(request, user, database, settings, uploads)
        pallet = Pallet.from_specs(load_document(database, request.workspace), patchset)
        points = pallet.select(request.patches)
        params = _fit_params(request, pallet)
    except InputError as exc:
        raise HTTPException(_UNPROCESSABLE, str(exc)) from None
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
                workspace_digest=request.workspace,
                patchset_digest=patchset_digest,
                patches=request.patches,
                task=request.task,
                options=options.to_dict(),
                params=params,
                state="queued",
                total=0 if params is not None else len(points),
                done=0,
                failed=0,
                created=time.time(),
            )
        )
    runner.submit(job_id, endpoint)
    return _public(_job_row(database, user, job_id))


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
    if request.patches is not None and len(request.patches) > 1:
        raise InputError(f"a {request.task} job fits one point: give one patch name")
    pallet.point(request.patches[0] if request.patches else None)  # exactly one
    return {"parameter": request.parameter, "grid": request.grid}


@router.get("/jobs")
def list_jobs(user: CurrentUser, database: Database) -> list[JobPublic]:
    """Your jobs and those shared with your groups, newest first."""
    with database.connect() as conn:
        rows = conn.execute(_select().where(_visible(user)).order_by(db.jobs.c.created.desc()))
        return [_public(row) for row in rows]


@router.get("/jobs/{job_id}")
def get_job(job_id: str, user: CurrentUser, database: Database) -> JobPublic:
    """State, counts and timings of one job."""
    return _public(_job_row(database, user, job_id))


def _fit_job_result(row: Any, runner: Any, store: Any) -> Any:
    """The result of a ranking or likelihood scan job (409 while it is not computed)."""
    pallet = runner.pallets.get(row)
    found = fit_job_outcome(pallet, row, store)
    if found is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the {row.task} is not computed yet")
    return FIT_TASKS[row.task].from_dict(found)


def _results(row: Any, runner: Any, store: Any) -> Any:
    return stored_results(
        runner.pallets.get(row),
        store,
        patches=row.patches,
        options=InferenceOptions.from_dict(row.options),
        kinds=(row.task,),
    )


@router.get("/jobs/{job_id}/results", response_model=None)
def job_results(
    job_id: str,
    user: CurrentUser,
    database: Database,
    store: Store,
    runner: Runner,
    format: Literal["json", "csv"] = Query("json"),
) -> Any:
    """The results finished so far, as ``fitaas scan`` writes them (JSON or CSV).

    The JSON is strict: a value that is not a finite number (NaN CLs where a point has no
    sensitivity at all) is ``null``, where ``fitaas scan``'s file has ``NaN``.
    """
    row = _job_row(database, user, job_id)
    if row.task in FIT_TASKS:
        if format == "csv":
            raise HTTPException(_UNPROCESSABLE, f"a {row.task} job's results are JSON only")
        return strict_json(_fit_job_result(row, runner, store).to_dict())
    result = _results(row, runner, store)
    if format == "csv":
        return Response(result.to_csv(), media_type="text/csv")
    return strict_json(result.to_dict())


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _picture(request: Request, subject: tuple[Any, ...], row: Any, render: Any) -> Response:
    """The job's picture (the latest kept while a newer one renders), or 304 when the client
    holds it already. ``X-Fitaas-Points`` says after how many points it was drawn."""
    pictures: PictureCache = request.app.state.pictures
    version, picture = pictures.get(subject, (row.done, row.failed, row.state), render)
    tag = pictures.etag(subject, version)
    headers = {
        "ETag": tag,
        "Cache-Control": "private, no-cache",
        "X-Fitaas-Points": str(version[0]),  # type: ignore[index]
    }
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(picture, media_type="image/png", headers=headers)


def _fit_picture(row: Any, runner: Any, store: Any) -> bytes:
    """A ranking job's ranking plot, a likelihood scan job's curve."""
    result = _fit_job_result(row, runner, store)
    import matplotlib

    matplotlib.use("Agg")
    from fitaas import fit_plots

    if row.task == "ranking":
        return _png(fit_plots.ranking_figure(result))
    return _png(fit_plots.likelihood_scan_figure(result))


@router.get("/jobs/{job_id}/plot.png", response_class=Response)
def job_plot(
    job_id: str,
    request: Request,
    user: CurrentUser,
    database: Database,
    store: Store,
    runner: Runner,
    cl: float = Query(0.95, gt=0, lt=1),
) -> Response:
    """Observed and expected CLs in the plane of the two point labels, with contours.

    Rendered once per change of the job, whoever asks: while a newer picture renders, the
    last one is sent (``X-Fitaas-Points`` says after how many points it was drawn); 304 to a
    client that sends the ETag of the picture it holds.
    """
    row = _job_row(database, user, job_id)
    if row.task in FIT_TASKS:
        return _picture(request, ("fits", row.id), row, lambda: _fit_picture(row, runner, store))
    if row.task != "hypotest":
        raise HTTPException(status.HTTP_409_CONFLICT, "a CLs picture needs hypothesis tests")

    def render() -> bytes:
        result = _results(row, runner, store)
        if len(result.labels) != 2:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "a CLs picture needs points with two labels"
            )
        if len([p for p in result if p.hypotest is not None]) < 3:
            raise HTTPException(status.HTTP_409_CONFLICT, "fewer than 3 results so far")
        import matplotlib

        matplotlib.use("Agg")
        from fitaas.plots import exclusion

        try:
            figure = exclusion(result, cl=cl, cls_map=True)
        except (InputError, ValueError, RuntimeError) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"no picture yet: {exc}") from None
        return _png(figure)

    return _picture(request, ("cls", row.id, cl), row, render)


@router.get("/jobs/{job_id}/toys.png", response_class=Response)
def job_toys_plot(
    job_id: str,
    request: Request,
    user: CurrentUser,
    database: Database,
    store: Store,
    runner: Runner,
    patch: str = Query(..., description="The signal point"),
) -> Response:
    """The test-statistic distributions of one point of a toy-based job."""
    row = _job_row(database, user, job_id)

    def render() -> bytes:
        result = _results(row, runner, store)
        found = [p for p in result if p.patch == patch]
        if not found:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no finished point '{patch}' in this job"
            )
        if found[0].hypotest is None or found[0].hypotest.toys is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"point '{patch}' has no toys")
        import matplotlib

        matplotlib.use("Agg")
        from fitaas.plots import toy_distributions

        return _png(toy_distributions(found[0]))

    return _picture(request, ("toys", row.id, patch), row, render)


@router.delete("/jobs/{job_id}")
def cancel_job(job_id: str, user: CurrentUser, database: Database, runner: Runner) -> JobPublic:
    """Cancel a job: its running tasks stop being waited for; finished results stay."""
    row = _job_row(database, user, job_id)
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
    return _public(_job_row(database, user, row.id))
