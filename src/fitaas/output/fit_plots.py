"""Pictures of the analyst's fits: pulls, correlations, impacts ranking, likelihood scan.

Every function takes a result object and returns a matplotlib ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fitaas.inference.likelihood_scan import LikelihoodScan
from fitaas.inference.ranking import VARIATIONS, RankingResult
from fitaas.inference.results import FitResult
from fitaas.output.plots import pyplot

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["correlation_figure", "likelihood_scan_figure", "pulls_figure", "ranking_figure"]


# The most parameters in one column of the pulls figure.
PULLS_PER_COLUMN = 45


def _height(rows: int) -> float:
    return max(3.0, 0.28 * rows + 1.5)


def pulls_figure(
    parameters: Sequence[str],
    pulls: Sequence[float | None],
    pull_errors: Sequence[float | None],
    title: str | None = None,
) -> Figure:
    """The pulls ``(value - nominal) / width`` of the constrained parameters, with their
    post-fit errors in widths, against the ±1σ and ±2σ bands.

    Args:
        parameters: Parameter names.
        pulls: One per parameter (``None``: unconstrained, not drawn), as ``fitaas fit``
            writes them.
        pull_errors: Post-fit errors in pre-fit widths, likewise.
        title: Figure title.
    """
    plt = pyplot()
    rows = [
        (name, pull, error if error is not None else math.nan)
        for name, pull, error in zip(parameters, pulls, pull_errors, strict=True)
        if pull is not None
    ]
    if not rows:
        raise ValueError("the fit has no constrained parameters to pull")
    # side by side columns of at most PULLS_PER_COLUMN rows (121 parameters in one column
    # made a figure 975 x 5181 pixels)
    columns = math.ceil(len(rows) / PULLS_PER_COLUMN)
    per_column = math.ceil(len(rows) / columns)
    figure, panels = plt.subplots(
        1,
        columns,
        figsize=(1.7 + 4.8 * columns, _height(per_column)),
        layout="constrained",
        squeeze=False,
    )
    for k, axes in enumerate(panels[0]):
        chunk = rows[k * per_column : (k + 1) * per_column]
        y = per_column - 1 - np.arange(len(chunk))  # (every column from the top)
        axes.axvspan(-2, 2, color="#ffe08a", zorder=0)
        axes.axvspan(-1, 1, color="#8fd18f", zorder=0)
        axes.errorbar(
            [pull for _, pull, _ in chunk],
            y,
            xerr=[error for _, _, error in chunk],
            fmt="o",
            color="black",
            markersize=4,
        )
        axes.set_yticks(y, [name for name, _, _ in chunk], fontsize=7)
        axes.set_ylim(-0.7, per_column - 0.3)
        axes.set_xlim(-3, 3)
        axes.set_xlabel(r"$(\hat{\theta} - \theta_0) / \Delta\theta$")
    figure.suptitle(title or "pulls")
    return figure


def correlation_figure(fit: FitResult, most: int = 30, title: str | None = None) -> Figure:
    """The correlation matrix; for larger models, the ``most`` parameters with the largest
    correlations to any other.

    Raises:
        ValueError: The fit has no correlation matrix (a fit made before it was kept).
    """
    if fit.correlations is None:
        raise ValueError("the fit has no correlation matrix")
    plt = pyplot()
    matrix = np.asarray(fit.correlations, dtype=float)
    off = np.abs(matrix - np.diag(np.diag(matrix)))
    strongest = off.max(axis=1)
    keep = np.flatnonzero(np.diag(matrix) > 0)  # fixed parameters have none
    if len(keep) > most:
        keep = np.sort(keep[np.argsort(strongest[keep])[::-1][:most]])
    sub = matrix[np.ix_(keep, keep)]
    names = [fit.parameters[i] for i in keep]
    size = max(4.0, 0.3 * len(keep) + 2.5)
    figure, axes = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    image = axes.imshow(sub, cmap="RdBu_r", vmin=-1, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    axes.set_yticks(range(len(names)), names, fontsize=6)
    if len(names) <= 15:
        for i in range(len(names)):
            for j in range(len(names)):
                axes.text(j, i, f"{sub[i, j]:.2f}", ha="center", va="center", fontsize=6)
    figure.colorbar(image, ax=axes, label="correlation")
    shown = ""
    if len(keep) < len(fit.parameters):
        shown = f" ({len(keep)} most correlated of {len(fit.parameters)})"
    axes.set_title(title or f"correlation matrix{shown}")
    return figure


def ranking_figure(result: RankingResult, top: int = 20, title: str | None = None) -> Figure:
    """The impacts ranking: the ``top`` parameters, pre-fit impacts as open bars and
    post-fit ones as filled bars (ΔPOI, top axis), pulls with errors (bottom axis)."""
    plt = pyplot()
    impacts = result.impacts[:top]
    if not impacts:
        raise ValueError("the ranking has no parameters")
    figure, pulls = plt.subplots(figsize=(7.5, _height(len(impacts))), layout="constrained")
    shifts = pulls.twiny()
    y = np.arange(len(impacts))[::-1]
    for name, fill, colour in (
        ("prefit_up", False, "C0"),
        ("prefit_down", False, "C1"),
        ("postfit_up", True, "C0"),
        ("postfit_down", True, "C1"),
    ):
        values = [getattr(i, name) for i in impacts]
        shifts.barh(
            y,
            values,
            height=0.7,
            fill=fill,
            edgecolor=colour,
            color=colour if fill else "none",
            alpha=0.6 if fill else 1.0,
            label=name.replace("_", " "),
        )
    finite = [abs(getattr(i, n)) for i in impacts for n in VARIATIONS]
    limit = max([v for v in finite if math.isfinite(v) and v > 0] or [1.0])
    shifts.set_xlim(-1.2 * limit, 1.2 * limit)
    shifts.set_xlabel(rf"$\Delta${result.poi}")
    # (outside the axes, below them: inside, it covered a pull's error bar)
    handles, labels = shifts.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", fontsize=7, ncols=4, frameon=False)
    constrained = [(k, i) for k, i in enumerate(impacts) if i.pull is not None]
    pulls.errorbar(
        [i.pull for _, i in constrained],
        [y[k] for k, _ in constrained],
        xerr=[i.pull_error for _, i in constrained],
        fmt="o",
        color="black",
        markersize=4,
        zorder=5,
    )
    pulls.set_xlim(-2, 2)
    pulls.set_xlabel(r"$(\hat{\theta} - \theta_0) / \Delta\theta$")
    pulls.set_yticks(y, [i.parameter for i in impacts], fontsize=7)
    pulls.axvline(0, color="grey", linewidth=0.5)
    heading = f"impacts on {result.poi} = {result.poi_value:.3g} ± {result.poi_error:.2g}"
    figure.suptitle(title or heading)
    return figure


def _edge(value: float | None) -> str:
    return "…" if value is None else f"{value:.3g}"


def likelihood_scan_figure(scan: LikelihoodScan, title: str | None = None) -> Figure:
    """-2Δln L versus the parameter, with the 1σ and 2σ lines and intervals."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4.5), layout="constrained")
    values = np.asarray(scan.values)
    delta = np.asarray(scan.delta)
    ok = np.isfinite(delta)
    axes.plot(values[ok], delta[ok], "o-", color="black", markersize=3)
    for level, label in ((1.0, r"1$\sigma$"), (4.0, r"2$\sigma$")):
        axes.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        axes.text(values[0], level, label, va="bottom", fontsize=8, color="grey")
    intervals = ((scan.interval_1sigma, "C0", "1σ"), (scan.interval_2sigma, "C1", "2σ"))
    for (low, high), colour, name in intervals:
        shown = [e for e in (low, high) if e is not None]
        for k, edge in enumerate(shown):  # (one legend entry per interval)
            text = f"{name} interval [{_edge(low)}, {_edge(high)}]" if k == 0 else None
            axes.axvline(edge, color=colour, linewidth=0.8, label=text)
    if any(e is not None for pair in (scan.interval_1sigma, scan.interval_2sigma) for e in pair):
        axes.legend(fontsize=8, frameon=False, loc="upper center")
    axes.set_xlabel(scan.parameter)
    axes.set_ylabel(r"$-2\Delta\ln L$")
    axes.set_ylim(bottom=0)
    axes.set_title(title or f"likelihood scan of {scan.parameter}")
    return figure
