"""Engines kept started between a service's jobs, one per endpoint, shared by its jobs.

Starting an engine is most of a small job's time: local workers import pyhf and jax and
compile each model structure (seconds), a Parsl or Dask pool starts its blocks. A finished
job hands its engine back here; the next job on the same endpoint (with the same settings)
takes it at once, its workers still holding their workspaces and compiled structures. An
engine idle for ``keep_seconds`` is stopped, as is one whose job failed or was cancelled
(cancelling a job stops its running tasks) while no other job uses it. Jobs that run at once
on one endpoint share its engine (counted: it is given back, or stopped, by the last).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from fitaas.engines.base import Engine

__all__ = ["DEFAULT_KEEP_SECONDS", "WarmEngines"]

# How long an idle engine stays started (``fitaas serve --keep-workers``).
DEFAULT_KEEP_SECONDS = 300.0

log = logging.getLogger("fitaas.service")


class WarmEngines:
    """Started engines by endpoint, waiting for the next job.

    Args:
        keep_seconds: How long an engine may wait idle (0: stop it after every job).
    """

    def __init__(self, keep_seconds: float = DEFAULT_KEEP_SECONDS) -> None:
        self.keep_seconds = keep_seconds
        self._idle: dict[int, tuple[str, Engine, float]] = {}
        # the engine each endpoint's running jobs share, and how many use each engine
        self._shared: dict[int, tuple[str, Engine]] = {}
        self._users: dict[int, int] = {}
        self._starting: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(settings: dict[str, Any]) -> str:
        return json.dumps(settings, sort_keys=True, default=str)

    def take(self, endpoint_id: int, settings: dict[str, Any]) -> Engine:
        """A started engine for a job on this endpoint: the warm one, or a new one.

        Raises:
            EngineError: A new engine cannot start.
        """
        with self._lock:
            starting = self._starting.setdefault(endpoint_id, threading.Lock())
        with starting:  # (two jobs that start at once share one engine, started once)
            return self._take(endpoint_id, settings)

    def _take(self, endpoint_id: int, settings: dict[str, Any]) -> Engine:
        key = self._key(settings)
        with self._lock:
            shared = self._shared.get(endpoint_id)
            if shared is not None and shared[0] == key:  # another job of the endpoint runs
                self._users[id(shared[1])] += 1
                return shared[1]
            found = self._idle.pop(endpoint_id, None)
        engine = None
        if found is not None:
            if found[0] == key:
                engine = found[1]
            else:
                self._stop(found[1])  # the endpoint's settings changed meanwhile
        if engine is None:
            from fitaas.engines.endpoint import engine_from_settings

            engine = engine_from_settings(settings)
            engine.start()
        with self._lock:
            self._shared[endpoint_id] = (key, engine)
            self._users[id(engine)] = self._users.get(id(engine), 0) + 1
        return engine

    def _release(self, engine: Engine) -> bool:
        """One job less uses ``engine`` (lock held); whether it was the last."""
        left = self._users.get(id(engine), 1) - 1
        if left > 0:
            self._users[id(engine)] = left
            return False
        self._users.pop(id(engine), None)
        for endpoint_id, (_, shared) in list(self._shared.items()):
            if shared is engine:
                del self._shared[endpoint_id]
        return True

    def give_back(self, endpoint_id: int, settings: dict[str, Any], engine: Engine) -> None:
        """A job finished: keep its engine for the next one (or stop it: ``keep_seconds``
        0), once no other job uses it."""
        with self._lock:
            if not self._release(engine):
                return
        if self.keep_seconds <= 0:
            self._stop(engine)
            return
        with self._lock:
            replaced = self._idle.get(endpoint_id)
            self._idle[endpoint_id] = (self._key(settings), engine, time.monotonic())
        if replaced is not None and replaced[1] is not engine:
            self._stop(replaced[1])

    def discard(self, engine: Engine) -> None:
        """A job failed or was cancelled: stop its engine without waiting for its tasks,
        unless other jobs use it (the job's tasks in flight, a window's worth, finish)."""
        with self._lock:
            if not self._release(engine):
                return
        self._stop(engine, cancel=True)

    def reap(self) -> None:
        """Stop the engines idle for longer than ``keep_seconds``."""
        now = time.monotonic()
        with self._lock:
            old = [k for k, (_, _, since) in self._idle.items() if now - since > self.keep_seconds]
            stale = [self._idle.pop(k)[1] for k in old]
        for engine in stale:
            log.info("stopping the %s engine after %g s idle", engine.name, self.keep_seconds)
            self._stop(engine)

    def close(self) -> None:
        """Stop every idle engine (the service stops)."""
        with self._lock:
            engines = [engine for _, engine, _ in self._idle.values()]
            self._idle.clear()
        for engine in engines:
            self._stop(engine, cancel=True)

    @staticmethod
    def _stop(engine: Engine, cancel: bool = False) -> None:
        try:
            engine.stop(cancel=cancel)
        except Exception:  # a broken engine must not stop the service's threads
            log.exception("stopping the %s engine", engine.name)
