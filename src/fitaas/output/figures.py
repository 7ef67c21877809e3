"""Which figures a result gets: one chooser for ``fitaas plot``, ``fitaas report`` and the
service's pictures.

A scan gets its exclusion contour (two labels), its Brazil band (upper limits), one point's
CLs versus mu or toy distributions; a ranking its ranking plot, a likelihood scan its
curve, a fit its pulls and correlations. A figure that cannot be drawn is a note, not an
error, unless nothing can be drawn.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from fitaas.errors import InputError
from fitaas.output.results import ScanResult

__all__ = ["FigureChoice", "fit_figures", "png", "scan_figures"]


@dataclass(frozen=True)
class FigureChoice:
    """What the figures show (``fitaas plot``'s options).

    Attributes:
        x: The label on the x axis (default: the first).
        y: The label on the y axis (default: the second).
        slices: Values of further labels held fixed.
        cl: The confidence level of contours and bands.
        cls_map: Colour the plane by observed CLs (the figure is ``exclusion_clsmap``).
        smooth: Contours from a cubic interpolation of log CLs.
        units: Labels' units over the result's own.
        xlabel: The x axis title.
        ylabel: The y axis title.
        patch: One point, for its CLs versus mu or its toy distributions.
        title: The figures' title.
        top: Parameters in a ranking plot.
    """

    x: str | None = None
    y: str | None = None
    slices: Mapping[str, float] = field(default_factory=dict)
    cl: float = 0.95
    cls_map: bool = False
    smooth: bool = False
    units: Mapping[str, str] | None = None
    xlabel: str | None = None
    ylabel: str | None = None
    patch: str | None = None
    title: str | None = None
    top: int = 20


def scan_figures(
    result: ScanResult,
    choice: FigureChoice | None = None,
    names: Collection[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The figures a scan's results support, by name (``exclusion`` or
    ``exclusion_clsmap``, ``brazil``, ``cls_vs_mu_<patch>``, ``toys_<patch>``), and a
    one-line note for each that could not be drawn; ``names``: only those.

    Raises:
        InputError: An unknown patch, or nothing at all could be drawn.
    """
    from fitaas.output import plots

    choice = choice or FigureChoice()
    made: dict[str, Any] = {}
    notes: list[str] = []

    def attempt(name: str, draw: Any) -> None:
        if names is not None and name not in names:
            return
        try:
            made[name] = draw()
        except Exception as exc:  # each plot on its own: one that cannot be drawn is a note
            notes.append(f"{name} not drawn: {exc}")

    patch = choice.patch
    if patch and patch not in {p.patch for p in result}:
        raise InputError(f"no patch named '{patch}'")
    slices = dict(choice.slices)
    units = {**result.units, **choice.units} if choice.units else None
    chosen = result[patch] if patch else None
    if chosen is not None and chosen.hypotest is not None and chosen.hypotest.toys:
        attempt(f"toys_{patch}", lambda: plots.toy_distributions(chosen, choice.title))
    if len(result.labels) >= 2:
        attempt(
            "exclusion_clsmap" if choice.cls_map else "exclusion",  # beside, not over
            lambda: plots.exclusion(
                result,
                choice.x,
                choice.y,
                slices,
                cl=choice.cl,
                cls_map=choice.cls_map,
                title=choice.title,
                smooth=choice.smooth,
                xlabel=choice.xlabel,
                ylabel=choice.ylabel,
                units=units,
            ),
        )
    with_ul = [p for p in result if p.ok and p.upper_limit is not None]
    if result.labels and with_ul:
        attempt(
            "brazil",
            lambda: plots.brazil(result, choice.x, choice.title, units, slices, choice.xlabel),
        )
    if len(with_ul) == 1 or (chosen is not None and chosen.upper_limit is not None):
        name = str(patch or with_ul[0].patch)
        attempt(f"cls_vs_mu_{name}", lambda: plots.cls_vs_mu(result[name], choice.title))
    if not made:
        raise InputError(
            "nothing to plot"
            + (f" ({'; '.join(notes)})" if notes else "")
            + ": an exclusion needs two labels and 3 points, a Brazil band upper limits "
            "(--upper-limit) at 2 points, --patch NAME upper limits or toys"
        )
    return made, notes


def fit_figures(
    data: Mapping[str, Any], choice: FigureChoice | None = None
) -> dict[str, Any] | None:
    """The figures of an analyst's fit result as JSON (a ranking, a likelihood scan, a fit
    with pulls or correlations), by name; ``None`` when ``data`` is none of those.

    Raises:
        InputError: It is one of those, and cannot be drawn (named).
    """
    from fitaas.output import fit_plots

    choice = choice or FigureChoice()
    title = choice.title
    try:
        if "impacts" in data:
            from fitaas.inference.ranking import RankingResult

            ranking = RankingResult.from_dict(dict(data))
            return {"ranking": fit_plots.ranking_figure(ranking, choice.top, title)}
        if "delta_twice_nll" in data:
            from fitaas.inference.likelihood_scan import LikelihoodScan

            scan = LikelihoodScan.from_dict(dict(data))
            return {"nll_scan": fit_plots.likelihood_scan_figure(scan, title)}
        if "bestfit" in data and "parameters" in data:
            from fitaas.inference.results import FitResult

            fit = FitResult.from_dict(dict(data))
            made = {}
            if data.get("pulls"):
                made["pulls"] = fit_plots.pulls_figure(
                    fit.parameters, data["pulls"], data.get("pull_errors") or data["pulls"], title
                )
            if fit.correlations is not None:
                made["correlations"] = fit_plots.correlation_figure(fit, title=title)
            if not made:
                raise ValueError("the fit has neither pulls nor a correlation matrix")
            return made
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"cannot draw it: {exc}") from None
    return None


def png(figure: Any, dpi: int = 90) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return buffer.getvalue()
