"""Tasks on an engine: submitted as a window allows, resent when lost, results as they come.

One loop serves every kind of work (a scan's points, blocks of toys, the fits of a
ranking, an upper limit's CLs values), each described by one :class:`JobShape`: what its
tasks are, how one is called, how a result is recorded, what a lost task becomes. A task is
submitted with the workspace's payload only when its worker reports
that it lacks the workspace, a task whose worker died is sent again (the engine may
restart what broke first), and what cannot be computed is handed back as a loss, never
raised, so that one bad task does not cost the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from fitaas.engines.base import Engine
from fitaas.errors import FitaasError
from fitaas.worker.payloads import WorkspaceNotOnWorker

__all__ = ["Dispatcher", "JobShape", "Sending", "SentTask", "Stopped"]

# How often a dispatcher waiting for its tasks looks at its stop event.
STOP_CHECK_SECONDS = 0.25


class Stopped(FitaasError):
    """The work's ``stop`` event was set: it stopped; finished results are in the store."""


@dataclass
class Sending:
    """How far a task got: the attempts made, whether it carries the workspace, the errors."""

    attempts: int = 0
    with_payload: bool = False
    errors: list[str] = field(default_factory=list)


class SentTask(Protocol):
    """A task as the dispatcher sees it: it carries its :class:`Sending` state."""

    sending: Sending


T = TypeVar("T", bound=SentTask)


@dataclass(frozen=True)
class JobShape(Generic[T]):
    """One kind of job on the dispatcher.

    Attributes:
        call: Submits a task: ``call(task, payload)`` returns its future; ``payload`` is the
            workspace for a worker that lacks it, else ``None``.
        record: Called with a task and what it returned (or what ``lost`` made of it).
        lost: What stands for a task that could not be computed, from the task and the
            last error.
        payload: The workspace's payload (:meth:`Engine.payload`), made when first needed.
    """

    call: Callable[[T, Any], Future[Any]]
    record: Callable[[T, Any], None]
    lost: Callable[[T, str], Any]
    payload: Callable[[], Any]


def _lacks_workspace(exc: BaseException) -> bool:
    # Engines that return remote errors as text (Globus Compute) lose the type: match the name.
    return isinstance(exc, WorkspaceNotOnWorker) or "WorkspaceNotOnWorker" in str(exc)


class Dispatcher(Generic[T]):
    """Run tasks on an engine, each recorded (or reported lost) as it finishes.

    Args:
        engine: A started engine.
        shape: The job's kind: how its tasks are called, recorded and lost.
        stop: When set, :meth:`run` abandons the running tasks and raises :class:`Stopped`.
    """

    def __init__(
        self, engine: Engine, shape: JobShape[T], stop: threading.Event | None = None
    ) -> None:
        self.engine = engine
        self.shape = shape
        self.stop = stop
        self._pending: dict[Future[Any], T] = {}

    def submit(self, task: T) -> None:
        """Send a task now (also while :meth:`run` waits: its result is recorded there)."""
        payload = self.shape.payload() if task.sending.with_payload else None
        self._pending[self.shape.call(task, payload)] = task

    def run(self, tasks: Iterator[T], window: int = 0) -> None:
        """Submit ``tasks`` and record their results as they arrive.

        Args:
            tasks: The tasks, taken as the window allows.
            window: The most tasks in flight (0: the engine's ``window``, where 0 is every
                task at once); a stream of models is read only as far as this.

        Raises:
            Stopped: The stop event was set.
        """

        window = window or getattr(self.engine, "window", 0)
        # An error from ``tasks`` itself (a stream reaching a malformed model) ends the
        # submitting; the tasks in flight finish and are recorded before it is raised.
        source_error: list[Exception] = []
        iterator = iter(tasks)

        def refill() -> None:
            while not source_error:
                try:
                    task = next(iterator)
                except StopIteration:
                    return
                except Exception as exc:
                    source_error.append(exc)
                    return
                task.sending.with_payload = self.engine.eager_payload
                self.submit(task)
                if window and len(self._pending) >= window:
                    return

        try:
            refill()
            while self._pending:
                timeout = STOP_CHECK_SECONDS if self.stop is not None else None
                done, _ = wait(list(self._pending), timeout=timeout, return_when=FIRST_COMPLETED)
                if self.stop is not None and self.stop.is_set():
                    self._keep_finished()
                    raise Stopped("the work was stopped; finished results are in the store")
                for future in done:
                    task = self._pending.pop(future)
                    returned = self._returned(future, task)
                    if returned is not None:
                        self.shape.record(task, returned[0])
                if window:
                    refill()
        except BaseException:
            self.engine.abandon(list(self._pending))
            self._pending.clear()
            raise
        if source_error:
            raise source_error[0]

    def _keep_finished(self) -> None:
        """Record every task that has finished with a result (on a stop: nothing computed
        is lost; nothing is sent again)."""
        for future in [f for f in self._pending if f.done() and not f.cancelled()]:
            task = self._pending.pop(future)
            if future.exception() is None:
                self.shape.record(task, future.result())

    def call(self, task: T) -> Any:
        """Compute one task and wait for it, sent again as :meth:`run` sends tasks; several
        threads may call at once (each waits for its own task). Nothing is recorded.

        Returns:
            What the task returned, or what the shape's ``lost`` made of it.
        """
        sending = task.sending
        sending.with_payload = sending.with_payload or self.engine.eager_payload
        while True:
            payload = self.shape.payload() if sending.with_payload else None
            future = self.shape.call(task, payload)
            try:
                return future.result()
            except Exception as exc:
                if not self._again(task, exc):
                    return self.shape.lost(task, self._lost_error(task))

    def _returned(self, future: Future[Any], task: T) -> tuple[Any] | None:
        """The task's result (a one-tuple), or ``None`` when it was sent again."""
        try:
            return (future.result(),)
        except Exception as exc:
            if self._again(task, exc):
                self.submit(task)
                return None
        return (self.shape.lost(task, self._lost_error(task)),)

    def _again(self, task: T, exc: Exception) -> bool:
        """Whether a task that raised ``exc`` is to be sent again (with the workspace, or
        after a lost worker, within the retries)."""
        sending = task.sending
        if _lacks_workspace(exc) and not sending.with_payload:
            sending.with_payload = True
            return True
        sending.errors.append(f"{type(exc).__name__}: {exc}".strip())
        if sending.attempts < self.engine.retries:
            sending.attempts += 1
            self.engine.recover(exc)
            return True
        return False

    def _lost_error(self, task: T) -> str:
        sending = task.sending
        return f"task lost after {sending.attempts + 1} attempts: {sending.errors[-1]}"[:500]
