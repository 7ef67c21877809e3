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
from typing import Any, ClassVar

from fitaas.engines.base import Engine, EngineError, missing_extra
from fitaas.engines.local import default_workers
from fitaas.engines.settings import Schema, check_signature, schema_lines, toml_value
from fitaas.errors import InputError

__all__ = [
    "LAUNCHERS",
    "PROVIDERS",
    "NoClusterHere",
    "ParslEngine",
    "parsl_config",
    "provider_parameters",
]

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


PROVIDER_EXAMPLES: dict[str, dict[str, Any]] = {
    "local": {"init_blocks": 1, "max_blocks": 1},
    "slurm": {
        "partition": "debug",
        "account": "",
        "nodes_per_block": 1,
        "init_blocks": 1,
        "max_blocks": 1,
        "walltime": "01:00:00",
        "exclusive": False,
        "scheduler_options": "",
        "worker_init": "source /path/to/venv/bin/activate",
    },
    "condor": {
        "nodes_per_block": 1,
        "init_blocks": 1,
        "max_blocks": 10,
        "walltime": "01:00:00",
        "requirements": "",
        "scheduler_options": "",
        "worker_init": "source /path/to/venv/bin/activate",
    },
    "pbspro": {
        "queue": "normal",
        "account": "",
        "select_options": "",
        "cpus_per_node": 1,
        "nodes_per_block": 1,
        "init_blocks": 1,
        "max_blocks": 1,
        "walltime": "01:00:00",
        "worker_init": "source /path/to/venv/bin/activate",
    },
    "torque": {
        "queue": "normal",
        "account": "",
        "nodes_per_block": 1,
        "init_blocks": 1,
        "max_blocks": 1,
        "walltime": "01:00:00",
        "worker_init": "source /path/to/venv/bin/activate",
    },
    "kubernetes": {
        "image": "registry.example.org/analysis/fitaas:latest",
        "namespace": "default",
        "init_blocks": 0,
        "min_blocks": 0,
        "max_blocks": 100,
        "max_cpu": 1.0,
        "max_mem": "2Gi",
        "worker_init": "",
    },
}
_LAUNCHER_FOR = {"slurm": "srun", "torque": "aprun", "pbspro": "mpiexec"}


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


class NoClusterHere(EngineError):
    """The provider's cluster is not configured on this machine (e.g. no kube-config): the
    endpoint file may be right for where it runs."""


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
        if type(exc).__name__ == "ConfigException":  # (kubernetes.config: no cluster here)
            raise NoClusterHere(
                f"no Kubernetes cluster configuration here ({exc}): the provider reads it "
                "where the endpoint runs (a kube-config file, or in the cluster)"
            ) from None
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
    extra_module = "parsl"
    section: ClassVar[Schema] = {
        "provider": ((str,), "local", "local | slurm | condor | pbspro | torque | kubernetes"),
        "launcher": ((str,), "single", "single | simple | srun | aprun | mpiexec"),
        "workers_per_node": ((int,), 0, "workers per node (0: one per core)"),
        "cores_per_worker": ((int, float), 1.0, "cores each worker uses"),
        "available_accelerators": (
            (int, list),
            [],
            'GPUs to pin workers to: a count, or a list of ids like ["0", "1"]',
        ),
        "strategy_period": ((int, float), 0.2, "seconds between Parsl's scaling decisions"),
        "address": ((str,), "", "address workers on other nodes connect back to (default: auto)"),
        "provider_options": ((dict,), {}, "(the [parsl.provider_options] table)"),
    }

    @classmethod
    def check_section(cls, section: dict[str, Any], source: str) -> None:
        """A known provider and launcher; provider options its class accepts."""
        provider = section.get("provider", "local")
        if provider not in PROVIDERS:
            raise InputError(
                f"{source} [parsl]: provider '{provider}' is not one of {', '.join(PROVIDERS)}"
            )
        if section.get("launcher", "single") not in LAUNCHERS:
            raise InputError(
                f"{source} [parsl]: launcher '{section['launcher']}' "
                f"is not one of {', '.join(LAUNCHERS)}"
            )
        accepted = provider_parameters(provider)
        accepted.pop("launcher", None)
        check_signature(
            f"{source} [parsl.provider_options]", section.get("provider_options", {}), accepted
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Engine:
        """Parsl's executor; ``workers`` sets ``workers_per_node`` unless the table does."""
        section = settings.get("parsl", {})
        if settings.get("workers") and not section.get("workers_per_node"):
            settings = {**settings, "parsl": {**section, "workers_per_node": settings["workers"]}}
        return super().from_settings(settings)

    @classmethod
    def summary(cls, section: dict[str, Any]) -> str:
        """The executor and its provider and launcher, as Parsl builds them (a provider whose
        cluster is not configured on this machine is named, and said so)."""
        with tempfile.TemporaryDirectory() as run_dir:
            try:
                config = parsl_config(section, run_dir)
            except NoClusterHere as exc:
                provider = section.get("provider", "local")
                return f"Parsl HighThroughputExecutor with the {provider} provider; {exc}"
        executor = config.executors[0]
        return (
            f"Parsl HighThroughputExecutor with {type(executor.provider).__name__}"
            f" ({type(getattr(executor.provider, 'launcher', None)).__name__})"
        )

    @classmethod
    def template(cls, choice: str) -> list[str]:
        """The ``[parsl]`` table for a provider, with an example of its options."""
        if choice not in PROVIDER_EXAMPLES:
            raise InputError(f"provider '{choice}' is not one of {', '.join(PROVIDER_EXAMPLES)}")
        values = {"provider": choice, "launcher": _LAUNCHER_FOR.get(choice, "single")}
        return [
            "",
            "[parsl]",
            *schema_lines(cls.section, values),
            "",
            "# Keyword arguments of Parsl's provider class (any it accepts).",
            "[parsl.provider_options]",
            *(f"{k} = {toml_value(v)}" for k, v in PROVIDER_EXAMPLES[choice].items()),
        ]

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
