"""The Dask engine: a distributed cluster behind ``Client.get_executor()``.

A ``LocalCluster`` by default (worker processes with one thread each), a running
scheduler by address, or a dask-jobqueue cluster (``slurm``, ``htcondor``, ``pbs``)
from the endpoint file. The workspace is broadcast to the workers once (``scatter``) and
tasks carry only its handle.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from typing import Any, ClassVar

from fitaas.engines.base import Engine, EngineError, missing_extra
from fitaas.engines.local import default_workers
from fitaas.engines.settings import Schema, check_signature, schema_lines, toml_value
from fitaas.errors import InputError
from fitaas.worker.payloads import WorkspaceRef, compress_workspace

__all__ = ["JOBQUEUE", "DaskEngine", "jobqueue_cluster", "jobqueue_parameters"]

JOBQUEUE = {"slurm": "SLURMCluster", "htcondor": "HTCondorCluster", "pbs": "PBSCluster"}


_JOBQUEUE_COMMON = {
    "cores": 4,
    "memory": "8GB",
    "job_script_prologue": ["source /path/to/venv/bin/activate"],
}
JOBQUEUE_EXAMPLES: dict[str, dict[str, Any]] = {
    "slurm": {**_JOBQUEUE_COMMON, "queue": "debug", "account": "", "walltime": "01:00:00"},
    "pbs": {**_JOBQUEUE_COMMON, "queue": "normal", "account": "", "walltime": "01:00:00"},
    "htcondor": {**_JOBQUEUE_COMMON, "disk": "4GB"},
}


def _jobqueue_class(kind: str) -> Any:
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise missing_extra("dask", exc) from None
    if kind not in JOBQUEUE:
        raise EngineError(
            f"unknown dask-jobqueue cluster '{kind}'; choose among {', '.join(JOBQUEUE)}"
        )
    return getattr(dask_jobqueue, JOBQUEUE[kind])


def jobqueue_parameters(kind: str) -> dict[str, Any]:
    """The settings a dask-jobqueue cluster accepts (its job class's signature), with defaults."""
    cluster = _jobqueue_class(kind)
    names: dict[str, Any] = {}
    for cls in (cluster.job_cls, cluster.job_cls.__mro__[1]):
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name not in ("self", "scheduler", "name", "config_name") and p.kind not in (
                inspect.Parameter.VAR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL,
            ):
                names.setdefault(name, p.default)
    return names


def jobqueue_cluster(kind: str, options: dict[str, Any]) -> Any:
    """A dask-jobqueue cluster (its scheduler starts here; jobs start when scaled)."""
    return _jobqueue_class(kind)(**options)


class DaskEngine(Engine):
    """Dask distributed: a LocalCluster, a scheduler address, or a dask-jobqueue cluster.

    Args:
        settings: The validated ``[dask]`` section of an endpoint file: ``cluster``
            (``local``, ``slurm``, ``htcondor``, ``pbs``), ``scheduler`` (an address),
            ``n_workers``, ``threads_per_worker``, and ``jobqueue`` options.
        retries: How many times a lost task is sent again.
        batch_size: Points per task; 0 chooses automatically.
        shared_path: A folder every worker can read, for workspaces.
    """

    name = "dask"
    eager_payload = True
    extra_module = "distributed"
    section: ClassVar[Schema] = {
        "cluster": ((str,), "local", "local | slurm | htcondor | pbs"),
        "scheduler": ((str,), "", "address of a running scheduler, e.g. tcp://host:8786"),
        "n_workers": ((int,), 0, "workers of a LocalCluster (0: one per core)"),
        "threads_per_worker": ((int,), 1, "threads per worker (1: workers don't fight over cores)"),
        "jobs": ((int,), 1, "batch jobs to start for a dask-jobqueue cluster"),
        "jobqueue": ((dict,), {}, "(the [dask.jobqueue] table)"),
    }

    @classmethod
    def check_section(cls, section: dict[str, Any], source: str) -> None:
        """A known cluster kind; jobqueue options its class accepts (only for those)."""
        cluster = section.get("cluster", "local")
        if cluster != "local":
            if cluster not in JOBQUEUE:
                raise InputError(
                    f"{source} [dask]: cluster '{cluster}' "
                    f"is not one of local, {', '.join(JOBQUEUE)}"
                )
            check_signature(
                f"{source} [dask.jobqueue]",
                section.get("jobqueue", {}),
                jobqueue_parameters(cluster),
            )
        elif section.get("jobqueue"):
            raise InputError(
                f"{source} [dask.jobqueue]: only for a dask-jobqueue cluster "
                "(cluster = slurm, htcondor or pbs)"
            )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Engine:
        """Dask's client; ``workers`` sets ``n_workers`` unless the table does."""
        section = settings.get("dask", {})
        if settings.get("workers") and not section.get("n_workers"):
            settings = {**settings, "dask": {**section, "n_workers": settings["workers"]}}
        return super().from_settings(settings)

    @classmethod
    def summary(cls, section: dict[str, Any]) -> str:
        """Where the scheduler is."""
        where = section.get("scheduler") or f"{section.get('cluster', 'local')} cluster"
        return f"Dask distributed on {where}"

    @classmethod
    def template(cls, choice: str) -> list[str]:
        """The ``[dask]`` table for a cluster kind (with jobqueue options for a batch one)."""
        lines = ["", "[dask]", *schema_lines(cls.section, {"cluster": choice})]
        if choice != "local":
            lines += [
                "",
                "# Keyword arguments of the dask-jobqueue cluster (any its job class accepts).",
                "[dask.jobqueue]",
                *(f"{k} = {toml_value(v)}" for k, v in JOBQUEUE_EXAMPLES[choice].items()),
            ]
        return lines

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: Any = None
        self._cluster: Any = None
        self._executor: Executor | None = None

    def start(self) -> None:
        """Start (or connect to) the cluster and a client."""
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise missing_extra("dask", exc) from None
        kind = self.settings.get("cluster", "local")
        workers = self.settings.get("n_workers") or default_workers()
        try:
            if self.settings.get("scheduler"):
                self._client = Client(self.settings["scheduler"], timeout="10s")
            elif kind == "local":
                self._cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=self.settings.get("threads_per_worker", 1),
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,  # shutdown chatter; failures reach the scan
                )
                self._client = Client(self._cluster)
            else:
                self._cluster = jobqueue_cluster(kind, self.settings.get("jobqueue", {}))
                self._cluster.scale(jobs=self.settings.get("jobs", 1))
                self._client = Client(self._cluster)
        except (OSError, TimeoutError) as exc:
            self.stop()
            where = self.settings.get("scheduler") or kind
            raise EngineError(f"cannot reach the Dask scheduler ({where}): {exc}") from None
        self._executor = self._client.get_executor(pure=False)

    def stop(self, cancel: bool = False) -> None:
        """Close the client and the cluster this engine started."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        self._executor = None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            raise EngineError("the Dask engine is not started (use it in a with block)")
        return self._executor

    @property
    def workers(self) -> int:
        if self._client is not None:
            return max(1, len(self._client.scheduler_info().get("workers", {})))
        return int(self.settings.get("n_workers") or default_workers())

    def install(self, digest: str, spec: dict[str, Any]) -> WorkspaceRef:
        """Broadcast the compressed workspace to every worker once (unless on a shared path)."""
        ref = super().install(digest, spec)
        if not ref.path and digest not in self._payloads:
            self._payloads[digest] = self._client.scatter(
                compress_workspace(spec), broadcast=True, hash=False
            )
        return ref

    def payload(self, digest: str, spec: dict[str, Any]) -> Any:
        """The scattered workspace: a handle Dask resolves on the worker."""
        return self._payloads.get(digest)

    def abandon(self, futures: Iterable[Future[Any]]) -> None:
        """Cancel the tasks on the cluster."""
        for future in futures:
            future.cancel()
