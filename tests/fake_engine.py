"""A fake engine for the orchestration's tests: workers that answer ``run_points`` and
``run_toy_blocks`` with canned outcomes made from the point's name (no pyhf), and can lose a
task, fail a point or set the scan's stop event."""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np

from fitaas.inference.arrays import encode_array
from fitaas.worker.payloads import WorkspaceNotOnWorker

__all__ = ["FakeWorkers", "canned_block", "canned_cls"]


def canned_cls(name: str) -> float:
    """A CLs of the point's own (its name's checksum), to see each lands on its point."""
    return (zlib.crc32(name.encode()) % 1000) / 1000.0


def _outcome(name: str) -> dict[str, Any]:
    cls = canned_cls(name)
    return {
        "status": "ok",
        "result": {
            "poi_value": 1.0,
            "test_stat": "qtilde",
            "cls_obs": cls,
            "cls_exp": [cls * f for f in (0.2, 0.5, 1.0, 1.5, 2.0)],
            "clsb_obs": cls / 2,
            "clb_obs": 0.5,
        },
        "error": None,
        "seconds": 0.01,
    }


def canned_block(name: str, ensemble: str, index: int, size: int) -> dict[str, Any]:
    """A block of canned toys: test statistics drawn from the block's own seed."""
    seed = zlib.crc32(f"{name}/{ensemble}/{index}".encode())
    shift = 0.0 if ensemble == "b" else 1.0
    values = np.random.default_rng(seed).exponential(1.0, size) + shift
    return {
        "ensemble": ensemble,
        "index": index,
        "status": "ok",
        "teststats": encode_array(values),
        "failed": 0,
        "teststat_obs": 1.0 + canned_cls(name),
        "error": None,
        "seconds": 0.01,
    }


class FakeWorkers(Executor):
    """Runs ``run_points`` and ``run_toy_blocks`` tasks with canned outcomes, synchronously.

    Args:
        lose: Point name -> how many times a task holding it dies first.
        fail: Point names whose outcome is a failed fit.
        stop_after: Set ``stop`` once this many tasks have been answered.
    """

    def __init__(
        self,
        lose: dict[str, int] | None = None,
        fail: frozenset[str] = frozenset(),
        stop: threading.Event | None = None,
        stop_after: int | None = None,
        has_workspace: bool = True,
    ) -> None:
        self.lose = dict(lose or {})
        self.fail = fail
        self.stop, self.stop_after = stop, stop_after
        self.calls: Counter[str] = Counter()
        self.answered = 0
        self.answered_names: set[str] = set()
        self.has_workspace = has_workspace

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        assert fn.__name__ in ("run_points", "run_toy_blocks"), fn
        future: Future[Any] = Future()
        if fn.__name__ == "run_toy_blocks":
            _, point, blocks, options, _ = args
            name = point["name"]
            for block in blocks:
                self.calls[f"{name}/{block[0]}/{block[1]}"] += 1
            if self.lose.get(name, 0) > 0:
                self.lose[name] -= 1
                future.set_exception(RuntimeError(f"worker died running {name}"))
                return future
            size = int(options["toy_block_size"])
            future.set_result([canned_block(name, e, int(i), size) for e, i in blocks])
            return future
        _, points, kinds, _, payload = args
        if payload is not None:
            self.has_workspace = True
        names = [point["name"] for point in points]
        for name in names:
            self.calls[name] += 1
        if not self.has_workspace:
            future.set_exception(WorkspaceNotOnWorker("no workspace here"))
            return future
        for name in names:
            if self.lose.get(name, 0) > 0:
                self.lose[name] -= 1
                future.set_exception(RuntimeError(f"worker died running {name}"))
                return future
        done = []
        for name in names:
            outcome = _outcome(name)
            if name in self.fail:
                outcome = {"status": "failed", "result": None, "error": "fit failed: canned"}
            done.append({"name": name, "outcomes": dict.fromkeys(kinds, outcome)})
        self.answered += 1
        self.answered_names.update(names)
        stopping = self.stop_after is not None and self.answered >= self.stop_after
        if self.stop is not None and stopping:
            self.stop.set()
        future.set_result(done)
        return future
