"""The analyst's fits spread over an engine: rankings, likelihood scans, upper limits.

A ranking of a model with N nuisance parameters is up to 4N fits and a likelihood scan
one fit per value, all independent: the nominal fit runs here (while the engine's workers
start), then the held fits go to the workers as tasks, a few per task (every worker
builds the point's model once and keeps it), and the result is assembled as the pure
core does it in one process (:func:`fitaas.inference.ranking.ranking`): the same fits
(equal within the fits' tolerance: the fast path starts a fit from the best earlier
minimum of its process, and a worker has seen other fits than one process would). An
upper limit's CLs evaluations are tasks too, asked for by up to six concurrent root
findings (:mod:`fitaas.inference.parallel_limits`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyhf

from fitaas.engines.base import Engine
from fitaas.engines.compute import Compute, ComputeLike
from fitaas.engines.local import refuse_unguarded_main
from fitaas.errors import InputError
from fitaas.inference import (
    FitResult,
    HypotestResult,
    InferenceOptions,
    UpperLimitResult,
    build_model,
    pyhf_backend,
)
from fitaas.inference.core import check_options, complete_fit_inputs, fit_inputs
from fitaas.inference.held_fits import HeldFit, HeldFitResult
from fitaas.inference.likelihood_scan import LikelihoodScan, assemble_scan, plan_scan, scan_values
from fitaas.inference.parallel_limits import (
    CLsCache,
    grid_limits,
    limit_result,
    toms748_limits,
)
from fitaas.inference.ranking import (
    RankingResult,
    assemble_ranking,
    nominal_fit,
    plan_ranking,
    poi_index,
)
from fitaas.inputs.pallets import Pallet, Point, load_pallet
from fitaas.jobs.dispatch import Dispatcher, JobShape, Sending, Stopped
from fitaas.jobs.outcomes import Outcome
from fitaas.worker.tasks import run_held_fits, run_hypotests

__all__ = ["FitProgress", "likelihood_scan", "ranking", "upper_limit"]

# Held fits per task: one parameter's four variations of a ranking (about 0.05-0.3 s a fit
# on the fast path), few enough that every worker gets work.
FITS_PER_TASK = 4


@dataclass(frozen=True)
class FitProgress:
    """Where a ranking or likelihood scan stands: fits done (and failed) of the total."""

    total: int
    done: int
    failed: int


@dataclass
class _FitTask:
    fits: list[tuple[Any, HeldFit]]
    sending: Sending = field(default_factory=Sending)


def _prepared(where: _Where, kinds: Sequence[str] = ("fit",)) -> tuple[Pallet, Point, Any, Any]:
    """The pallet, the chosen point and its model and data (built here once)."""
    options = where.options
    pallet = (
        where.workspace
        if isinstance(where.workspace, Pallet)
        else load_pallet(where.workspace, where.patchset, region=where.region, verify=where.verify)
    )
    point = pallet.point(where.patch)
    with pyhf_backend(options):
        model, data = build_model(
            pyhf.Workspace(pallet.workspace, validate=False),
            point.operations,
            options,
            without_poi=True,
        )
        check_options(model, options, kinds)
    return pallet, point, model, data


class _Collected:
    """The held fits' results as they arrive, counted and reported."""

    def __init__(self, total: int, progress: Callable[[FitProgress], None] | None) -> None:
        self.total = total
        self.progress = progress
        self.results: dict[Any, HeldFitResult] = {}
        self.failed = 0

    def report(self) -> None:
        if self.progress is not None:
            self.progress(FitProgress(self.total, len(self.results), self.failed))

    def record(self, task: _FitTask, returned: list[dict[str, Any]]) -> None:
        for (key, _), item in zip(task.fits, returned, strict=True):
            self.results[key] = HeldFitResult.from_dict(item)
            self.failed += self.results[key].error is not None
        self.report()


def _run_held(
    pallet: Pallet,
    point: Point,
    planned: Sequence[tuple[Any, HeldFit]],
    where: _Where,
    engine: Engine,
) -> dict[Any, HeldFitResult]:
    """Every planned fit, computed on the engine: ``{key: result}``."""
    ref = engine.install(pallet.workspace_digest, pallet.workspace)
    data = point.task_data()
    option_dict = where.options.to_dict()
    collected = _Collected(len(planned), where.progress)

    def call(task: _FitTask, payload: Any) -> Future[list[dict[str, Any]]]:
        fits = [(held.index, held.value) for _, held in task.fits]
        return engine.executor.submit(run_held_fits, ref, data, fits, option_dict, payload)

    def lost(task: _FitTask, error: str) -> list[dict[str, Any]]:
        return [HeldFitResult.failed(error).to_dict() for _ in task.fits]

    size = engine.batch_size or FITS_PER_TASK
    tasks = [_FitTask(list(planned[i : i + size])) for i in range(0, len(planned), size)]
    collected.report()
    payload = lambda: engine.payload(pallet.workspace_digest, pallet.workspace)  # noqa: E731
    shape = JobShape(call, collected.record, lost, payload)
    Dispatcher(engine, shape, where.stop).run(iter(tasks))
    return collected.results


@dataclass(frozen=True)
class _Where:
    """What to fit and where: the inputs of :func:`ranking` and :func:`likelihood_scan`."""

    workspace: str | Path | dict[str, Any] | Pallet
    patchset: str | Path | dict[str, Any] | None
    patch: str | None
    region: str | None
    verify: bool
    options: InferenceOptions
    compute: Compute
    progress: Callable[[FitProgress], None] | None
    stop: threading.Event | None


Plan = Callable[[Any, FitResult], tuple[int, list[tuple[Any, HeldFit]]]]


def _spread(where: _Where, plan: Plan) -> tuple[Any, FitResult, int, dict[Any, HeldFitResult]]:
    """The nominal fit here, then the planned held fits on the engine.

    Args:
        where: The inputs.
        plan: From the model and the nominal fit, the parameter's index and the held fits.

    Returns:
        The model, the nominal fit, the parameter's index and every held fit by key.
    """
    refuse_unguarded_main()
    with where.compute.started_early() as early:
        pallet, point, model, data = _prepared(where)
        with pyhf_backend(where.options):
            nominal = nominal_fit(model, data, where.options)
        index, planned = plan(model, nominal)
        with early.in_use() as used:
            fitted = _run_held(pallet, point, planned, where, used)
    return model, nominal, index, fitted


def ranking(
    workspace: str | Path | dict[str, Any] | Pallet,
    patchset: str | Path | dict[str, Any] | None = None,
    *,
    patch: str | None = None,
    poi: str | None = None,
    options: InferenceOptions | None = None,
    region: str | None = None,
    verify: bool = True,
    compute: ComputeLike = None,
    progress: Callable[[FitProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> RankingResult:
    """Impacts ranking of a workspace (with one patch applied), the fits spread over an engine.

    Args:
        workspace: A workspace file, folder, archive, decoded spec or :class:`Pallet`.
        patchset: Its patchset, if any.
        patch: The patch to apply (needed when the patchset has several); none: the
            workspace itself (a background-only fit: name ``poi``).
        poi: The parameter whose shifts are ranked (default: the model's POI).
        options: Inference options (bounds, fixed parameters, optimizer).
        region: Region folder of a directory or archive holding several.
        verify: Check the patchset's digest against the workspace.
        compute: Where the fits run (see :func:`fitaas.scan`; default: the local process
            pool).
        progress: Called with a :class:`FitProgress` as fits finish.
        stop: Set it to stop within a second (:class:`fitaas.jobs.dispatch.Stopped` is raised).

    Returns:
        The ranking: :func:`fitaas.inference.ranking.ranking`'s fits, each a task.
    """
    options = options or InferenceOptions()
    where = _Where(
        workspace, patchset, patch, region, verify, options, Compute.of(compute), progress, stop
    )

    def plan(model: Any, nominal: FitResult) -> tuple[int, list[tuple[Any, HeldFit]]]:
        index = poi_index(model, poi)
        fits = plan_ranking(model, nominal, options, index)
        return index, [((par, variation), held) for par, variation, held in fits]

    model, nominal, index, fitted = _spread(where, plan)
    return assemble_ranking(model, nominal, options, index, fitted)


def likelihood_scan(
    workspace: str | Path | dict[str, Any] | Pallet,
    patchset: str | Path | dict[str, Any] | None = None,
    *,
    patch: str | None = None,
    parameter: str | None = None,
    grid: tuple[float, float, int] | None = None,
    options: InferenceOptions | None = None,
    region: str | None = None,
    verify: bool = True,
    compute: ComputeLike = None,
    progress: Callable[[FitProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> LikelihoodScan:
    """Likelihood scan of one parameter, one fit per value spread over an engine.

    Args:
        parameter: The scanned parameter (default: the model's POI).
        grid: ``(low, high, n)``; default 21 values over the parameter's bounds.

    The other arguments are those of :func:`ranking`.

    Returns:
        The scan: :func:`fitaas.inference.likelihood_scan.likelihood_scan`'s fits, as tasks.
    """
    options = options or InferenceOptions()
    where = _Where(
        workspace, patchset, patch, region, verify, options, Compute.of(compute), progress, stop
    )
    values: list[float] = []

    def plan(model: Any, nominal: FitResult) -> tuple[int, list[tuple[Any, HeldFit]]]:
        index = poi_index(model, parameter)
        values.extend(scan_values(model, options, index, grid))
        return index, list(enumerate(plan_scan(index, values)))

    model, nominal, index, fitted = _spread(where, plan)
    ordered = [fitted.get(i) or HeldFitResult.failed("not computed") for i in range(len(values))]
    return assemble_scan(model, nominal, index, values, ordered)


class _Counts:
    """CLs evaluations asked for, done and failed (from several threads), reported."""

    def __init__(self, progress: Callable[[FitProgress], None] | None) -> None:
        self.progress = progress
        self.lock = threading.Lock()
        self.total = self.finished = self.failed = 0

    def asked(self) -> None:
        with self.lock:
            self.total += 1

    def done(self, failed: bool) -> None:
        with self.lock:
            self.finished += 1
            self.failed += failed
            if self.progress is not None:
                self.progress(FitProgress(self.total, self.finished, self.failed))


@dataclass
class _MuTask:
    mu: float
    sending: Sending = field(default_factory=Sending)


def upper_limit(
    workspace: str | Path | dict[str, Any] | Pallet,
    patchset: str | Path | dict[str, Any] | None = None,
    *,
    patch: str | None = None,
    options: InferenceOptions | None = None,
    region: str | None = None,
    verify: bool = True,
    compute: ComputeLike = None,
    progress: Callable[[FitProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> UpperLimitResult:
    """Observed and expected upper limits of one point, its CLs evaluations spread over an
    engine: pyhf's TOMS748 root finding (the six limits at once) or, with
    ``options.ul_scan``, its grid scan (every value at once).

    The arguments are those of :func:`ranking` (``stop`` is checked between evaluations).

    Returns:
        The limits, equal to :func:`fitaas.inference.upper_limit`'s within pyhf's root
        finding tolerance (rtol 1e-4); the grid's exactly.

    Raises:
        InputError: A hypothesis test failed at a value the search needed, or the limit
            lies above the POI's upper bound.
    """
    options = options or InferenceOptions()
    where = _Where(
        workspace, patchset, patch, region, verify, options, Compute.of(compute), progress, stop
    )
    refuse_unguarded_main()
    with where.compute.started_early() as early:
        pallet, point, model, _ = _prepared(where, ("upper_limit",))
        poi = model.config.poi_index
        if poi is None:
            raise InputError("the model has no parameter of interest: no upper limit to set")
        name = model.config.poi_name
        _, bounds, _ = complete_fit_inputs(model, fit_inputs(model, options))
        with early.in_use() as used:
            cache = CLsCache(_evaluation(pallet, point, where, used, name))
            if options.ul_scan is not None:
                start, stop_at, count = options.ul_scan
                grid = [float(v) for v in np.linspace(start, stop_at, count)]
                obs, exp = grid_limits(cache, grid, options.level, max(used.workers, 1))
                method = "grid"
            else:
                low, high = bounds[poi]
                obs, exp = toms748_limits(cache, low, high, options.level, used.workers, name, high)
                method = "toms748"
    return limit_result(cache, obs, exp, options.level, method)


def _evaluation(
    pallet: Pallet, point: Point, where: _Where, engine: Engine, name: str
) -> Callable[[float], tuple[float, tuple[float, ...]]]:
    """CLs at a POI value, computed as a task on the engine (sent again when lost)."""
    ref = engine.install(pallet.workspace_digest, pallet.workspace)
    data = point.task_data()
    option_dict = where.options.to_dict()

    def call(task: _MuTask, payload: Any) -> Future[list[dict[str, Any]]]:
        return engine.executor.submit(run_hypotests, ref, data, [task.mu], option_dict, payload)

    def lost(task: _MuTask, error: str) -> list[dict[str, Any]]:
        return [Outcome.failed(error).to_dict()]

    def record(task: _MuTask, returned: Any) -> None:
        """(each evaluation is waited for by its caller: :meth:`Dispatcher.call`)"""

    payload = lambda: engine.payload(pallet.workspace_digest, pallet.workspace)  # noqa: E731
    dispatcher = Dispatcher(engine, JobShape(call, record, lost, payload))
    counts = _Counts(where.progress)

    def evaluate(mu: float) -> tuple[float, tuple[float, ...]]:
        if where.stop is not None and where.stop.is_set():
            raise Stopped("the upper limit was stopped")
        counts.asked()
        (returned,) = dispatcher.call(_MuTask(mu))
        found = Outcome.from_dict(returned)
        counts.done(found.result is None)
        if found.result is None:
            raise InputError(f"the hypothesis test at {name} = {mu:g} failed: {found.error}")
        result = HypotestResult.from_dict(found.result)
        return result.cls_obs, tuple(result.cls_exp)

    return evaluate
