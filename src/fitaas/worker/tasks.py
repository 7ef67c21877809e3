"""Worker entry points: top-level functions with small JSON-able arguments.

A workspace travels to a worker once and is kept in the worker's cache under its
content digest; tasks name it by digest (:class:`WorkspaceRef`) and carry only the
patch operations of their points. Every point's outcome is returned, never raised:
one bad point does not cost its batch.
"""

from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyhf

from fitaas.caches import most_recent
from fitaas.errors import FitaasError
from fitaas.inference import (
    InferenceOptions,
    build_model,
    hypotest,
    pyhf_backend,
)
from fitaas.inference.kinds import compute, error_text, outcome
from fitaas.worker.payloads import WorkspaceNotOnWorker, WorkspaceRef, compress_workspace

__all__ = [
    "WorkerCache",
    "WorkspaceNotOnWorker",
    "WorkspaceRef",
    "compress_workspace",
    "failed_block",
    "init_worker",
    "run_held_fits",
    "run_hypotests",
    "run_points",
    "run_toy_blocks",
    "warm_worker",
    "worker_cache",
    "worker_environment",
]

# Points whose model (and toy reference) a worker keeps for their next tasks.
POINTS_KEPT = 4
# Workspaces a worker keeps, the most recently used (a long-lived worker of a service meets
# many; one dropped comes back from its file or with the next task that needs it).
WORKSPACES_KEPT = 8


class WorkerCache:
    """Workspaces a worker process has received, by digest, built once."""

    def __init__(self) -> None:
        self._workspaces: dict[str, pyhf.Workspace] = {}
        self.configured = False
        self._structures: Any = None
        self._toy_points: dict[str, tuple[Any, Any]] = {}
        self._models: dict[str, tuple[Any, Any]] = {}

    def point_model(
        self,
        workspace: pyhf.Workspace,
        workspace_digest: str,
        point: dict[str, Any],
        options: InferenceOptions,
    ) -> tuple[Any, Any]:
        """The model and data of a point (no patch: the workspace's, POI or not), kept for
        its next tasks (the fits of a ranking or a likelihood scan)."""
        from fitaas.inputs.pallets import digest

        key = digest([workspace_digest, point["digest"], options.to_dict()])

        def make() -> tuple[Any, Any]:
            return build_model(workspace, point["operations"], options, without_poi=True)

        return most_recent(self._models, key, make, POINTS_KEPT)

    def toy_point(
        self,
        workspace: pyhf.Workspace,
        workspace_digest: str,
        point: dict[str, Any],
        options: InferenceOptions,
    ) -> tuple[Any, Any]:
        """The model and toy reference of a point, kept for its next blocks."""
        from fitaas.inference.core import fit_inputs
        from fitaas.inference.toys import toy_reference
        from fitaas.inputs.pallets import digest

        key = digest([workspace_digest, point["digest"], options.for_toy_block("", 0)])

        def make() -> tuple[Any, Any]:
            model, data = build_model(workspace, point["operations"], options)
            if model.config.poi_index is None:
                raise FitaasError("the model has no parameter of interest: no toys to test")
            return model, toy_reference(model, data, options, fit_inputs(model, options))

        return most_recent(self._toy_points, key, make, POINTS_KEPT)

    def structures(self) -> Any:
        """This worker's compiled model structures (the fast path), made on first use."""
        if self._structures is None:
            from fitaas.fast import StructureCache

            self._structures = StructureCache()
        return self._structures

    def __contains__(self, digest: str) -> bool:
        return digest in self._workspaces

    def install(self, digest: str, spec: dict[str, Any]) -> pyhf.Workspace:
        """Keep a (client-validated) workspace under its digest."""
        self._workspaces.pop(digest, None)
        return most_recent(
            self._workspaces,
            digest,
            lambda: pyhf.Workspace(spec, validate=False),
            WORKSPACES_KEPT,
        )

    def workspace(self, ref: WorkspaceRef, payload: bytes | None = None) -> pyhf.Workspace:
        """The workspace named by ``ref``, loaded once from the payload or the path.

        Args:
            ref: The digest (and maybe a shared path) of the workspace.
            payload: The workspace as (gzip-compressed) JSON, when the client sent it.

        Raises:
            WorkspaceNotOnWorker: The worker lacks the workspace and has no way to get it.
        """

        def load() -> pyhf.Workspace:
            if payload is not None:
                raw = payload
            elif ref.path is not None and Path(ref.path).is_file():
                raw = Path(ref.path).read_bytes()
            else:
                raise WorkspaceNotOnWorker(f"workspace {ref.digest[:12]} is not on this worker")
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            return pyhf.Workspace(json.loads(raw), validate=False)

        return most_recent(self._workspaces, ref.digest, load, WORKSPACES_KEPT)


# The one piece of process-wide state: what this worker process has received.
_CACHE = WorkerCache()


def worker_cache() -> WorkerCache:
    """This process's workspace cache."""
    return _CACHE


def _configure_process(threads: int = 1) -> None:
    """Once per worker process: BLAS threads, and quiet where outcomes say it all."""
    if _CACHE.configured:
        return
    from threadpoolctl import threadpool_limits

    from fitaas.fast.device import configure_device

    configure_device()  # before anything imports jax: the CPU unless a GPU is asked for
    threadpool_limits(limits=threads)
    # Building a pyhf model allocates a million small objects; the default thresholds run
    # the cyclic collector over them dozens of times per model (measured: 1Lbb model builds
    # 0.32 s -> 0.17 s with this threshold; memory is unchanged, cycles are still collected).
    gc.set_threshold(200_000, 50, 100)
    # pyhf divides by zero on degenerate points and says so; results carry the outcome.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="pyhf")
    # pyhf logs every failed minimisation with a traceback; the outcome records it instead.
    logging.getLogger("pyhf").setLevel(logging.CRITICAL)
    _CACHE.configured = True


def init_worker(
    digest: str | None = None,
    path: str | None = None,
    threads: int = 1,
    niceness: int = 0,
    device: str = "cpu",
) -> None:
    """Initialise a local pool's worker: one BLAS thread, no SIGINT, the workspace loaded.

    Args:
        digest: Digest of the workspace to load now, if any.
        path: Its file (gzip-compressed JSON); a worker that cannot read it loads it when
            a task names it (from the file again, or from the task's payload).
        threads: Threads for BLAS/OpenMP pools (1: workers don't fight over cores).
        niceness: Added to this process's niceness (a service's own threads come first).
        device: ``"gpu"``: this worker computes on the GPU.
    """
    if niceness:
        with suppress(OSError):
            os.nice(niceness)
    if device == "gpu":
        from fitaas.fast.device import use_gpu

        use_gpu()  # (this worker's environment, before jax starts)
    _configure_process(threads)
    # The parent handles Ctrl-C and stops the pool; workers must not die mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    if digest is not None and path is not None:
        with suppress(WorkspaceNotOnWorker, OSError, ValueError):
            _CACHE.workspace(WorkspaceRef(digest, path))


def _exit_with_parent(period: float = 1.0) -> None:
    """Exit when the process that started this worker is gone (SIGKILLed, crashed): a
    worker reparented to init would otherwise compute on for nobody."""
    import multiprocessing
    import threading

    started_by = multiprocessing.parent_process()  # (a worker may outlive it while starting)
    parent = started_by.pid if started_by is not None and started_by.pid else os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(1)

    threading.Thread(target=watch, name="fitaas-parent-watch", daemon=True).start()


def warm_worker() -> None:
    """Import and configure what the first task needs (pyhf, jax, the fast path)."""
    _configure_process()
    with suppress(ImportError):
        from fitaas.fast.exports import configure_jax

        configure_jax()


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


def _task_setup(
    workspace: WorkspaceRef, options: dict[str, Any], payload: bytes | None
) -> tuple[pyhf.Workspace, InferenceOptions, Any]:
    """What every task starts with: the process configured, its workspace, options and
    (on the fast path) the worker's compiled structures."""
    _configure_process()
    if workspace.compile_cache and not os.environ.get("FITAAS_JAX_CACHE"):
        os.environ["FITAAS_JAX_CACHE"] = workspace.compile_cache  # read at the first compile
    ws = _CACHE.workspace(workspace, payload)
    opts = InferenceOptions.from_dict(options)
    _check_device(workspace.device, opts)
    return ws, opts, _CACHE.structures() if opts.fast else None


def _check_device(device: str, options: InferenceOptions) -> None:
    """Refuse a task asking for the GPU on a worker started for the CPU (its jax, pinned
    to the CPU, cannot move), and a GPU worker whose jax finds no GPU (it would compute
    on the CPU, in lockstep, slower than one fit at a time)."""
    from fitaas.fast.device import requested_device

    on_gpu = requested_device() == "gpu"
    if device == "gpu" and not on_gpu:
        raise FitaasError(
            "device gpu: this worker was started for the CPU; start the workers with "
            "FITAAS_DEVICE=gpu in their environment (fitaas --device gpu does it for the "
            'workers it starts; an endpoint file: device = "gpu")'
        )
    if on_gpu and options.fast:
        from fitaas.fast.exports import configure_jax

        configure_jax()
        import jax

        if jax.default_backend() == "cpu":
            raise FitaasError(
                "device gpu: jax finds no GPU on this worker (its platform is the CPU): "
                "install jax with its CUDA plugin there (pip install 'jax[cuda12]'), or "
                "run without --device gpu"
            )


def _in_lockstep(options: InferenceOptions, kinds: Sequence[str]) -> bool:
    """Whether a task's hypothesis tests fit in lockstep: asked for, or on a GPU worker
    (one fit at a time would leave the device idle)."""
    from fitaas.fast.device import requested_device

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
    ws, opts, structures = _task_setup(workspace, options, payload)
    with pyhf_backend(opts, structures=structures):
        if _in_lockstep(opts, kinds):
            done = _lockstep_points(ws, points, kinds, opts, structures)
        else:
            done = [
                {"name": point["name"], "outcomes": _run_point(ws, point, kinds, opts, structures)}
                for point in points
            ]
    _forget_dead_subscriptions()
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
    from fitaas.inference.lockstep import lockstep_hypotests

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
    from fitaas.inference.held_fits import HeldFit, HeldFitResult, held_fit

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
    ws, opts, structures = _task_setup(workspace, options, payload)
    out = []
    with pyhf_backend(opts, structures=structures):
        try:
            model, data = _CACHE.point_model(ws, workspace.digest, point, opts)
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


def _forget_dead_subscriptions() -> None:
    """Drop pyhf's event subscriptions of models that are gone.

    Every pyhf model subscribes its interpolators and tensor views to the
    ``tensorlib_changed`` event through weak references, which pyhf prunes only when the
    event fires; a worker building models for 10^5 points would keep ~2 kB of dead
    references per point. Reading a subscription list prunes it.
    """
    for callables in getattr(pyhf.events, "__events", {}).values():
        _ = callables.callbacks


def worker_environment() -> dict[str, str]:
    """Versions on the worker: what must match the client for tasks to travel safely."""
    import platform

    import dill

    from fitaas._version import __version__

    return {
        "python": platform.python_version(),
        "dill": str(dill.__version__),
        "pyhf": str(pyhf.__version__),
        "fitaas": __version__,
    }


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

    from fitaas.inference.arrays import encode_array
    from fitaas.inference.core import fit_inputs
    from fitaas.inference.toys import block_seed, plain_teststats, sample_toys

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
    ws, opts, structures = _task_setup(workspace, options, payload)
    out = []
    with pyhf_backend(opts, structures=structures):
        try:
            model, reference = _CACHE.toy_point(ws, workspace.digest, point, opts)
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
