"""Engines: where tasks run. Each gives a ``concurrent.futures.Executor``."""

from fitaas.engines.base import Engine, EngineError, ExecutorEngine
from fitaas.engines.local import LocalEngine, default_workers, local_pool

__all__ = [
    "Engine",
    "EngineError",
    "ExecutorEngine",
    "LocalEngine",
    "default_workers",
    "local_pool",
]
