"""Scan orchestration: plan tasks, submit them, gather as completed, persist, resume.

The scan does not know which engine runs it: anything with the
``concurrent.futures.Executor`` interface will do. Each outcome is written to the
results store the moment it arrives; outcomes already stored (with status ``ok``) are
not computed again unless ``force`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyhf

from fitaas.engines.local import default_workers, local_pool, stop_now
from fitaas.errors import InputError
from fitaas.inference import (
    KINDS,
    FitResult,
    HypotestResult,
    InferenceOptions,
    UpperLimitResult,
    pyhf_backend,
)
from fitaas.pallets import Pallet, Point, load_pallet
from fitaas.results import PointResult, ScanResult
from fitaas.store import ResultStore, result_key
from fitaas.tasks import WorkspaceRef, compress_workspace, run_points

__all__ = ["ScanProgress", "scan"]

_TYPES: dict[str, Any] = {
    "hypotest": HypotestResult,
    "upper_limit": UpperLimitResult,
    "fit": FitResult,
}


@dataclass(frozen=True)
class ScanProgress:
    """Where a scan stands, passed to the progress callback after every point.

    Attributes:
        total: Points in the scan.
        done: Points finished (computed now or found in the store).
        failed: Points among ``done`` where something failed.
        reused: Points found complete in the store.
        latest: The point that just finished (``None`` for the first report).
    """

    total: int
    done: int
    failed: int
    reused: int
    latest: PointResult | None = None


@contextmanager
def _opened_store(store: str | Path | ResultStore | None) -> Iterator[ResultStore]:
    if isinstance(store, ResultStore):
        yield store
        return
    with ResultStore(":memory:" if store is None else store) as opened:
        yield opened


def _point_result(
    point: Point, labels: tuple[str, ...], kinds: Sequence[str], outcomes: dict[str, Any]
) -> PointResult:
    results: dict[str, Any] = dict.fromkeys(KINDS)
    errors, seconds = [], 0.0
    for kind in kinds:
        outcome = outcomes[kind]
        seconds += float(outcome.get("seconds") or 0.0)
        if outcome["status"] == "ok":
            results[kind] = _TYPES[kind].from_dict(outcome["result"])
        else:
            errors.append(outcome.get("error") or "failed")
    return PointResult(
        patch=point.name,
        values=point.values,
        labels=labels,
        hypotest=results["hypotest"],
        upper_limit=results["upper_limit"],
        fit=results["fit"],
        status="failed" if errors else "ok",
        error="; ".join(dict.fromkeys(errors)) if errors else None,
        seconds=round(seconds, 6),
    )


def _batches(todo: list[tuple[Point, tuple[str, ...]]], size: int) -> Iterator[Any]:
    by_kinds: dict[tuple[str, ...], list[Point]] = {}
    for point, kinds in todo:
        by_kinds.setdefault(kinds, []).append(point)
    for kinds, points in by_kinds.items():
        for start in range(0, len(points), size):
            yield kinds, points[start : start + size]


def scan(
    workspace: str | Path | dict[str, Any] | Pallet,
    patchset: str | Path | dict[str, Any] | None = None,
    *,
    patches: Sequence[str] | None = None,
    options: InferenceOptions | None = None,
    kinds: Sequence[str] = ("hypotest",),
    region: str | None = None,
    verify: bool = True,
    executor: Executor | None = None,
    workers: int | None = None,
    store: str | Path | ResultStore | None = None,
    force: bool = False,
    batch_size: int = 1,
    progress: Callable[[ScanProgress], None] | None = None,
) -> ScanResult:
    """Compute hypothesis tests (and optionally upper limits, fits) for every signal point.

    Args:
        workspace: A workspace file, a directory or HEPData archive, a decoded spec, or a
            :class:`~fitaas.pallets.Pallet`.
        patchset: The patchset (file or decoded spec); found automatically in a
            directory or archive.
        patches: Patch names to compute (default: all).
        options: Inference options (default: mu=1, qtilde, numpy, scipy).
        kinds: What to compute per point, among ``"hypotest"``, ``"upper_limit"``, ``"fit"``.
        region: Region folder to use when a directory or archive holds several.
        verify: Check the patchset digest against the workspace.
        executor: Where tasks run (default: a local process pool, started and stopped here).
        workers: Worker processes of the default local pool (default: one per core).
        store: Results store (an SQLite path or a :class:`ResultStore`); ``None`` keeps
            results only in memory.
        force: Recompute results even when the store has them.
        batch_size: Points per task.
        progress: Called with a :class:`ScanProgress` at the start and after every point.

    Returns:
        One result per point, in the order of ``patches`` (or of the patchset).

    Raises:
        InputError: Unusable inputs or options; nothing is computed then.
        KeyboardInterrupt: The scan was interrupted; finished results are in the store.
    """
    pallet = (
        workspace
        if isinstance(workspace, Pallet)
        else load_pallet(workspace, patchset, region=region, verify=verify)
    )
    options = options or InferenceOptions()
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown task kind(s) {unknown}; choose among {KINDS}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    points = pallet.select(patches)
    with pyhf_backend(options):  # a missing backend or optimizer is one clear error, now
        pass
    version = str(pyhf.__version__)
    per_kind = {kind: options.for_kind(kind) for kind in kinds}
    keys = {
        (point.digest, kind): result_key(
            pallet.workspace_digest, point.digest, kind, per_kind[kind], version
        )
        for point in points
        for kind in kinds
    }
    with _opened_store(store) as results_store:
        stored = {} if force else results_store.get(keys.values())
        outcomes: dict[tuple[str, str], dict[str, Any]] = {}
        for (patch_digest, kind), key in keys.items():
            found = stored.get(key)
            if found is not None and found.status == "ok":
                outcomes[patch_digest, kind] = found.outcome
        todo: list[tuple[Point, tuple[str, ...]]] = []
        for point in dict((p.digest, p) for p in points).values():
            missing = tuple(k for k in kinds if (point.digest, k) not in outcomes)
            if missing:
                todo.append((point, missing))
        reused_points = len({p.digest for p in points}) - len(todo)
        state = {"done": 0, "failed": 0}

        def finish(point: Point) -> PointResult:
            result = _point_result(
                point, pallet.labels, kinds, {k: outcomes[point.digest, k] for k in kinds}
            )
            state["done"] += 1
            state["failed"] += not result.ok
            if progress:
                progress(
                    ScanProgress(len(points), state["done"], state["failed"], reused_points, result)
                )
            return result

        if progress:
            progress(ScanProgress(len(points), 0, 0, reused_points))
        pending = {p.digest for p, _ in todo}
        for point in points:
            if point.digest not in pending:
                finish(point)
        computed = 0
        if todo:
            computed = _run(
                pallet,
                todo,
                options,
                executor,
                workers,
                batch_size,
                version,
                per_kind,
                results_store,
                outcomes,
                keys,
                finish,
            )
        results = tuple(
            _point_result(
                point, pallet.labels, kinds, {k: outcomes[point.digest, k] for k in kinds}
            )
            for point in points
        )
    return ScanResult(
        workspace_digest=pallet.workspace_digest,
        options=options,
        pyhf_version=version,
        labels=pallet.labels,
        points=results,
        computed=computed,
        reused=sum(len(kinds) for _ in points) - computed,
        source=pallet.source,
    )


def _run(
    pallet: Pallet,
    todo: list[tuple[Point, tuple[str, ...]]],
    options: InferenceOptions,
    executor: Executor | None,
    workers: int | None,
    batch_size: int,
    version: str,
    per_kind: dict[str, dict[str, Any]],
    results_store: ResultStore,
    outcomes: dict[tuple[str, str], dict[str, Any]],
    keys: dict[tuple[str, str], str],
    finish: Callable[[Point], PointResult],
) -> int:
    """Submit the missing work, store every outcome as it arrives; return how many."""
    batches = list(_batches(todo, batch_size))
    owned = executor is None
    if executor is None:
        pool: Executor = local_pool(
            min(workers or default_workers(), len(batches)),
            pallet.workspace_digest,
            pallet.workspace,
        )
        ref = WorkspaceRef(pallet.workspace_digest)
    else:
        pool = executor
        ref = WorkspaceRef(pallet.workspace_digest, payload=compress_workspace(pallet.workspace))
    option_dict = options.to_dict()
    computed = 0
    futures: dict[Future[list[dict[str, Any]]], tuple[tuple[str, ...], list[Point]]] = {}
    try:
        for kinds, batch in batches:
            payload = [{"name": p.name, "operations": list(p.operations)} for p in batch]
            futures[pool.submit(run_points, ref, payload, kinds, option_dict)] = (kinds, batch)
        for future in as_completed(futures):
            kinds, batch = futures.pop(future)
            try:
                returned = future.result()
            except Exception as exc:  # the worker died or the engine lost the task
                error = f"task lost: {type(exc).__name__}: {exc}".strip()
                outcome = {"status": "failed", "result": None, "error": error, "seconds": 0.0}
                returned = [
                    {"name": p.name, "outcomes": dict.fromkeys(kinds, outcome)} for p in batch
                ]
            for point, item in zip(batch, returned, strict=True):
                for kind, outcome in item["outcomes"].items():
                    outcome = {k: v for k, v in outcome.items() if k != "traceback"}
                    results_store.put(
                        keys[point.digest, kind],
                        workspace_digest=pallet.workspace_digest,
                        patch=point.name,
                        patch_digest=point.digest,
                        kind=kind,
                        options=per_kind[kind],
                        pyhf_version=version,
                        outcome=outcome,
                    )
                    outcomes[point.digest, kind] = outcome
                    computed += 1
                finish(point)
    except BaseException:
        if owned and isinstance(pool, ProcessPoolExecutor):
            stop_now(pool)
        else:
            for future in futures:
                future.cancel()
        raise
    if owned:
        pool.shutdown(wait=True)
    return computed
