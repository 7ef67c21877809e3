"""Tasks on an engine: submitted as a window allows, resent when lost, results as they come.

One loop serves every kind of work (a scan's points, blocks of toys, the fits of a
ranking): a task is submitted with the workspace's payload only when its worker reports
that it lacks the workspace, a task whose worker died is sent again (the engine may
restart what broke first), and what cannot be computed is handed back as a loss, never
raised, so that one bad task does not cost the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fitaas.engines.base import Engine
from fitaas.errors import FitaasError
from fitaas.worker.payloads import WorkspaceNotOnWorker

__all__ = ["Dispatcher", "Sending", "Stopped"]

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


T = TypeVar("T")


def _lacks_workspace(exc: BaseException) -> bool:
    # Engines that return remote errors as text (Globus Compute) lose the type: match the name.
    return isinstance(exc, WorkspaceNotOnWorker) or "WorkspaceNotOnWorker" in str(exc)


class Dispatcher(Generic[T]):
    """Run tasks on an engine, each recorded (or reported lost) as it finishes.

    Args:
        engine: A started engine.
        call: Submits a task: ``call(task, payload)`` returns its future; ``payload`` is
            the workspace for a worker that lacks it, else ``None``.
        payload: The workspace's payload (:meth:`Engine.payload`), made when first needed.
        sending: The task's :class:`Sending` state.
        stop: When set, :meth:`run` abandons the running tasks and raises :class:`Stopped`.
    """

    def __init__(
        self,
        engine: Engine,
        call: Callable[[T, Any], Future[Any]],
        payload: Callable[[], Any],
        sending: Callable[[T], Sending],
        stop: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self._call = call
        self._payload = payload
        self._sending = sending
        self.stop = stop
        self._pending: dict[Future[Any], T] = {}

    def submit(self, task: T) -> None:
        """Send a task now (also while :meth:`run` waits: its result is recorded there)."""
        payload = self._payload() if self._sending(task).with_payload else None
        self._pending[self._call(task, payload)] = task

    def run(
        self,
        tasks: Iterator[T],
        record: Callable[[T, Any], None],
        lost: Callable[[T, str], Any],
        window: int = 0,
    ) -> None:
        """Submit ``tasks`` and record their results as they arrive.

        Args:
            tasks: The tasks, taken as the window allows.
            record: Called with each task and what it returned (or what ``lost`` made of
                a task lost after every retry).
            lost: The result standing for a task that could not be computed, from the
                task and the last error.
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
                self._sending(task).with_payload = self.engine.eager_payload
                self.submit(task)
                if window and len(self._pending) >= window:
                    return

        try:
            refill()
            while self._pending:
                timeout = STOP_CHECK_SECONDS if self.stop is not None else None
                done, _ = wait(list(self._pending), timeout=timeout, return_when=FIRST_COMPLETED)
                if self.stop is not None and self.stop.is_set():
                    self._keep_finished(record)
                    raise Stopped("the work was stopped; finished results are in the store")
                for future in done:
                    task = self._pending.pop(future)
                    returned = self._returned(future, task, lost)
                    if returned is not None:
                        record(task, returned[0])
                if window:
                    refill()
        except BaseException:
            self.engine.abandon(list(self._pending))
            self._pending.clear()
            raise
        if source_error:
            raise source_error[0]

    def _keep_finished(self, record: Callable[[T, Any], None]) -> None:
        """Record every task that has finished with a result (on a stop: nothing computed
        is lost; nothing is sent again)."""
        for future in [f for f in self._pending if f.done() and not f.cancelled()]:
            task = self._pending.pop(future)
            if future.exception() is None:
                record(task, future.result())

    def call(self, task: T, lost: Callable[[T, str], Any]) -> Any:
        """Compute one task and wait for it, sent again as :meth:`run` sends tasks; several
        threads may call at once (each waits for its own task).

        Returns:
            What the task returned, or what ``lost`` made of it.
        """
        sending = self._sending(task)
        sending.with_payload = sending.with_payload or self.engine.eager_payload
        while True:
            payload = self._payload() if sending.with_payload else None
            future = self._call(task, payload)
            try:
                return future.result()
            except Exception as exc:
                if not self._again(task, exc):
                    return lost(task, self._lost_error(task))

    def _returned(
        self, future: Future[Any], task: T, lost: Callable[[T, str], Any]
    ) -> tuple[Any] | None:
        """The task's result (a one-tuple), or ``None`` when it was sent again."""
        try:
            return (future.result(),)
        except Exception as exc:
            if self._again(task, exc):
                self.submit(task)
                return None
        return (lost(task, self._lost_error(task)),)

    def _again(self, task: T, exc: Exception) -> bool:
        """Whether a task that raised ``exc`` is to be sent again (with the workspace, or
        after a lost worker, within the retries)."""
        sending = self._sending(task)
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
        sending = self._sending(task)
        return f"task lost after {sending.attempts + 1} attempts: {sending.errors[-1]}"[:500]
