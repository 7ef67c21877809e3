"""The one loop that sends tasks to an engine: payload on demand, lost tasks resent, stop."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from fitaas.engines.base import ExecutorEngine
from fitaas.jobs.dispatch import Dispatcher, JobShape, Sending, Stopped
from fitaas.worker.payloads import WorkspaceNotOnWorker


@dataclass
class _Job:
    name: str
    sending: Sending = field(default_factory=Sending)


class _Worker:
    """Tasks that need the payload once, fail a given number of times, or hang."""

    def __init__(self, failures: dict[str, int]) -> None:
        self.failures = failures
        self.calls: Counter[str] = Counter()
        self.has_workspace = False
        self.lock = threading.Lock()
        self.release = threading.Event()

    def run(self, name: str, payload: Any) -> str:
        with self.lock:
            self.calls[name] += 1
            if payload is not None:
                self.has_workspace = True
            if not self.has_workspace:
                raise WorkspaceNotOnWorker("not here")
            if self.calls[name] <= self.failures.get(name, 0):
                raise RuntimeError(f"worker died running {name}")
        if name == "hang":
            self.release.wait(30)
        return f"done {name}"


def _dispatcher(
    worker: _Worker,
    pool: ThreadPoolExecutor,
    stop: Any = None,
    recorded: dict[str, str] | None = None,
) -> Any:
    engine = ExecutorEngine(pool, workers=2, retries=2)
    payloads = Counter[str]()
    kept = recorded if recorded is not None else {}

    def payload() -> str:
        payloads["made"] += 1
        return "the workspace"

    shape: JobShape[_Job] = JobShape(
        lambda job, data: pool.submit(worker.run, job.name, data),
        lambda job, result: kept.__setitem__(job.name, result),
        lambda job, error: f"lost: {error}",
        payload,
    )
    return Dispatcher(engine, shape, stop), payloads


def test_lost_tasks_are_resent_and_the_hopeless_reported() -> None:
    worker = _Worker({"twice": 2, "always": 9})
    recorded: dict[str, str] = {}
    with ThreadPoolExecutor(2) as pool:
        dispatcher, payloads = _dispatcher(worker, pool, recorded=recorded)
        jobs = [_Job("a"), _Job("twice"), _Job("always")]
        dispatcher.run(iter(jobs), window=1)
    assert recorded["a"] == "done a" and recorded["twice"] == "done twice"
    assert recorded["always"].startswith("lost: task lost after 3 attempts: RuntimeError")
    assert worker.calls["twice"] == 3 and worker.calls["always"] == 3
    assert payloads["made"] >= 1 and jobs[0].sending.with_payload  # sent with it on demand


def test_a_stop_abandons_the_running_tasks() -> None:
    worker = _Worker({})
    worker.has_workspace = True
    stop = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        dispatcher, _ = _dispatcher(worker, pool, stop)
        threading.Timer(0.3, stop.set).start()
        with pytest.raises(Stopped):
            dispatcher.run(iter([_Job("hang")]))
        assert not worker.release.is_set()  # it returned without waiting for the task
        worker.release.set()


def test_one_task_from_many_threads() -> None:
    worker = _Worker({"b": 1})
    with ThreadPoolExecutor(4) as pool:
        dispatcher, _ = _dispatcher(worker, pool)
        with ThreadPoolExecutor(3) as callers:
            found = list(callers.map(lambda name: dispatcher.call(_Job(name)), "abc"))
    assert found == ["done a", "done b", "done c"]
