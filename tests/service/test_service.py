"""The HTTP service, for real: `fitaas serve` processes on loopback ports, httpx clients,
a SQLite file and (where Debian's postgresql is installed, as in CI) a PostgreSQL server."""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fitaas
from conftest import excess_workspace, load, plain_hypotest
from fitaas import InferenceOptions
from fitaas.inference.likelihood_scan import likelihood_scan
from fitaas.inference.ranking import ranking
from fitaas.service.accounts import add_endpoint
from service_process import (
    PATCHES,
    SLOW,
    Service,
    Users,
    client,
    fill,
    fresh_postgres_database,
    postgres_available,
    postgres_server,
    running,
    stored_created,
    submit,
    upload,
    wait,
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    if not postgres_available():
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.sqlite'}"
    server = request.getfixturevalue("postgres")
    return fresh_postgres_database(server, f"t{abs(hash(request.node.name)) % 10**8}")


@pytest.fixture
def users(database: str) -> Iterator[Users]:
    accounts = Users(database)
    yield accounts
    accounts.engine.dispose()


@pytest.fixture
def service(database: str, users: Users, tmp_path: Path) -> Iterator[Service]:
    with running(database, tmp_path) as started:
        yield started


@pytest.mark.parametrize(  # (SQLite's jobs run by default in the web page's test)
    "database", [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"], indirect=True
)
def test_a_job_gives_the_results_of_fitaas_scan(
    service: Service, users: Users, demo: Path, database: str
) -> None:
    with client(service, users.alice) as http:
        assert [e["name"] for e in http.get("/endpoints").json()] == ["local"]
        job = submit(http, demo)
        assert job["state"] in ("queued", "running") and job["total"] == len(PATCHES)
        job = wait(http, job["id"])
        assert job["state"] == "done", job
        assert (job["done"], job["failed"]) == (len(PATCHES), 0)
        assert job["elapsed"] > 0
        results = http.get(f"/jobs/{job['id']}/results").json()
        expected = fitaas.scan(demo, patches=PATCHES)
        assert [r["patch"] for r in results["results"]] == PATCHES
        for got, want in zip(results["results"], expected, strict=True):
            assert got["status"] == "ok"
            assert got["cls_obs"] == want.cls_obs
            assert got["cls_exp"] == list(want.hypotest.cls_exp)
        # ... and plain pyhf's numbers on the same inputs (within its fits' tolerance: the
        # default path is the fast one)
        patch = next(
            p["patch"]
            for p in load(demo / "patchset.json")["patches"]
            if p["metadata"]["name"] == PATCHES[0]
        )
        cls_obs, _, _, _ = plain_hypotest(load(demo / "BkgOnly.json"), patch)
        assert results["results"][0]["cls_obs"] == pytest.approx(cls_obs, abs=1e-5)
        csv = http.get(f"/jobs/{job['id']}/results", params={"format": "csv"}).text
        assert csv.splitlines()[0].startswith("patch,") and len(csv.splitlines()) == 5
        # the short id the page shows names the job (a unique prefix of 6 or more)
        assert http.get(f"/jobs/{job['id'][:8]}").json()["id"] == job["id"]
        assert http.get(f"/jobs/{job['id'][:8]}/results").json() == results
        assert http.get(f"/jobs/{job['id'][:5]}").status_code == 404  # too short

        # the same workspace twice is stored once; the same job again computes nothing
        again = http.post("/workspaces", content=(demo / "BkgOnly.json").read_bytes())
        assert again.json() == {"digest": job["workspace"], "kind": "workspace", "new": False}
        before = stored_created(database)
        repeat = wait(http, submit(http, demo)["id"])
        assert repeat["state"] == "done" and repeat["done"] == len(PATCHES)
        assert stored_created(database) == before  # nothing recomputed
        assert len(http.get("/jobs").json()) == 2
        picture = http.get(f"/jobs/{job['id']}/plot.png")
        assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_users_see_only_their_own_and_their_groups_jobs(
    service: Service, users: Users, demo: Path
) -> None:
    with (
        client(service, users.alice) as alice,
        client(service, users.bob) as bob,
        client(service, users.carol) as carol,
    ):
        private = submit(alice, demo, patches=PATCHES[:1])
        shared = submit(alice, demo, patches=PATCHES[1:2], group="atlas")
        wait(alice, private["id"])
        wait(alice, shared["id"])
        assert bob.get("/jobs").json() == []
        for job_id in (private["id"], shared["id"], private["id"][:8]):  # (a prefix too)
            for path in ("", "/results", "/plot.png", "/results?format=csv"):
                response = bob.get(f"/jobs/{job_id}{path}")
                assert response.status_code == 404, (path, response.text)
                assert "cls" not in response.text and "demo_" not in response.text
            assert bob.delete(f"/jobs/{job_id}").status_code == 404
        # a workspace is usable only by those who uploaded it
        response = bob.get(f"/workspaces/{private['workspace']}")
        assert response.status_code == 404
        response = bob.post("/jobs", json={"workspace": private["workspace"]})
        assert response.status_code == 422 and "among your uploads" in response.text
        # the group shares the job, not the private one
        assert [j["id"] for j in carol.get("/jobs").json()] == [shared["id"]]
        assert carol.get(f"/jobs/{private['id']}").status_code == 404
        results = carol.get(f"/jobs/{shared['id']}/results").json()["results"]
        assert [r["patch"] for r in results] == PATCHES[1:2]
        assert carol.delete(f"/jobs/{shared['id']}").status_code == 403  # owner only
        response = bob.post("/jobs", json={"workspace": private["workspace"], "group": "atlas"})
        assert response.status_code == 422 and "not in the group" in response.text
    wrong = users.alice[:-1] + ("x" if users.alice[-1] != "x" else "y")
    for token in (None, "fitaas_wrong", wrong, "Bearer", users.alice.upper()):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=service.url + "/api/v1", headers=headers) as anyone:
            for method, path in (
                ("GET", "/jobs"),
                ("GET", f"/jobs/{private['id']}"),
                ("GET", f"/jobs/{private['id']}/results"),
                ("POST", "/jobs"),
                ("POST", "/workspaces"),
                ("GET", "/endpoints"),
            ):
                response = anyone.request(method, path)
                # 429 once this client has presented too many wrong tokens
                assert response.status_code in (401, 429), (method, path, response.text)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # (PostgreSQL: the two above)
def test_groups_decide_who_may_use_an_endpoint(service: Service, users: Users, demo: Path) -> None:
    add_endpoint(users.engine, "cluster", {"engine": "local", "workers": 1}, groups=("atlas",))
    with client(service, users.alice) as alice, client(service, users.bob) as bob:
        assert {e["name"] for e in alice.get("/endpoints").json()} == {"cluster", "local"}
        assert {e["name"] for e in bob.get("/endpoints").json()} == {"local"}
        job = submit(alice, demo, patches=PATCHES[:1], endpoint="cluster")
        assert wait(alice, job["id"])["state"] == "done"
        assert alice.get(f"/jobs/{job['id']}").json()["endpoint"] == "cluster"
        workspace = upload(bob, "workspace", demo / "BkgOnly.json")
        hidden = bob.post("/jobs", json={"workspace": workspace, "endpoint": "cluster"})
        missing = bob.post("/jobs", json={"workspace": workspace, "endpoint": "nowhere"})
        # the same answer for an endpoint of another group and one that does not exist
        assert hidden.status_code == missing.status_code == 403
        assert hidden.json()["detail"] == "no endpoint 'cluster' that you may use (yours: local)"
        assert missing.json()["detail"] == "no endpoint 'nowhere' that you may use (yours: local)"


def _bad(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in (detail if isinstance(detail, str) else json.dumps(detail)), detail
    assert "Traceback" not in response.text


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_bad_input_gets_a_clear_error(
    users: Users, demo: Path, tmp_path: Path, database: str
) -> None:
    with (
        running(database, tmp_path, max_upload_mb=1.0) as service,
        client(service, users.alice) as http,
    ):
        _bad(http.post("/workspaces", content=b'{"channels": [}'), 422, "malformed JSON at line 1")
        _bad(http.post("/workspaces", content=b'{"channels": []}'), 422, "schema")
        _bad(http.post("/workspaces", content=b"\x1f\x8bnot gzip"), 422, "gzip")
        _bad(http.post("/workspaces", content=b""), 422, "empty")
        _bad(
            http.post("/workspaces", content=b" " * 1_500_000),
            413,
            "above the limit of 1,000,000 bytes",
        )
        bomb = gzip.compress(b" " * 3_000_000)  # 3 KB that inflate to 3 MB
        _bad(http.post("/workspaces", content=bomb), 413, "more than the limit")
        workspace = upload(http, "workspace", demo / "BkgOnly.json")
        patchset = upload(http, "patchset", demo / "patchset.json")
        base = {"workspace": workspace, "patchset": patchset}
        _bad(http.post("/jobs", json=base | {"colour": "red"}), 422, "colour")
        _bad(http.post("/jobs", json=base | {"options": {"tolerance": -1}}), 422, "tolerance")
        _bad(http.post("/jobs", json=base | {"options": {"speed": 2}}), 422, "unknown option")
        _bad(http.post("/jobs", json=base | {"task": "toys"}), 422, "task")
        _bad(
            http.post("/jobs", json=base | {"patches": ["demo_650_0"]}),
            422,
            "no patch named 'demo_650_0'",
        )
        _bad(http.post("/jobs", json={"workspace": "abc"}), 422, "workspace")
        # a patchset made for another workspace: pyhf's digest check
        other = load(demo / "BkgOnly.json")
        other["observations"][0]["data"][0] += 1
        other_digest = http.post("/workspaces", content=json.dumps(other).encode()).json()
        _bad(
            http.post("/jobs", json={"workspace": other_digest["digest"], "patchset": patchset}),
            422,
            "was not made for",
        )
        # physically invalid counts pass pyhf's schema; fits on them never end (issue 13)
        negative = load(demo / "BkgOnly.json")
        negative["observations"][0]["data"][:2] = [-5.0, -3.0]
        _bad(
            http.post("/workspaces", content=json.dumps(negative).encode()),
            422,
            "observed count -5.0 in channel 'SR_low' bin 0",
        )
        _bad(http.post("/jobs", json=base | {"options": {"fit_timeout": 0}}), 422, "fit_timeout")
        # values that used to be 500s (issue 13): NaN and huge numbers, wrong shapes, nesting
        raw = {"content": b"", "headers": {"Content-Type": "application/json"}}
        for text, words in [
            (b'{"workspace": NaN}', "workspace"),
            (b'{"workspace": 1e400}', "workspace"),
            (b'{"workspace": "%s", "options": {"maxiter": 1%s}}', "maxiter"),
            (b'{"workspace": "%s", "options": {"ul_scan": 0}}', "ul_scan"),
            (b'{"workspace": "%s", "options": {"fixed_params": {"lumi": NaN}}}', "fixed_params"),
            (b'{"workspace": "%s", "options": {"measurement": 5}}', "measurement"),
            (b'{"workspace": "%s", "options": {"tolerance": Infinity}}', "tolerance"),
        ]:
            body = text.replace(b"%s", workspace.encode(), 1).replace(b"%s", b"0" * 400)
            _bad(http.post("/jobs", **(raw | {"content": body})), 422, words)
        _bad(
            http.post("/workspaces", content=b"[" * 50_000 + b"]" * 50_000),
            422,
            "nested too deeply",
        )
        deep = b'{"channels": ' + b"[" * 900 + b"]" * 900 + b"}"
        _bad(http.post("/workspaces", content=deep), 422, "")
        assert http.get("/jobs").json() == []  # nothing was queued by a refused request


# (slow, as is tests/service/test_service_faults.py's SIGKILL of a running server and its job's
# takeover by another: pytest -m slow)
@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_jobs_survive_a_restart(users: Users, demo: Path, tmp_path: Path, database: str) -> None:
    service = Service(database, tmp_path).start()
    try:
        with client(service, users.alice) as http:
            # all 20 points, on the plain path: the fast one may finish before the stop
            job = submit(http, demo, patches=None, options=SLOW)
            deadline = time.monotonic() + 120
            while http.get(f"/jobs/{job['id']}").json()["done"] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        service.stop()  # in the middle of the job
        before = stored_created(database)
        assert 3 <= len(before) < 20
        service = Service(database, tmp_path).start()
        with client(service, users.alice) as http:
            finished = wait(http, job["id"])
            assert finished["state"] == "done" and finished["done"] == 20
            after = stored_created(database)
            assert len(after) == 20
            # nothing finished before the stop was computed again
            assert {k: after[k] for k in before} == before
            results = http.get(f"/jobs/{job['id']}/results").json()["results"]
            assert len(results) == 20 and all(r["status"] == "ok" for r in results)
    finally:
        service.stop()


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_cancelled_job_keeps_what_finished(service: Service, users: Users, demo: Path) -> None:
    with client(service, users.alice) as http:
        job = submit(http, demo, patches=None, options=SLOW)
        deadline = time.monotonic() + 120
        while http.get(f"/jobs/{job['id']}").json()["done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cancelled = http.delete(f"/jobs/{job['id']}").json()
        assert cancelled["state"] == "cancelled"
        time.sleep(2)
        later = http.get(f"/jobs/{job['id']}").json()
        assert later["state"] == "cancelled" and later["done"] < 20
        kept = http.get(f"/jobs/{job['id']}/results").json()["results"]
        assert len(kept) >= cancelled["done"] and all(r["status"] == "ok" for r in kept)
        # the service goes on: the next job runs
        assert wait(http, submit(http, demo, patches=PATCHES[:1])["id"])["state"] == "done"


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_cancel_stops_running_workers_within_seconds(
    service: Service, users: Users, demo: Path
) -> None:
    # One block of 50,000 plain toys: a task of many minutes. Cancelling used to leave its
    # workers computing until the task ended (the stop was looked at between points).
    workers = service.workers_now
    options = {"fast": False, "calctype": "toybased", "ntoys": 50_000, "toy_block_size": 50_000}
    with client(service, users.alice) as http:
        job = submit(http, demo, patches=PATCHES[:1], options=options)
        deadline = time.monotonic() + 60
        while not workers() or http.get(f"/jobs/{job['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline, "the job's workers never started"
            time.sleep(0.2)
        time.sleep(3)  # the toy blocks are running
        assert http.delete(f"/jobs/{job['id']}").json()["state"] == "cancelled"
        cancelled = time.monotonic()
        while workers():
            assert time.monotonic() - cancelled < 10, "workers still running 10 s after cancel"
            time.sleep(0.2)
        # the endpoint is free: the next job runs
        assert wait(http, submit(http, demo, patches=PATCHES[:1])["id"])["state"] == "done"


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_other_requests_are_served_while_a_large_upload_is_checked(
    service: Service, users: Users, workspaces: Path
) -> None:
    # Parsing and pyhf's schema check of a 4.4 MB workspace take ~2 s; they ran on the
    # event loop and every other request waited (issue 13: GET /me stalled 10.7 s).
    import threading

    body = (workspaces / "1Lbb" / "BkgOnly.json").read_bytes()
    answered: list[float] = []
    finished = threading.Event()
    with client(service, users.alice) as http, client(service, users.bob) as other:

        def poll() -> None:
            while not finished.is_set():
                if other.get("/me").status_code == 200:
                    answered.append(time.monotonic())

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.2)
        begin = time.monotonic()
        response = http.post("/workspaces", content=body)
        end = time.monotonic()
        finished.set()
        poller.join()
    assert response.status_code == 201, response.text
    during = [t for t in answered if begin < t < end]
    # /me answered all along the upload, not only before and after it
    assert len(during) >= 5, (len(during), end - begin)
    assert (
        max(b - a for a, b in zip([begin, *during], [*during, end], strict=True))
        < (end - begin) / 2
    )


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_parallel_jobs_with_one_new_inline_patchset(
    service: Service, users: Users, demo: Path
) -> None:
    # 8 parallel POST /jobs with the same new inline patchset: 5 of them were 500s
    # (UNIQUE constraint failed: documents.digest).
    from concurrent.futures import ThreadPoolExecutor

    patchset = load(demo / "patchset.json")
    patchset["patches"] = patchset["patches"][:2]
    with client(service, users.alice) as http:
        body = {
            "workspace": upload(http, "workspace", demo / "BkgOnly.json"),
            "patchset": patchset,
            "options": {"fast": True},
        }
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: http.post("/jobs", json=body), range(8)))
        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        assert len({a.json()["patchset"] for a in answers}) == 1
        for answer in answers:
            assert wait(http, answer.json()["id"])["state"] == "done"


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A real filesystem of a few MB (tmpfs), to fill up; skips where mounting is refused."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@pytest.mark.slow  # (keeps the default run under 10 minutes: pytest -m slow)
def test_a_full_disk_fails_the_job_and_the_service_goes_on(demo: Path, tmp_path: Path) -> None:
    # A full disk used to kill the endpoint's runner thread: the job stayed running and
    # every later job queued until a restart; clients got 500s.
    with small_disk(tmp_path / "small", 8) as small:
        database = f"sqlite:///{small / 'service.sqlite'}"
        users = Users(database)
        (tmp_path / "service").mkdir()
        with (
            running(database, tmp_path / "service") as service,
            client(service, users.alice) as http,
        ):
            job = submit(http, demo, patches=None, options=SLOW)
            body = {
                "workspace": job["workspace"],
                "patchset": job["patchset"],
                "patches": PATCHES[:1],
            }
            deadline = time.monotonic() + 120
            while http.get(f"/jobs/{job['id']}").json()["done"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            fill(small / "filler")
            time.sleep(2)
            assert http.get("/me").status_code == 200  # reads go on
            # /health said "ok" while every write failed
            health = http.get("/health").json()
            assert health["status"] == "degraded" and "full" in health["storage"], health
            refused = http.post("/jobs", json=body)
            assert refused.status_code == 503 and "storage error" in refused.json()["detail"]
            (small / "filler").unlink()  # space returns
            deadline = time.monotonic() + 60
            while (state := http.get(f"/jobs/{job['id']}").json())["state"] == "running":
                assert time.monotonic() < deadline, "the job was never marked"
                time.sleep(0.3)
            assert state["state"] == "failed" and "full" in state["error"], state
            # the endpoint's runner is alive: the next job runs
            later = http.post("/jobs", json=body)
            assert later.status_code == 201, later.text
            assert wait(http, later.json()["id"])["state"] == "done"
        users.engine.dispose()


@pytest.mark.slow  # (the web page's test runs a toy job through the service)
def test_a_toy_job_gives_the_toys_of_fitaas_scan(
    service: Service, users: Users, demo: Path, database: str
) -> None:
    if database.startswith("postgresql"):
        pytest.skip("toy results are stored like any other: the SQLite run covers them")
    options = {"calctype": "toybased", "ntoys": 100, "seed": 4, "toy_block_size": 100}
    with client(service, users.alice) as http:
        refused = http.post(
            "/jobs",
            json={
                "workspace": upload(http, "workspace", demo / "BkgOnly.json"),
                "task": "upper_limit",
                "options": options,
            },
        )
        assert refused.status_code == 422 and "hypothesis tests only" in refused.text
        job = wait(http, submit(http, demo, options=options)["id"])
        assert job["state"] == "done" and job["failed"] == 0
        results = http.get(f"/jobs/{job['id']}/results").json()
        expected = fitaas.scan(demo, patches=PATCHES, options=InferenceOptions(**options))
        for got, want in zip(results["results"], expected, strict=True):
            assert got["toys"]["ntoys"] == {"sb": 100, "b": 100}
            assert got["cls_obs"] == want.cls_obs  # the same seed: the same toys
            assert got["toys"]["teststats"]["b"] == want.hypotest.toys.teststats_b
        picture = http.get(f"/jobs/{job['id']}/toys.png", params={"patch": PATCHES[0]})
        assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"
        missing = http.get(f"/jobs/{job['id']}/toys.png", params={"patch": "nope"})
        assert missing.status_code == 404


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # (stored like any other)
def test_ranking_and_likelihood_scan_jobs_give_the_librarys_results(
    service: Service, users: Users, database: str
) -> None:
    spec = excess_workspace()
    with client(service, users.alice) as http:
        digest = http.post("/workspaces", content=json.dumps(spec).encode()).json()["digest"]
        refused = http.post(
            "/jobs", json={"workspace": digest, "task": "ranking", "grid": [0, 1, 3]}
        )
        assert refused.status_code == 422 and "'grid' belongs to nll_scan jobs" in refused.text
        job = http.post("/jobs", json={"workspace": digest, "task": "ranking"}).json()
        job = wait(http, job["id"])
        assert job["state"] == "done" and job["done"] == job["total"] > 40
        got = fitaas.RankingResult.from_dict(http.get(f"/jobs/{job['id']}/results").json())
        want = _in_process(spec, ranking)
        assert [i.parameter for i in got.impacts][:4] == [i.parameter for i in want.impacts][:4]
        for mine, theirs in zip(got.impacts, want.impacts, strict=True):
            assert mine.postfit_up == pytest.approx(theirs.postfit_up, abs=1e-3 * want.poi_error)
        picture = http.get(f"/jobs/{job['id']}/plot.png")
        assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"
        csv = http.get(f"/jobs/{job['id']}/results", params={"format": "csv"})
        assert csv.status_code == 422
        body = {"workspace": digest, "task": "nll_scan", "parameter": "mu", "grid": [0, 6, 7]}
        scan_job = wait(http, http.post("/jobs", json=body).json()["id"])
        scanned = http.get(f"/jobs/{scan_job['id']}/results").json()
        assert scan_job["params"] == {"parameter": "mu", "grid": [0, 6, 7]}
        local = _in_process(spec, lambda m, d, o: likelihood_scan(m, d, o, "mu", (0, 6, 7)))
        assert scanned["delta_twice_nll"] == pytest.approx(list(local.delta), abs=1e-4)


def _in_process(spec: dict[str, Any], compute: Any) -> Any:
    """The library's result computed in this process (the same fits as the service's)."""
    import pyhf

    from fitaas.inference import build_model, pyhf_backend

    options = InferenceOptions()
    with pyhf_backend(options):
        model, data = build_model(pyhf.Workspace(spec), None, options)
        return compute(model, data, options)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_next_job_finds_the_endpoints_workers_started(
    users: Users, demo: Path, tmp_path: Path, database: str
) -> None:
    kept = running(database, tmp_path, options=("--keep-workers", "2"))
    with kept as service, client(service, users.alice) as http:
        assert wait(http, submit(http, demo, patches=PATCHES[:1])["id"])["state"] == "done"
        first = {p.pid for p in service.workers_now()}
        assert first  # kept, waiting for the next job
        again = wait(http, submit(http, demo, patches=PATCHES[1:])["id"])
        assert again["state"] == "done" and again["done"] == len(PATCHES) - 1
        assert first <= {p.pid for p in service.workers_now()}  # the same processes
        idle = time.monotonic()
        while service.workers_now():  # stopped after 2 s without a job
            assert time.monotonic() - idle < 20, "idle workers still running after 20 s"
            time.sleep(0.3)
        assert time.monotonic() - idle > 1
        assert wait(http, submit(http, demo, patches=PATCHES[:2])["id"])["state"] == "done"
