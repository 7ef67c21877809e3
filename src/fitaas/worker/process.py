"""A worker process's setup: one thread per process for numpy's and jax's libraries, the
first workspace loaded as it starts, its end with its parent, the device it computes on,
and what every task does first (its workspace, options and compiled structures).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
import warnings
from contextlib import suppress
from typing import Any

import pyhf

from fitaas._version import __version__
from fitaas.errors import FitaasError
from fitaas.fast.device import configure_device, requested_device
from fitaas.inference import (
    InferenceOptions,
)
from fitaas.worker.cache import worker_cache
from fitaas.worker.payloads import WorkspaceNotOnWorker, WorkspaceRef

__all__ = [
    "forget_dead_subscriptions",
    "init_worker",
    "task_setup",
    "warm_worker",
    "worker_environment",
]


def _configure_process(threads: int = 1) -> None:
    """Once per worker process: BLAS threads, and quiet where outcomes say it all."""
    if worker_cache().configured:
        return
    from threadpoolctl import threadpool_limits

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
    worker_cache().configured = True


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
            worker_cache().workspace(WorkspaceRef(digest, path))


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


def task_setup(
    workspace: WorkspaceRef, options: dict[str, Any], payload: bytes | None
) -> tuple[pyhf.Workspace, InferenceOptions, Any]:
    """What every task starts with: the process configured, its workspace, options and
    (on the fast path) the worker's compiled structures."""
    _configure_process()
    if workspace.compile_cache and not os.environ.get("FITAAS_JAX_CACHE"):
        os.environ["FITAAS_JAX_CACHE"] = workspace.compile_cache  # read at the first compile
    ws = worker_cache().workspace(workspace, payload)
    opts = InferenceOptions.from_dict(options)
    _check_device(workspace.device, opts)
    return ws, opts, worker_cache().structures() if opts.fast else None


def _check_device(device: str, options: InferenceOptions) -> None:
    """Refuse a task asking for the GPU on a worker started for the CPU (its jax, pinned
    to the CPU, cannot move), and a GPU worker whose jax finds no GPU (it would compute
    on the CPU, in lockstep, slower than one fit at a time)."""

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


def forget_dead_subscriptions() -> None:
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

    return {
        "python": platform.python_version(),
        "dill": str(dill.__version__),
        "pyhf": str(pyhf.__version__),
        "fitaas": __version__,
    }
