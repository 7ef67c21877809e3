"""``/api/v1/jobs/{id}/results`` and the job's pictures: what a job has computed, as JSON or CSV,
and its figures (rendered once per change of the job, whoever asks).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from fitaas.errors import InputError
from fitaas.inference import InferenceOptions
from fitaas.inference.results import strict_json
from fitaas.jobs.scanning import stored_results
from fitaas.output.figures import FigureChoice
from fitaas.output.results import ScanResult
from fitaas.service.api_jobs import UNPROCESSABLE, job_row
from fitaas.service.deps import CurrentUser, Database, Runner, Store
from fitaas.service.fit_tasks import FIT_TASKS, fit_job_outcome
from fitaas.service.job_inputs import JobInputs, job_models
from fitaas.service.pictures import PictureCache
from fitaas.service.responses import errors

__all__ = [
    "job_plot",
    "job_results",
    "job_toys_plot",
    "router",
]

router = APIRouter(tags=["jobs"], responses=errors(401, 413, 422, 429, 503))


def _fit_job_result(row: Any, runner: Any, store: Any) -> Any:
    """The result of a ranking or likelihood scan job (409 while it is not computed)."""
    pallet = runner.pallets.one(row)
    found = fit_job_outcome(pallet, row, store)
    if found is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the {row.task} is not computed yet")
    return FIT_TASKS[row.task].from_dict(found)


def _results(
    row: Any, runner: Any, store: Any, name: str | None = None, limit: int | None = None
) -> ScanResult:
    """What the store holds of a scan job (the first ``limit`` finished points): of its
    pallet, a sweep's pallet ``name`` (default its first), its combination, or its theory
    models (read from their document as a stream)."""
    try:
        pallet = runner.pallets.one(row, name)
    except InputError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    models = JobInputs.from_json(row.inputs).kind == "models"
    return stored_results(
        pallet,
        store,
        patches=row.patches,
        options=InferenceOptions.from_dict(row.options),
        kinds=(row.task,),
        points=job_models(runner.engine, row) if models else None,
        limit=limit,
    )


def _sweep_results(row: Any, runner: Any, store: Any) -> dict[str, Any]:
    """Every pallet of a sweep job: ``{"pallets": {name: results}}`` in order."""
    names = JobInputs.from_json(row.inputs).names
    results = {name: _results(row, runner, store, name).to_dict() for name in names}
    return {"pallets": strict_json(results)}


_RESULTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the results (JSON, or CSV with format=csv)",
        "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {}},
    },
    **errors(404, 409),
}

_PICTURE: dict[int | str, dict[str, Any]] = {
    200: {"description": "the picture", "content": {"image/png": {}}},
    304: {"description": "the picture the client holds (its ETag) is the latest"},
    **errors(404, 409),
}


@router.get("/jobs/{job_id}/results", response_model=None, responses=_RESULTS)
def job_results(
    job_id: str,
    user: CurrentUser,
    database: Database,
    store: Store,
    runner: Runner,
    format: Literal["json", "csv"] = Query("json"),
    pallet: str | None = Query(None, description="a sweep's pallet (default: all, JSON)"),
    limit: int | None = Query(None, ge=1, description="only the first LIMIT finished points"),
) -> Any:
    """The results finished so far, as ``fitaas scan`` writes them (JSON or CSV).

    The JSON is strict: a value that is not a finite number (NaN CLs where a point has no
    sensitivity at all) is ``null``, where ``fitaas scan``'s file has ``NaN``. A sweep's
    results are ``{"pallets": {name: results}}``, or one pallet's with ``pallet=NAME`` (CSV
    is per pallet).
    """
    row = job_row(database, user, job_id)
    if row.task in FIT_TASKS:
        if format == "csv":
            raise HTTPException(UNPROCESSABLE, f"a {row.task} job's results are JSON only")
        return strict_json(_fit_job_result(row, runner, store).to_dict())
    inputs = JobInputs.from_json(row.inputs)
    if pallet is None and inputs.kind == "sweep":
        if format == "csv":
            names = ", ".join(inputs.names)
            raise HTTPException(
                UNPROCESSABLE, f"a sweep's CSV is per pallet: add pallet=NAME ({names})"
            )
        return _sweep_results(row, runner, store)
    result = _results(row, runner, store, pallet, limit)
    if format == "csv":
        return Response(result.to_csv(), media_type="text/csv")
    return strict_json(result.to_dict())


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


def _scan_picture(result: Any, choice: Any, name: str) -> bytes:
    """One figure of a scan's results as PNG (the chooser's, drawn off screen)."""
    import matplotlib

    matplotlib.use("Agg")
    from fitaas.output.figures import png, scan_figures

    made, _ = scan_figures(result, choice, [name])
    return png(made[name])


def _fit_picture(row: Any, runner: Any, store: Any) -> bytes:
    """A ranking job's ranking plot, a likelihood scan job's curve."""
    result = _fit_job_result(row, runner, store)
    import matplotlib

    matplotlib.use("Agg")
    from fitaas.output.figures import fit_figures, png

    (figure,) = (fit_figures(result.to_dict()) or {}).values()
    return png(figure)


@router.get("/jobs/{job_id}/plot.png", response_class=Response, responses=_PICTURE)
def job_plot(
    job_id: str,
    request: Request,
    user: CurrentUser,
    database: Database,
    store: Store,
    runner: Runner,
    cl: float = Query(0.95, gt=0, lt=1),
    pallet: str | None = Query(None, description="a sweep's pallet (default: its first)"),
) -> Response:
    """Observed and expected CLs in the plane of the two point labels, with contours.

    Rendered once per change of the job, whoever asks: while a newer picture renders, the
    last one is sent (``X-Fitaas-Points`` says after how many points it was drawn); 304 to a
    client that sends the ETag of the picture it holds.
    """
    row = job_row(database, user, job_id)
    if row.task in FIT_TASKS:
        return _picture(request, ("fits", row.id), row, lambda: _fit_picture(row, runner, store))
    if row.task != "hypotest":
        raise HTTPException(status.HTTP_409_CONFLICT, "a CLs picture needs hypothesis tests")

    def render() -> bytes:
        result = _results(row, runner, store, pallet)
        if len(result.labels) != 2:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "a CLs picture needs points with two labels"
            )
        if len([p for p in result if p.hypotest is not None]) < 3:
            raise HTTPException(status.HTTP_409_CONFLICT, "fewer than 3 results so far")
        try:
            return _scan_picture(result, FigureChoice(cl=cl, cls_map=True), "exclusion_clsmap")
        except InputError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, f"no picture yet: {exc}") from None

    return _picture(request, ("cls", row.id, cl, pallet), row, render)


@router.get("/jobs/{job_id}/toys.png", response_class=Response, responses=_PICTURE)
def job_toys_plot(
    job_id: str,
    request: Request,
    user: CurrentUser,
    database: Database,
    store: Store,
    runner: Runner,
    patch: str = Query(..., description="The signal point"),
    pallet: str | None = Query(None, description="a sweep's pallet (default: its first)"),
) -> Response:
    """The test-statistic distributions of one point of a toy-based job."""
    row = job_row(database, user, job_id)

    def render() -> bytes:
        result = _results(row, runner, store, pallet)
        found = [p for p in result if p.patch == patch]
        if not found:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no finished point '{patch}' in this job"
            )
        if found[0].hypotest is None or found[0].hypotest.toys is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"point '{patch}' has no toys")
        return _scan_picture(result, FigureChoice(patch=patch), f"toys_{patch}")

    return _picture(request, ("toys", row.id, patch, pallet), row, render)
