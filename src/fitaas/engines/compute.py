"""Where work runs, as one value: :class:`Compute`.

Every job front (:func:`fitaas.scan`, :func:`fitaas.stream_scan`, :func:`fitaas.sweep`,
the analyst's fits) takes ``compute=``: an engine name, a started :class:`Engine`, any
``concurrent.futures.Executor``, or a :class:`Compute` that says the rest (workers,
retries, batch size, device). What it says is not part of any result: the same inputs
give the same numbers wherever they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

from fitaas.choices import DEVICES
from fitaas.engines.base import Engine, ExecutorEngine
from fitaas.engines.local import LocalEngine
from fitaas.errors import InputError

__all__ = ["Compute", "ComputeLike", "engine_in_use", "make_engine"]


@dataclass(frozen=True)
class Compute:
    """Where a job's tasks run.

    Args:
        engine: An engine name (``"local"``, ``"parsl"``, ``"dask"``, ``"globus"``; none:
            the local process pool), or a started :class:`Engine` (left running).
        executor: Instead, any ``concurrent.futures.Executor`` the caller owns.
        workers: Worker processes of an engine started here (none: the engine's default).
        retries: How many times a task whose worker died is sent again.
        batch_size: Points per task (0: chosen automatically).
        device: ``"cpu"``, or ``"gpu"``: the workers compute on a GPU, fitting points in
            lockstep (jax with its CUDA plugin on the workers).

    Example:
        >>> Compute("local", workers=2)
        Compute(engine='local', executor=None, workers=2, retries=2, batch_size=0, device='cpu')
    """

    engine: Engine | str | None = None
    executor: Executor | None = None
    workers: int | None = None
    retries: int = 2
    batch_size: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InputError(f"device: '{self.device}' is not one of {', '.join(DEVICES)}")
        if self.executor is not None and self.engine is not None:
            raise InputError("give an engine or an executor, not both")
        if isinstance(self.engine, Engine) and (
            self.workers is not None or self.retries != 2 or self.batch_size or self.device != "cpu"
        ):
            raise InputError(
                "a started engine keeps its own workers, retries, batch size and device: "
                "give them to the engine, or give its name"
            )
        if self.retries < 0:
            raise InputError(f"retries must be 0 or more, got {self.retries}")
        if self.batch_size < 0:
            raise InputError(f"batch size must be 0 (automatic) or more, got {self.batch_size}")

    @classmethod
    def of(cls, compute: ComputeLike) -> Compute:
        """The :class:`Compute` a job front was given (a name, an engine, an executor or
        ``None`` stand for their defaults)."""
        if isinstance(compute, Compute):
            return compute
        if isinstance(compute, Executor):
            return cls(executor=compute)
        if compute is None or isinstance(compute, (str, Engine)):
            return cls(engine=compute)
        raise InputError(
            f"compute: an engine name, an Engine, an Executor or a Compute, got "
            f"{type(compute).__name__}"
        )

    @property
    def on_gpu(self) -> bool:
        """Whether the tasks compute on a GPU (asked here, or the given engine's)."""
        return self.device == "gpu" or getattr(self.engine, "device", "cpu") == "gpu"

    def make(self) -> Engine:
        """The engine (not started): the executor's, the local pool, or a named engine
        with its default settings."""
        if isinstance(self.engine, Engine):
            return self.engine
        if self.executor is not None:
            return ExecutorEngine(
                self.executor, self.workers or 1, retries=self.retries, batch_size=self.batch_size
            )
        from fitaas.engines.endpoint import engine_from_settings

        return engine_from_settings(
            {
                "engine": self.engine or "local",
                "retries": self.retries,
                "batch_size": self.batch_size,
                "workers": self.workers or 0,
                "device": self.device,
            }
        )

    @contextmanager
    def in_use(self) -> Iterator[Engine]:
        """A started engine: the caller's own (left running), or one made here and stopped
        when the block ends."""
        if isinstance(self.engine, Engine):
            yield self.engine
            return
        with self.make() as owned:
            yield owned

    @contextmanager
    def started_early(self) -> Iterator[Compute]:
        """The local pool's workers started now (they import pyhf and jax while the caller
        reads its inputs), stopped when the block ends: this value with that engine in it;
        other engines as given."""
        if self.executor is not None or self.engine not in (None, "local"):
            yield self
            return
        early = LocalEngine(
            self.workers, retries=self.retries, batch_size=self.batch_size, device=self.device
        )
        early.prestart()
        try:
            yield Compute(engine=early)
        finally:
            early.stop(cancel=True)


#: What a job front's ``compute=`` takes.
ComputeLike = Compute | Engine | Executor | str | None


def make_engine(compute: ComputeLike = None) -> Engine:
    """The (not started) engine of ``compute`` (see :class:`Compute`)."""
    return Compute.of(compute).make()


@contextmanager
def engine_in_use(compute: ComputeLike = None) -> Iterator[Engine]:
    """A started engine for ``compute``: the caller's own engine (left running), or one
    made here and stopped when the block ends."""
    with Compute.of(compute).in_use() as engine:
        yield engine
