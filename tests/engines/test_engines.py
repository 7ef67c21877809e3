"""Engines: Parsl HTEX, Dask LocalCluster, a real Slurm cluster and Globus Compute up to
the cloud boundary give the results of the local engine; lost workers cost nothing."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import fitaas
import slurm_cluster
from conftest import load, run_cli
from fitaas.engines import EngineError, LocalEngine
from fitaas.engines.dask import DaskEngine
from fitaas.engines.endpoint import engine_from_settings
from fitaas.engines.globus import GlobusEngine, check_environment
from fitaas.engines.parsl import ParslEngine
from globus_service import CloudStandIn

DEMO_POINTS = ["demo_500_200", "demo_600_200", "demo_700_0", "demo_800_400", "demo_1000_0"]
SBOTTOM_POINTS = ["sbottom_1000_131_1", "sbottom_700_550_60"]
ENDPOINT_ID = "2ad9d1d5-d1b4-4a3c-8a9e-0f2f3a1b2c3d"


def _values(result: fitaas.ScanResult) -> list[tuple[Any, ...]]:
    return [(p.patch, p.status, p.cls_obs, p.hypotest and p.hypotest.cls_exp) for p in result]


@pytest.fixture(scope="module")
def reference(demo: Path) -> list[tuple[Any, ...]]:
    """The local engine's results on the demo points."""
    return _values(fitaas.scan(demo, patches=DEMO_POINTS, compute=fitaas.Compute(workers=2)))


@pytest.fixture(scope="module")
def sbottom(workspaces: Path) -> tuple[dict, dict, list[tuple[Any, ...]]]:
    folder = workspaces / "sbottom" / "RegionA"
    ws, ps = load(folder / "BkgOnly.json"), load(folder / "patchset.json.gz")
    return (
        ws,
        ps,
        _values(fitaas.scan(ws, ps, patches=SBOTTOM_POINTS, compute=fitaas.Compute(workers=2))),
    )


@pytest.mark.slow  # (keeps the default run under 10 minutes: pytest -m slow)
def test_parsl_htex_equals_local(demo: Path, reference: list, sbottom: tuple) -> None:
    with ParslEngine({"provider": "local", "workers_per_node": 2}) as engine:
        assert _values(fitaas.scan(demo, patches=DEMO_POINTS, compute=engine)) == reference
        ws, ps, expected = sbottom
        assert _values(fitaas.scan(ws, ps, patches=SBOTTOM_POINTS, compute=engine)) == expected


def test_dask_localcluster_equals_local(demo: Path, reference: list, sbottom: tuple) -> None:
    with DaskEngine({"n_workers": 2}) as engine:
        assert _values(fitaas.scan(demo, patches=DEMO_POINTS, compute=engine)) == reference
        ws, ps, expected = sbottom
        assert _values(fitaas.scan(ws, ps, patches=SBOTTOM_POINTS, compute=engine)) == expected


@pytest.mark.slow
def test_pyhf_examples_on_every_engine(workspaces: Path) -> None:
    folder = workspaces / "pyhf-examples"
    ws, ps = load(folder / "example_bkgonly.json"), load(folder / "example_patchset.json")
    expected = _values(fitaas.scan(ws, ps, compute=fitaas.Compute(workers=1)))
    for name in ("parsl", "dask"):
        assert _values(fitaas.scan(ws, ps, compute=fitaas.Compute(name, workers=1))) == expected, (
            name
        )


@pytest.mark.slow
def test_shared_path_carries_the_workspace(demo: Path, reference: list, tmp_path: Path) -> None:
    settings = {"engine": "parsl", "shared_path": str(tmp_path), "parsl": {"workers_per_node": 2}}
    with engine_from_settings(settings) as engine:
        assert _values(fitaas.scan(demo, patches=DEMO_POINTS, compute=engine)) == reference
    assert len(list(tmp_path.glob("*.json.gz"))) == 1


def _kill_a_worker_on_first_result(find: Any) -> tuple[list[int], Any]:
    killed: list[int] = []

    def progress(state: fitaas.ScanProgress) -> None:
        if state.done >= 1 and not killed:
            victims = find()
            assert victims, "no worker process found to kill"
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])

    return killed, progress


def _worker_pids(engine: Any) -> list[int]:
    """The processes that run tasks, found the way an administrator would."""
    if isinstance(engine, LocalEngine):
        return [p.pid for p in engine.executor._processes.values() if p.is_alive()]
    if isinstance(engine, DaskEngine):
        return list(engine._client.run(os.getpid).values())
    # Parsl: the workers are spawned children of the process_worker_pool manager. Kill one
    # in the middle of a task, as the OOM killer or a preempted node would: an idle Parsl
    # worker waits in the pool's multiprocessing queue holding its read lock, and killing
    # it there leaves the lock taken for every other worker (a Parsl hazard, not a lost
    # task), so the victim is a worker seen using CPU.
    managers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "process_worker_pool" in " ".join(p.info["cmdline"] or [])
    ]
    children = [c for m in managers for c in m.children() if "spawn_main" in " ".join(c.cmdline())]
    deadline = time.monotonic() + 30
    while children and time.monotonic() < deadline:
        before = {c.pid: _cpu_seconds(c) for c in children}
        time.sleep(0.05)
        busy = [c.pid for c in children if _cpu_seconds(c) - before[c.pid] > 0.02]
        if busy:
            return busy[:1]
    return []


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        return sum(process.cpu_times()[:2])
    except psutil.NoSuchProcess:
        return 0.0


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize(
    "engine_name",
    [
        "local",
        pytest.param("parsl", marks=pytest.mark.slow),
        pytest.param("dask", marks=pytest.mark.slow),
    ],
)
def test_a_dead_worker_loses_nothing(demo: Path, tmp_path: Path, engine_name: str) -> None:
    engines = {
        "local": lambda: LocalEngine(2),
        "parsl": lambda: ParslEngine({"workers_per_node": 2}),
        "dask": lambda: DaskEngine({"n_workers": 2}),
    }
    store = tmp_path / "store.sqlite"
    with engines[engine_name]() as engine:
        killed, progress = _kill_a_worker_on_first_result(lambda: _worker_pids(engine))
        result = fitaas.scan(demo, compute=engine, store=store, progress=progress)
    assert killed
    assert result.counts() == {"ok": 20}
    assert result.computed == 20
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM results").fetchone() == (
            20,
            20,
        )
    expected = fitaas.scan(demo, compute=fitaas.Compute(workers=2))
    assert _values(result) == _values(expected)


@pytest.mark.slow
def test_an_unreachable_dask_scheduler_is_one_clear_error() -> None:
    unreachable = r"cannot reach the Dask scheduler \(tcp://127.0.0.1:1\)"
    with (
        pytest.raises(EngineError, match=unreachable),
        DaskEngine({"scheduler": "tcp://127.0.0.1:1"}),
    ):
        pass


def test_engine_start_failures_are_one_clear_error(demo: Path) -> None:
    proc = run_cli("scan", str(demo), "--engine", "dask", "--endpoint", "/nonexistent.toml")
    assert proc.returncode == 2 and "no such endpoint file" in proc.stderr


@pytest.mark.skipif(not slurm_cluster.available(), reason="slurm-wlm and munge not installed")
def test_slurm_endpoint_equals_local(
    demo: Path, reference: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = tmp_path / "slurm-site.toml"
    init = run_cli("endpoint", "init", "--engine", "parsl", "--provider", "slurm", str(endpoint))
    assert init.returncode == 0, init.stderr
    text = endpoint.read_text()
    assert 'launcher = "srun"' in text  # workers start through srun, as on a real site
    text = text.replace('worker_init = "source /path/to/venv/bin/activate"\n', "")
    # two blocks (pilot jobs) of one worker each, as one pool: workspaces and compiled code
    # through the shared folder
    text = text.replace("workers_per_node = 0", "workers_per_node = 1")
    text = text.replace("init_blocks = 1", "init_blocks = 2").replace(
        "max_blocks = 1", "max_blocks = 2"
    )
    shared = tmp_path / "shared"
    text = text.replace('shared_path = ""', f'shared_path = "{shared}"')
    endpoint.write_text(text)
    with slurm_cluster.slurm_cluster(tmp_path / "slurm") as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        checked = run_cli("endpoint", "check", str(endpoint))
        assert checked.returncode == 0 and "SlurmProvider" in checked.stdout, checked.stderr
        out = tmp_path / "slurm.json"
        args = ["--patch", *" --patch ".join(DEMO_POINTS).split(" ")]
        proc = run_cli("scan", str(demo), *args, "--endpoint", str(endpoint), "-o", str(out), "-q")
        assert proc.returncode == 0, proc.stderr
    scanned = fitaas.read_results(out)
    assert _values(scanned) == reference
    log = (tmp_path / "slurm" / "slurmctld.log").read_text()
    assert len(set(re.findall(r"Allocate (JobId=\d+)", log))) == 2, log[-2000:]  # two blocks
    assert list(shared.glob("*.json.gz"))  # the workspace, written once
    assert any((shared / "jax").iterdir())  # compiled code the blocks share


# Globus Compute: real SDK serialization, a stand-in for the cloud service.


def _globus(**settings: Any) -> tuple[GlobusEngine, list[CloudStandIn]]:
    made: list[CloudStandIn] = []

    def factory(**kwargs: Any) -> CloudStandIn:
        made.append(CloudStandIn(**kwargs))
        return made[-1]

    engine = GlobusEngine({"endpoint_id": ENDPOINT_ID}, executor_factory=factory, **settings)
    return engine, made


def test_globus_engine_through_the_service_boundary(demo: Path, reference: list) -> None:
    engine, made = _globus()
    with engine:
        assert engine.environment["fitaas"] == fitaas.__version__
        result = fitaas.scan(demo, patches=DEMO_POINTS, compute=engine)
    assert _values(result) == reference
    # the probe, then the tasks; workers without the workspace asked for it once per task
    assert len(made[0].submissions) >= 1 + len(DEMO_POINTS)
    assert max(made[0].submissions) < 10 * 1000 * 1000
    # the SDK's requests (batch_size tasks each) stay under the 10 MB limit too
    assert 1 <= made[0].batch_size <= 128
    assert made[0].batch_size * max(made[0].submissions) < 10 * 1000 * 1000


@pytest.mark.slow
def test_toys_on_dask_and_globus_equal_local_toys(demo: Path) -> None:
    # A block's toys depend on the seed and the block, not on where it ran.
    options = fitaas.InferenceOptions(calctype="toybased", ntoys=100, seed=8, toy_block_size=100)
    points = DEMO_POINTS[:2]

    def toys(result: fitaas.ScanResult) -> list[Any]:
        return [(p.cls_obs, p.hypotest and p.hypotest.toys) for p in result]

    local = toys(
        fitaas.scan(demo, patches=points, options=options, compute=fitaas.Compute(workers=2))
    )
    assert all(summary is not None for _, summary in local)
    with DaskEngine({"n_workers": 2}) as engine:
        assert toys(fitaas.scan(demo, patches=points, options=options, compute=engine)) == local
    engine, made = _globus()
    with engine:
        assert toys(fitaas.scan(demo, patches=points, options=options, compute=engine)) == local
    assert len(made[0].submissions) >= 1 + 2 * len(points)  # the probe, then the blocks


@pytest.mark.slow  # (keeps the default run under 10 minutes: pytest -m slow)
def test_globus_limits_are_checked_before_submitting(demo: Path, tmp_path: Path) -> None:
    class Tight(GlobusEngine):
        max_submission_bytes = 1000  # the demo workspace is 530 B compressed, a patch ~670 B

    made: list[CloudStandIn] = []

    def factory(**kwargs: Any) -> CloudStandIn:
        made.append(CloudStandIn(**kwargs))
        return made[-1]

    too_large = r"too large to send with tasks.*set shared_path"
    with (
        Tight({"endpoint_id": ENDPOINT_ID}, executor_factory=factory) as engine,
        pytest.raises(EngineError, match=too_large),
    ):
        fitaas.scan(demo, compute=engine)
    # through a shared folder, only the patches travel: tasks are split to fit the limit
    shared = {"shared_path": str(tmp_path)}
    with Tight(
        {"endpoint_id": ENDPOINT_ID}, executor_factory=factory, batch_size=20, **shared
    ) as engine:
        result = fitaas.scan(demo, compute=engine)
    assert result.counts() == {"ok": 20}
    assert len(made[-1].submissions) == 1 + 20  # the probe, then one point per submission


def test_globus_environment_and_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    here = {"python": "3.11.7", "dill": "0.3.9", "pyhf": "0.7.6", "fitaas": fitaas.__version__}
    from fitaas.worker.process import worker_environment

    check_environment(worker_environment())
    with pytest.raises(EngineError, match=r"Python 3.9.1 there"):
        check_environment({**worker_environment(), "python": "3.9.1"})
    with pytest.raises(EngineError, match=r"dill 0.3.5 there"):
        check_environment({**worker_environment(), "dill": "0.3.5"})
    assert here["fitaas"] == fitaas.__version__
    monkeypatch.setenv("GLOBUS_COMPUTE_USER_DIR", str(tmp_path))
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_ID", raising=False)
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_SECRET", raising=False)
    with pytest.raises(EngineError, match="no Globus credentials: set GLOBUS_COMPUTE_CLIENT_ID"):
        GlobusEngine({"endpoint_id": ENDPOINT_ID}).start()
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_ID", "some-client")
    with pytest.raises(EngineError, match="GLOBUS_COMPUTE_CLIENT_SECRET is not set"):
        GlobusEngine({"endpoint_id": ENDPOINT_ID}).start()


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_lost_globus_tasks_are_resent(demo: Path) -> None:
    engine, made = _globus()
    with engine:
        stand_in = made[0]
        original = stand_in.submit
        lost = threading.Event()

        def flaky(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            future = original(fn, *args, **kwargs)
            if args and not lost.is_set():  # the first task: its worker is lost
                lost.set()
                from concurrent.futures import Future

                from globus_compute_sdk.errors import TaskExecutionFailed

                failed: Future[Any] = Future()
                failed.set_exception(TaskExecutionFailed("parsl.executors.errors.WorkerLost: gone"))
                return failed
            return future

        stand_in.submit = flaky  # type: ignore[method-assign]
        result = fitaas.scan(demo, patches=DEMO_POINTS, compute=engine)
    assert lost.is_set() and result.counts() == {"ok": len(DEMO_POINTS)}


@pytest.mark.slow
def test_real_sdk_without_the_service_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SDK Executor, real (bogus) credentials, no Globus cloud: one clear error."""
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_ID", ENDPOINT_ID)
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_SECRET", "not-a-secret")
    engine = GlobusEngine({"endpoint_id": ENDPOINT_ID}, probe_timeout=60)
    with pytest.raises(
        EngineError, match=r"cannot reach the Globus Compute service|did not answer"
    ):
        engine.start()
