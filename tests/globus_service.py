"""A stand-in for the Globus Compute cloud service and a remote endpoint (tests only).

The cloud service cannot exist here; everything up to it is real. Each submission is
serialized with the SDK's own ``ComputeSerializer`` (as the SDK sends it), refused above
the service's 10 MB limit, run from those bytes in a separate process (the endpoint's
worker), and its result comes back serialized, or as ``TaskExecutionFailed`` carrying the
remote traceback as text, as the service returns errors.
"""

from __future__ import annotations

import multiprocessing
import traceback
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.serialize import ComputeSerializer

LIMIT = 10 * 1000 * 1000


def endpoint_run(payload: str) -> tuple[bool, str]:
    """On the 'endpoint': deserialize, run, serialize the result or format the error."""
    serializer = ComputeSerializer()
    try:
        fn, args, kwargs = serializer.unpack_and_deserialize(payload)
        result = serializer.serialize(fn(*args, **kwargs))
    except Exception:
        return False, traceback.format_exc()
    if len(result) > LIMIT:
        return False, f"MaxResultSizeExceeded: result of {len(result)} bytes exceeds {LIMIT}"
    return True, result


class CloudStandIn(Executor):
    """Submissions go through SDK serialization to a process pool playing the endpoint."""

    def __init__(self, endpoint_id: str, amqp_port: int = 443, workers: int = 2) -> None:
        self.endpoint_id = endpoint_id
        self.serializer = ComputeSerializer()
        self.submissions: list[int] = []
        self.batch_size = 128  # tasks per request, as the SDK's Executor
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        # The SDK's task payload: function, args and kwargs, each serialized, then packed.
        payload = self.serializer.pack_buffers(
            [self.serializer.serialize(x) for x in (fn, args, kwargs)]
        )
        size = len(payload)
        if size > LIMIT:
            raise ValueError(f"the service refuses a submission of {size} bytes (limit {LIMIT})")
        self.submissions.append(size)
        remote = self._pool.submit(endpoint_run, payload)
        future: Future[Any] = Future()

        def done(finished: Future[tuple[bool, str]]) -> None:
            try:
                ok, data = finished.result()
            except Exception as exc:  # the endpoint's worker died
                future.set_exception(TaskExecutionFailed(f"WorkerLost: {exc!r}"))
                return
            if ok:
                future.set_result(self.serializer.deserialize(data))
            else:
                future.set_exception(TaskExecutionFailed(str(data)))

        remote.add_done_callback(done)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
