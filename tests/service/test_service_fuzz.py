"""Schemathesis against a real `fitaas serve`: inputs generated from the service's own
OpenAPI schema (and beyond it: wrong types, NaN, huge numbers) with every check schemathesis
has (no 5xx; status codes, content types and bodies as the document declares them; invalid
data rejected, valid data accepted; authentication enforced), and no traceback in the
server log (issues 13 and 30). A longer run: the slow test, benchmarks/reliability.py."""

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
    # (negative cases send wrong tokens: the limit on them would answer 429 to the rest)
    options = ("--auth-failures-per-minute", "1000000")
    with running(database, folder, max_upload_mb=1.0, options=options) as service:
        with client(service, users.alice) as http:  # something to find: a workspace and a job
            workspace = upload(http, "workspace", demo / "BkgOnly.json")
            patchset = upload(http, "patchset", demo / "patchset.json")
            answer = http.post(
                "/jobs",
                json={"workspace": workspace, "patchset": patchset, "patches": ["demo_700_0"]},
            )
            assert answer.status_code == 201, answer.text
        yield Fuzzed(service, users.alice)


def _fuzzed_clean(fuzzed: Fuzzed, examples: int) -> int:
    sent, errors = fuzz(fuzzed.service.url, fuzzed.token, examples=examples)
    assert not errors, "\n".join(errors[:20])
    log = fuzzed.service.log.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
    return sent


def test_every_answer_is_the_one_the_openapi_document_declares(fuzzed: Fuzzed) -> None:
    assert _fuzzed_clean(fuzzed, examples=5) > 100


@pytest.mark.slow
def test_many_generated_requests_are_all_answered_as_declared(fuzzed: Fuzzed) -> None:
    assert _fuzzed_clean(fuzzed, examples=100) > 2000
