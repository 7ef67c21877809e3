"""Schemathesis against a real `fitaas serve`: inputs generated from the service's own
OpenAPI schema (and beyond it: wrong types, NaN, huge numbers) never get a 5xx, and the
server log holds no traceback (issue 13). A longer run: benchmarks/reliability.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service_process import Service, Users, client, fuzz, running, upload

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")


class Fuzzed:
    """The server under test and a token."""

    def __init__(self, service: Service, token: str) -> None:
        self.service = service
        self.token = token


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Iterator[Fuzzed]:
    folder = tmp_path_factory.mktemp("fuzz")
    database = f"sqlite:///{folder / 'service.sqlite'}"
    users = Users(database)
    users.engine.dispose()
    with running(database, folder, max_upload_mb=1.0) as service:
        with client(service, users.alice) as http:  # something to find: a workspace and a job
            workspace = upload(http, "workspace", demo / "BkgOnly.json")
            patchset = upload(http, "patchset", demo / "patchset.json")
            answer = http.post(
                "/jobs",
                json={"workspace": workspace, "patchset": patchset, "patches": ["demo_700_0"]},
            )
            assert answer.status_code == 201, answer.text
        yield Fuzzed(service, users.alice)


def test_no_input_gets_a_server_error(fuzzed: Fuzzed) -> None:
    sent, errors = fuzz(fuzzed.service.url, fuzzed.token, examples=10)

    assert sent > 100
    assert not errors, errors
    log = fuzzed.service.log.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
