"""Sweeps, combinations and theory scans on the service: one job each, submitted with the
Python client and `fitaas submit` to a real `fitaas serve`, results equal to the library's."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fitaas
from conftest import FITAAS
from fitaas.client import ServiceError
from fitaas.jobs.combined_scans import combine_pallets
from fitaas.jobs.sweeps import expand_pallets
from pallet_builders import analysis_b, jsonl, theory_models, variant
from service_process import Service, Users, client, sqlite_site, upload


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Users]]:
    with sqlite_site(tmp_path_factory.mktemp("site")) as started:
        yield started


def _same_cls(got: fitaas.ScanResult, want: fitaas.ScanResult) -> None:
    """The same points (in any order: a theory scan's come in finishing order), the same
    CLs."""
    assert sorted(p.patch for p in got) == sorted(p.patch for p in want)
    wanted = {p.patch: p for p in want}
    for a in got:
        b = wanted[a.patch]
        assert a.status == b.status, (a.patch, a.error)
        assert a.hypotest is not None and b.hypotest is not None
        assert a.hypotest.cls_obs == pytest.approx(b.hypotest.cls_obs, rel=1e-9, abs=1e-12) or (
            math.isnan(a.hypotest.cls_obs) and math.isnan(b.hypotest.cls_obs)
        )
        assert list(a.hypotest.cls_exp) == pytest.approx(list(b.hypotest.cls_exp), rel=1e-9)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_sweep_is_one_job_with_each_pallets_results(
    site: tuple[Service, Users], demo: Path, tmp_path: Path
) -> None:
    service, users = site
    folders = [variant(demo, tmp_path / name, extra) for name, extra in [("a", 0), ("b", 3)]]
    pair = f"{demo / 'BkgOnly.json'}:{demo / 'patchset.json'}"
    with fitaas.Client(service.url, users.alice) as api:
        job = api.submit_pallets([*folders, pair])
        assert job.sweep == ["a", "b", demo.name] and job.total == 60
        job = api.wait(job, progress=False)
        assert (job.state, job.done, job.failed) == ("done", 60, 0), job.error
        swept = api.sweep_results(job)
        assert list(swept) == ["a", "b", demo.name]
        assert [p.cls_obs for p in swept["a"]] == [p.cls_obs for p in swept[demo.name]]
        for source, name in [(folders[1], "b"), (demo, demo.name)]:  # (a is the demo's copy)
            _same_cls(swept[name], fitaas.scan(source))
        one = api.results(job, pallet="b")
        assert isinstance(one, fitaas.ScanResult)
        assert [p.cls_obs for p in one] == [p.cls_obs for p in swept["b"]]
        assert api.results_csv(job, pallet="a").count("\n") == 21
        with pytest.raises(ServiceError, match="per pallet: add pallet=NAME"):
            api.results_csv(job)
        with pytest.raises(ServiceError, match="no pallet 'c' in this job"):
            api.results(job, pallet="c")
    # the command line: a sweep's results, one file per pallet, from the store at once
    ran = subprocess.run(
        [str(FITAAS), "submit", "--service", service.url, str(folders[0]), str(folders[1]),
         "-o", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"FITAAS_TOKEN": users.alice, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "b.json"]
    written = json.loads((tmp_path / "out" / "b.json").read_text())["results"]
    assert [r["cls_obs"] for r in written] == [p.cls_obs for p in swept["b"]]


@pytest.mark.slow  # (by default: combination rules in test_combine, service pallets in the sweep)
def test_a_combination_job_equals_the_librarys_combined_scan(
    site: tuple[Service, Users], demo: Path, tmp_path: Path
) -> None:
    service, users = site
    b = analysis_b(demo, tmp_path / "b")
    with fitaas.Client(service.url, users.alice) as api:
        job = api.submit_pallets([demo, b], combine=True, join="outer")
        assert job.sweep is None and job.total == 3  # the three models common to both
        job = api.wait(job, progress=False)
        assert job.state == "done", job.error
        got = api.results(job)
    combined = combine_pallets(expand_pallets([demo, b]), join="outer").pallet
    want = fitaas.scan(combined)
    assert isinstance(got, fitaas.ScanResult)
    _same_cls(got, want)
    alone = {p.patch: p.cls_obs for p in fitaas.scan(demo, patches=[p.patch for p in want])}
    assert all(p.cls_obs < alone[p.patch] for p in got)  # b's signal counts too


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_theory_scan_job_streams_uploaded_models(
    site: tuple[Service, Users], demo: Path, tmp_path: Path
) -> None:
    service, users = site
    models = theory_models(demo)[:6]
    path = jsonl(tmp_path / "models.jsonl", models)
    with fitaas.Client(service.url, users.alice) as api:
        job = api.submit(demo / "BkgOnly.json", models=path, labels=("m1", "m2"))
        assert job.total == 6 and job.inputs == {"models": job.inputs["models"], "labels": [
            "m1", "m2"]}  # fmt: skip
        job = api.wait(job, progress=False)
        assert (job.state, job.done) == ("done", 6), job.error
        got = api.results(job)
        again = api.upload_models(iter(models))  # the same models from Python: one document
        assert again == job.inputs["models"]
    assert isinstance(got, fitaas.ScanResult) and got.labels == ("m1", "m2")
    want = fitaas.scan(demo / "BkgOnly.json", models=models, labels=("m1", "m2"))
    _same_cls(got, want)
    with client(service, users.alice) as http:  # the page's table asks for the first rows
        first = http.get(f"/jobs/{job.id}/results", params={"limit": 2}).json()["results"]
    assert [r["patch"] for r in first] == [m["name"] for m in models[:2]]


def _refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["detail"], response.json()["detail"]


def test_bad_sweeps_combinations_and_models_are_named(
    site: tuple[Service, Users], demo: Path, tmp_path: Path
) -> None:
    service, users = site
    with client(service, users.alice) as http:
        workspace = upload(http, "workspace", demo / "BkgOnly.json")
        patchset = upload(http, "patchset", demo / "patchset.json")
        one = {"name": "demo", "workspace": workspace, "patchset": patchset}
        bad_line = b'{"name": "m", "values": [1], "patch": []}\n{"name": 3}\n'
        _refused(http.post("/models", content=bad_line), 422, "models, line 2: the model has no")
        _refused(http.post("/models", content=b"\n\n"), 422, "no models")
        models = http.post(
            "/models", content=gzip.compress(json.dumps(theory_models(demo)[0]).encode())
        )
        assert models.status_code == 201, models.text
        digest = models.json()["digest"]
        cases: list[tuple[dict[str, Any], str]] = [
            ({"pallets": [one, one]}, "pallet names must be unique"),
            ({"pallets": [one], "combine": {"join": "outer"}}, "needs two pallets or more"),
            ({"pallets": [one], "patches": ["demo_300_0"]}, "a sweep scans every point"),
            ({"pallets": [one], "workspace": workspace}, "'pallets' replaces 'workspace'"),
            ({"pallets": [one], "labels": ["m1"]}, "'pallets' replaces 'workspace'"),
            ({"pallets": [one], "task": "ranking"}, "fits one point of one pallet"),
            ({"combine": {"join": "outer"}, "workspace": workspace}, "'combine' combines"),
            ({"patchset": patchset}, "a job needs 'workspace'"),
            ({"workspace": workspace, "models": digest, "patchset": patchset}, "no 'patchset'"),
            (
                {"workspace": workspace, "models": digest, "options": {"calctype": "toybased"}},
                "toys need a patchset",
            ),
            ({"workspace": workspace, "models": "0" * 64}, "no models 000"),
            ({"workspace": workspace, "labels": ["m1"]}, "'labels' names the values"),
        ]
        for body, words in cases:
            _refused(http.post("/jobs", json=body), 422, words)
    with client(service, users.bob) as http:  # alice's documents are not bob's
        stranger = {"pallets": [one, {**one, "name": "again"}]}
        _refused(http.post("/jobs", json=stranger), 422, "among your uploads (pallet 'demo')")
        _refused(
            http.post("/jobs", json={"workspace": workspace, "models": digest}),
            422,
            "no workspace",
        )


def test_a_site_database_of_the_previous_schema_gains_job_inputs(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from fitaas.service import db
    from fitaas.service.job_inputs import JobInputs

    url = f"sqlite:///{tmp_path / 'site.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a database as the previous release left it (schema v3)
        for number, step in enumerate(db.MIGRATIONS[:3], start=1):
            step(conn)
            db.schema_version.create(conn, checkfirst=True)
            conn.execute(sa.insert(db.schema_version).values(version=number, applied=0.0))
        conn.execute(sa.text("ALTER TABLE jobs DROP COLUMN inputs"))  # (v1 made today's table)
        conn.execute(sa.text("INSERT INTO users (name, token_hash, created) VALUES ('a', 'h', 0)"))
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, owner_id, endpoint_id, workspace_digest, task, options, "
                "state, total, done, failed, created) VALUES ('j', 1, 1, 'w', 'hypotest', '{}', "
                "'done', 1, 1, 0, 0)"
            )
        )
    engine.dispose()
    migrated = db.connect(url)
    assert db.migrate(migrated) == db.SCHEMA_VERSION == 4
    with migrated.connect() as conn:
        row = conn.execute(sa.select(db.jobs).where(db.jobs.c.id == "j")).one()
    assert row.inputs is None and JobInputs.from_json(row.inputs).kind == "scan"
    migrated.dispose()
