"""``fitaas ranking`` and ``fitaas nll-scan``: the analyst's fits, spread over the workers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from fitaas.cli.engine_options import engine_from_cli, engine_options
from fitaas.cli.options import (
    IDLE_FOR_FITS,
    grid_from_cli,
    hide_options,
    inference_options,
    options_from_cli,
)
from fitaas.cli.pallet_options import pallet_arguments, pallet_from_cli
from fitaas.output.progress import FitBar

__all__ = ["nll_scan", "ranking"]


def _common(func: Any) -> Any:
    """Arguments and options both commands take."""
    for decorator in (
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the JSON here.",
        ),
        engine_options,
        inference_options,
        hide_options(*IDLE_FOR_FITS),  # (after the options it hides)
        click.option(
            "-p",
            "--patch",
            metavar="NAME",
            help="The patch to apply, by its name in the patchset (needed when several).",
        ),
        pallet_arguments,
    ):
        func = decorator(func)
    return func


def _write(output: Path | None, data: dict[str, Any]) -> None:
    from fitaas.inference.results import strict_json

    if output is not None:
        output.write_text(json.dumps(strict_json(data), indent=1, allow_nan=False))
        click.echo(f"wrote {output}", err=True)


def _number(value: float | None, fmt: str) -> str:
    return "" if value is None or not math.isfinite(value) else format(value, fmt)


def _end(value: float | None, edge: float, best: float, beyond: str) -> str:
    """An interval's end: its value; the scan's edge where the best fit lies on it (a
    parameter at its bound, e.g. mu = 0); else ``beyond`` (it lies outside the range)."""
    if value is not None and math.isfinite(value):
        return f"{value:.4g}"
    if math.isclose(best, edge, rel_tol=1e-9, abs_tol=1e-9):
        return f"{edge:.4g} (the best fit, at the scan's edge)"
    return beyond


@click.command()
@_common
@click.option("--poi", metavar="NAME", help="Rank shifts of this parameter (default: the POI).")
@click.option(
    "--top", type=click.IntRange(min=1), default=20, show_default=True, help="Rows shown."
)
def ranking(**params: Any) -> None:
    """Impacts ranking: the POI's shift with each nuisance parameter held at ±1σ pre- and
    post-fit (cabinetry's definition), every fit a task on the engine.

    A background-only workspace has no POI: name a free parameter with --poi (e.g. a
    background normalisation). 'fitaas plot ranking.json' draws the ranking plot.
    """
    from rich.console import Console
    from rich.table import Table

    from fitaas.jobs.fit_jobs import ranking as run_ranking

    pallet = pallet_from_cli(params)
    engine = engine_from_cli(params)
    with engine, FitBar(quiet=params["quiet"], label="ranking fits") as bar:
        result = run_ranking(
            pallet,
            patch=params["patch"],
            poi=params["poi"],
            options=options_from_cli(params),
            compute=engine,
            progress=bar,
        )
    _write(params["output"], result.to_dict())
    table = Table(
        title=f"impacts on {result.poi} = {result.poi_value:.4g} ± {result.poi_error:.3g} "
        f"({result.fits} fits)"
    )
    for column in ("parameter", "pull", "postfit up", "postfit down", "prefit up", "prefit down"):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for impact in result.impacts[: params["top"]]:
        pull = "" if impact.pull is None else f"{impact.pull:+.2f} ± {impact.pull_error:.2f}"
        table.add_row(
            impact.parameter,
            pull,
            *(
                _number(getattr(impact, name), "+.3g")
                for name in ("postfit_up", "postfit_down", "prefit_up", "prefit_down")
            ),
        )
    Console(width=None if Console().is_terminal else 120).print(table)
    for parameter, variation, reason in result.failed:
        click.secho(f"{parameter} {variation}: {reason}", fg="yellow", err=True)
    if result.failed:
        raise SystemExit(1)


@click.command(name="nll-scan")
@_common
@click.option("--par", metavar="NAME", help="The scanned parameter (default: the POI).")
@click.option(
    "--range",
    "grid",
    metavar="LOW,HIGH,N",
    help="N values from LOW to HIGH (default: 21 over the parameter's bounds).",
)
def nll_scan(**params: Any) -> None:
    """Likelihood scan: -2Δln L of a parameter at each value of a grid, one fit per value,
    each a task on the engine; the 1σ and 2σ intervals where it crosses 1 and 4.

    'fitaas plot nll_scan.json' draws the curve.
    """
    from rich.console import Console
    from rich.table import Table

    from fitaas.jobs.fit_jobs import likelihood_scan

    pallet = pallet_from_cli(params)
    grid = grid_from_cli(params["grid"], "--range", "LOW,HIGH,N")
    engine = engine_from_cli(params)
    with engine, FitBar(quiet=params["quiet"], label="scan fits") as bar:
        result = likelihood_scan(
            pallet,
            patch=params["patch"],
            parameter=params["par"],
            grid=grid,
            options=options_from_cli(params),
            compute=engine,
            progress=bar,
        )
    _write(params["output"], result.to_dict())
    # (a best fit on a bound of 0 comes back as 2.2e-16: shown to 1e-9)
    best = round(result.bestfit, 9) + 0.0
    click.echo(f"likelihood scan of {result.parameter}: best fit {best:.4g}")
    table = Table()
    table.add_column("value", justify="right")
    table.add_column("-2ΔlnL", justify="right")
    for value, delta in zip(result.values, result.delta, strict=True):
        table.add_row(f"{value:.4g}", _number(delta, ".4f") or "failed")
    Console(width=None if Console().is_terminal else 120).print(table)
    for name, (low, high) in (("1σ", result.interval_1sigma), ("2σ", result.interval_2sigma)):
        ends = [
            _end(low, result.values[0], best, "below the range"),
            _end(high, result.values[-1], best, "above the range"),
        ]
        click.echo(f"{name} interval: [{ends[0]}, {ends[1]}]")
    for value, reason in result.failed:
        click.secho(f"{result.parameter} = {value:g}: {reason}", fg="yellow", err=True)
    if result.failed:
        raise SystemExit(1)
