"""The Globus Compute engine (the successor of funcX): tasks go to a remote endpoint.

The SDK's ``globus_compute_sdk.Executor`` is a ``concurrent.futures.Executor``; the
Globus cloud service carries tasks to the endpoint and results back. Its documented
limits shape what fitaas sends: at most 10 MB per submission (a whole batch of tasks
counts) and per result, about 20 requests per 10 s (the SDK batches submissions), and
Python and dill versions that match on both sides. fitaas checks what it can before the
scan: credentials, the size of every task, and (with a probe task) the endpoint's Python,
dill, pyhf and fitaas versions.
"""

from __future__ import annotations

import math
import os
import pickle
import platform
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, ClassVar

from fitaas.engines.base import Engine, EngineError, missing_extra
from fitaas.engines.settings import Schema, schema_lines
from fitaas.errors import InputError

__all__ = [
    "MAX_RESULT_BYTES",
    "MAX_SUBMISSION_BYTES",
    "GlobusEngine",
    "check_environment",
    "remote_environment",
    "remote_task",
]

MAX_SUBMISSION_BYTES = 10 * 1000 * 1000
MAX_RESULT_BYTES = 10 * 1000 * 1000


def remote_task(name: str, *args: Any) -> Any:
    """The task the endpoint runs: the worker entry point ``name`` of :mod:`fitaas.worker.tasks`
    (``run_points``, ``run_toy_blocks``, ``run_held_fits``, ``run_hypotests``), imported
    there.

    The SDK may ship a function as its source text; importing inside keeps the task
    independent of how it travelled (fitaas must be installed on the endpoint).
    """
    from fitaas.worker import tasks

    if name not in tasks.__all__ or not name.startswith("run_"):
        raise ValueError(f"not a fitaas task: {name}")
    return getattr(tasks, name)(*args)


def remote_environment() -> dict[str, str]:
    """The probe task: versions on the endpoint's workers."""
    from fitaas.worker.process import worker_environment

    return worker_environment()


def check_environment(remote: dict[str, str]) -> None:
    """Refuse an endpoint whose workers would not understand our tasks.

    Raises:
        EngineError: Python (major.minor), dill or fitaas/pyhf differ, named.
    """
    from fitaas.worker.process import worker_environment

    local = worker_environment()
    problems = []
    if remote.get("python", "").split(".")[:2] != local["python"].split(".")[:2]:
        problems.append(f"Python {remote.get('python')} there, {local['python']} here")
    for name in ("dill", "pyhf", "fitaas"):
        if remote.get(name) != local[name]:
            problems.append(f"{name} {remote.get(name)} there, {local[name]} here")
    if problems:
        raise EngineError(
            "the Globus Compute endpoint's workers differ from this machine: "
            + "; ".join(problems)
            + " (install the same versions in the endpoint's worker environment)"
        )


def _credentials() -> None:
    client_id = os.environ.get("GLOBUS_COMPUTE_CLIENT_ID")
    secret = os.environ.get("GLOBUS_COMPUTE_CLIENT_SECRET")
    if bool(client_id) != bool(secret):
        missing = "GLOBUS_COMPUTE_CLIENT_SECRET" if client_id else "GLOBUS_COMPUTE_CLIENT_ID"
        raise EngineError(f"Globus credentials: {missing} is not set (set both, or neither)")
    tokens = Path(os.environ.get("GLOBUS_COMPUTE_USER_DIR", Path.home() / ".globus_compute"))
    if not client_id and not (tokens / "storage.db").exists():
        raise EngineError(
            "no Globus credentials: set GLOBUS_COMPUTE_CLIENT_ID and "
            "GLOBUS_COMPUTE_CLIENT_SECRET (a confidential client), or log in once "
            "interactively with the Globus Compute SDK"
        )


def _sdk_executor(**kwargs: Any) -> Executor:
    try:
        from globus_compute_sdk import Executor as GlobusExecutor
    except ImportError as exc:
        raise missing_extra("globus", exc) from None
    return GlobusExecutor(**kwargs)


class GlobusEngine(Engine):
    """A Globus Compute endpoint, through the SDK's Executor.

    Args:
        settings: The validated ``[globus]`` section: ``endpoint_id``, ``amqp_port``.
        retries: How many times a lost task is sent again.
        batch_size: Points per task; 0 chooses automatically (within the size limits).
        shared_path: A folder the endpoint's workers can read, for large workspaces.
        executor_factory: Makes the executor from keyword arguments (default: the SDK's
            ``Executor``); tests put a stand-in for the cloud service here.
        probe_timeout: Seconds to wait for the version probe.
    """

    name = "globus"
    extra_module = "globus_compute_sdk"
    section: ClassVar[Schema] = {
        "endpoint_id": ((str,), "", "the Globus Compute endpoint's UUID"),
        "amqp_port": ((int,), 443, "port for results (443 passes most firewalls; 5671 is AMQPS)"),
    }
    max_submission_bytes = MAX_SUBMISSION_BYTES
    serialization_overhead = 1.4  # SDK dill + base64 + framing: 1.35x measured on sbottom tasks

    @classmethod
    def check_section(cls, section: dict[str, Any], source: str) -> None:
        """The endpoint's id is a UUID."""
        import uuid

        try:
            uuid.UUID(section.get("endpoint_id", ""))
        except ValueError:
            raise InputError(
                f"{source} [globus]: endpoint_id must be the endpoint's UUID, "
                f"got {section.get('endpoint_id', '')!r}"
            ) from None

    @classmethod
    def summary(cls, section: dict[str, Any]) -> str:
        """The endpoint."""
        return f"Globus Compute endpoint {section['endpoint_id']}"

    @classmethod
    def template(cls, choice: str) -> list[str]:
        """The ``[globus]`` table, and how to authenticate."""
        return [
            "",
            "[globus]",
            *schema_lines(cls.section, {"endpoint_id": "00000000-0000-0000-0000-000000000000"}),
            "",
            "# Authentication: set GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET",
            "# (a Globus confidential client), or log in once with",
            "# `globus-compute-endpoint login`.",
        ]

    def __init__(
        self,
        settings: dict[str, Any] | None = None,
        retries: int = 2,
        batch_size: int = 0,
        shared_path: str = "",
        executor_factory: Callable[..., Executor] | None = None,
        probe_timeout: float = 300.0,
    ) -> None:
        super().__init__(settings, retries, batch_size, shared_path)
        if not self.settings.get("endpoint_id"):
            raise EngineError("the Globus engine needs endpoint_id (the endpoint's UUID)")
        self._factory = executor_factory
        self._probe_timeout = probe_timeout
        self._executor: Executor | None = None
        self._remote: _RemoteTasks | None = None
        self.environment: dict[str, str] = {}

    def start(self) -> None:
        """Check credentials, open the executor, and probe the endpoint's versions."""
        if self._factory is None:
            _credentials()
        factory = self._factory or _sdk_executor
        try:
            self._executor = factory(
                endpoint_id=self.settings["endpoint_id"],
                amqp_port=self.settings.get("amqp_port", 443),
            )
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(
                f"cannot reach the Globus Compute service for endpoint "
                f"{self.settings['endpoint_id']}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            probe = self._executor.submit(remote_environment)
            self.environment = probe.result(timeout=self._probe_timeout)
        except Exception as exc:
            self.stop(cancel=True)
            raise EngineError(
                f"the Globus Compute endpoint {self.settings['endpoint_id']} did not answer "
                f"the version probe: {type(exc).__name__}: {exc}"
            ) from None
        check_environment(self.environment)

    def stop(self, cancel: bool = False) -> None:
        """Close the executor (results of running tasks are then not waited for)."""
        if self._executor is not None:
            self._executor.shutdown(wait=not cancel, cancel_futures=cancel)
            self._executor = None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            raise EngineError("the Globus engine is not started (use it in a with block)")
        if self._remote is None or self._remote._executor is not self._executor:
            self._remote = _RemoteTasks(self._executor)
        return self._remote

    @property
    def workers(self) -> int:
        return 8

    def batch_size_for(self, points: int, lockstep: bool = False) -> int:
        """Several points per task: each task is a round trip through the cloud service
        (in lockstep, as many as on other engines)."""
        if lockstep:
            return super().batch_size_for(points, lockstep)
        return self.batch_size or max(1, min(8, math.ceil(points / (4 * self.workers))))

    def describe(self) -> str:
        """One line about the endpoint, for messages."""
        env = self.environment
        return (
            f"Globus Compute endpoint {self.settings['endpoint_id']} "
            f"(Python {env.get('python', '?')}, here {platform.python_version()})"
        )


class _RemoteTasks(Executor):
    """Submits :func:`remote_task` with the name of a :mod:`fitaas.worker.tasks` entry point in
    place of the local task function.

    The SDK sends up to ``batch_size`` tasks in one request, and the whole request must stay
    under 10 MB: the batch size follows the largest task seen.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._largest = 1

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        size = int(len(pickle.dumps((args, kwargs))) * GlobusEngine.serialization_overhead) + 1
        if size > self._largest and hasattr(self._executor, "batch_size"):
            self._largest = size
            fits = max(1, MAX_SUBMISSION_BYTES // size)
            self._executor.batch_size = min(self._executor.batch_size, fits)
        if getattr(fn, "__module__", None) == "fitaas.worker.tasks":
            return self._executor.submit(remote_task, fn.__name__, *args, **kwargs)
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)
