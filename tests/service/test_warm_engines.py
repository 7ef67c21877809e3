"""The service's engines shared by the jobs of an endpoint (a fake engine: the contract)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import pytest

from fitaas.engines.base import Engine
from fitaas.service.warm_engines import WarmEngines


class FakeEngine(Engine):
    name = "fake"
    started = 0

    def __init__(self) -> None:
        super().__init__()
        self.stopped: list[bool] = []
        self._pool = ThreadPoolExecutor(1)

    def start(self) -> None:
        time.sleep(0.2)  # (starting takes a while: two jobs that start at once must share)
        FakeEngine.started += 1

    def stop(self, cancel: bool = False) -> None:
        self.stopped.append(cancel)

    @property
    def executor(self) -> Executor:
        return self._pool


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> WarmEngines:
    import fitaas.engines.endpoint as endpoint

    FakeEngine.started = 0
    monkeypatch.setattr(endpoint, "engine_from_settings", lambda settings: FakeEngine())
    return WarmEngines(keep_seconds=60)


def test_jobs_of_an_endpoint_share_one_engine_started_once(engines: WarmEngines) -> None:
    settings: dict[str, Any] = {"engine": "local"}
    taken: list[Engine] = []
    threads = [
        threading.Thread(target=lambda: taken.append(engines.take(1, settings))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert FakeEngine.started == 1 and len({id(e) for e in taken}) == 1
    engine = taken[0]
    assert isinstance(engine, FakeEngine)
    # a cancelled job does not stop the engine the others use
    engines.discard(engine)
    engines.give_back(1, settings, engine)
    assert engine.stopped == []
    # the last one's cancel stops it, without waiting for its tasks
    engines.discard(engine)
    assert engine.stopped == [True]
    # another endpoint, or other settings, get their own
    other = engines.take(2, settings)
    assert other is not engine and FakeEngine.started == 2
    engines.give_back(2, settings, other)
    assert engines.take(2, settings) is other  # kept warm for the next job
    assert engines.take(2, {"engine": "local", "workers": 3}) is not other
