"""The service as a site admin and its users meet it: the admin CLI, `fitaas submit`,
`fitaas jobs`, `fitaas job`, and the Python client, against a real `fitaas serve`."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

import fitaas
from conftest import FITAAS
from fitaas import InferenceOptions
from service_process import running


def cli(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FITAAS_TOKEN"}
    if token is not None:
        env["FITAAS_TOKEN"] = token
    return subprocess.run(
        [str(FITAAS), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


def admin(*args: str, cwd: Path) -> str:
    done = cli("admin", "--database", "site.sqlite", *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_admin_cli_users_tokens_and_endpoints(tmp_path: Path, demo: Path) -> None:
    alice = admin("user", "add", "alice", "--group", "atlas", cwd=tmp_path)
    assert alice.startswith("fitaas_") and len(alice) > 40  # >= 128 random bits
    bob = admin("user", "add", "bob", cwd=tmp_path)
    assert "alice\tatlas" in admin("user", "list", cwd=tmp_path)
    assert admin("endpoint", "list", cwd=tmp_path) == "local\tlocal\teveryone"
    endpoint_file = tmp_path / "site.toml"
    endpoint_file.write_text('engine = "local"\nworkers = 1\n')
    admin(
        "endpoint", "add", "small", "--engine", "local", "--config", str(endpoint_file),
        "--group", "atlas", cwd=tmp_path,
    )  # fmt: skip
    assert "small\tlocal\tatlas" in admin("endpoint", "list", cwd=tmp_path)
    refused = cli("admin", "--database", "site.sqlite", "user", "add", "alice", cwd=tmp_path)
    assert refused.returncode == 2 and "exists" in refused.stderr
    refused = cli(
        "admin", "--database", "site.sqlite", "endpoint", "add", "x", "--engine", "dask",
        "--group", "nogroup", cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2 and "no group named 'nogroup'" in refused.stderr
    with running("sqlite:///site.sqlite", tmp_path) as service:
        url = ["--service", service.url]
        submitted = cli(
            "submit", *url, str(demo / "BkgOnly.json"), str(demo / "patchset.json"),
            "--patch", "demo_700_0", "--patch", "demo_800_200", "--endpoint", "small",
            "-o", "out.json", cwd=tmp_path, token=alice,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        results = json.loads((tmp_path / "out.json").read_text())
        assert [r["patch"] for r in results["results"]] == ["demo_700_0", "demo_800_200"]
        local = fitaas.scan(demo, patches=["demo_700_0", "demo_800_200"])
        assert [r["cls_obs"] for r in results["results"]] == [p.cls_obs for p in local]
        listed = cli("jobs", *url, cwd=tmp_path, token=alice)
        assert job_id in listed.stdout and "done" in listed.stdout
        header = listed.stdout.splitlines()[0].split()
        assert header[:3] == ["job", "state", "done"] and "owner" in header
        # submit spells the options as scan does
        other = cli(
            "submit", *url, str(demo / "BkgOnly.json"), str(demo / "patchset.json"),
            "--patch", "demo_700_0", "--poi-value", "2", "--endpoint", "small",
            "-o", "mu2.json", cwd=tmp_path, token=alice,
        )  # fmt: skip
        assert other.returncode == 0, other.stderr
        mu2 = json.loads((tmp_path / "mu2.json").read_text())["results"]
        want = fitaas.scan(demo, patches=["demo_700_0"], options=InferenceOptions(poi_value=2))
        assert [r["cls_obs"] for r in mu2] == [p.cls_obs for p in want]
        assert mu2[0]["cls_obs"] != results["results"][0]["cls_obs"]
        shown = cli("job", *url, job_id, "-o", "again.csv", cwd=tmp_path, token=alice)
        assert shown.returncode == 0 and "2/2" in shown.stdout
        assert (tmp_path / "again.csv").read_text().count("\n") == 3
        # data on stdout, words on stderr: the results piped to a file are valid JSON
        piped = cli("job", *url, job_id, "--results", cwd=tmp_path, token=alice)
        assert piped.returncode == 0 and "2/2" in piped.stderr, piped.stderr
        piped_results = json.loads(piped.stdout)["results"]
        assert [r["patch"] for r in piped_results] == ["demo_700_0", "demo_800_200"]
        # the short id the page and `fitaas jobs` show is enough
        short = cli("job", *url, job_id[:8], cwd=tmp_path, token=alice)
        assert short.returncode == 0 and "2/2" in short.stdout, short.stderr
        # bob may not use the endpoint nor see alice's job
        denied = cli(
            "submit", *url, str(demo / "BkgOnly.json"), "--endpoint", "small",
            cwd=tmp_path, token=bob,
        )  # fmt: skip
        assert denied.returncode == 2 and "403" in denied.stderr
        hidden = cli("job", *url, job_id, cwd=tmp_path, token=bob)
        assert hidden.returncode == 2 and "404" in hidden.stderr
        hidden = cli("job", *url, job_id[:8], cwd=tmp_path, token=bob)  # nor by its prefix
        assert hidden.returncode == 2 and "404" in hidden.stderr
        # rotating a token: the old one stops working at once
        new = admin("token", "rotate", "alice", cwd=tmp_path)
        old = cli("jobs", *url, cwd=tmp_path, token=alice)
        assert old.returncode == 2 and "401" in old.stderr
        assert job_id in cli("jobs", *url, cwd=tmp_path, token=new).stdout
        admin("user", "remove", "bob", cwd=tmp_path)
        gone = cli("jobs", *url, cwd=tmp_path, token=bob)
        assert gone.returncode == 2 and "401" in gone.stderr


@pytest.mark.slow
def test_python_client_on_a_published_pallet(tmp_path: Path, workspaces: Path) -> None:
    folder = workspaces / "sbottom"
    patches = ["sbottom_1000_131_1", "sbottom_700_550_60", "sbottom_900_630_500"]
    token = admin("user", "add", "alice", cwd=tmp_path)
    with (
        running("sqlite:///site.sqlite", tmp_path) as service,
        fitaas.Client(service.url, token) as client,
    ):
        job = client.submit(folder, patches=patches, region="RegionB")
        assert job.total == 3
        job = client.wait(job, progress=False, timeout=600)
        assert job.state == "done" and job.failed == 0
        results = client.results(job)
        with pytest.raises(fitaas.FitaasError, match="404"):
            client.results("0" * 32)
    local = fitaas.scan(folder, region="RegionB", patches=patches)
    assert isinstance(results, fitaas.ScanResult)
    assert [r.patch for r in results] == patches
    for got, want in zip(results, local, strict=True):
        assert got.status == want.status and got.hypotest is not None
        assert got.cls_obs == want.cls_obs and got.hypotest.cls_exp == want.hypotest.cls_exp


@pytest.mark.slow
def test_region_b_from_the_cli_and_python_equals_fitaas_scan(
    tmp_path: Path, workspaces: Path
) -> None:
    """The issue's acceptance: user A submits all of sbottom RegionB from the CLI and from
    Python; both equal `fitaas scan`; user B sees nothing."""
    folder = workspaces / "sbottom" / "RegionB"
    alice = admin("user", "add", "alice", cwd=tmp_path)
    bob = admin("user", "add", "bob", cwd=tmp_path)
    with running("sqlite:///site.sqlite", tmp_path) as service:
        submitted = cli(
            "submit", "--service", service.url, str(folder / "BkgOnly.json"),
            str(folder / "patchset.json.gz"), "-o", "cli.json", cwd=tmp_path, token=alice,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        with fitaas.Client(service.url, alice) as client:
            job = client.wait(client.submit(folder), progress=False)
            from_python = client.results_json(job)
            typed = client.results(job)
        with fitaas.Client(service.url, bob) as client:
            assert client.jobs() == []
    scanned = fitaas.scan(folder, store=tmp_path / "scan.sqlite")
    from_cli = json.loads((tmp_path / "cli.json").read_text())
    assert isinstance(typed, fitaas.ScanResult) and [p.patch for p in typed] == [
        p.patch for p in scanned
    ]
    for results in (from_cli, from_python):
        assert len(results["results"]) == len(scanned) == 218
        for got, want in zip(results["results"], scanned, strict=True):
            assert (got["patch"], got["status"]) == (want.patch, want.status)
            if want.cls_obs is not None and math.isnan(want.cls_obs):
                assert got["cls_obs"] is None  # strict JSON over HTTP: NaN travels as null
            else:
                assert got["cls_obs"] == want.cls_obs
