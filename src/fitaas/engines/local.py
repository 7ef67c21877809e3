"""The local engine: a process pool on this machine, one worker per core by default."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from fitaas.caches import cache_folder, write_once
from fitaas.engines.base import Engine, EngineError
from fitaas.worker.payloads import WorkspaceRef, compress_workspace

__all__ = [
    "InProcessExecutor",
    "LocalEngine",
    "default_workers",
    "local_pool",
    "refuse_unguarded_main",
    "stop_now",
]


def _init_worker(*args: Any) -> None:
    """A worker's initializer: :func:`fitaas.worker.process.init_worker`, imported in the worker
    (the engine itself knows nothing of statistics)."""
    from fitaas.worker.process import init_worker

    init_worker(*args)


def _warm_worker() -> None:
    """:func:`fitaas.worker.process.warm_worker`, imported in the worker."""
    from fitaas.worker.process import warm_worker

    warm_worker()


# A worker that finds itself re-running its parent's script exits with this code.
UNGUARDED_EXIT = 87


def _unguarded_note(parent: int) -> Path:
    return Path(tempfile.gettempdir()) / f"fitaas-unguarded-{parent}"


def refuse_unguarded_main() -> None:
    """Stop a worker that is re-running its parent's script (one without the main guard).

    Workers start with ``spawn``: each imports the parent's ``__main__`` file again, and a
    script that calls :func:`fitaas.scan` at its top level would call it in every worker
    (Python then refuses to start processes there, the pool breaks, and every point used to
    fail after its retries with ``BrokenProcessPool``). Called where a scan starts: in a
    worker still importing the parent's script, it leaves a note for the parent and exits;
    the parent's engine then raises one error naming the cause and the fix.
    """
    # (set by multiprocessing's spawn while a new process imports its parent's script,
    # before the process knows its parent: what Python checks before refusing to start one)
    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    with contextlib.suppress(OSError):
        _unguarded_note(os.getppid()).touch()
    os._exit(UNGUARDED_EXIT)


def _unguarded_script() -> str | None:
    """This process's script, if a worker reported re-running it (``None``: none did)."""
    note = _unguarded_note(os.getpid())
    if not note.exists():
        return None
    note.unlink(missing_ok=True)
    return str(getattr(sys.modules["__main__"], "__file__", None) or "the script")


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def local_pool(
    workers: int | None = None,
    workspace: WorkspaceRef | None = None,
    niceness: int = 0,
    device: str = "cpu",
) -> ProcessPoolExecutor:
    """A process pool whose workers load the workspace from its file as they start.

    Workers are started with ``spawn`` (safe beside the progress bar's thread) and run
    single-threaded BLAS, so ``workers`` processes use ``workers`` cores. What a worker
    receives at start is a few hundred bytes whatever the workspace's size: the parent
    writes each worker's start-up data into a pipe and waits while the worker imports
    fitaas before reading its arguments, so a whole workspace passed there (1Lbb: 4 MB)
    made the parent start workers one after another (measured on 16 cores: 28.6 s).

    Args:
        workers: Number of worker processes (default: one per core).
        workspace: The workspace to load in each worker (its digest and file).
        niceness: Added to the workers' niceness (0: as the parent).
        device: ``"gpu"``: the workers compute on the GPU (``FITAAS_DEVICE=gpu`` in their
            environment only).

    Returns:
        The executor.
    """
    digest, path = (workspace.digest, workspace.path) if workspace else (None, None)
    return ProcessPoolExecutor(
        max_workers=workers or default_workers(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(digest, path, 1, niceness, device),
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


class InProcessExecutor(Executor):
    """Runs each task at once in the calling thread (work too small for a pool)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # (as a worker's would be: the dispatcher decides)
            future.set_exception(exc)
        return future


class LocalEngine(Engine):
    """A process pool on this machine; workers load the workspace from a file by digest.

    Args:
        workers: Worker processes (default: one per core).
        retries: How many times a task whose worker died is sent again.
        batch_size: Points per task; 0 chooses automatically (1 on a local pool).
        niceness: Added to the workers' niceness.
        device: ``"gpu"``: the workers compute on the GPU, in lockstep (default: one).
    """

    name = "local"

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Engine:
        """The local pool of an endpoint's settings (``workers``, ``nice``)."""
        return cls(
            settings.get("workers") or None,
            retries=settings.get("retries", 2),
            batch_size=settings.get("batch_size", 0),
            niceness=settings.get("nice", 0),
            device=settings.get("device", "cpu"),
        )

    def __init__(
        self,
        workers: int | None = None,
        retries: int = 2,
        batch_size: int = 0,
        niceness: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(retries=retries, batch_size=batch_size)
        self.device = device
        # one worker per GPU unless told otherwise
        self._workers = workers or (1 if device == "gpu" else default_workers())
        self._niceness = niceness
        self._pool: ProcessPoolExecutor | None = None
        self._first: WorkspaceRef | None = None
        self._here: InProcessExecutor | None = None

    def start(self) -> None:
        """The pool starts with the first workspace (its workers load it as they start)."""

    def stop(self, cancel: bool = False) -> None:
        """Stop the pool; with ``cancel``, terminate running tasks too."""
        if self._pool is None:
            return
        if cancel:
            stop_now(self._pool)
        else:
            self._pool.shutdown(wait=True)
        self._pool = None

    def prestart(self) -> None:
        """Start every worker now: they import pyhf and jax while the caller reads and
        validates its inputs (the first result of a scan comes that much sooner)."""
        pool = self.executor
        for _ in range(self._workers):
            pool.submit(_warm_worker)

    def run_here(self) -> None:
        """Run the tasks in this process: the workers (started early, if they were) are
        stopped, and none start. A one-point scan then costs its point's seconds and the
        process's own imports, not a pool's start (the workers' imports of pyhf and jax)."""
        self.stop(cancel=True)
        self._here = InProcessExecutor()

    @property
    def executor(self) -> Executor:
        if self._here is not None:
            return self._here
        if self._pool is None:
            self._pool = local_pool(self._workers, self._first, self._niceness, self.device)
        return self._pool

    @property
    def workers(self) -> int:
        return 1 if self._here is not None else self._workers

    def install(self, digest: str, spec: dict[str, Any]) -> WorkspaceRef:
        """Write the workspace once to the cache folder; workers read it by digest.

        The file (``FITAAS_CACHE``/workspaces/DIGEST.json.gz) outlives the run: later scans
        of the same workspace write nothing. The first workspace is loaded by every worker
        as it starts, later ones on a worker's first task that names them. Without a
        writable cache folder, a worker gets the workspace with its first task instead.
        """
        path = cache_folder("workspaces") / f"{digest}.json.gz"
        try:
            ref = WorkspaceRef(
                digest, str(write_once(path, compress_workspace(spec))), device=self.device
            )
        except OSError:  # no writable cache: the workspace travels with the first tasks
            ref = WorkspaceRef(digest, device=self.device)
        if self._pool is None:
            self._first = ref
        return ref

    def recover(self, exc: BaseException) -> None:
        """Replace a pool broken by a dead worker; the lost tasks are then sent again.

        Raises:
            EngineError: The workers died re-running a script without the main guard.
        """
        script = _unguarded_script() if isinstance(exc, BrokenProcessPool) else None
        if script is not None:
            if self._pool is not None:
                stop_now(self._pool)
                self._pool = None
            raise EngineError(
                f"the workers re-run {script}, which calls fitaas at its top level: put the "
                'call under `if __name__ == "__main__":` (worker processes start by importing '
                "the script again)"
            )
        broken = self._pool is not None and getattr(self._pool, "_broken", False)
        if isinstance(exc, BrokenProcessPool) and self._pool is not None and broken:
            stop_now(self._pool)
            self._pool = None

    def abandon(self, futures: Iterable[Future[Any]]) -> None:
        """Nothing to cancel one by one: :meth:`stop` terminates the workers."""
