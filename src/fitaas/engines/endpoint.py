"""Endpoint files: a TOML file that says where fitaas runs, validated before anything starts.

Example (``fitaas endpoint init --engine parsl --provider slurm site.toml`` writes a
commented one)::

    engine = "parsl"
    retries = 2

    [parsl]
    provider = "slurm"
    launcher = "srun"
    workers_per_node = 4

    [parsl.provider_options]
    partition = "debug"
    walltime = "01:00:00"
    worker_init = "source /path/to/venv/bin/activate"

The ``[parsl.provider_options]`` and ``[dask.jobqueue]`` tables take the keyword arguments of the
Parsl provider or dask-jobqueue cluster named, checked against their signatures.
"""

from __future__ import annotations

import importlib.util
import inspect
import tomllib
from pathlib import Path
from typing import Any

from fitaas.engines.base import Engine, EngineError
from fitaas.errors import InputError

__all__ = [
    "ENGINES",
    "check_endpoint",
    "endpoint_template",
    "engine_from_settings",
    "load_endpoint",
    "validate_settings",
]

ENGINES = ("local", "parsl", "dask", "globus")
_EXTRA_MODULES = {"parsl": "parsl", "dask": "distributed", "globus": "globus_compute_sdk"}

# key: (types, default, help)
_TOP: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "engine": ((str,), "local", "local | parsl | dask | globus"),
    "workers": (
        (int,),
        0,
        "worker processes: of the local pool, per node (parsl), of a Dask LocalCluster; "
        "0: one per core",
    ),
    "retries": ((int,), 2, "times a task whose worker died is sent again"),
    "nice": (
        (int,),
        0,
        "niceness of local worker processes, 0-19 (0: the default, which is 5 under "
        "fitaas serve: its API and page stay quick while the workers fill every core)",
    ),
    "batch_size": ((int,), 0, "signal points per task (0: automatic)"),
    "shared_path": (
        (str,),
        "",
        "a folder every worker can read and write; workspaces are written there once instead "
        "of travelling with tasks, and compiled code is shared there by every block and node",
    ),
}
_SECTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any, str]]] = {
    "parsl": {
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
    },
    "dask": {
        "cluster": ((str,), "local", "local | slurm | htcondor | pbs"),
        "scheduler": ((str,), "", "address of a running scheduler, e.g. tcp://host:8786"),
        "n_workers": ((int,), 0, "workers of a LocalCluster (0: one per core)"),
        "threads_per_worker": ((int,), 1, "threads per worker (1: workers don't fight over cores)"),
        "jobs": ((int,), 1, "batch jobs to start for a dask-jobqueue cluster"),
        "jobqueue": ((dict,), {}, "(the [dask.jobqueue] table)"),
    },
    "globus": {
        "endpoint_id": ((str,), "", "the Globus Compute endpoint's UUID"),
        "amqp_port": ((int,), 443, "port for results (443 passes most firewalls; 5671 is AMQPS)"),
    },
}


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(
        {
            int: "integer",
            float: "number",
            str: "string",
            list: "list",
            dict: "table",
            bool: "true/false",
        }[t]
        for t in types
    )


def _check(
    where: str, table: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], Any, str]]
) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key not in schema:
            raise InputError(f"{where}: unknown key '{key}' (known: {', '.join(schema)})")
        types = schema[key][0]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise InputError(
                f"{where}: '{key}' must be {_type_names(types)}, "
                f"got {type(value).__name__} {value!r}"
            )
        out[key] = value
    return out


def _check_signature(where: str, options: dict[str, Any], accepted: dict[str, Any]) -> None:
    for key, value in options.items():
        if key not in accepted:
            raise InputError(
                f"{where}: unknown key '{key}' (accepted: {', '.join(sorted(accepted))})"
            )
        default = accepted[key]
        if default is inspect.Parameter.empty or default is None:
            continue
        expected = type(default)
        if (
            expected in (int, float)
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            continue
        if not isinstance(value, expected):
            raise InputError(
                f"{where}: '{key}' must be {expected.__name__} like its default {default!r}, "
                f"got {type(value).__name__} {value!r}"
            )


def validate_settings(raw: dict[str, Any], source: str = "endpoint") -> dict[str, Any]:
    """Check an endpoint's settings: known keys, right types, choices, installed extras.

    Args:
        raw: The decoded TOML (or an equivalent dict).
        source: How to name the settings in error messages.

    Returns:
        The settings, with defaults for the top-level keys; validating them again is a no-op.

    Raises:
        InputError: An unknown key, a wrong type or an unknown choice, named.
        EngineError: The engine's extra is not installed.
    """
    raw = dict(raw)
    sections = {name: raw.pop(name) for name in list(raw) if name in _SECTIONS}
    settings = _check(source, raw, _TOP)
    engine = settings.setdefault("engine", "local")
    if engine not in ENGINES:
        raise InputError(f"{source}: engine '{engine}' is not one of {', '.join(ENGINES)}")
    for key in ("workers", "retries", "batch_size"):
        if settings.get(key, 0) < 0:
            raise InputError(f"{source}: '{key}' must be 0 or more")
    if not 0 <= settings.get("nice", 0) <= 19:
        raise InputError(f"{source}: 'nice' must be from 0 to 19")
    module = _EXTRA_MODULES.get(engine)
    if module and importlib.util.find_spec(module) is None:
        raise EngineError(
            f"{source}: the {engine} engine needs its extra: pip install 'fitaas[{engine}]'"
        )
    for name, table in sections.items():
        if not isinstance(table, dict):
            raise InputError(f"{source}: [{name}] must be a table")
        settings[name] = _check(f"{source} [{name}]", table, _SECTIONS[name])
    section = settings.setdefault(engine, {}) if engine != "local" else {}
    if engine == "parsl":
        from fitaas.engines.parsl import LAUNCHERS, PROVIDERS, provider_parameters

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
        _check_signature(
            f"{source} [parsl.provider_options]", section.get("provider_options", {}), accepted
        )
    elif engine == "dask":
        from fitaas.engines.dask import JOBQUEUE, jobqueue_parameters

        cluster = section.get("cluster", "local")
        if cluster != "local":
            if cluster not in JOBQUEUE:
                raise InputError(
                    f"{source} [dask]: cluster '{cluster}' "
                    f"is not one of local, {', '.join(JOBQUEUE)}"
                )
            _check_signature(
                f"{source} [dask.jobqueue]",
                section.get("jobqueue", {}),
                jobqueue_parameters(cluster),
            )
        elif section.get("jobqueue"):
            raise InputError(
                f"{source} [dask.jobqueue]: only for a dask-jobqueue cluster "
                "(cluster = slurm, htcondor or pbs)"
            )
    elif engine == "globus":
        import uuid

        try:
            uuid.UUID(section.get("endpoint_id", ""))
        except ValueError:
            raise InputError(
                f"{source} [globus]: endpoint_id must be the endpoint's UUID, "
                f"got {section.get('endpoint_id', '')!r}"
            ) from None
    return settings


def load_endpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate an endpoint file.

    Raises:
        InputError: The file is missing, is not TOML, or has invalid settings.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such endpoint file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    return validate_settings(raw, str(path))


def engine_from_settings(settings: dict[str, Any]) -> Engine:
    """The (not yet started) engine an endpoint's validated settings describe."""
    settings = validate_settings(settings)
    engine = settings["engine"]
    common = {"retries": settings.get("retries", 2), "batch_size": settings.get("batch_size", 0)}
    if engine == "local":
        from fitaas.engines.local import LocalEngine

        return LocalEngine(
            settings.get("workers") or None, niceness=settings.get("nice", 0), **common
        )
    shared = {"shared_path": settings.get("shared_path", "")}
    section = settings.get(engine, {})
    if engine == "parsl":
        from fitaas.engines.parsl import ParslEngine

        if settings.get("workers") and not section.get("workers_per_node"):
            section = {**section, "workers_per_node": settings["workers"]}
        return ParslEngine(section, **common, **shared)
    if engine == "dask":
        from fitaas.engines.dask import DaskEngine

        if settings.get("workers") and not section.get("n_workers"):
            section = {**section, "n_workers": settings["workers"]}
        return DaskEngine(section, **common, **shared)
    from fitaas.engines.globus import GlobusEngine

    return GlobusEngine(section, **common, **shared)


def check_endpoint(path: str | Path) -> str:
    """Validate an endpoint file and build (without starting) what it describes.

    Returns:
        A one-paragraph summary of the endpoint.
    """
    settings = load_endpoint(path)
    engine = settings["engine"]
    section = settings.get(engine, {})
    lines = [f"{path}: valid; engine {engine}"]
    if engine == "parsl":
        import tempfile

        from fitaas.engines.parsl import parsl_config

        with tempfile.TemporaryDirectory() as run_dir:
            config = parsl_config(section, run_dir)
        executor = config.executors[0]
        lines.append(
            f"Parsl HighThroughputExecutor with {type(executor.provider).__name__}"
            f" ({type(getattr(executor.provider, 'launcher', None)).__name__})"
        )
    elif engine == "dask":
        where = section.get("scheduler") or f"{section.get('cluster', 'local')} cluster"
        lines.append(f"Dask distributed on {where}")
    elif engine == "globus":
        lines.append(f"Globus Compute endpoint {section['endpoint_id']}")
    if settings.get("shared_path"):
        lines.append(f"workspaces through the shared folder {settings['shared_path']}")
    return "; ".join(lines)


_PROVIDER_EXAMPLES: dict[str, dict[str, Any]] = {
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
_JOBQUEUE_COMMON = {
    "cores": 4,
    "memory": "8GB",
    "job_script_prologue": ["source /path/to/venv/bin/activate"],
}
_JOBQUEUE_EXAMPLES: dict[str, dict[str, Any]] = {
    "slurm": {**_JOBQUEUE_COMMON, "queue": "debug", "account": "", "walltime": "01:00:00"},
    "pbs": {**_JOBQUEUE_COMMON, "queue": "normal", "account": "", "walltime": "01:00:00"},
    "htcondor": {**_JOBQUEUE_COMMON, "disk": "4GB"},
}
_LAUNCHER_FOR = {"slurm": "srun", "torque": "aprun", "pbspro": "mpiexec"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _lines(
    schema: dict[str, tuple[tuple[type, ...], Any, str]], values: dict[str, Any]
) -> list[str]:
    out = []
    for key, (_, default, text) in schema.items():
        if isinstance(default, dict):
            continue
        out.append(f"# {text}")
        out.append(f"{key} = {_toml_value(values.get(key, default))}")
    return out


def endpoint_template(
    engine: str = "local", provider: str = "local", cluster: str = "local"
) -> str:
    """A commented endpoint file for an engine (and a Parsl provider or Dask cluster).

    Args:
        engine: ``local``, ``parsl``, ``dask`` or ``globus``.
        provider: The Parsl provider, for ``engine="parsl"``.
        cluster: The Dask cluster kind, for ``engine="dask"``.

    Returns:
        TOML text that :func:`load_endpoint` accepts once the placeholders are filled.
    """
    if engine not in ENGINES:
        raise InputError(f"engine '{engine}' is not one of {', '.join(ENGINES)}")
    parts = [
        f"# fitaas endpoint file: where `fitaas scan --endpoint THIS_FILE` runs ({engine}).",
        "# Check it with: fitaas endpoint check THIS_FILE",
        "",
        *_lines(_TOP, {"engine": engine}),
    ]
    if engine == "parsl":
        if provider not in _PROVIDER_EXAMPLES:
            raise InputError(f"provider '{provider}' is not one of {', '.join(_PROVIDER_EXAMPLES)}")
        parts += [
            "",
            "[parsl]",
            *_lines(
                _SECTIONS["parsl"],
                {"provider": provider, "launcher": _LAUNCHER_FOR.get(provider, "single")},
            ),
        ]
        parts += [
            "",
            "# Keyword arguments of Parsl's provider class (any it accepts).",
            "[parsl.provider_options]",
        ]
        parts += [f"{k} = {_toml_value(v)}" for k, v in _PROVIDER_EXAMPLES[provider].items()]
    elif engine == "dask":
        parts += ["", "[dask]", *_lines(_SECTIONS["dask"], {"cluster": cluster})]
        if cluster != "local":
            parts += [
                "",
                "# Keyword arguments of the dask-jobqueue cluster (any its job class accepts).",
                "[dask.jobqueue]",
                *(f"{k} = {_toml_value(v)}" for k, v in _JOBQUEUE_EXAMPLES[cluster].items()),
            ]
    elif engine == "globus":
        parts += [
            "",
            "[globus]",
            *_lines(_SECTIONS["globus"], {"endpoint_id": "00000000-0000-0000-0000-000000000000"}),
        ]
        parts += [
            "",
            "# Authentication: set GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET",
            "# (a Globus confidential client), or log in once with",
            "# `globus-compute-endpoint login`.",
        ]
    return "\n".join(parts) + "\n"
