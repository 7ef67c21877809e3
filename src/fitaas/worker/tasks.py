"""Worker entry points: top-level functions with small JSON-able arguments.

A workspace travels to a worker once and is kept in the worker's cache under its
content digest; tasks name it by digest (:class:`WorkspaceRef`) and carry only the
patch operations of their points. Every point's outcome is returned, never raised:
one bad point does not cost its batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyhf

from fitaas.fast.device import requested_device
from fitaas.inference import (
    InferenceOptions,
    build_model,
    hypotest,
    pyhf_backend,
)
from fitaas.inference.arrays import encode_array
from fitaas.inference.core import fit_inputs
from fitaas.inference.held_fits import HeldFit, HeldFitResult, held_fit
from fitaas.inference.kinds import compute, error_text, outcome
from fitaas.inference.lockstep import lockstep_hypotests
from fitaas.inference.toys import block_seed, plain_teststats, sample_toys
from fitaas.worker.cache import worker_cache
from fitaas.worker.payloads import WorkspaceNotOnWorker, WorkspaceRef, compress_workspace
from fitaas.worker.process import forget_dead_subscriptions, task_setup

__all__ = [
    "WorkspaceNotOnWorker",
    "WorkspaceRef",
    "compress_workspace",
    "failed_block",
    "run_held_fits",
    "run_hypotests",
    "run_points",
    "run_toy_blocks",
]


@dataclass(frozen=True)
class _Built:
    """A point's model and data (``None`` with ``error`` when it cannot be built), and the
    seconds it took."""

    model: Any
    data: Any
    seconds: float
    error: str | None = None


def _built(workspace: pyhf.Workspace, point: dict[str, Any], options: InferenceOptions) -> _Built:
    start = time.perf_counter()
    try:
        model, data = build_model(workspace, point["operations"], options)
    except Exception as exc:  # a patch that does not apply, an invalid patched model
        error = f"cannot build the model of patch '{point['name']}': {error_text(exc)}"
        return _Built(None, None, time.perf_counter() - start, error)
    return _Built(model, data, time.perf_counter() - start)


def _run_point(
    workspace: pyhf.Workspace,
    point: dict[str, Any],
    kinds: Sequence[str],
    options: InferenceOptions,
    structures: Any = None,
    built: _Built | None = None,
) -> dict[str, dict[str, Any]]:
    built = built or _built(workspace, point, options)
    if built.error is not None:
        return {k: outcome("failed", None, built.error, built.seconds) for k in kinds}
    model, data, build = built.model, built.data, built.seconds
    outcomes = {}
    for kind in kinds:
        begin = time.perf_counter()
        found = compute(kind, model, data, options, structures)
        found["seconds"] = round(time.perf_counter() - begin + build, 6)
        outcomes[kind] = found
        build = 0.0
    return outcomes


def _in_lockstep(options: InferenceOptions, kinds: Sequence[str]) -> bool:
    """Whether a task's hypothesis tests fit in lockstep: asked for, or on a GPU worker
    (one fit at a time would leave the device idle)."""

    asked = options.lockstep or requested_device() == "gpu"
    return asked and bool(options.fast) and not options.toybased and "hypotest" in kinds


def run_points(
    workspace: WorkspaceRef,
    points: Sequence[dict[str, Any]],
    kinds: Sequence[str],
    options: dict[str, Any],
    payload: bytes | None = None,
) -> list[dict[str, Any]]:
    """Compute ``kinds`` for each point: the task every engine runs.

    Args:
        workspace: The background-only workspace, by digest.
        points: ``{"name": patch name or None, "operations": JSON patch operations}`` each.
        kinds: What to compute per point: ``"hypotest"``, ``"upper_limit"``, ``"fit"``.
        options: :meth:`InferenceOptions.to_dict` output.
        payload: The workspace itself (gzip-compressed JSON), for a worker that lacks it.

    Returns:
        One ``{"name": ..., "outcomes": {kind: {"status", "result", "error", "seconds"}}}``
        per point, in the order given.

    Raises:
        WorkspaceNotOnWorker: The worker lacks the workspace and no payload came along.
    """
    ws, opts, structures = task_setup(workspace, options, payload)
    with pyhf_backend(opts, structures=structures):
        if _in_lockstep(opts, kinds):
            done = _lockstep_points(ws, points, kinds, opts, structures)
        else:
            done = [
                {"name": point["name"], "outcomes": _run_point(ws, point, kinds, opts, structures)}
                for point in points
            ]
    forget_dead_subscriptions()
    return done


def _lockstep_points(
    workspace: pyhf.Workspace,
    points: Sequence[dict[str, Any]],
    kinds: Sequence[str],
    options: InferenceOptions,
    structures: Any,
) -> list[dict[str, Any]]:
    """The points' models built first, their hypothesis tests' fits made in lockstep
    (:mod:`fitaas.inference.lockstep`), then each point computed as usual on them."""

    built = [_built(workspace, point, options) for point in points]
    models = [(b.model, b.data) for b in built if b.error is None]
    begin = time.perf_counter()
    try:
        try:
            lockstep_hypotests(models, options, structures)
        except Exception:  # (e.g. a device out of memory) every fit is made one at a time
            for model, _ in models:
                structures.release(model)
        share = (time.perf_counter() - begin) / max(len(models), 1)  # (each point's part)
        done = []
        for point, found in zip(points, built, strict=True):
            if found.error is None:
                found = dataclasses.replace(found, seconds=found.seconds + share)
            outcomes = _run_point(workspace, point, kinds, options, structures, found)
            done.append({"name": point["name"], "outcomes": outcomes})
        return done
    finally:
        for model, _ in models:
            structures.release(model)


def run_held_fits(
    workspace: WorkspaceRef,
    point: dict[str, Any],
    fits: Sequence[tuple[int, float]],
    options: dict[str, Any],
    payload: bytes | None = None,
) -> list[dict[str, Any]]:
    """Fits of one point's model, each with one parameter held: the task of rankings and
    likelihood scans.

    Args:
        workspace: The background-only workspace, by digest.
        point: ``{"name", "digest", "operations"}`` of the point (no operations: the
            workspace itself).
        fits: ``(parameter index, value)`` of each fit.
        options: :meth:`InferenceOptions.to_dict` output.
        payload: The workspace itself (gzip-compressed JSON), for a worker that lacks it.

    Returns:
        One :meth:`HeldFitResult.to_dict` per fit, in the order given, with ``seconds``.

    Raises:
        WorkspaceNotOnWorker: The worker lacks the workspace and no payload came along.
    """

    def one(model: Any, data: Any, opts: InferenceOptions, item: tuple[int, float]) -> Any:
        return held_fit(model, data, opts, HeldFit(int(item[0]), float(item[1]))).to_dict()

    def failed(error: str) -> dict[str, Any]:
        return HeldFitResult.failed(error).to_dict()

    return _on_point_model(workspace, point, fits, options, payload, one, failed)


def run_hypotests(
    workspace: WorkspaceRef,
    point: dict[str, Any],
    poi_values: Sequence[float],
    options: dict[str, Any],
    payload: bytes | None = None,
) -> list[dict[str, Any]]:
    """Hypothesis tests of one point's model at several POI values, as pyhf's upper limit
    computes them (``pyhf.infer.hypotest``, no fit checks): the task of an upper limit
    spread over workers.

    Args:
        workspace: The background-only workspace, by digest.
        point: ``{"name", "digest", "operations"}`` of the point.
        poi_values: The POI values to test.
        options: :meth:`InferenceOptions.to_dict` output (its ``poi_value`` is replaced).
        payload: The workspace itself (gzip-compressed JSON), for a worker that lacks it.

    Returns:
        One ``{"status", "result", "error", "seconds"}`` per value.

    Raises:
        WorkspaceNotOnWorker: The worker lacks the workspace and no payload came along.
    """
    import dataclasses

    def one(model: Any, data: Any, opts: InferenceOptions, value: float) -> Any:
        tested = dataclasses.replace(opts, poi_value=float(value))
        return outcome("ok", hypotest(model, data, tested).to_dict(), None, 0.0)

    def failed(error: str) -> dict[str, Any]:
        return outcome("failed", None, error, 0.0)

    return _on_point_model(workspace, point, poi_values, options, payload, one, failed)


def _on_point_model(
    workspace: WorkspaceRef,
    point: dict[str, Any],
    items: Sequence[Any],
    options: dict[str, Any],
    payload: bytes | None,
    one: Callable[[Any, Any, InferenceOptions, Any], dict[str, Any]],
    failed: Callable[[str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """``one(model, data, options, item)`` for each item on the point's (kept) model, each
    timed; what fails is ``failed(reason)``, never raised."""
    ws, opts, structures = task_setup(workspace, options, payload)
    out = []
    with pyhf_backend(opts, structures=structures):
        try:
            model, data = worker_cache().point_model(ws, workspace.digest, point, opts)
        except Exception as exc:
            error = f"cannot build the model of '{point['name']}': {error_text(exc)}"
            return [{**failed(error), "seconds": 0.0} for _ in items]
        for item in items:
            begin = time.perf_counter()
            try:
                found = one(model, data, opts, item)
            except Exception as exc:
                found = failed(error_text(exc))
            out.append({**found, "seconds": round(time.perf_counter() - begin, 6)})
    return out


def _toy_block(
    model: Any,
    options: InferenceOptions,
    reference: Any,
    seeds: tuple[str, str],
    block: tuple[str, int],
    structures: Any,
) -> dict[str, Any]:
    """One block of toys: draw them, compute their test statistics."""
    import numpy as np

    ensemble, index = block
    begin = time.perf_counter()
    seed = block_seed(options.seed, seeds[0], seeds[1], options, ensemble, index)
    toys = sample_toys(model, reference.pars[ensemble], options.toy_block_size, seed)
    inputs = fit_inputs(model, options)
    bound = structures.bound(model, options.modifier_settings) if structures else None
    refitted, evaluations = 0, 0.0
    if bound is not None:
        from fitaas.inference.compiled_toys import fast_teststats

        fits = fast_teststats(bound, model, toys, options, inputs, reference, ensemble)
        values, refitted, evaluations = fits.teststats, fits.refitted, fits.evaluations
    else:
        values = plain_teststats(model, toys, options, inputs)
    return {
        "ensemble": ensemble,
        "index": index,
        "status": "ok",
        "teststats": encode_array(values),
        "failed": int(np.isnan(values).sum()),
        "refitted": refitted,
        "evaluations": round(evaluations, 2),
        "teststat_obs": reference.teststat_obs,
        "error": None,
        "seconds": round(time.perf_counter() - begin, 6),
    }


def run_toy_blocks(
    workspace: WorkspaceRef,
    point: dict[str, Any],
    blocks: Sequence[tuple[str, int]],
    options: dict[str, Any],
    payload: bytes | None = None,
) -> list[dict[str, Any]]:
    """Compute blocks of toys of one point: the toy task every engine runs.

    Args:
        workspace: The background-only workspace, by digest.
        point: ``{"name", "digest", "operations"}`` of the signal point.
        blocks: ``(ensemble, index)`` of each block to compute.
        options: :meth:`InferenceOptions.to_dict` output (``calctype="toybased"``).
        payload: The workspace itself (gzip-compressed JSON), for a worker that lacks it.

    Returns:
        One outcome per block, in the order given: ``ensemble``, ``index``, ``status``,
        ``teststats`` (base64 float64; NaN where a toy's fits failed), ``failed``,
        ``teststat_obs``, ``error``, ``seconds``.

    Raises:
        WorkspaceNotOnWorker: The worker lacks the workspace and no payload came along.
    """
    ws, opts, structures = task_setup(workspace, options, payload)
    out = []
    with pyhf_backend(opts, structures=structures):
        try:
            model, reference = worker_cache().toy_point(ws, workspace.digest, point, opts)
        except Exception as exc:
            error = f"cannot prepare the toys of '{point['name']}': {error_text(exc)}"
            return [failed_block(e, i, error) for e, i in blocks]
        for ensemble, index in blocks:
            try:
                out.append(
                    _toy_block(
                        model,
                        opts,
                        reference,
                        (workspace.digest, point["digest"]),
                        (ensemble, int(index)),
                        structures,
                    )
                )
            except Exception as exc:
                out.append(failed_block(ensemble, index, error_text(exc)))
    return out


def failed_block(ensemble: str, index: int, error: str) -> dict[str, Any]:
    """The outcome of a block of toys that could not be computed."""
    return {
        "ensemble": ensemble,
        "index": int(index),
        "status": "failed",
        "error": error,
        "seconds": 0.0,
    }
