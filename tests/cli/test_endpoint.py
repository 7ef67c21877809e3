"""Endpoint files: templates, validation with clear errors, and what they build."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from fitaas import InputError
from fitaas.engines import EngineError
from fitaas.engines.endpoint import (
    check_endpoint,
    endpoint_template,
    engine_from_settings,
    load_endpoint,
    validate_settings,
)
from fitaas.engines.parsl import parsl_config

SLURM = 'engine = "parsl"\n[parsl]\nprovider = "slurm"\n[parsl.provider_options]\n'
TEMPLATES = [
    ("local", "local", "local"),
    ("parsl", "local", "local"),
    ("parsl", "slurm", "local"),
    ("parsl", "condor", "local"),
    ("parsl", "pbspro", "local"),
    ("parsl", "torque", "local"),
    ("dask", "local", "local"),
    ("dask", "local", "slurm"),
    ("dask", "local", "htcondor"),
    ("dask", "local", "pbs"),
    ("globus", "local", "local"),
]


@pytest.mark.parametrize(("engine", "provider", "cluster"), TEMPLATES)
def test_every_template_is_valid(tmp_path: Path, engine: str, provider: str, cluster: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(endpoint_template(engine, provider, cluster))
    settings = load_endpoint(path)
    assert settings["engine"] == engine
    assert engine in check_endpoint(path)
    assert type(engine_from_settings(settings)).__name__.lower().startswith(engine)


def test_cli_init_and_check(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fitaas.cli import cli

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["endpoint", *args], prog_name="fitaas")

    path = tmp_path / "expanse.toml"
    made = run("init", "--engine", "parsl", "--provider", "slurm", str(path))
    assert made.exit_code == 0, made.stderr
    assert "[parsl.provider_options]" in path.read_text()
    again = run("init", str(path))
    assert again.exit_code == 2 and "already exists" in again.stderr
    checked = run("check", str(path))
    assert checked.exit_code == 0, checked.stderr
    assert "SlurmProvider (SrunLauncher)" in checked.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('engine = "parsl"\nworkerz = 2\n', r"unknown key 'workerz' \(known: engine, workers"),
        ('engine = "parsl"\nretries = "2"\n', r"'retries' must be integer, got str '2'"),
        ('engine = "spark"\n', r"engine 'spark' is not one of local, parsl, dask, globus"),
        (
            'engine = "parsl"\n[parsl]\nprovider = "lsf"\n',
            r"provider 'lsf' is not one of local, slurm",
        ),
        ('engine = "parsl"\n[parsl]\nlauncher = "jsrun2"\n', r"launcher 'jsrun2' is not one of"),
        (
            SLURM + 'partitoin = "x"\n',
            r"\[parsl.provider_options\]: unknown key 'partitoin' \(accepted: .*partition",
        ),
        (
            SLURM + 'max_blocks = "4"\n',
            r"'max_blocks' must be int like its default 1, got str",
        ),
        ('engine = "dask"\n[dask]\ncluster = "sge"\n', r"cluster 'sge' is not one of local, slurm"),
        (
            'engine = "dask"\n[dask]\ncluster = "slurm"\n[dask.jobqueue]\ncorez = 4\n',
            r"\[dask.jobqueue\]: unknown key 'corez'",
        ),
        (
            'engine = "globus"\n[globus]\nendpoint_id = "abc"\n',
            r"endpoint_id must be the endpoint's UUID",
        ),
        ('engine = "parsl"\n[parsl\n', r"not valid TOML"),
    ],
)
def test_bad_endpoint_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_endpoint(path)
    from click.testing import CliRunner

    from fitaas.cli import cli

    checked = CliRunner().invoke(cli, ["endpoint", "check", str(path)], prog_name="fitaas")
    assert checked.exit_code == 2 and "Traceback" not in checked.output
    assert checked.stderr.strip().count("\n") == 0, checked.stderr  # one line


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from fitaas.engines.parsl import ParslEngine

    monkeypatch.setattr(ParslEngine, "extra_module", "no_such_module_fitaas")
    with pytest.raises(EngineError, match=r"needs its extra: pip install 'fitaas\[parsl\]'"):
        validate_settings({"engine": "parsl"})


def test_reference_site_settings_build_the_right_parsl_objects(tmp_path: Path) -> None:
    """The settings of the 2021 reference endpoints: Expanse (Slurm + srun + 1 GPU), Blue
    Waters (Torque + aprun), a Kubernetes cluster with up to 100 blocks."""
    expanse = parsl_config(
        {
            "provider": "slurm",
            "launcher": "srun",
            "workers_per_node": 1,
            "available_accelerators": 1,
            "provider_options": {
                "partition": "gpu-shared",
                "account": "abc123",
                "nodes_per_block": 1,
                "max_blocks": 4,
                "walltime": "02:00:00",
                "scheduler_options": "#SBATCH --gpus=1",
                "worker_init": "source ~/venv/bin/activate",
            },
        },
        str(tmp_path),
    )
    htex = expanse.executors[0]
    assert type(htex.provider).__name__ == "SlurmProvider"
    assert type(htex.provider.launcher).__name__ == "SrunLauncher"
    assert htex.provider.partition == "gpu-shared" and htex.provider.account == "abc123"
    assert htex.provider.max_blocks == 4 and htex.provider.walltime == "02:00:00"
    assert list(htex.available_accelerators) == ["0"]
    blue_waters = parsl_config(
        {"provider": "torque", "launcher": "aprun", "provider_options": {"queue": "normal"}},
        str(tmp_path),
    ).executors[0]
    assert type(blue_waters.provider.launcher).__name__ == "AprunLauncher"
    assert blue_waters.provider.queue == "normal"


def test_htcondor_submit_description_is_generated(tmp_path: Path) -> None:
    """No HTCondor pool can run here: check the submit description Parsl writes."""
    from parsl.providers.errors import ScaleOutFailed

    config = parsl_config(
        {
            "provider": "condor",
            "provider_options": {
                "requirements": 'OpSysAndVer == "AlmaLinux9"',
                "scheduler_options": '+JobFlavour = "longlunch"\n',
                "walltime": "01:30:00",
                "worker_init": "source /cvmfs/venv/bin/activate",
            },
        },
        str(tmp_path),
    )
    provider = config.executors[0].provider
    provider.script_dir = str(tmp_path)
    with pytest.raises(ScaleOutFailed):  # condor_submit is not installed here
        provider.submit("process_worker_pool.py", 1)
    (submit,) = tmp_path.glob("*.submit")
    text = submit.read_text()
    assert re.search(r'requirements\s+= OpSysAndVer == "AlmaLinux9"', text)
    assert '+JobFlavour = "longlunch"' in text
    (script,) = tmp_path.glob("*.script")
    assert "source /cvmfs/venv/bin/activate" in script.read_text()


def test_dask_jobqueue_htcondor_job_script() -> None:
    from fitaas.engines.dask import jobqueue_cluster

    cluster = jobqueue_cluster(
        "htcondor",
        {
            "cores": 2,
            "memory": "4GB",
            "disk": "1GB",
            "job_script_prologue": ["source /venv/bin/activate"],
        },
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "RequestCpus = MY.DaskWorkerCores" in script or "RequestCpus" in script
    assert "source /venv/bin/activate" in script


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "endpoints"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_endpoint_files(path: Path) -> None:
    settings = load_endpoint(path)
    if settings.get("parsl", {}).get("provider") == "kubernetes":
        import importlib.util

        if importlib.util.find_spec("kubernetes") is None:
            with pytest.raises(EngineError, match=r"pip install 'fitaas\[kubernetes\]'"):
                check_endpoint(path)
            return
        # with the client (the test extra has it) and no cluster here: valid, and said so
        # (it failed: "Failed to load both kube-config file and in-cluster configuration")
        checked = check_endpoint(path)
        assert "valid" in checked
        assert "KubernetesProvider" in checked or "no Kubernetes cluster configuration" in checked
        return
    assert "valid" in check_endpoint(path)


@pytest.mark.parametrize(
    "name",  # (slow: the engines' own tests run a scan on Parsl and Dask by default)
    [
        pytest.param("parsl-local.toml", marks=pytest.mark.slow),
        pytest.param("dask-local.toml", marks=pytest.mark.slow),
    ],
)
def test_example_local_endpoints_run_a_scan(demo: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out.json"
    proc = run_cli(
        "scan",
        str(demo),
        "--patch",
        "demo_700_0",
        "--endpoint",
        str(EXAMPLES / name),
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 point: 1 ok" in proc.stderr
