"""Scan orchestration: plan tasks, submit them, gather as completed, persist, resume.

The scan does not know which engine runs it: anything with the
``concurrent.futures.Executor`` interface will do. Each outcome is written to the
results store the moment it arrives; outcomes already stored (with status ``ok``) are
not computed again unless ``force`` is set.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyhf

from fitaas.engines.compute import Compute, ComputeLike
from fitaas.engines.local import refuse_unguarded_main
from fitaas.errors import InputError
from fitaas.inference import KINDS, InferenceOptions
from fitaas.inference.backend import checking_backend
from fitaas.inputs.pallets import Pallet, Point, load_pallet
from fitaas.jobs.gathering import (
    FINAL,
    STORE_CHUNK,
    Gather,
    ScanProgress,
    ToyGather,
    check_scan_options,
    opened_store,
    options_on,
    pallet_result,
    point_result,
)
from fitaas.jobs.outcomes import Outcome
from fitaas.output.results import PointResult, ScanResult
from fitaas.store import ResultStore, result_key

__all__ = ["scan", "stored_results"]


def scan(
    workspace: str | Path | dict[str, Any] | Pallet,
    patchset: str | Path | dict[str, Any] | None = None,
    *,
    patches: Sequence[str] | None = None,
    options: InferenceOptions | None = None,
    kinds: Sequence[str] = ("hypotest",),
    region: str | None = None,
    verify: bool = True,
    compute: ComputeLike = None,
    store: str | Path | ResultStore | None = None,
    force: bool = False,
    progress: Callable[[ScanProgress], None] | None = None,
    stop: threading.Event | None = None,
    models: Any = None,
    labels: Sequence[str] = (),
) -> ScanResult:
    """Compute hypothesis tests (and optionally upper limits, fits) for every signal point.

    Args:
        workspace: A workspace file, a directory or HEPData archive, a decoded spec, or a
            :class:`~fitaas.inputs.pallets.Pallet`.
        patchset: The patchset (file or decoded spec); found automatically in a
            directory or archive.
        patches: Patch names to compute (default: all).
        options: Inference options (default: mu=1, qtilde, numpy, scipy).
        kinds: What to compute per point, among ``"hypotest"``, ``"upper_limit"``, ``"fit"``.
        region: Region folder to use when a directory or archive holds several.
        verify: Check the patchset digest against the workspace.
        compute: Where tasks run (:class:`~fitaas.engines.Compute`): an engine name
            (``"local"``, ``"parsl"``, ``"dask"``, ``"globus"``) started and stopped here, a
            started :class:`~fitaas.engines.Engine`, any ``concurrent.futures.Executor``, or
            a :class:`~fitaas.engines.Compute` with workers, retries, batch size and device.
            Default: the local process pool, one worker per core.
        store: Results store (an SQLite path or a :class:`ResultStore`); ``None`` keeps
            results only in memory.
        force: Recompute results even when the store has them.
        progress: Called with a :class:`ScanProgress` at the start and after every point.
        stop: Set it (from another thread) to stop the scan within a second: running tasks
            are abandoned (the local engine's workers are terminated when it owns them) and
            :class:`ScanStopped` is raised; finished results are in the store.
        models: Instead of a patchset, theory models as a stream: a JSON Lines file, a
            folder of patch files or an iterable of ``{"name", "values", "patch"}`` (see
            :mod:`fitaas.inputs.theory_models`), read only as far as the workers need. For more
            results than memory holds, use :func:`fitaas.stream_scan` with ``output``.
        labels: Names of the models' values.

    Returns:
        One result per point, in the order of ``patches`` (or of the patchset); for
        ``models``, in the order they finished.

    Raises:
        InputError: Unusable inputs or options; nothing is computed then.
        EngineError: The engine cannot start or cannot take these tasks.
        KeyboardInterrupt: The scan was interrupted; finished results are in the store.
        ScanStopped: ``stop`` was set.
    """
    refuse_unguarded_main()  # (in a worker re-running a script without the main guard)
    where = Compute.of(compute)
    shared: dict[str, Any] = {
        "options": options,
        "kinds": kinds,
        "store": store,
        "force": force,
        "progress": progress,
        "stop": stop,
    }
    if models is not None:
        if patchset is not None or patches:
            raise InputError("give theory models or a patchset (and patches), not both")
        from fitaas.jobs.streaming import collected_scan

        return collected_scan(workspace, models, labels=labels, compute=where, **shared)
    # the workers start now, importing pyhf and jax while the inputs are read
    with where.started_early() as early:
        return _scan(
            workspace,
            patchset,
            patches=patches,
            region=region,
            verify=verify,
            compute=early,
            **shared,
        )


@dataclass
class _Plan:
    """What a scan computes: its points, kinds, content keys, and the outcomes it has."""

    pallet: Pallet
    points: tuple[Point, ...]
    options: InferenceOptions
    kinds: tuple[str, ...]
    per_kind: dict[str, dict[str, Any]]
    keys: dict[tuple[str, str], str]
    version: str
    outcomes: dict[tuple[str, str], Outcome] = field(default_factory=dict)

    def todo(self) -> list[tuple[Point, tuple[str, ...]]]:
        """The points (each once) with the kinds they still lack."""
        out = []
        for point in {p.digest: p for p in self.points}.values():
            missing = tuple(k for k in self.kinds if (point.digest, k) not in self.outcomes)
            if missing:
                out.append((point, missing))
        return out

    def result(self, point: Point) -> PointResult:
        """One point's result from its outcomes."""
        found = {k: self.outcomes[point.digest, k] for k in self.kinds}
        return point_result(point, self.pallet.labels, self.kinds, found)


def _plan(
    pallet: Pallet,
    patches: Sequence[str] | None,
    options: InferenceOptions,
    kinds: Sequence[str],
) -> _Plan:
    """Check the request and key every (point, kind) by its content.

    Raises:
        InputError: Unknown kinds, a negative batch size, toys with other kinds, options
            the model cannot take, unknown patches.
    """
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown task kind(s) {unknown}; choose among {KINDS}")
    if options.toybased and kinds != ("hypotest",):
        raise InputError(
            "toys (calctype toybased) compute hypothesis tests only; upper limits and fits "
            "use the asymptotic calculator"
        )
    points = pallet.select(patches)
    with checking_backend(options):  # a missing backend or optimizer: one clear error, now
        check_scan_options(pallet, points, options, kinds)
    per_kind = {kind: options.for_kind(kind) for kind in kinds}
    keys = _keys(pallet, points, per_kind)
    return _Plan(pallet, points, options, kinds, per_kind, keys, str(pyhf.__version__))


class _Counts:
    """Points finished and failed, reported to the progress callback as they change."""

    def __init__(
        self, plan: _Plan, reused: int, progress: Callable[[ScanProgress], None] | None
    ) -> None:
        self.plan = plan
        self.reused = reused
        self.progress = progress
        self.done = self.failed = 0

    def report(
        self, latest: PointResult | None = None, toys_done: int = 0, toys_total: int = 0
    ) -> None:
        if self.progress is not None:
            total = len(self.plan.points)
            self.progress(
                ScanProgress(
                    total, self.done, self.failed, self.reused, latest, toys_done, toys_total
                )
            )

    def finish(self, point: Point) -> None:
        result = self.plan.result(point)
        self.done += 1
        self.failed += result.status == "failed"
        self.report(result)

    def toys(self, done: int, total: int) -> None:
        self.report(None, done, total)


def _run(
    plan: _Plan,
    results_store: ResultStore,
    compute: Compute,
    progress: Callable[[ScanProgress], None] | None,
    stop: threading.Event | None,
) -> Gather:
    """Compute what the store lacks, storing each outcome as it arrives."""
    todo = plan.todo()
    pending = {p.digest for p, _ in todo}
    counts = _Counts(plan, len({p.digest for p in plan.points}) - len(todo), progress)
    counts.report()
    for point in plan.points:
        if point.digest not in pending:
            counts.finish(point)
    gatherer = ToyGather if plan.options.toybased else Gather
    gather = gatherer(
        plan.pallet,
        plan.options,
        plan.version,
        plan.per_kind,
        results_store,
        plan.outcomes,
        plan.keys,
        counts.finish,
        stop,
        counts.toys if progress else None,
    )
    if todo:
        with compute.in_use() as used:
            gather.run(used, todo)
    return gather


def _assemble(plan: _Plan, gather: Gather) -> ScanResult:
    """The scan's result from the plan's outcomes, with what this run computed."""
    points = [plan.result(point) for point in plan.points]
    return pallet_result(plan.pallet, plan.options, points, plan.kinds, gather.computed_kinds)


def _scan(
    workspace: str | Path | dict[str, Any] | Pallet,
    patchset: str | Path | dict[str, Any] | None,
    *,
    patches: Sequence[str] | None,
    options: InferenceOptions | None,
    kinds: Sequence[str],
    region: str | None,
    verify: bool,
    compute: Compute,
    store: str | Path | ResultStore | None,
    force: bool,
    progress: Callable[[ScanProgress], None] | None,
    stop: threading.Event | None,
) -> ScanResult:
    """Plan (check, key, look up the store), run (compute what is missing), assemble."""
    pallet = (
        workspace
        if isinstance(workspace, Pallet)
        else load_pallet(workspace, patchset, region=region, verify=verify)
    )
    options = options_on(compute, options or InferenceOptions())
    plan = _plan(pallet, patches, options, kinds)
    with opened_store(store) as results_store:
        stored = {} if force else results_store.get(plan.keys.values())
        for (patch_digest, kind), key in plan.keys.items():
            found = stored.get(key)
            if found is not None and found.status in FINAL:
                plan.outcomes[patch_digest, kind] = Outcome.from_dict(found.outcome)
        gather = _run(plan, results_store, compute, progress, stop)
    return _assemble(plan, gather)


def _keys(
    pallet: Pallet, points: Sequence[Point], per_kind: dict[str, dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """The store key of every (point, kind), from the options each kind depends on."""
    version = str(pyhf.__version__)
    return {
        (point.digest, kind): result_key(
            pallet.workspace_digest, point.digest, kind, kind_options, version
        )
        for point in points
        for kind, kind_options in per_kind.items()
    }


def stored_results(
    pallet: Pallet,
    store: ResultStore,
    *,
    patches: Sequence[str] | None = None,
    options: InferenceOptions | None = None,
    kinds: Sequence[str] = ("hypotest",),
    points: Iterable[Point] | None = None,
    limit: int | None = None,
) -> ScanResult:
    """What the store holds of a scan, computing nothing: the points finished so far.

    Args:
        pallet: The pallet.
        store: An open results store.
        patches: Patch names (default: all).
        options: The scan's inference options.
        kinds: The scan's task kinds.
        points: The points to look up instead of the pallet's (a theory scan's models, read
            as a stream: a chunk at a time).
        limit: Stop after this many finished points (the first in order).

    Returns:
        The points whose every kind is stored (failed ones included), in order.
    """
    options = options or InferenceOptions()
    kinds = tuple(dict.fromkeys(kinds))
    per_kind = {kind: options.for_kind(kind) for kind in kinds}
    source = iter(pallet.select(patches) if points is None else points)
    results: list[PointResult] = []
    while chunk := list(itertools.islice(source, STORE_CHUNK)):
        keys = _keys(pallet, chunk, per_kind)
        stored = store.get(keys.values())
        for point in chunk:
            found = {k: stored.get(keys[point.digest, k]) for k in kinds}
            if all(v is not None for v in found.values()):
                outcomes = {k: Outcome.from_dict(v.outcome) for k, v in found.items() if v}
                results.append(point_result(point, pallet.labels, kinds, outcomes))
                if limit is not None and len(results) >= limit:
                    return pallet_result(pallet, options, results, kinds)
    return pallet_result(pallet, options, results, kinds)
