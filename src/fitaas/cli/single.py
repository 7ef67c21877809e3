"""``fitaas hypotest``, ``fitaas fit``, ``fitaas upper-limit``: one workspace, one patch."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import click

from fitaas.cli.engine_options import engine_from_cli, engine_options
from fitaas.cli.options import (
    IDLE_FOR_FITS,
    TOY_OPTIONS,
    hide_options,
    inference_options,
    options_from_cli,
)
from fitaas.cli.pallet_options import pallet_arguments, pallet_from_cli

__all__ = ["fit", "hypotest", "upper_limit"]


def _run(kind: str, params: dict[str, Any]) -> None:
    from fitaas.errors import InputError

    options = options_from_cli(params)
    pallet = pallet_from_cli(params)
    point = pallet.point(params["patch"])
    start = time.perf_counter()
    result: dict[str, Any]
    if kind == "hypotest" and options.toybased:  # blocks of toys spread over the workers
        from fitaas.jobs.scanning import scan

        found = scan(pallet, patches=[point.name] if point.name else None, options=options)
        computed = found.points[0]
        if computed.hypotest is None:
            raise InputError(f"the toys failed: {computed.error}")
        result = computed.hypotest.to_dict()
        checks = {"status": computed.status, "reason": computed.reason}
    elif kind == "upper_limit":  # the CLs evaluations spread over the workers
        from fitaas.jobs.fit_jobs import upper_limit as spread_limit
        from fitaas.output.progress import FitBar

        engine = engine_from_cli(params)
        with engine, FitBar(quiet=params["quiet"], label="CLs evaluations") as bar:
            limit = spread_limit(
                pallet, patch=point.name, options=options, compute=engine, progress=bar
            )
        result, checks = limit.to_dict(), {}
    else:
        # (numpy's warnings of pyhf's 0/0 at a point without sensitivity: the NaN is
        # reported in the result and its checks, not as a warning on stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            minos = tuple(params.get("minos") or ())
            result, checks = _compute(kind, pallet, point, options, minos)
    out = {
        "patch": point.name,
        "values": list(point.values),
        "labels": list(pallet.labels),
        **result,
        **checks,
        "seconds": round(time.perf_counter() - start, 4),
    }
    from fitaas.inference.results import strict_json

    text = json.dumps(strict_json(out), indent=1, allow_nan=False)
    if params["output"]:
        Path(params["output"]).write_text(text)
    if kind == "fit":  # a table to read (the JSON with -o)
        _fit_table(out)
    elif not params["output"]:
        click.echo(text)


def _compute(
    kind: str, pallet: Any, point: Any, options: Any, minos: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A hypothesis test (with its fit checks) or a fit (with correlations, MINOS and
    pulls) of one point, in this process: the result and what goes beside it."""
    import pyhf

    from fitaas.errors import InputError
    from fitaas.inference import build_model, pyhf_backend
    from fitaas.inference.core import check_options
    from fitaas.inference.kinds import compute

    with pyhf_backend(options):
        workspace = pyhf.Workspace(pallet.workspace, validate=False)
        # a background-only workspace: fitted without POI
        model, data = build_model(workspace, point.operations, options, kind == "fit")
        check_options(model, options, (kind,))
        extra = {"with_correlations": True, "minos": minos} if kind == "fit" else {}
        found = compute(kind, model, data, options, **extra)
    result = found["result"]
    if result is None:
        raise InputError(
            f"the hypothesis test failed: {found['reason']}"
            if kind == "hypotest"
            else found["error"]
        )
    if kind == "hypotest":
        keys = ("status", "reason", "diagnostics")
        return result, {key: found[key] for key in keys}
    return result, _pulls(model, result["bestfit"], result["uncertainties"])


def _pulls(model: Any, values: Any, errors: Any) -> dict[str, list[float | None]]:
    """Each constrained parameter's pull (value - nominal) / constraint width and its error
    in widths (None: unconstrained)."""
    import numpy as np

    from fitaas.fast.scales import constraint_widths

    nominal = model.config.suggested_init()
    pulls: list[float | None] = []
    pull_errors: list[float | None] = []
    for value, error, start, width in zip(
        values, errors, nominal, constraint_widths(model), strict=True
    ):
        constrained = not np.isnan(width)
        pulls.append((float(value) - float(start)) / float(width) if constrained else None)
        pull_errors.append(float(error) / float(width) if constrained else None)
    return {"pulls": pulls, "pull_errors": pull_errors}


def _fit_table(out: dict[str, Any]) -> None:
    """The fit as a readable table on standard output."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fit of {out['patch'] or 'the workspace'}: -2lnL {out['twice_nll']:.6g}")
    minos = out.get("minos") or {}
    columns = ("parameter", "value", "error", "pull") + (("MINOS",) if minos else ())
    for column in columns:
        table.add_column(column, justify="left" if column == "parameter" else "right")
    pulls = out.get("pulls") or [None] * len(out["parameters"])
    for name, value, error, pull in zip(
        out["parameters"], out["bestfit"], out["uncertainties"], pulls, strict=True
    ):
        row = [name, f"{value:.4g}", f"{error:.3g}", "" if pull is None else f"{pull:+.2f}"]
        if minos:
            low, high = minos.get(name, (None, None))
            row.append("" if low is None else f"{low:+.3g} / {high:+.3g}")
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(table)
    if not out["converged"]:
        click.secho(f"the fit did not converge: {out['message']}", fg="yellow", err=True)


def _command(kind: str, summary: str) -> click.Command:
    def callback(**params: Any) -> None:
        _run(kind, params)

    callback.__doc__ = summary
    decorated = click.option(
        "-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON here."
    )(callback)
    decorated = click.option(
        "-p",
        "--patch",
        metavar="NAME",
        help="The patch to apply, by its name in the patchset (needed when several).",
    )(decorated)
    decorated = inference_options(decorated)
    if kind == "fit":
        decorated = click.option(
            "--minos",
            multiple=True,
            metavar="PAR",
            help="Also the MINOS interval of this parameter (repeat for several).",
        )(decorated)
    if kind == "upper_limit":
        decorated = engine_options(decorated)
        decorated = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(decorated)
    decorated = hide_options(*_IDLE[kind])(decorated)
    decorated = pallet_arguments(decorated)
    return click.command(name=kind.replace("_", "-"))(decorated)


# The inference options that do nothing for a command (hidden from its --help).
_IDLE = {
    "hypotest": ("cl", "ul_scan"),
    "upper_limit": ("poi_value", "retry_strategy", *TOY_OPTIONS),
    "fit": IDLE_FOR_FITS,
}


hypotest = _command(
    "hypotest", "CLs hypothesis test (observed, expected band, CLs+b, CLb) for one workspace."
)
upper_limit = _command(
    "upper_limit",
    "Observed and expected upper limits on the POI for one workspace: pyhf's root finding "
    "(or --ul-scan grid), its CLs evaluations spread over the workers.",
)
fit = _command(
    "fit",
    "Maximum-likelihood fit: a table of best-fit values, uncertainties and pulls (the JSON "
    "with -o).",
)
