"""The Parsl engine: a HighThroughputExecutor on this machine or on a batch system.

``provider = "local"`` runs the same executor as on a cluster, with workers on this
machine; ``slurm``, ``condor``, ``pbspro``, ``torque`` and ``kubernetes`` obtain
nodes from the site's scheduler. Tasks go through :class:`parsl.concurrent.ParslPoolExecutor`,
a ``concurrent.futures.Executor``.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from fitaas.engines.base import Engine, EngineError, missing_extra
from fitaas.engines.local import default_workers

__all__ = ["LAUNCHERS", "PROVIDERS", "ParslEngine", "parsl_config", "provider_parameters"]

PROVIDERS = {
    "local": "LocalProvider",
    "slurm": "SlurmProvider",
    "condor": "CondorProvider",
    "pbspro": "PBSProProvider",
    "torque": "TorqueProvider",
    "kubernetes": "KubernetesProvider",
}
LAUNCHERS = {
    "single": "SingleNodeLauncher",
    "simple": "SimpleLauncher",
    "srun": "SrunLauncher",
    "aprun": "AprunLauncher",
    "mpiexec": "MpiExecLauncher",
}


def _provider_class(provider: str) -> Any:
    try:
        import parsl.providers
    except ImportError as exc:
        raise missing_extra("parsl", exc) from None
    if provider not in PROVIDERS:
        raise EngineError(
            f"unknown Parsl provider '{provider}'; choose among {', '.join(PROVIDERS)}"
        )
    try:
        return getattr(parsl.providers, PROVIDERS[provider])
    except ImportError as exc:  # KubernetesProvider needs the kubernetes package
        extra = "fitaas[kubernetes]" if provider == "kubernetes" else exc.name
        raise EngineError(
            f"the Parsl {provider} provider needs {exc.name}: pip install '{extra}'"
        ) from None


def provider_parameters(provider: str) -> dict[str, Any]:
    """The settings a Parsl provider accepts, with their defaults (from its signature).

    Args:
        provider: ``local``, ``slurm``, ``condor``, ``pbspro``, ``torque`` or ``kubernetes``.

    Returns:
        Parameter name to default value (``inspect.Parameter.empty`` when required).
    """
    signature = inspect.signature(_provider_class(provider).__init__)
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    }


def parsl_config(settings: dict[str, Any], run_dir: str) -> Any:
    """Build the Parsl :class:`~parsl.config.Config` of a validated ``[parsl]`` section.

    Args:
        settings: The ``[parsl]`` table of an endpoint file (with ``provider`` options
            in its ``provider_options`` key).
        run_dir: Where Parsl keeps its logs.

    Returns:
        The configuration, not yet loaded.
    """
    try:
        import parsl.launchers
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
    except ImportError as exc:
        raise missing_extra("parsl", exc) from None
    provider_name = settings.get("provider", "local")
    # An empty string in an endpoint file means "not set": leave Parsl's default.
    options = {k: v for k, v in settings.get("provider_options", {}).items() if v != ""}
    launcher = settings.get("launcher", "single")
    if launcher not in LAUNCHERS:
        raise EngineError(f"unknown launcher '{launcher}'; choose among {', '.join(LAUNCHERS)}")
    if provider_name != "kubernetes":
        options["launcher"] = getattr(parsl.launchers, LAUNCHERS[launcher])()
    # Workers need the same Python and fitaas: by default, this environment's bin on PATH.
    bin_dir = str(Path(sys.executable).parent)
    options.setdefault("worker_init", f"export PATH={bin_dir}:$PATH")
    if provider_name == "local":
        options.setdefault("init_blocks", 1)
        options.setdefault("max_blocks", 1)
    try:
        provider = _provider_class(provider_name)(**options)
    except EngineError:
        raise
    except Exception as exc:  # e.g. Kubernetes without its client library or cluster config
        hint = ""
        if type(exc).__name__ == "OptionalModuleMissing":
            hint = f"; pip install 'fitaas[{provider_name}]'"
        raise EngineError(
            f"cannot set up the Parsl {provider_name} provider: {type(exc).__name__}: {exc}{hint}"
        ) from None
    workers = settings.get("workers_per_node") or None
    htex_options: dict[str, Any] = {
        "label": "fitaas",
        "provider": provider,
        "max_workers_per_node": workers,
        "cores_per_worker": settings.get("cores_per_worker", 1.0),
        "available_accelerators": settings.get("available_accelerators", ()),
        "worker_logdir_root": run_dir,
    }
    if settings.get("address"):
        htex_options["address"] = settings["address"]
    if provider_name == "local":
        htex_options["address"] = "127.0.0.1"
    return Config(
        executors=[HighThroughputExecutor(**htex_options)],
        strategy_period=settings.get("strategy_period", 0.2),
        run_dir=run_dir,
        retries=0,  # fitaas resends lost tasks itself, the same way on every engine
        initialize_logging=False,
        usage_tracking=0,
    )


class ParslEngine(Engine):
    """Parsl's HighThroughputExecutor, started with a provider; see :func:`parsl_config`.

    Args:
        settings: The validated ``[parsl]`` section of an endpoint file.
        retries: How many times a task whose worker died is sent again.
        batch_size: Points per task; 0 chooses automatically.
        shared_path: A folder every worker can read, for workspaces.
    """

    name = "parsl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool: Any = None
        self._run_dir: str | None = None

    def start(self) -> None:
        """Load the Parsl configuration and start the executor (and its first block)."""
        try:
            from parsl.concurrent import ParslPoolExecutor
        except ImportError as exc:
            raise missing_extra("parsl", exc) from None
        self._run_dir = tempfile.mkdtemp(prefix="fitaas-parsl-")
        config = parsl_config(self.settings, self._run_dir)
        # Parsl launches its interchange by name: this environment's bin must be on PATH.
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        try:
            self._pool = ParslPoolExecutor(config=config)
        except Exception as exc:
            raise EngineError(f"Parsl could not start: {type(exc).__name__}: {exc}") from None

    def stop(self, cancel: bool = False) -> None:
        """Shut the executor and its blocks down."""
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel)
            self._pool = None
        if self._run_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    @property
    def executor(self) -> Executor:
        if self._pool is None:
            raise EngineError("the Parsl engine is not started (use it in a with block)")
        return self._pool

    def abandon(self, futures: Iterable[Future[Any]]) -> None:
        """Parsl cannot cancel tasks: :meth:`stop` shuts the executor down instead."""

    @property
    def workers(self) -> int:
        per_node = self.settings.get("workers_per_node") or default_workers()
        options = self.settings.get("provider_options", {})
        blocks = options.get("max_blocks", 1) or 1
        return int(per_node * blocks * (options.get("nodes_per_block", 1) or 1))
