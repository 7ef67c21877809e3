"""The local engine: a process pool on this machine, one worker per core by default."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from fitaas.tasks import init_worker

__all__ = ["default_workers", "local_pool", "stop_now"]


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def local_pool(
    workers: int | None = None,
    workspace_digest: str | None = None,
    workspace: dict[str, Any] | None = None,
) -> ProcessPoolExecutor:
    """A process pool whose workers receive the workspace once, at start.

    Workers are started with ``spawn`` (safe beside the progress bar's thread) and run
    single-threaded BLAS, so ``workers`` processes use ``workers`` cores.

    Args:
        workers: Number of worker processes (default: one per core).
        workspace_digest: Digest of the workspace to install in each worker.
        workspace: The workspace specification to install.

    Returns:
        The executor.
    """
    return ProcessPoolExecutor(
        max_workers=workers or default_workers(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(workspace_digest, workspace),
    )


def stop_now(pool: ProcessPoolExecutor) -> None:
    """Stop a pool without waiting for running tasks (after Ctrl-C).

    ``shutdown(cancel_futures=True)`` only drops queued tasks; the running ones would
    keep the user waiting, so the worker processes are terminated. They are terminated
    before shutdown and no future is cancelled here: the pool then fails its pending
    futures as broken, instead of tripping over cancelled ones (a CPython 3.11 race that
    prints an ``InvalidStateError`` traceback).
    """
    for process in list(getattr(pool, "_processes", {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False)
