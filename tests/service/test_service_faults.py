"""Several `fitaas serve` processes on one database, and servers that die (issue 13, item 6):
each job runs on one server at a time, a cancel through any server stops it, and a job of a
killed server is taken over, nothing lost or computed twice."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from fitaas.service import db
from service_process import (
    PATCHES,
    SLOW,
    Service,
    Users,
    client,
    running,
    stored_created,
    submit,
    wait,
)

# plain toys: a job of minutes, still running when the test acts on it
LONG = {"fast": False, "calctype": "toybased", "ntoys": 400, "toy_block_size": 200}


def lease_owner(users: Users, job_id: str) -> str | None:
    with users.engine.connect() as conn:
        owner = conn.execute(
            sa.select(db.jobs.c.lease_owner).where(db.jobs.c.id == job_id)
        ).scalar()
    return None if owner is None else str(owner)


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.sqlite'}"


@pytest.fixture
def users(database: str) -> Iterator[Users]:
    accounts = Users(database)
    yield accounts
    accounts.engine.dispose()


@pytest.mark.slow  # (keeps the default run under 10 minutes: pytest -m slow)
def test_two_servers_on_one_database(
    users: Users, demo: Path, tmp_path: Path, database: str
) -> None:
    first = Service(database, tmp_path, workers=1).start()
    second: Service | None = None
    try:
        with client(first, users.alice) as http:
            job = submit(http, demo, patches=None, options=LONG)
            deadline = time.monotonic() + 120
            while (
                not first.workers_now()
                or http.get(f"/jobs/{job['id']}").json()["state"] != "running"
            ):
                assert time.monotonic() < deadline, "the job's workers never started"
                time.sleep(0.2)
        # A second server on the same file, started while the job runs: it used to resume
        # the job too, both wrote its counts, and a cancel through one was ignored by the other.
        second = Service(database, tmp_path, workers=1).start()
        assert first.process is not None and second.process is not None
        seen: list[int] = []
        with client(first, users.alice) as one, client(second, users.alice) as two:
            for _ in range(6):  # 3 s, both servers answering
                for http in (one, two):
                    seen.append(http.get(f"/jobs/{job['id']}").json()["done"])
                    time.sleep(0.25)
                assert not second.workers_now(), "the second server runs the first one's job"
            assert seen == sorted(seen), f"done went backwards: {seen}"

            # cancelled through the server that does not run it: the other stops within seconds
            assert two.delete(f"/jobs/{job['id']}").json()["state"] == "cancelled"
            cancelled = time.monotonic()
            while first.workers_now():
                assert time.monotonic() - cancelled < 10, "workers still running 10 s after cancel"
                time.sleep(0.2)
            assert one.get(f"/jobs/{job['id']}").json()["state"] == "cancelled"

            # a job of a server that dies is taken over by the other, nothing computed twice
            earlier = set(stored_created(database))
            job = submit(one, demo, patches=None, options=SLOW)
            deadline = time.monotonic() + 120
            while (owner := lease_owner(users, job["id"])) is None or two.get(
                f"/jobs/{job['id']}"
            ).json()["done"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            runs, other = (first, second) if f":{first.process.pid}:" in owner else (second, first)
            runs.kill()
            before = stored_created(database)
            with client(other, users.alice) as http:
                finished = wait(http, job["id"], timeout=180)
                assert finished["state"] == "done" and finished["done"] == 20, finished
                assert other.process is not None
                assert f":{other.process.pid}:" not in (lease_owner(users, job["id"]) or "")
            after = stored_created(database)
            assert len(set(after) - earlier) == 20
            assert {key: after[key] for key in before} == before  # kept, not recomputed
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.slow  # (keeps the default run under 10 minutes: pytest -m slow)
def test_a_database_file_removed_under_the_service_is_reported(
    users: Users, demo: Path, tmp_path: Path, database: str
) -> None:
    # SQLite goes on writing to a deleted file: nothing failed, and everything written was
    # lost at the next start (issue 13, item 11). The service now says so and takes no work.
    with running(database, tmp_path) as service, client(service, users.alice) as http:
        assert httpx.get(service.url + "/api/v1/health").json()["status"] == "ok"
        job = submit(http, demo, patches=PATCHES[:1])
        assert wait(http, job["id"])["state"] == "done"
        saved = tmp_path / "saved"
        saved.mkdir()
        files = sorted(tmp_path.glob("service.sqlite*"))
        for path in files:
            path.rename(saved / path.name)
        deadline = time.monotonic() + 10
        while (health := httpx.get(service.url + "/api/v1/health").json())["status"] == "ok":
            assert time.monotonic() < deadline, "the removal was never noticed"
            time.sleep(0.2)
        assert "was removed while the service runs" in health["storage"], health
        refused = http.post("/jobs", json={"workspace": job["workspace"]})
        assert refused.status_code == 503 and "was removed" in refused.json()["detail"]
        assert http.get(f"/jobs/{job['id']}").status_code == 200  # reads go on
        for path in files:
            (saved / path.name).rename(path)
        deadline = time.monotonic() + 10
        while httpx.get(service.url + "/api/v1/health").json()["status"] != "ok":
            assert time.monotonic() < deadline, "the return was never noticed"
            time.sleep(0.2)
        again = submit(http, demo, patches=PATCHES[1:2])
        assert wait(http, again["id"])["state"] == "done"
    assert "was removed while the service runs" in service.log.read_text()


def test_a_read_only_database_is_one_clear_error_at_start(tmp_path: Path) -> None:
    # (a filesystem in use cannot be made read-only under a running server here: Linux
    # refuses the remount as busy; a service started on one must say so, not crash later)
    writable, read_only = tmp_path / "data", tmp_path / "read-only"
    writable.mkdir()
    read_only.mkdir()
    Users(f"sqlite:///{writable / 'service.sqlite'}").engine.dispose()
    mounted = subprocess.run(["mount", "--bind", str(writable), str(read_only)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(read_only)]).returncode:
            pytest.skip("cannot make a bind mount read-only here")
        service = Service(f"sqlite:///{read_only / 'service.sqlite'}", tmp_path)
        with pytest.raises(RuntimeError) as failed:
            service.start()
        assert "cannot open the database" in str(failed.value)
        assert f"{read_only} is read-only" in str(failed.value)
        assert "Traceback" not in service.log.read_text()
    finally:
        subprocess.run(["umount", str(read_only)], check=False)
