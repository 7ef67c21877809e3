"""Scale-out contracts: what workers receive at start, validation remembered, the device."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import pyhf
import pytest

import fitaas
from conftest import load
from fitaas import InferenceOptions
from fitaas.engines import LocalEngine
from fitaas.fast.device import configure_device, device_report
from fitaas.inputs.pallets import digest, load_pallet
from fitaas.worker.tasks import run_points


def _wide_workspace(bins: int) -> dict[str, Any]:
    """A valid one-channel workspace with ``bins`` bins (size grows with it)."""
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": [1.0] * bins,
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "background",
                        "data": [10.0 + (i % 7) for i in range(bins)],
                        "modifiers": [
                            {"name": "bkg", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [11.0] * bins}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty fitaas cache folder for this test (the compiled code stays shared)."""
    from fitaas.caches import cache_folder

    monkeypatch.setenv("FITAAS_JAX_CACHE", str(cache_folder("jax")))
    monkeypatch.setenv("FITAAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("bins", [2, 20_000])
def test_what_a_worker_receives_at_start_does_not_grow_with_the_workspace(
    cache: Path, bins: int
) -> None:
    # The parent writes each spawned worker's start-up data into a pipe and waits until
    # the worker has imported fitaas and read it: a workspace there started workers one
    # after another. Workers now load the workspace from its file, by digest.
    spec = _wide_workspace(bins)
    with LocalEngine(1) as engine:
        ref = engine.install(digest(spec), spec)
        pool = engine.executor
        assert len(pickle.dumps(pool._initargs)) < 1000
        pool.submit(time.sleep, 0).result()  # the worker has started (and loaded the file)
        assert ref.path is not None and Path(ref.path).is_file()
        Path(ref.path).unlink()  # so the task below is served by what the worker loaded
        options = InferenceOptions(fast=False).to_dict()
        point = {"name": None, "operations": []}
        (outcome,) = pool.submit(run_points, ref, [point], ("fit",), options).result()
    assert outcome["outcomes"]["fit"]["status"] == "ok", outcome
    if bins > 2:
        assert len(pickle.dumps(spec)) > 500_000


def test_a_workspace_is_validated_once_per_digest(
    cache: Path, demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[str] = []
    real = pyhf.schema.validate

    def counting(spec: Any, schema_name: str, *args: Any, **kwargs: Any) -> Any:
        validated.append(schema_name)
        return real(spec, schema_name, *args, **kwargs)

    monkeypatch.setattr(pyhf.schema, "validate", counting)
    first = load_pallet(demo)
    again = load_pallet(demo)
    assert validated.count("workspace.json") == 1
    assert validated.count("patchset.json") == 1  # (the second load: the kept pallet)
    assert again.workspace_digest == first.workspace_digest
    assert again.points == first.points
    # another workspace is validated, and a workspace that fails is never remembered
    changed = load(demo / "BkgOnly.json")
    changed["observations"][0]["data"][0] += 1
    load_pallet(changed)
    assert validated.count("workspace.json") == 2
    broken = load(demo / "BkgOnly.json")
    broken["channels"][0]["samples"][0]["data"] = "not a list"
    for _ in range(2):
        with pytest.raises(fitaas.InputError, match="schema"):
            load_pallet(broken)
    assert validated.count("workspace.json") == 4


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_jax_stays_on_the_cpu_unless_a_gpu_is_asked_for(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ: dict[str, str] = {"JAX_PLATFORMS": "cuda"}
    configure_device(environ)
    assert environ == {"JAX_PLATFORMS": "cpu", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    environ = {"FITAAS_DEVICE": "gpu", "XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    configure_device(environ)
    assert "JAX_PLATFORMS" not in environ  # jax chooses: the GPU when it has one
    assert environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"  # the user's choice is kept
    # what a scan's workers get, whatever the parent's environment says
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.delenv("FITAAS_DEVICE", raising=False)
    with LocalEngine(1) as engine:
        fitaas.scan(demo, patches=["demo_700_0"], compute=engine)
        report = engine.executor.submit(device_report).result()
    assert report["JAX_PLATFORMS"] == "cpu"
    assert report["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert report["platform"] == "cpu"


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_results_are_identical_for_every_worker_count(demo: Path) -> None:
    names = ["demo_300_0", "demo_700_200", "demo_1000_400", "demo_800_0", "demo_500_200"]
    runs = [fitaas.scan(demo, patches=names, compute=fitaas.Compute(workers=n)) for n in (1, 2)]
    with LocalEngine(2, batch_size=3) as engine:
        runs.append(fitaas.scan(demo, patches=names, compute=engine))
    numbers = [[(p.patch, p.hypotest, p.status) for p in run] for run in runs]
    assert numbers[0] == numbers[1] == numbers[2]


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_without_a_writable_cache_the_workspace_travels_with_the_tasks(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fitaas.caches import cache_folder

    monkeypatch.setenv("FITAAS_JAX_CACHE", str(cache_folder("jax")))
    monkeypatch.setenv("FITAAS_CACHE", "/dev/null/not-a-folder")
    (point,) = fitaas.scan(demo, patches=["demo_700_0"], compute=fitaas.Compute(workers=1))
    assert point.status == "ok"


def test_a_scans_plan_leaves_jax_to_the_workers(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    # The main process plans (checks, keys) while the workers start: importing jax there
    # took 0.6 s of the cores the workers start on.
    script = (
        "import sys\n"
        "from fitaas import InferenceOptions\n"
        "from fitaas.inputs.pallets import load_pallet\n"
        "from fitaas.jobs.scanning import _plan\n"
        f"plan = _plan(load_pallet({str(demo)!r}), None, InferenceOptions(), ('hypotest',))\n"
        "print(len(plan.keys), 'jax' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["20", "False"]
    # without jax installed, asking for the fast path is still one clear error up front
    import importlib.util

    from fitaas.errors import InputError
    from fitaas.inference.backend import checking_backend

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jax" else found(name, *a)
    )
    with (
        pytest.raises(InputError, match=r"pip install 'fitaas\[jax\]'"),
        checking_backend(InferenceOptions(fast=True)),
    ):
        pass
    with checking_backend(InferenceOptions(fast=False)):  # the plain path needs no jax
        assert pyhf.get_backend()[0].name == "numpy"
