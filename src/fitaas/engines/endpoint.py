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

import importlib
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

from fitaas.choices import DEVICES, ENGINES
from fitaas.engines.base import Engine, EngineError
from fitaas.engines.settings import Schema, check_table, schema_lines
from fitaas.errors import InputError

__all__ = [
    "ENGINES",
    "ENGINE_CLASSES",
    "check_endpoint",
    "endpoint_template",
    "engine_from_settings",
    "load_endpoint",
    "validate_settings",
]


def _engine_class(name: str) -> type[Engine]:
    """The :class:`Engine` of ``fitaas/engines/<name>.py`` whose ``name`` is ``name``."""
    module = importlib.import_module(f"fitaas.engines.{name}")
    (found,) = (
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Engine) and value.name == name
    )
    return found


# Every engine by its name in endpoint files (``choices.ENGINES``; its module is
# ``engines/<name>.py``): each declares its table, checks, template and how it is made from
# settings (none imports its extra before it starts).
ENGINE_CLASSES: dict[str, type[Engine]] = {name: _engine_class(name) for name in ENGINES}

_TOP: Schema = {
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
    "device": (
        (str,),
        "cpu",
        "cpu | gpu: gpu starts the workers with FITAAS_DEVICE=gpu (jax on the GPU, memory "
        "allocated as needed) and fits each task's points in lockstep; one worker per GPU",
    ),
    "shared_path": (
        (str,),
        "",
        "a folder every worker can read and write; workspaces are written there once instead "
        "of travelling with tasks, and compiled code is shared there by every block and node",
    ),
}


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
    with_tables = {name for name, engine in ENGINE_CLASSES.items() if engine.section}
    tables = {name: raw.pop(name) for name in list(raw) if name in with_tables}
    settings = check_table(source, raw, _TOP)
    engine = settings.setdefault("engine", "local")
    if engine not in ENGINE_CLASSES:
        raise InputError(f"{source}: engine '{engine}' is not one of {', '.join(ENGINES)}")
    for key in ("workers", "retries", "batch_size"):
        if settings.get(key, 0) < 0:
            raise InputError(f"{source}: '{key}' must be 0 or more")
    if settings.get("device", "cpu") not in DEVICES:
        raise InputError(f"{source}: 'device' must be one of {', '.join(DEVICES)}")
    if not 0 <= settings.get("nice", 0) <= 19:
        raise InputError(f"{source}: 'nice' must be from 0 to 19")
    chosen = ENGINE_CLASSES[engine]
    if chosen.extra_module and importlib.util.find_spec(chosen.extra_module) is None:
        raise EngineError(
            f"{source}: the {engine} engine needs its extra: pip install 'fitaas[{engine}]'"
        )
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise InputError(f"{source}: [{name}] must be a table")
        settings[name] = check_table(f"{source} [{name}]", table, ENGINE_CLASSES[name].section)
    if chosen.section:
        chosen.check_section(settings.setdefault(engine, {}), source)
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
    gpu = settings.get("device") == "gpu"
    if gpu and settings["engine"] != "local":
        # Parsl's and Dask's workers inherit this process's environment (remote ones: set
        # FITAAS_DEVICE=gpu in their worker_init / job prologue)
        from fitaas.fast.device import use_gpu

        use_gpu()
    engine = ENGINE_CLASSES[settings["engine"]].from_settings(settings)
    engine.device = "gpu" if gpu else "cpu"
    return engine


def check_endpoint(path: str | Path) -> str:
    """Validate an endpoint file and build (without starting) what it describes.

    Returns:
        A one-paragraph summary of the endpoint.
    """
    settings = load_endpoint(path)
    engine = settings["engine"]
    lines = [f"{path}: valid; engine {engine}"]
    described = ENGINE_CLASSES[engine].summary(settings.get(engine, {}))
    if described:
        lines.append(described)
    if settings.get("shared_path"):
        lines.append(f"workspaces through the shared folder {settings['shared_path']}")
    return "; ".join(lines)


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
    if engine not in ENGINE_CLASSES:
        raise InputError(f"engine '{engine}' is not one of {', '.join(ENGINES)}")
    parts = [
        f"# fitaas endpoint file: where `fitaas scan --endpoint THIS_FILE` runs ({engine}).",
        "# Check it with: fitaas endpoint check THIS_FILE",
        "",
        *schema_lines(_TOP, {"engine": engine}),
        *ENGINE_CLASSES[engine].template(provider if engine == "parsl" else cluster),
    ]
    return "\n".join(parts) + "\n"
