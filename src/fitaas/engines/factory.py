"""One way to get an engine from what a caller gives: an engine, a name, or an executor."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from fitaas.engines.base import Engine, ExecutorEngine
from fitaas.engines.local import LocalEngine
from fitaas.errors import InputError

__all__ = ["engine_in_use", "make_engine", "started_early"]


def make_engine(
    name: str | None,
    executor: Executor | None = None,
    workers: int | None = None,
    retries: int = 2,
    batch_size: int = 0,
    device: str = "cpu",
) -> Engine:
    """An engine (not started): the caller's executor, the local pool, or a named engine
    with its default settings (``device``: its workers on the GPU).

    Raises:
        InputError: Both an engine name and an executor.
    """
    if executor is not None:
        if name is not None:
            raise InputError("give an engine or an executor, not both")
        return ExecutorEngine(executor, workers or 1, retries=retries, batch_size=batch_size)
    from fitaas.engines.endpoint import engine_from_settings

    settings = {"engine": name or "local", "retries": retries, "batch_size": batch_size}
    return engine_from_settings({**settings, "workers": workers or 0, "device": device})


@contextmanager
def engine_in_use(
    engine: Engine | str | None,
    executor: Executor | None = None,
    workers: int | None = None,
    retries: int = 2,
    batch_size: int = 0,
    device: str = "cpu",
) -> Iterator[Engine]:
    """A started engine: the caller's own (left running), or one made here and stopped
    when the block ends."""
    if isinstance(engine, Engine):
        yield engine
        return
    with make_engine(engine, executor, workers, retries, batch_size, device) as owned:
        yield owned


@contextmanager
def started_early(
    engine: Engine | str | None,
    executor: Executor | None = None,
    workers: int | None = None,
    retries: int = 2,
    batch_size: int = 0,
    device: str = "cpu",
) -> Iterator[Engine | str | None]:
    """The local pool's workers started now (they import pyhf and jax while the caller
    reads its inputs; ``device``: on the GPU), stopped when the block ends; other engines
    as given."""
    if executor is not None or engine not in (None, "local"):
        yield engine
        return
    early = LocalEngine(workers, retries=retries, batch_size=batch_size, device=device)
    early.prestart()
    try:
        yield early
    finally:
        early.stop(cancel=True)
