"""The service under a careless or hostile user (issue 30), against a real `fitaas serve`:
bounded work per request (422 naming the limit), inputs refused at submission instead of
failing later, numbers too long to read, negative expected counts, forged proxy headers,
formulas in CSV cells, and the health of a full disk."""

from __future__ import annotations

import csv
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fitaas.output.results import csv_cell
from service_process import PATCHES, Service, Users, client, running, upload


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Users]]:
    """One server for the module, with a site file and a limit on the command line."""
    folder = tmp_path_factory.mktemp("limits")
    database = f"sqlite:///{folder / 'service.sqlite'}"
    users = Users(database)
    (folder / "site.toml").write_text("[limits]\ngrid = 50\ntoys = 5000\n")
    options = (
        "--site",
        str(folder / "site.toml"),
        "--limit",
        "toys=2000",
        "--limit",
        "toy_blocks=1000",
    )
    try:
        with running(database, folder, options=options) as service:
            yield service, users
    finally:
        users.engine.dispose()


@pytest.fixture(scope="module")
def documents(site: tuple[Service, Users], demo: Path) -> dict[str, str]:
    service, users = site
    with client(service, users.alice) as http:
        return {
            "workspace": upload(http, "workspace", demo / "BkgOnly.json"),
            "patchset": upload(http, "patchset", demo / "patchset.json"),
        }


def _refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 422, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str), detail
    for word in words:
        assert word in detail, (word, detail)
    return detail


def _job(documents: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {**documents, "patches": PATCHES[:1], **extra}


def test_sizes_above_the_sites_limits_are_refused_by_name(
    site: tuple[Service, Users], documents: dict[str, str]
) -> None:
    service, users = site
    with client(service, users.alice) as http:
        # a grid of a billion values grew the server by 140 MB/s; toys of 10^9 and 10^18
        # planned millions of blocks in the endpoint's one thread
        grid = _job(documents, task="nll_scan", grid=[0, 1, 1_000_000_000])
        _refused(http.post("/jobs", json=grid), "grid", "1,000,000,000", "grid = 50")
        for ntoys in (1_000_000_000, 10**18):
            toys = _job(documents, options={"calctype": "toybased", "ntoys": ntoys})
            _refused(http.post("/jobs", json=toys), "ntoys", f"{ntoys:,}", "toys = 2,000")
        # (the command line's limit wins over the site file's; under it, the job runs)
        accuracy = {"calctype": "toybased", "cls_accuracy": 0.01, "max_toys": 3000}
        _refused(http.post("/jobs", json=_job(documents, options=accuracy)), "max_toys")
        blocks = {"calctype": "toybased", "ntoys": 2000, "toy_block_size": 1}
        _refused(http.post("/jobs", json=_job(documents, options=blocks)), "blocks of toys")
        ul_scan = {"ul_scan": [0, 5, 100_000]}
        body = _job(documents, task="upper_limit", options=ul_scan)
        _refused(http.post("/jobs", json=body), "ul_scan", "100,000", "ul_scan = 1,000")
        fine = _job(documents, options={"calctype": "toybased", "ntoys": 200})
        assert http.post("/jobs", json=fine).status_code == 201


def test_inputs_that_would_fail_later_are_refused_at_submission(
    site: tuple[Service, Users], documents: dict[str, str]
) -> None:
    service, users = site
    with client(service, users.alice) as http:
        for grid, words in (
            ("[NaN, 1, 5]", ("finite",)),
            ("[0, Infinity, 5]", ("finite",)),
            ("[0, 1e400, 5]", ("finite",)),
            ("[2, 1, 5]", ("LOW < HIGH",)),
            ("[0, 1, -3]", ("at least 2 values",)),
        ):
            body = json.dumps(_job(documents, task="nll_scan", grid=[0, 1, 2]))
            body = body.replace("[0, 1, 2]", grid)
            answer = http.post("/jobs", content=body, headers={"content-type": "application/json"})
            _refused(answer, *words)
        for options, words in (
            ({"lockstep": "yes"}, ("lockstep", "true or false")),
            ({"device": "gpu"}, ("device", "not an inference option", "endpoint")),
            ({"measurement": "nope"}, ("measurement", "nope", "its measurements")),
            ({"fixed_params": {"nope_par": 1.0}}, ("unknown parameter 'nope_par'",)),
        ):
            _refused(http.post("/jobs", json=_job(documents, options=options)), *words)
        models = b'{"name": "a", "values": [NaN], "patch": []}\n'
        _refused(http.post("/models", content=models), "not finite")


def test_numbers_too_long_and_negative_expected_counts_get_422(
    site: tuple[Service, Users], demo: Path
) -> None:
    service, users = site
    with client(service, users.alice) as http:
        for route in ("/workspaces", "/patchsets", "/models"):
            _refused(http.post(route, content=b"9" * 100_000), "more than 4300 digits")
        # the keep-alive connection goes on
        assert http.get("/me").status_code == 200
        spec = json.loads((demo / "BkgOnly.json").read_text())
        channel = spec["channels"][0]
        last = len(channel["samples"][0]["data"]) - 1
        for sample in channel["samples"]:
            sample["data"][last] = -abs(sample["data"][last]) - 1.0
        detail = _refused(
            http.post("/workspaces", content=json.dumps(spec).encode()), f"bin {last}", "negative"
        )
        assert channel["name"] in detail
        # one sample negative in a bin whose total is not: as published likelihoods have
        spec = json.loads((demo / "BkgOnly.json").read_text())
        samples = spec["channels"][0]["samples"]
        if len(samples) > 1:
            samples[0]["data"][0] = -0.01
            assert http.post("/workspaces", content=json.dumps(spec).encode()).status_code == 201


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_forged_forwarded_for_does_not_escape_the_wrong_token_limit(tmp_path: Path) -> None:
    # (a server of its own: the limit then holds for this client for a minute)
    database = f"sqlite:///{tmp_path / 'service.sqlite'}"
    users = Users(database)
    codes = []
    try:
        with (
            running(database, tmp_path) as service,
            httpx.Client(base_url=service.url + "/api/v1", timeout=30) as http,
        ):
            for n in range(30):
                headers = {"Authorization": "Bearer wrong", "X-Forwarded-For": f"10.0.{n}.1"}
                codes.append(http.get("/me", headers=headers).status_code)
            log = service.log.read_text()
    finally:
        users.engine.dispose()
    assert codes[:20] == [401] * 20
    assert 429 in codes[20:], codes
    assert "10.0.25.1" not in log  # the access log records the real peer


def test_csv_cells_that_begin_as_formulas_are_neutralised() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    for text in ("+1+1", "-cmd|x", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(text) == "'" + text
    for plain in ("-1.5", "+2", "demo_700_0", 3.5, -2, None):
        assert csv_cell(plain) == plain


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_users_share_an_endpoint_fairly(demo: Path, tmp_path: Path) -> None:
    # One user's long job held the endpoint's one runner: another user's one-point job
    # stayed queued until it ended (835 s in the probe).
    database = f"sqlite:///{tmp_path / 'service.sqlite'}"
    users = Users(database)
    try:
        with (
            running(database, tmp_path) as service,
            client(service, users.alice) as alice,
            client(service, users.bob) as bob,
        ):
            documents = {
                "workspace": upload(alice, "workspace", demo / "BkgOnly.json"),
                "patchset": upload(alice, "patchset", demo / "patchset.json"),
            }
            theirs = {
                "workspace": upload(bob, "workspace", demo / "BkgOnly.json"),
                "patchset": upload(bob, "patchset", demo / "patchset.json"),
            }
            # pyhf's own upper limits of every point: minutes
            slow = {**documents, "task": "upper_limit", "options": {"fast": False}}
            big = alice.post("/jobs", json=slow).json()
            deadline = time.monotonic() + 120
            while alice.get(f"/jobs/{big['id']}").json()["state"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            second = alice.post("/jobs", json=_job(documents)).json()
            small = bob.post("/jobs", json=_job(theirs)).json()
            began = time.monotonic()
            while (state := bob.get(f"/jobs/{small['id']}").json())["state"] != "done":
                assert state["state"] in ("queued", "running"), state
                assert time.monotonic() - began < 60, "bob's one point waited behind alice"
                time.sleep(0.2)
            # bob's job ran beside alice's; alice's second job waits for her first
            assert alice.get(f"/jobs/{big['id']}").json()["state"] == "running"
            assert alice.get(f"/jobs/{second['id']}").json()["state"] == "queued"
            # cancelling her first job leaves the shared engine to the next
            assert alice.delete(f"/jobs/{big['id']}").json()["state"] == "cancelled"
            began = time.monotonic()
            while alice.get(f"/jobs/{second['id']}").json()["state"] != "done":
                assert time.monotonic() - began < 120
                time.sleep(0.2)
    finally:
        users.engine.dispose()


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_slow_headers_and_too_many_connections_are_let_go(tmp_path: Path) -> None:
    # 200 connections sending their headers slowly were held 60 s; 1,000 idle ones were
    # accepted
    database = f"sqlite:///{tmp_path / 'service.sqlite'}"
    users = Users(database)
    options = ("--header-timeout", "2", "--max-connections", "6")
    try:
        with running(database, tmp_path, options=options) as service:
            port = int(service.url.rsplit(":", 1)[1])
            slow = socket.create_connection(("127.0.0.1", port))
            slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            began = time.monotonic()
            closed = False
            while time.monotonic() - began < 10 and not closed:
                try:
                    slow.sendall(b"X")  # a header, a byte a second
                    slow.settimeout(1.0)
                    closed = slow.recv(1024) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
            assert closed, "a client sending its headers slowly was held 10 s"
            assert time.monotonic() - began < 6
            slow.close()
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
            try:
                answer = httpx.get(service.url + "/api/v1/health", timeout=10)
                assert answer.status_code == 503, answer.text
            finally:
                for connection in idle:
                    connection.close()
            deadline = time.monotonic() + 10
            while httpx.get(service.url + "/api/v1/health", timeout=10).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        users.engine.dispose()


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_results_csv_of_a_shared_job_holds_no_live_formula(
    site: tuple[Service, Users], demo: Path
) -> None:
    # jobs are shared with groups: a model named as a formula ran in a colleague's sheet
    service, users = site
    patch = json.loads((demo / "patchset.json").read_text())["patches"][0]["patch"]
    model = {"name": '=HYPERLINK("http://x","y")', "values": [1, 2], "patch": patch}
    with client(service, users.carol) as http:
        workspace = upload(http, "workspace", demo / "BkgOnly.json")
        models = http.post("/models", content=(json.dumps(model) + "\n").encode()).json()
        body = {"workspace": workspace, "models": models["digest"], "labels": ["=1+1", "m"]}
        job = http.post("/jobs", json={**body, "group": "atlas"}).json()
        deadline = time.monotonic() + 120
        while http.get(f"/jobs/{job['id']}").json()["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.3)
    with client(service, users.alice) as colleague:  # (in the group)
        text = colleague.get(f"/jobs/{job['id']}/results", params={"format": "csv"}).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][1] == "'=1+1" and rows[1][0] == "'" + model["name"], rows[:2]
    assert all(csv_cell(cell) == cell for row in rows for cell in row)
