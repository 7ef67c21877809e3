"""The engine contract: where tasks run, behind one ``concurrent.futures.Executor``.

An engine starts and stops its resources (a context manager), hands out an executor,
and says how a workspace reaches its workers: installed ahead of the tasks where it can
(a pool initializer, a Dask broadcast, a file on a shared filesystem), otherwise sent with
a task on demand, when a worker reports that it lacks it. The scan does not know which
engine runs it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from fitaas.caches import most_recent, write_once
from fitaas.engines.settings import Schema
from fitaas.errors import FitaasError
from fitaas.worker.payloads import WorkspaceRef, compress_workspace

__all__ = ["PAYLOADS_KEPT", "Engine", "EngineError", "ExecutorEngine", "missing_extra"]

# Compressed workspaces an engine keeps ready for workers that lack them.
PAYLOADS_KEPT = 8
# Points per task at most when they are fitted in lockstep (``--lockstep``, the GPU).
LOCKSTEP_BATCH = 32


class EngineError(FitaasError):
    """An engine cannot start: a missing extra, an unreachable scheduler, bad credentials."""


def missing_extra(engine: str, exc: ImportError) -> EngineError:
    """The error for an engine whose optional dependencies are not installed."""
    return EngineError(
        f"the {engine} engine needs its extra ({exc.name or exc}): pip install 'fitaas[{engine}]'"
    )


class Engine(ABC):
    """Where tasks run. Use as a context manager: ``with engine: engine.executor.submit(...)``.

    Args:
        settings: The engine's section of an endpoint file (validated).
        retries: How many times a task whose worker died (or was lost) is sent again.
        batch_size: Points per task; 0 chooses automatically.
        shared_path: A folder every worker can read: workspaces are written there once
            and read by the workers, instead of travelling with tasks, and workers keep
            their compiled code there (``jax/``), shared by every block and node.
    """

    name: ClassVar[str] = "engine"
    #: Largest task submission the engine accepts, in bytes (``None``: no limit).
    max_submission_bytes: ClassVar[int | None] = None
    #: What the engine's serialization adds to a task's pickled size (base64, framing).
    serialization_overhead: ClassVar[float] = 1.0
    #: Send the payload argument with every task (it is a cheap handle, e.g. on Dask).
    eager_payload: ClassVar[bool] = False
    #: Its table in an endpoint file (``[parsl]``, ...): key -> (types, default, help).
    section: ClassVar[Schema] = {}
    #: The module its extra installs (checked when an endpoint file names the engine).
    extra_module: ClassVar[str | None] = None

    @classmethod  # noqa: B027 - optional hook
    def check_section(cls, section: dict[str, Any], source: str) -> None:
        """Check the engine's table beyond its keys' types (choices, signatures).

        Raises:
            InputError: A value the engine cannot take, named.
        """

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Engine:
        """The (not started) engine of an endpoint's validated settings."""
        return cls(
            settings.get(cls.name, {}),
            retries=settings.get("retries", 2),
            batch_size=settings.get("batch_size", 0),
            shared_path=settings.get("shared_path", ""),
        )

    @classmethod
    def summary(cls, section: dict[str, Any]) -> str:
        """One line on what the engine's table describes (``fitaas endpoint check``)."""
        return ""

    @classmethod
    def template(cls, choice: str) -> list[str]:
        """The engine's part of a commented endpoint file (``choice``: a provider or
        cluster kind, where the engine has several)."""
        return []

    def __init__(
        self,
        settings: dict[str, Any] | None = None,
        retries: int = 2,
        batch_size: int = 0,
        shared_path: str = "",
    ) -> None:
        if retries < 0:
            raise FitaasError(f"retries must be 0 or more, got {retries}")
        if batch_size < 0:
            raise FitaasError(f"batch size must be 0 (automatic) or more, got {batch_size}")
        self.settings = dict(settings or {})
        self.retries = retries
        self.batch_size = batch_size
        self.shared_path = shared_path
        # "gpu": the workers compute on the GPU, in lockstep (``device`` of an endpoint)
        self.device = "cpu"
        # the most tasks one piece of work keeps in flight (0: all at once); the service
        # sets it where several jobs share the engine, so that they take turns
        self.window = 0
        # work of at most this many tasks runs in the calling process instead of on workers
        # (0: never; see :meth:`run_here`); the command line sets it for the local pool
        self.inline_tasks = 0
        self._payloads: dict[str, Any] = {}

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(cancel=exc_type is not None)

    @abstractmethod
    def start(self) -> None:
        """Obtain resources (start workers, connect to a scheduler or service)."""

    @abstractmethod
    def stop(self, cancel: bool = False) -> None:
        """Release resources; with ``cancel``, without waiting for running tasks."""

    @property
    @abstractmethod
    def executor(self) -> Executor:
        """The executor tasks are submitted to."""

    @property
    def workers(self) -> int:
        """How many tasks run at once (a hint for the automatic batch size)."""
        return 1

    def install(self, digest: str, spec: dict[str, Any]) -> WorkspaceRef:
        """Make a workspace available to the workers, as far as the engine can.

        Args:
            digest: The workspace's content digest.
            spec: The workspace specification.

        Returns:
            How tasks name the workspace.
        """
        if not self.shared_path:
            return WorkspaceRef(digest, device=self.device)
        folder = Path(self.shared_path)
        path = write_once(folder / f"{digest}.json.gz", compress_workspace(spec))
        return WorkspaceRef(digest, str(path), str(folder / "jax"), self.device)

    def payload(self, digest: str, spec: dict[str, Any]) -> Any:
        """What a task carries for a worker that lacks the workspace (compressed JSON); the
        last :data:`PAYLOADS_KEPT` are kept (an engine may serve many jobs)."""
        return most_recent(self._payloads, digest, lambda: compress_workspace(spec), PAYLOADS_KEPT)

    def run_here(self) -> None:  # noqa: B027 - optional hook
        """From now on, run tasks in the calling process (work of at most ``inline_tasks``
        tasks: starting workers would cost more than the work). Engines that cannot, ignore
        it."""

    def recover(self, exc: BaseException) -> None:  # noqa: B027 - optional hook
        """Called before a lost task is sent again: restart what broke, if anything."""

    def abandon(self, futures: Iterable[Future[Any]]) -> None:
        """The scan stops waiting for these futures (Ctrl-C, an error): cancel what can be."""
        for future in futures:
            with suppress(NotImplementedError):  # Parsl futures cannot be cancelled
                future.cancel()

    def batch_size_for(self, points: int, lockstep: bool = False) -> int:
        """Points per task: the configured size, else one (in lockstep: ``LOCKSTEP_BATCH``).

        A point takes 0.1 to 15 s and a task costs milliseconds on the local pool, Parsl
        and Dask: one point per task balances best and reports progress soonest. Points
        fitted in lockstep share their compiled calls within a task; a task's points do not
        depend on the number of workers, nor then do its numbers (the compiled code of a
        call depends on which arrays its points share).
        """
        return self.batch_size or (LOCKSTEP_BATCH if lockstep else 1)


class ExecutorEngine(Engine):
    """Any ``concurrent.futures.Executor`` the caller started (and will stop) itself.

    Args:
        executor: The executor.
        workers: How many tasks it runs at once.
        retries: How many times a lost task is sent again.
        batch_size: Points per task; 0 chooses automatically.
    """

    name = "executor"

    def __init__(
        self, executor: Executor, workers: int = 1, retries: int = 2, batch_size: int = 0
    ) -> None:
        super().__init__(retries=retries, batch_size=batch_size)
        self._executor = executor
        self._workers = workers

    def start(self) -> None:
        """Nothing to start: the caller owns the executor."""

    def stop(self, cancel: bool = False) -> None:
        """Nothing to stop: the caller owns the executor."""

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def workers(self) -> int:
        return self._workers
