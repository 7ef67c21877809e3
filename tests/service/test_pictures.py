"""The service's picture cache: one render per change of a job, whoever asks, and nobody
waits for a newer picture while an older one can be shown (issue 13, item 8)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fitaas.service.pictures import PictureCache


class Renderer:
    """Counts renders; each takes ``seconds`` and returns the version it drew."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, version: int) -> bytes:
        with self.lock:
            self.calls.append(version)
        time.sleep(self.seconds)
        return f"picture {version}".encode()


def test_many_first_requests_render_once() -> None:
    cache, render = PictureCache(), Renderer(0.3)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: cache.get("job", 1, lambda: render(1)), range(10)))
    assert render.calls == [1]
    assert answers == [(1, b"picture 1")] * 10


def test_a_newer_version_is_drawn_in_the_background_while_the_kept_one_is_sent() -> None:
    cache, render = PictureCache(), Renderer(0.5)
    assert cache.get("job", 1, lambda: render(1)) == (1, b"picture 1")
    start = time.perf_counter()
    assert cache.get("job", 2, lambda: render(2)) == (1, b"picture 1")  # at once
    assert cache.get("job", 2, lambda: render(2)) == (1, b"picture 1")  # (one render)
    assert time.perf_counter() - start < 0.4
    deadline = time.monotonic() + 10
    while cache.get("job", 2, lambda: render(2))[0] != 2:
        assert time.monotonic() < deadline, "the newer picture was never drawn"
        time.sleep(0.05)
    assert render.calls == [1, 2]
    assert cache.etag("job", 1) != cache.etag("job", 2)


def test_requests_that_waited_for_a_first_picture_take_it() -> None:
    # They used to draw the job again, one after another, each for its own version.
    cache, render = PictureCache(), Renderer(0.3)
    first = threading.Thread(target=cache.get, args=("job", 1, lambda: render(1)))
    first.start()
    time.sleep(0.05)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda v: cache.get("job", v, lambda: render(v)), (2, 3, 4)))
    first.join()
    assert answers == [(1, b"picture 1")] * 3
    assert render.calls[0] == 1 and len(render.calls) <= 2  # and one newer, in the background


def test_a_failed_render_keeps_nothing_and_raises() -> None:
    cache = PictureCache()

    def broken() -> bytes:
        raise ValueError("no picture yet")

    try:
        cache.get("job", 1, broken)
    except ValueError as exc:
        assert "no picture yet" in str(exc)
    else:
        raise AssertionError("the render's error was swallowed")
    assert cache.get("job", 1, lambda: b"now") == (1, b"now")
