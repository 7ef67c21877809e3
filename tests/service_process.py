"""A real `fitaas serve` process on a free loopback port, and a real PostgreSQL server.

PostgreSQL comes from Debian (`apt-get install postgresql`, done by .ci/run): the server is
initialised in a scratch folder and run as the `postgres` user; tests that need it skip
when its binaries are absent.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from fitaas.service import db
from fitaas.service.accounts import add_user

FITAAS = Path(sys.executable).parent / "fitaas"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


PATCHES = ["demo_600_200", "demo_700_0", "demo_800_400", "demo_1000_0"]


class Users:
    """Tokens of alice and carol (group atlas) and bob (no group)."""

    def __init__(self, database: str) -> None:
        engine = db.connect(database)
        self.alice = add_user(engine, "alice", ("atlas",))
        self.bob = add_user(engine, "bob")
        self.carol = add_user(engine, "carol", ("atlas",))
        self.engine = engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`fitaas serve` as a subprocess; `stop()` sends SIGTERM (a real shutdown)."""

    def __init__(
        self,
        database: str,
        folder: Path,
        max_upload_mb: float = 64.0,
        workers: int = 2,
        options: tuple[str, ...] = (),
    ) -> None:
        self.database = database
        self.folder = folder
        self.max_upload_mb = max_upload_mb
        self.workers = workers
        self.options = options
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / f"serve-{self.port}.log"

    def start(self) -> Service:
        self.process = subprocess.Popen(
            [
                str(FITAAS),
                "serve",
                "--database",
                self.database,
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--max-upload-mb",
                str(self.max_upload_mb),
                *self.options,
            ],
            cwd=self.folder,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fitaas serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/openapi.json", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"fitaas serve did not start: {self.log.read_text()[-2000:]}")

    def workers_now(self) -> list[Any]:
        """The server's worker processes (children started by multiprocessing's spawn)."""
        import psutil

        assert self.process is not None
        found = []
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "spawn_main" in " ".join(child.cmdline()):
                        found.append(child)
        return found

    def tracebacks(self) -> int:
        """Tracebacks in the server's log."""
        return self.log.read_text(errors="replace").count("Traceback")

    def kill(self) -> None:
        """SIGKILL the server alone (its workers notice and exit by themselves)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextmanager
def running(database: str, folder: Path, **kwargs: Any) -> Iterator[Service]:
    service = Service(database, folder, **kwargs).start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def sqlite_site(folder: Path) -> Iterator[tuple[Service, Users]]:
    """A running service on a fresh SQLite database in ``folder``, with its users."""
    database = f"sqlite:///{folder / 'service.sqlite'}"
    users = Users(database)
    try:
        with running(database, folder) as service:
            yield service, users
    finally:
        users.engine.dispose()


def postgres_available() -> bool:
    return PG_BIN is not None and shutil.which("runuser") is not None and os.geteuid() == 0


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free port; yields the URL of its `postgres` database.

    Its folder is made directly under the temporary directory: the `postgres` user cannot
    enter pytest's root-only folders.
    """
    assert PG_BIN is not None
    folder = Path(tempfile.mkdtemp(prefix="fitaas-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    os.chmod(folder, 0o700)
    data, log = folder / "data", folder / "pg.log"
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    as_postgres(
        str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"
    )
    as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(log),
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off",
        "-w",
        "start",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def fresh_postgres_database(url: str, name: str) -> str:
    """Create an empty database on the server; returns its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def client(service: Service, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=service.url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def upload(http: httpx.Client, kind: str, path: Path, compress: bool = False) -> str:
    body = path.read_bytes()
    if compress:
        body = gzip.compress(body)
    response = http.post(f"/{kind}s", content=body)
    assert response.status_code == 201, response.text
    return str(response.json()["digest"])


# Jobs that must still be running when the test acts on them: pyhf's own fits (the default
# fast path computes the demo's 20 points in about a second).
SLOW = {"fast": False}


def submit(http: httpx.Client, demo: Path, **extra: Any) -> dict[str, Any]:
    body = {
        "workspace": upload(http, "workspace", demo / "BkgOnly.json", compress=True),
        "patchset": upload(http, "patchset", demo / "patchset.json"),
        "patches": PATCHES,
    } | extra
    response = http.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait(http: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "cancelled"):
            return dict(job)
        if job["state"] == "failed":
            raise AssertionError(f"job {job_id} failed: {job['error']}")
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not finished after {timeout} s")


def stored_created(database: str) -> dict[str, float]:
    engine = db.connect(database)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.results.c.key, db.results.c.created)).all()
    engine.dispose()
    return {str(k): float(c) for k, c in rows}


# Schema-valid bodies the service may still refuse: a valid pyhf document or a digest of
# one's own upload is more than JSON Schema can say (422 names what is wrong).
FUZZ_CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
"""


def fuzz(url: str, token: str, examples: int) -> tuple[int, list[str]]:
    """Send generated requests (positive and negative) to every operation, each answer
    held to every check schemathesis has (no 5xx, status codes, content types, headers and
    bodies as the OpenAPI document declares them, invalid data rejected, valid data
    accepted, authentication enforced, ...); returns how many, and the failures."""
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_str(FUZZ_CONFIG)
    schema = schemathesis.openapi.from_url(url + "/openapi.json", config=config)
    checks = CHECKS.get_all()
    sent = 0
    errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:

            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                derandomize=True,
                database=None,
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                nonlocal sent
                sent += 1
                try:
                    case.call_and_validate(
                        base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=checks
                    )
                except BaseExceptionGroup as group:  # schemathesis's FailureGroup
                    for failure in group.exceptions:
                        title = str(failure).strip().splitlines()[0]
                        errors.append(f"{case.method} {case.formatted_path}: {title}")

            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                check()  # (no negative case exists for an operation without inputs)
    return sent, errors


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full."""
    with contextlib.suppress(OSError), path.open("wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
