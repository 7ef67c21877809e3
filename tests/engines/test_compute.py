"""Where work runs is one value: every job front takes ``compute=``."""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import fitaas
from fitaas.engines import Compute, ExecutorEngine, LocalEngine


def test_every_job_front_takes_one_compute_value() -> None:
    bundle = {"engine", "executor", "workers", "retries", "batch_size", "device"}
    for front in (
        fitaas.scan,
        fitaas.stream_scan,
        fitaas.sweep,
        fitaas.ranking,
        fitaas.likelihood_scan,
        fitaas.upper_limit,
    ):
        parameters = set(inspect.signature(front).parameters)
        assert "compute" in parameters, front.__name__
        assert not parameters & bundle, (front.__name__, parameters & bundle)
    assert "device" not in fitaas.InferenceOptions.__dataclass_fields__


def test_compute_of_what_a_caller_gives() -> None:
    assert Compute.of(None) == Compute()
    assert Compute.of("dask") == Compute("dask")
    with ThreadPoolExecutor(1) as pool:
        made = Compute.of(pool).make()
        assert isinstance(made, ExecutorEngine) and made.executor is pool
        assert Compute(executor=pool, workers=3, retries=5, batch_size=2).make().retries == 5
        with pytest.raises(fitaas.InputError, match="not both"):
            Compute("local", executor=pool)
    engine = LocalEngine(1)
    assert Compute.of(engine).make() is engine
    with pytest.raises(fitaas.InputError, match="keeps its own workers"):
        Compute(engine, workers=2)
    with pytest.raises(fitaas.InputError, match="compute: an engine name"):
        Compute.of(3)  # type: ignore[arg-type]
    for wrong, words in (
        ({"device": "tpu"}, "not one of cpu, gpu"),
        ({"retries": -1}, "retries"),
        ({"batch_size": -1}, "batch size"),
    ):
        with pytest.raises(fitaas.InputError, match=words):
            Compute(**wrong)  # type: ignore[arg-type]


def test_the_device_is_not_an_inference_option() -> None:
    # results written before it moved still read; a GPU asked there says where it goes
    old = {**fitaas.InferenceOptions().to_dict(), "device": "cpu"}
    assert fitaas.InferenceOptions.from_dict(old) == fitaas.InferenceOptions()
    with pytest.raises(fitaas.InputError, match="Compute\\(device='gpu'\\)"):
        fitaas.InferenceOptions.from_dict({"device": "gpu"})
    assert Compute(device="gpu").on_gpu and not Compute().on_gpu


def test_a_one_task_scan_runs_in_the_calling_process_when_the_engine_allows(
    demo: Path, inline: Any
) -> None:
    # the command line's local engine: work of one task needs no pool (its start costs more)
    engine = LocalEngine(2)
    engine.inline_tasks = 1
    with engine:
        (here,) = fitaas.scan(demo, patches=["demo_700_0"], compute=engine)
        assert engine._pool is None and engine.workers == 1  # no worker was started
    (elsewhere,) = fitaas.scan(demo, patches=["demo_700_0"], compute=inline)
    assert here.status == elsewhere.status == "ok"
    assert here.hypotest == elsewhere.hypotest
    # more than one task: the pool
    engine = LocalEngine(1)
    engine.inline_tasks = 1
    with engine:
        two = fitaas.scan(demo, patches=["demo_700_0", "demo_800_200"], compute=engine)
        assert engine._pool is not None and len(two) == 2
