"""Where a command's tasks run: --engine, --endpoint, --workers, --retries, --batch-size
(and --device), and the engine they make.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fitaas.choices import (
    ENGINES,
)
from fitaas.cli.options import F, stack
from fitaas.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - pyhf is imported only when a command runs
    from fitaas.engines import Engine

# Work of at most this many tasks runs in the command's own process on the local engine.
INLINE_TASKS = 1

__all__ = [
    "engine_from_cli",
    "engine_options",
]


def engine_options(func: F) -> F:
    """--engine, --endpoint, --workers, --retries and --batch-size: where tasks run."""
    return stack(
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            help="Where tasks run (default: the local process pool, or the --endpoint file's).",
        ),
        click.option(
            "--endpoint",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Endpoint file (TOML) describing the engine; see 'fitaas endpoint init'.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="Worker processes (default: one per core).",
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=0),
            help="Times a task whose worker died is sent again (default 2).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=0),
            help="Points (or fits) per task (default 0: automatic).",
        ),
    )(func)


def engine_from_cli(params: dict[str, Any]) -> Engine:
    """The engine of an endpoint file or --engine, with the command line's overrides."""
    from fitaas.engines.endpoint import engine_from_settings, load_endpoint

    settings: dict[str, Any] = {"engine": "local"}
    if params["endpoint"]:
        settings = load_endpoint(params["endpoint"])
        if params["engine"] and params["engine"] != settings["engine"]:
            raise InputError(
                f"--engine {params['engine']} contradicts {params['endpoint']} "
                f'(engine = "{settings["engine"]}")'
            )
    elif params["engine"]:
        settings["engine"] = params["engine"]
    for key in ("workers", "retries", "batch_size"):
        if params[key] is not None:
            settings[key] = params[key]
    if params.get("device") == "gpu":
        settings["device"] = "gpu"
    engine = engine_from_settings(settings)
    if settings["engine"] == "local" and settings.get("device", "cpu") == "cpu":
        # a one-task scan runs in this process: starting workers would cost more
        engine.inline_tasks = INLINE_TASKS
    return engine
