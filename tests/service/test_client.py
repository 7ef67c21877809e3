"""The Python client's contracts, against a real `fitaas serve` on loopback: errors that name
the request and the service's reason, typed jobs, checks made before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import fitaas
from fitaas.client import Job, ServiceError
from fitaas.errors import InputError
from pallet_builders import jsonl, theory_models
from service_process import SLOW, Service, Users, free_port, sqlite_site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Users]]:
    with sqlite_site(tmp_path_factory.mktemp("client")) as started:
        yield started


def _job(**changes: object) -> dict[str, object]:
    base = {
        "id": "f" * 32, "owner": "alice", "endpoint": "local", "group": None,
        "task": "hypotest", "state": "done", "total": 2, "done": 2, "failed": 0,
        "error": None, "workspace": "a" * 64, "patchset": None, "patches": None,
        "options": {}, "created": 1.0, "started": 1.0, "finished": 2.0, "elapsed": 1.0,
    }  # fmt: skip
    return base | changes


def test_a_job_reads_what_a_newer_service_adds_and_says_what_it_scans() -> None:
    job = Job.from_dict(_job(priority=3, inputs=None))  # a field this client does not know
    assert job.finished_running and job.sweep is None
    pallets = [{"name": "a", "workspace": "a" * 64, "patchset": None}, {"name": "b/SR"}]
    assert Job.from_dict(_job(inputs={"pallets": pallets, "combine": None})).sweep == [
        "a",
        "b/SR",
    ]
    combined = {"pallets": pallets, "combine": {"join": "outer", "match": "names"}}
    assert Job.from_dict(_job(inputs=combined, state="running")).sweep is None
    assert not Job.from_dict(_job(state="running")).finished_running


def test_errors_name_the_request_and_the_services_reason(
    site: tuple[Service, Users], demo: Path
) -> None:
    service, users = site
    with fitaas.Client(service.url, users.alice) as api:
        with pytest.raises(ServiceError, match=r"GET /jobs/nosuchjob: 404 no job nosuchjob") as e:
            api.job("nosuchjob")
        assert e.value.status == 404
        with pytest.raises(ServiceError, match="not in the group 'cms'") as e:
            api.submit(demo, group="cms")
        assert e.value.status == 422
        with pytest.raises(ServiceError, match="a theory scan scans its models"):
            api.submit(demo / "BkgOnly.json", demo / "patchset.json", models=[])
    with fitaas.Client(service.url, "fitaas_wrong") as stranger:
        with pytest.raises(ServiceError) as e:
            stranger.jobs()
        assert e.value.status == 401
    nowhere = fitaas.Client(f"http://127.0.0.1:{free_port()}", users.alice)
    with nowhere, pytest.raises(ServiceError, match=r"cannot reach http://127\.0\.0\.1"):
        nowhere.jobs()


def test_models_are_checked_here_before_anything_is_sent(
    site: tuple[Service, Users], demo: Path, tmp_path: Path
) -> None:
    service, users = site
    broken = [*theory_models(demo)[:2], {"name": "no_patch", "values": [1, 2]}]
    path = jsonl(tmp_path / "models.jsonl", broken)
    with fitaas.Client(service.url, users.bob) as api:
        with pytest.raises(InputError, match=r"models.jsonl, line 3: model 'no_patch' needs"):
            api.submit(demo / "BkgOnly.json", models=path)
        assert api.jobs() == []  # nothing was submitted
        digest = api.upload_models(theory_models(demo))
        assert len(digest) == 64


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_wait_gives_up_after_its_timeout_and_results_come_typed(
    site: tuple[Service, Users], demo: Path
) -> None:
    service, users = site
    with fitaas.Client(service.url, users.carol) as api:
        slow = api.submit(demo, **SLOW)
        with pytest.raises(ServiceError, match=f"job {slow.id} still (queued|running)"):
            api.wait(slow, progress=False, poll=0.1, timeout=0.3)
        cancelled = api.cancel(slow)
        assert cancelled.state == "cancelled" and cancelled.finished_running
        done = api.wait(api.submit(demo, patches=["demo_700_0"]), progress=False)
        result = api.results(done)
        assert isinstance(result, fitaas.ScanResult) and [p.patch for p in result] == ["demo_700_0"]
        assert json.loads(json.dumps(api.results_json(done)))["results"][0]["patch"] == (
            "demo_700_0"
        )
        assert api.results_csv(done).splitlines()[0].startswith("patch,")


def test_the_clients_job_type_has_the_services_job_schema() -> None:
    # the client's Job is written by hand; it must read every field the service sends
    import dataclasses
    import typing

    from fitaas.client import Job
    from fitaas.service.job_schemas import JobPublic

    ours = {f.name: f for f in dataclasses.fields(Job)}
    theirs = JobPublic.model_fields
    assert set(ours) == set(theirs)
    hints = typing.get_type_hints(Job)
    for name, field in theirs.items():
        # optional on one side, optional on the other; the same base types
        assert (type(None) in typing.get_args(hints[name])) == (
            type(None) in typing.get_args(field.annotation)
        ), name
