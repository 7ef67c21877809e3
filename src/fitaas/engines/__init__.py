"""Engines: where tasks run. Each is a ``concurrent.futures.Executor``."""

from fitaas.engines.local import default_workers, local_pool

__all__ = ["default_workers", "local_pool"]
