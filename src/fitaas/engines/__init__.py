"""Engines: where tasks run. Each gives a ``concurrent.futures.Executor``."""

from fitaas.engines.base import Engine, EngineError, ExecutorEngine
from fitaas.engines.compute import Compute, ComputeLike, engine_in_use, make_engine
from fitaas.engines.local import LocalEngine, default_workers, local_pool

__all__ = [
    "Compute",
    "ComputeLike",
    "Engine",
    "EngineError",
    "ExecutorEngine",
    "LocalEngine",
    "default_workers",
    "engine_in_use",
    "local_pool",
    "make_engine",
]
