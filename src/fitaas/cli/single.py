"""``fitaas hypotest``, ``fitaas fit``, ``fitaas upper-limit``: one workspace, one patch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fitaas.cli.options import (
    inference_options,
    options_from_cli,
    pallet_arguments,
    pallet_from_cli,
)

__all__ = ["fit", "hypotest", "upper_limit"]


def _run(kind: str, params: dict[str, Any]) -> None:
    from fitaas.errors import InputError
    from fitaas.inference import fit as fit_fn
    from fitaas.inference import hypotest as hypotest_fn
    from fitaas.inference import upper_limit as upper_limit_fn

    functions: dict[str, Callable[..., Any]] = {
        "hypotest": hypotest_fn,
        "upper_limit": upper_limit_fn,
        "fit": fit_fn,
    }
    options = options_from_cli(params)
    pallet = pallet_from_cli(params)
    if params["patch"]:
        (point,) = pallet.select([params["patch"]])
    elif len(pallet.points) == 1:
        (point,) = pallet.points
    else:
        names = [p.name for p in pallet.points[:5]]
        raise InputError(
            f"the patchset has {len(pallet.points)} patches: choose one with --patch "
            f"(e.g. {', '.join(map(str, names))}), or use 'fitaas scan' for all"
        )
    start = time.perf_counter()
    if kind == "hypotest" and options.toybased:  # blocks of toys spread over the workers
        from fitaas.scanning import scan

        found = scan(pallet, patches=[point.name] if point.name else None, options=options)
        computed = found.points[0]
        if computed.hypotest is None:
            raise InputError(f"the toys failed: {computed.error}")
        result = computed.hypotest
        checks = {"status": computed.status, "reason": computed.reason}
    else:
        result, checks = _compute(kind, functions, pallet, point, options)
    out = {
        "patch": point.name,
        "values": list(point.values),
        "labels": list(pallet.labels),
        **result.to_dict(),
        **checks,
        "seconds": round(time.perf_counter() - start, 4),
    }
    text = json.dumps(out, indent=1)
    if params["output"]:
        Path(params["output"]).write_text(text)
    else:
        click.echo(text)


def _compute(
    kind: str, functions: dict[str, Callable[..., Any]], pallet: Any, point: Any, options: Any
) -> tuple[Any, dict[str, Any]]:
    import pyhf

    from fitaas.errors import InputError
    from fitaas.inference import build_model, pyhf_backend
    from fitaas.inference.diagnostics import checked_hypotest

    with pyhf_backend(options):
        workspace = pyhf.Workspace(pallet.workspace, validate=False)
        model, data = build_model(workspace, point.operations, options)
        checks: dict[str, Any] = {}
        if kind == "hypotest":
            result, diagnosis = checked_hypotest(model, data, options)
            if result is None:
                raise InputError(f"the hypothesis test failed: {'; '.join(diagnosis.reasons)}")
            checks = {
                "status": diagnosis.status,
                "reason": "; ".join(diagnosis.reasons) or None,
                "diagnostics": diagnosis.to_dict(),
            }
        else:
            try:
                result = functions[kind](model, data, options)
            except pyhf.exceptions.FailedMinimization as exc:
                raise InputError(f"the fit did not converge: {exc}") from None
    return result, checks


def _command(kind: str, summary: str) -> click.Command:
    def callback(**params: Any) -> None:
        _run(kind, params)

    callback.__doc__ = summary
    decorated = click.option(
        "-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON here."
    )(callback)
    decorated = click.option(
        "--patch", metavar="NAME", help="The patch to apply (needed when several)."
    )(decorated)
    decorated = inference_options(decorated)
    decorated = pallet_arguments(decorated)
    return click.command(name=kind.replace("_", "-"))(decorated)


hypotest = _command(
    "hypotest", "CLs hypothesis test (observed, expected band, CLs+b, CLb) for one workspace."
)
upper_limit = _command(
    "upper_limit", "Observed and expected upper limits on the POI for one workspace."
)
fit = _command(
    "fit", "Maximum-likelihood fit: best-fit values and uncertainties for one workspace."
)
