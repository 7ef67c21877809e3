"""Rankings and likelihood scans as service jobs: computed on the job's engine, kept in
the results store under their content key (a finished one is not computed again)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyhf

from fitaas.engines.base import Engine
from fitaas.inference import InferenceOptions
from fitaas.inference.likelihood_scan import LikelihoodScan
from fitaas.inference.ranking import RankingResult
from fitaas.inputs.pallets import Pallet, Point
from fitaas.jobs.fit_jobs import FitProgress, likelihood_scan, ranking
from fitaas.jobs.outcomes import Outcome
from fitaas.store import Record, ResultStore, result_key

__all__ = ["FIT_TASKS", "fit_job_outcome", "run_fit_job"]

# The job tasks that fit one point many times, and their result types.
FIT_TASKS: dict[str, type[RankingResult] | type[LikelihoodScan]] = {
    "ranking": RankingResult,
    "nll_scan": LikelihoodScan,
}


def _key(pallet: Pallet, job: Any) -> tuple[str, Point, dict[str, Any]]:
    point = pallet.point(job.patches[0] if job.patches else None)
    options = {**job.options, **(job.params or {})}
    version = str(pyhf.__version__)
    return (
        result_key(pallet.workspace_digest, point.digest, job.task, options, version),
        point,
        options,
    )


def fit_job_outcome(pallet: Pallet, job: Any, store: ResultStore) -> dict[str, Any] | None:
    """The stored result of a ranking or likelihood scan job (``None``: not computed)."""
    return _stored(store, _key(pallet, job)[0])


def _stored(store: ResultStore, key: str) -> dict[str, Any] | None:
    found = store.get([key]).get(key)
    return found.outcome["result"] if found is not None and found.status == "ok" else None


def run_fit_job(
    pallet: Pallet,
    job: Any,
    store: ResultStore,
    engine: Engine,
    progress: Callable[[FitProgress], None],
    stop: threading.Event,
) -> None:
    """Compute a ranking or likelihood scan job on ``engine`` and store its result.

    Raises:
        InputError: The job's inputs do not make a ranking or scan (named).
        Stopped: ``stop`` was set.
    """
    key, point, options = _key(pallet, job)
    if _stored(store, key) is not None:
        return
    params = job.params or {}
    common: dict[str, Any] = {
        "patch": point.name,
        "options": InferenceOptions.from_dict(job.options),
        "compute": engine,
        "progress": progress,
        "stop": stop,
    }
    result: RankingResult | LikelihoodScan
    if job.task == "ranking":
        result = ranking(pallet, poi=params.get("parameter"), **common)
    else:
        grid = params.get("grid")
        result = likelihood_scan(
            pallet,
            parameter=params.get("parameter"),
            grid=(float(grid[0]), float(grid[1]), int(grid[2])) if grid else None,
            **common,
        )
    outcome = Outcome("ok", result.to_dict())
    version = str(pyhf.__version__)
    store.put(
        Record(
            key,
            pallet.workspace_digest,
            point.name,
            point.digest,
            job.task,
            options,
            version,
            outcome.to_dict(),
        )
    )
