"""Hypothesis tests whose fits run in lockstep (``--lockstep``, the GPU path) against the
one-at-a-time fast path and plain pyhf."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
import pytest

import fitaas
from conftest import load, run_cli, workspace_with_every_modifier
from fitaas import InferenceOptions
from fitaas.engines import ExecutorEngine, LocalEngine
from fitaas.engines.endpoint import engine_from_settings
from fitaas.fast.device import device_report
from fitaas.inputs.pallets import digest
from fitaas.worker.cache import worker_cache
from fitaas.worker.payloads import WorkspaceRef
from fitaas.worker.tasks import run_points

pytest.importorskip("jax")

NAMES = ["demo_300_0", "demo_700_200", "demo_1000_400", "demo_800_0", "demo_500_200", "demo_600_0"]


def _numbers(outcome: dict[str, Any]) -> list[float]:
    assert outcome["status"] == "ok", outcome.get("error")
    result = outcome["result"]
    return [result["cls_obs"], *result["cls_exp"], result["clsb_obs"], result["clb_obs"]]


def _run(spec: dict, points: list[dict], options: InferenceOptions) -> list[dict[str, Any]]:
    ref = WorkspaceRef(digest(spec))
    worker_cache().install(ref.digest, spec)
    done = run_points(ref, points, ["hypotest"], options.to_dict())
    return [d["outcomes"]["hypotest"] for d in done]


def _demo_points(demo: Path, names: list[str]) -> tuple[dict, list[dict]]:
    patchset = load(demo / "patchset.json")
    points = [
        {"name": p["metadata"]["name"], "digest": digest(p["patch"]), "operations": p["patch"]}
        for p in patchset["patches"]
        if p["metadata"]["name"] in names
    ]
    return load(demo / "BkgOnly.json"), points


def _lockstep_fits(outcome: dict[str, Any]) -> int:
    fits = outcome["diagnostics"]["fits"]
    return sum("lockstep" in fit["message"] for fit in fits)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="qtilde"),
        pytest.param({"test_stat": "q0"}, id="q0", marks=pytest.mark.slow),
        pytest.param({"test_stat": "q"}, id="q", marks=pytest.mark.slow),
        pytest.param(
            {"poi_value": 0.5, "par_bounds": {"mu_SIG": [0.0, 20.0]}},
            id="bounds",
            marks=pytest.mark.slow,
        ),
        pytest.param({"fixed_params": {"lumi": 1.0}}, id="fixed", marks=pytest.mark.slow),
        pytest.param(
            {"modifier_settings": {"normsys": {"interpcode": "code1"}}},
            id="code1",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_lockstep_equals_one_fit_at_a_time_and_plain_pyhf(
    demo: Path, options: dict[str, Any]
) -> None:
    spec, points = _demo_points(demo, NAMES)
    runs = {
        name: _run(spec, points, InferenceOptions(**options, **extra))
        for name, extra in {
            "lockstep": {"lockstep": True},
            "fast": {},
            "plain": {"fast": False, "tolerance": 1e-10},
        }.items()
    }
    # every fit of every test was made in lockstep (5 per test), none again one at a time
    assert [_lockstep_fits(o) for o in runs["lockstep"]] == [5] * len(points)
    assert all(_lockstep_fits(o) == 0 for o in runs["fast"])
    found = np.array([_numbers(o) for o in runs["lockstep"]])
    one_at_a_time = np.array([_numbers(o) for o in runs["fast"]])
    plain = np.array([_numbers(o) for o in runs["plain"]])
    # the minima agree within the fits' tolerance (pyhf's at 1e-10 is the reference), and
    # no further from it than the one-at-a-time fits' (q0 of a point without excess: 0.5
    # exactly in lockstep, 0.4998 one at a time, the free and held fits 1e-7 apart)
    assert found == pytest.approx(plain, rel=1e-5, abs=1e-7)
    assert np.max(np.abs(found - plain)) <= max(np.max(np.abs(one_at_a_time - plain)), 1e-7)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_every_modifier_type_in_lockstep_equals_plain_pyhf() -> None:
    # two points of one structure: the signal's rates differ, everything else is shared
    specs = [
        workspace_with_every_modifier(
            signal, [30.0, 22.0, 12.0], [36.0, 19.0, 16.0], channels=2, shapefactor=True
        )
        for signal in ([4.0, 6.0, 2.0], [1.0, 9.0, 5.0])
    ]
    # the same background-only workspace, each signal as a patch
    base = specs[0]
    points = []
    for index, spec in enumerate(specs):
        operations = [
            {"op": "replace", "path": f"/channels/{c}/samples/0", "value": channel["samples"][0]}
            for c, channel in enumerate(spec["channels"])
        ]
        points.append({"name": f"p{index}", "digest": digest(operations), "operations": operations})
    found = [_numbers(o) for o in _run(base, points, InferenceOptions(lockstep=True))]
    for spec, numbers in zip(specs, found, strict=True):
        model = pyhf.Workspace(spec).model()
        data = pyhf.Workspace(spec).data(model)
        with pyhf_tolerance(1e-10):
            obs, tails, exp = pyhf.infer.hypotest(
                1.0, data, model, return_tail_probs=True, return_expected_set=True
            )
        expected = [float(obs), *map(float, exp), float(tails[0]), float(tails[1])]
        assert numbers == pytest.approx(expected, rel=1e-5, abs=1e-7)


@contextmanager
def pyhf_tolerance(tolerance: float) -> Iterator[None]:
    """pyhf's numpy backend with its scipy optimizer at ``tolerance``, restored after."""
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=tolerance))
    try:
        yield
    finally:
        pyhf.set_backend(*previous)


@pytest.mark.slow  # (lockstep scans on a pool run by default: the worker-count test)
def test_a_scan_in_lockstep_equals_the_default_scan(demo: Path, tmp_path: Path) -> None:
    default = fitaas.scan(demo, patches=NAMES, compute=fitaas.Compute(workers=1))
    with LocalEngine(2) as engine:
        lockstep = fitaas.scan(
            demo, patches=NAMES, compute=engine, options=InferenceOptions(lockstep=True)
        )
    assert [p.patch for p in lockstep] == [p.patch for p in default]
    assert all(p.status == "ok" for p in lockstep)
    for a, b in zip(lockstep, default, strict=True):
        assert [a.hypotest.cls_obs, *a.hypotest.cls_exp] == pytest.approx(
            [b.hypotest.cls_obs, *b.hypotest.cls_exp], rel=1e-4, abs=1e-6
        )
    # the command line: --lockstep gives the library's numbers
    out = tmp_path / "lockstep.json"
    chosen = [arg for name in NAMES for arg in ("-p", name)]
    done = run_cli("scan", str(demo), *chosen, "--lockstep", "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    written = {r["patch"]: r["cls_obs"] for r in load(out)["results"]}
    assert written == {p.patch: pytest.approx(p.hypotest.cls_obs, rel=1e-9) for p in lockstep}


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_lockstep_results_are_identical_for_every_worker_count(demo: Path) -> None:
    assert LocalEngine(4).batch_size_for(125) == 1  # one point per task, one at a time
    assert LocalEngine(4).batch_size_for(125, lockstep=True) == 32  # whatever the workers
    assert LocalEngine(4, batch_size=5).batch_size_for(40, lockstep=True) == 5  # as asked
    names = [*NAMES, "demo_900_200", "demo_400_0", "demo_1000_0"]
    lockstep = InferenceOptions(lockstep=True)
    runs = []
    for workers in (1, 2):
        with LocalEngine(workers) as engine:
            runs.append(fitaas.scan(demo, patches=names, compute=engine, options=lockstep))
    numbers = [[(p.patch, p.hypotest, p.status) for p in run] for run in runs]
    assert numbers[0] == numbers[1]


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_gpu_task_on_a_cpu_worker_fails_naming_the_fix(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FITAAS_DEVICE", "cpu")  # (recorded: restored after the test)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    with pytest.raises(fitaas.InputError, match="device"):
        fitaas.Compute(device="tpu")
    with pytest.raises(fitaas.InputError, match="not an inference option"):
        InferenceOptions.from_dict({"device": "gpu"})
    # a worker started for the CPU, by an engine that says its workers are on the GPU (a
    # cluster's workers without FITAAS_DEVICE in their environment)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        engine = ExecutorEngine(pool, retries=0)
        engine.device = "gpu"
        (point,) = fitaas.scan(demo, patches=NAMES[:1], compute=engine)
    assert point.status == "failed" and "FITAAS_DEVICE=gpu" in (point.error or "")
    # workers started for the GPU on a machine whose jax has none (this one)
    gpu = fitaas.Compute(workers=1, device="gpu")
    result = fitaas.scan(demo, patches=NAMES[:1], compute=gpu)
    (point,) = result
    assert point.status == "failed" and "jax finds no GPU" in (point.error or "")
    assert result.options.lockstep  # the GPU always fits in lockstep


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_device_gpu_reaches_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # checked by the environment the workers get, not by a GPU
    import os

    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("FITAAS_DEVICE", "cpu")  # (recorded: restored after the test)
    assert engine_from_settings({"engine": "local"}).device == "cpu"
    engine = engine_from_settings({"engine": "local", "device": "gpu"})
    assert engine.device == "gpu" and engine.workers == 1  # one process per GPU
    with engine:
        report = engine.executor.submit(device_report).result()
    assert report["FITAAS_DEVICE"] == "gpu"
    assert report["JAX_PLATFORMS"] == ""  # not pinned to the CPU: jax picks the GPU
    assert report["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # never the whole card
    assert os.environ["FITAAS_DEVICE"] == "cpu"  # this process's own are left alone
    # Parsl's and Dask's workers inherit this process's environment
    pytest.importorskip("dask.distributed")
    assert engine_from_settings({"engine": "dask", "device": "gpu"}).device == "gpu"
    assert os.environ["FITAAS_DEVICE"] == "gpu" and "JAX_PLATFORMS" not in os.environ
    with pytest.raises(fitaas.InputError, match="device"):
        engine_from_settings({"engine": "local", "device": "tpu"})


def test_a_lockstep_that_breaks_leaves_every_fit_to_be_made_one_at_a_time(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fitaas.inference.lockstep as lockstep

    real = lockstep._hold
    held: list[int] = []

    def hold_then_break(*args: Any) -> None:  # a failure after some minima were held
        real(*args)
        held.append(1)
        raise MemoryError("out of device memory")

    monkeypatch.setattr(lockstep, "_hold", hold_then_break)
    spec, points = _demo_points(demo, NAMES)
    outcomes = _run(spec, points, InferenceOptions(lockstep=True))
    assert held  # (the lockstep ran, and broke)
    assert all(_lockstep_fits(o) == 0 for o in outcomes)  # nothing half-held was used
    one_at_a_time = _run(spec, points, InferenceOptions())
    assert [_numbers(o) for o in outcomes] == [_numbers(o) for o in one_at_a_time]


def test_held_minima_answer_only_fits_they_are_as_precise_as(demo: Path) -> None:
    spec, points = _demo_points(demo, NAMES[:3])
    # asked at 1e-10: the lockstep fits at 1e-10 too, and its minima are used
    tight = _run(spec, points, InferenceOptions(lockstep=True, tolerance=1e-10))
    assert [_lockstep_fits(o) for o in tight] == [5, 5, 5]
    plain = _run(spec, points, InferenceOptions(fast=False, tolerance=1e-10))
    assert np.array([_numbers(o) for o in tight]) == pytest.approx(
        np.array([_numbers(o) for o in plain]), rel=1e-6, abs=1e-8
    )
    # a minimum found at 1e-8 does not answer a fit asked at 1e-10 (the fit checks' retry)
    from fitaas.fast.structure_cache import HeldFit, StructureCache, held_key

    cache, model = StructureCache(), object()
    key = held_key([1.0], [(0, 1.0)], [[0.0, 2.0]])
    fit = HeldFit(np.zeros(1), 1.0, np.zeros(1), 3, 1e-8)
    cache.hold(model, None, key, fit)  # type: ignore[arg-type]
    assert cache.held(model, key, None) is not None
    assert cache.held(model, key, 1e-6) is not None
    assert cache.held(model, key, 1e-10) is None
