"""``fitaas plot`` and ``fitaas report``: pictures and a one-page report of a scan."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

__all__ = ["plot", "report"]


def _slices(values: tuple[str, ...]) -> dict[str, float]:
    from fitaas.errors import InputError

    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--slice: expected LABEL=VALUE, got '{item}'")
    return out


def _units(values: tuple[str, ...], labels: tuple[str, ...]) -> dict[str, str] | None:
    """``--unit m1=GeV`` (repeatable) over the patchset's own units; ``None``: theirs."""
    from fitaas.errors import InputError

    if not values:
        return None
    out = {}
    for item in values:
        name, sep, unit = item.partition("=")
        if not sep or not name:
            raise InputError(f"--unit: expected LABEL=UNIT, got '{item}'")
        if name not in labels:
            raise InputError(f"--unit: unknown label '{name}'; labels: {', '.join(labels)}")
        out[name] = unit
    return out


def figures(path: Path, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The figures of a results file (:mod:`fitaas.output.figures` chooses), by name, and a
    one-line note for each that could not be drawn.

    Raises:
        InputError: The file cannot be read, or nothing at all could be drawn.
    """
    from fitaas.errors import InputError
    from fitaas.output import plots
    from fitaas.output.figures import FigureChoice, fit_figures, scan_figures
    from fitaas.output.results import read_results

    plots.use_style(params.get("style"))
    choice = FigureChoice(
        x=params.get("x"),
        y=params.get("y"),
        slices=_slices(params.get("slices") or ()),
        cl=params.get("cl", 0.95),
        cls_map=params.get("cls_map", False),
        smooth=params.get("smooth", False),
        xlabel=params.get("xlabel"),
        ylabel=params.get("ylabel"),
        patch=params.get("patch"),
        title=params.get("title"),
        top=params.get("top") or 20,
    )
    try:
        fits = fit_figures(data, choice) if (data := _fit_json(path)) is not None else None
        if fits is not None:
            return fits, []
        result = read_results(path)
        given = _units(params.get("units") or (), result.labels)
        if given:
            choice = dataclasses.replace(choice, units=given)
        return scan_figures(result, choice)
    except InputError as exc:
        text = str(exc)
        raise InputError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def _fit_json(path: Path) -> dict[str, Any] | None:
    """The decoded JSON of ``path`` where it is a JSON object (``None``: something else;
    read_results names the problem)."""
    import json

    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_OPTIONS = [
    click.option("--x", metavar="LABEL", help="Label on the x axis (default: the first)."),
    click.option("--y", metavar="LABEL", help="Label on the y axis (default: the second)."),
    click.option(
        "--slice", "slices", multiple=True, metavar="LABEL=VALUE", help="Fix a third label."
    ),
    click.option("--cl", type=float, default=0.95, show_default=True, help="Confidence level."),
    click.option(
        "--cls-map",
        is_flag=True,
        help="Colour the plane by observed CLs (written as exclusion_clsmap.*).",
    ),
    click.option(
        "--smooth",
        is_flag=True,
        help="Contours from a cubic interpolation of log CLs on a refined mesh (default: "
        "linear between the scanned points).",
    ),
    click.option(
        "--unit",
        "units",
        multiple=True,
        metavar="LABEL=UNIT",
        help="A label's unit on the axes, e.g. msb=GeV (repeatable; default: the patchset's).",
    ),
    click.option("--xlabel", help="x axis title (default: the label and its unit)."),
    click.option("--ylabel", help="y axis title (default: the label and its unit)."),
    click.option(
        "-p",
        "--patch",
        metavar="NAME",
        help="Draw this point's CLs versus mu (with upper limits) or toy distributions.",
    ),
    click.option("--title", help="Figure title."),
    click.option(
        "--top", type=click.IntRange(min=1), help="Parameters in a ranking plot (default 20)."
    ),
    click.option("--style", metavar="NAME", help="An mplhep style, e.g. ATLAS."),
]


def _with_options(func: Any) -> Any:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


@click.command()
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("plots"),
    show_default=True,
)
@click.option(
    "--format", "formats", default="png,pdf", show_default=True, help="Comma-separated formats."
)
@_with_options
def plot(results: Path, output: Path, formats: str, **params: Any) -> None:
    """Draw the exclusion contour, Brazil band and CLs-versus-mu plots of RESULTS.json; the
    pulls and correlation matrix of a 'fitaas fit -o' file, the ranking plot of a 'fitaas
    ranking -o' file, the curve of a 'fitaas nll-scan -o' file."""
    made, notes = figures(results, params)
    output.mkdir(parents=True, exist_ok=True)
    for name, figure in made.items():
        for fmt in formats.split(","):
            target = output / f"{name}.{fmt.strip()}"
            figure.savefig(target, dpi=150)
            click.echo(target)
    for note in notes:
        click.secho(f"note: {note}", fg="yellow", err=True)


@click.command()
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
)
@_with_options
def report(results: Path, output: Path, **params: Any) -> None:
    """Write one self-contained HTML page with the table and the plots of RESULTS.json."""
    from fitaas.output.report import html_report
    from fitaas.output.results import read_results

    try:
        made, notes = figures(results, params)
    except Exception as exc:  # a report without plots is still a report
        made, notes = {}, [f"no plots: {exc}"]
    for note in notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    page = html_report(read_results(results), made, params.get("title"), params.get("cl", 0.95))
    output.write_text(page)
    click.echo(output)
