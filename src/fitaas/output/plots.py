"""Pictures from result objects: exclusion contours, Brazil bands, CLs versus mu.

Every function takes results (not files) and returns a matplotlib ``Figure``; the command
line and the report save them. CLs is interpolated in log10 over a Delaunay triangulation
of the scanned points, as the field does it; failed points are drawn distinctly and never
used for interpolation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fitaas.errors import InputError
from fitaas.inference.teststats import test_statistic
from fitaas.output.results import PointResult, ScanResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "brazil",
    "cls_vs_mu",
    "exclusion",
    "plane",
    "pyplot",
    "toy_distributions",
    "use_style",
]

_FLOOR = 1e-300  # log10 of CLs = 0 is -inf; clip far below any contour level


def pyplot() -> Any:
    """matplotlib's pyplot: on the Agg backend, except in a Jupyter kernel, whose inline
    backend shows the figures in the notebook (an error naming the extra when missing)."""
    try:
        import matplotlib

        if "ipykernel" not in sys.modules:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'fitaas[plot]'") from None
    return plt


def use_style(style: str | None) -> None:
    """Apply an mplhep style (``"ATLAS"``, ``"CMS"``, ...) to the plots that follow."""
    if not style:
        return
    try:
        import mplhep
    except ImportError:
        raise InputError("styles need mplhep: pip install 'fitaas[plot]'") from None
    if not hasattr(mplhep.style, style):
        raise InputError(f"unknown mplhep style '{style}'")
    pyplot().style.use(getattr(mplhep.style, style))


def plane(
    result: ScanResult,
    x: str | None = None,
    y: str | None = None,
    slices: dict[str, float] | None = None,
) -> tuple[str, str, list[PointResult], dict[str, float]]:
    """Choose the two labels of the plane and the points in it.

    Args:
        result: Scan results with labelled values.
        x: Label on the x axis (default: the first label).
        y: Label on the y axis (default: the second label).
        slices: For three or more labels, ``{label: value}`` fixing the others; a label
            left out is held at its most frequent value among the successful points (as
            the Brazil band does).

    Returns:
        ``(x label, y label, points in the plane, the values holding the other labels)``.

    Raises:
        InputError: Fewer than two labels, or unknown labels.
    """
    labels = list(result.labels)
    if len(labels) < 2:
        raise InputError(
            f"an exclusion plane needs two labelled values per point; this patchset has {labels}"
        )
    x = x or labels[0]
    y = y or next(label for label in labels if label != x)
    slices = dict(slices or {})
    for name in (x, y, *slices):
        if name not in labels:
            raise InputError(f"unknown label '{name}'; labels: {', '.join(labels)}")
    free = [label for label in labels if label not in (x, y) and label not in slices]
    index = {label: i for i, label in enumerate(labels)}
    slices.update(_most_frequent(result, free))
    points = [
        p
        for p in result
        if all(math.isclose(float(p.values[index[k]]), float(v)) for k, v in slices.items())
    ]
    return x, y, points, slices


def _most_frequent(result: ScanResult, labels: Sequence[str]) -> dict[str, float]:
    """Each label's most frequent value among the successful points (all points if none)."""
    chosen = [p for p in result if p.ok] or list(result)
    held = {}
    for label in labels:
        values = [float(p.values[result.labels.index(label)]) for p in chosen]
        if values:
            held[label] = max(set(values), key=values.count)
    return held


def _values_of(result: ScanResult, label: str) -> str:
    """A label's values among the points, for an error that asks to choose one."""
    values = sorted({float(p.values[result.labels.index(label)]) for p in result})
    shown = ", ".join(f"{v:g}" for v in values[:12])
    return shown + (", ..." if len(values) > 12 else "")


def _unit(result: ScanResult, label: str, units: dict[str, str] | None) -> str:
    """An axis title: the label with its unit (``units``, else the patchset's)."""
    unit = (result.units if units is None else units).get(label)
    return f"{label} [{unit}]" if unit else label


def exclusion(
    result: ScanResult,
    x: str | None = None,
    y: str | None = None,
    slices: dict[str, float] | None = None,
    cl: float = 0.95,
    cls_map: bool = False,
    title: str | None = None,
    units: dict[str, str] | None = None,
    smooth: bool = False,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """The exclusion in the plane of two labels: observed, expected and ±1σ contours.

    The contours follow log10 CLs interpolated linearly between the scanned points (on a
    Delaunay triangulation): they pass exactly where the points say, with corners between
    them. ``smooth`` interpolates with piecewise cubics (matplotlib's
    ``CubicTriInterpolator``, minimising curvature) on a mesh refined 16 times instead:
    rounder lines and band edges, which may cut across a point's own verdict where the grid
    is coarse.

    Args:
        result: Scan results (hypothesis tests at mu = 1).
        x: Label on the x axis.
        y: Label on the y axis.
        slices: Values fixing the other labels (three or more labels).
        cl: Confidence level; the contours are at CLs = 1 - cl.
        cls_map: Colour the plane by observed CLs (the ±1σ band then drawn see-through).
        title: Figure title.
        units: Units per label for the axis titles (default: the patchset's).
        smooth: Cubic instead of linear interpolation (see above).
        xlabel: The x axis title (default: the label and its unit).
        ylabel: The y axis title (default: the label and its unit).

    Returns:
        The figure.

    Raises:
        InputError: Too few usable points to draw a contour, or a bad plane.
    """
    plt = pyplot()
    x, y, points, held = plane(result, x, y, slices)
    index = {label: i for i, label in enumerate(result.labels)}
    ok = [p for p in points if p.ok and p.hypotest is not None]
    failed = [p for p in points if not (p.ok and p.hypotest is not None)]
    if len(ok) < 3:
        where = "; ".join(
            f"{k} = {v:g} (its values: {_values_of(result, k)})" for k, v in held.items()
        )
        raise InputError(
            f"an exclusion contour needs at least 3 successful points in the plane, got {len(ok)}"
            + (f" at {where}" if where else ""),
            option="slices" if held else None,
            value="LABEL=VALUE" if held else None,
        )
    xs = np.array([float(p.values[index[x]]) for p in ok])
    ys = np.array([float(p.values[index[y]]) for p in ok])
    tri = _triangulation(xs, ys)
    level = math.log10(1.0 - cl)
    observed = _log_cls([p.hypotest.cls_obs for p in ok if p.hypotest])
    expected = [_log_cls([p.hypotest.cls_exp[i] for p in ok if p.hypotest]) for i in range(5)]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    if cls_map:
        shade = ax.tripcolor(tri, np.clip(observed, -4, 0), shading="gouraud", cmap="viridis")
        fig.colorbar(shade, ax=ax, label="log10 CLs (observed)")
    _contours(ax, tri, observed, expected, level, smooth, cls_map)
    ax.scatter(xs, ys, s=9, c="0.45", zorder=5, label="scanned points").set_gid("points")
    if failed:
        fx = [float(p.values[index[x]]) for p in failed]
        fy = [float(p.values[index[y]]) for p in failed]
        ax.scatter(
            fx, fy, s=60, marker="x", c="#d62728", zorder=6, label="failed or suspect"
        ).set_gid("failed")
    _exclusion_legend(ax, cl, cls_map)
    for axis, values in ((ax.set_xlim, xs), (ax.set_ylim, ys)):
        pad = 0.04 * (values.max() - values.min() or 1.0)
        axis(values.min() - pad, values.max() + pad)
    ax.set_xlabel(xlabel or _unit(result, x, units))
    ax.set_ylabel(ylabel or _unit(result, y, units))
    heading = title or f"Exclusion at {cl:.0%} CL ({len(ok)} points)"
    if held:  # (in the title: inside the axes it sat under the scanned points)
        chosen = [k for k in held if k not in (slices or {})]
        text = ", ".join(f"{k} = {v:g}" for k, v in held.items())
        if chosen:  # (said, as the Brazil band says its own)
            text += f" (most points; {', '.join(chosen)} unset)"
        heading += f"\n{text}"
    fig.suptitle(heading)
    fig.tight_layout()
    return fig


def _log_cls(values: Sequence[float]) -> np.ndarray:
    return np.log10(np.clip(np.asarray(values, dtype=float), _FLOOR, None))


def _triangulation(xs: np.ndarray, ys: np.ndarray) -> Any:
    """A Delaunay triangulation of the scanned points, without the flat triangles along
    the hull of an irregular grid (they join far-apart points)."""
    from matplotlib.tri import TriAnalyzer, Triangulation

    try:
        tri = Triangulation(xs, ys)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"cannot triangulate the scanned points ({exc})") from None
    tri.set_mask(TriAnalyzer(tri).get_flat_tri_mask(min_circle_ratio=0.1))
    return tri


def _contours(
    ax: Any,
    tri: Any,
    observed: np.ndarray,
    expected: list[np.ndarray],
    level: float,
    smooth: bool,
    cls_map: bool,
) -> None:
    """The ±1σ band, the expected and the observed contours at ``level`` (log10 CLs)."""
    from matplotlib.tri import CubicTriInterpolator, LinearTriInterpolator, UniformTriRefiner

    # the ±1σ band: excluded at -1σ (CLs_exp[-1σ] < level) but not at +1σ, i.e. where
    # max(exp[-1σ] - level, level - exp[+1σ]) < 0; its edges follow the two contours
    # (fields refined linearly first, so that the max is taken on a fine mesh)
    refiner = UniformTriRefiner(tri)

    def refined(values: np.ndarray) -> tuple[Any, np.ndarray]:
        if smooth:
            return refiner.refine_field(values, CubicTriInterpolator(tri, values, kind="min_E"), 4)
        return refiner.refine_field(values, LinearTriInterpolator(tri, values), 4)

    fine, minus = refined(expected[1])
    _, plus = refined(expected[3])
    band = np.maximum(minus - level, level - plus)
    if band.min() < 0 and not cls_map:
        ax.tricontourf(
            fine, band, levels=[band.min() - 1, 0], colors=["#ffdf3c"], zorder=1
        ).set_gid("band")
    elif band.min() < 0:  # over a CLs map only its edges (a fill, even faint, muddied it)
        ax.tricontour(fine, band, levels=[0], colors=["#e6b800"], linewidths=1.6, zorder=2).set_gid(
            "band_edges"
        )
    mesh, median = refined(expected[2]) if smooth else (tri, expected[2])
    ax.tricontour(mesh, median, levels=[level], colors="black", linestyles="--", zorder=3).set_gid(
        "expected"
    )
    mesh, seen = refined(observed) if smooth else (tri, observed)
    ax.tricontour(
        mesh,
        seen,
        levels=[level],
        colors="#d62728",
        linewidths=2.5,
        linestyles="solid",
        zorder=4,
    ).set_gid("observed")


def _exclusion_legend(ax: Any, cl: float, cls_map: bool = False) -> None:
    """The legend above the plane (not over the lines: styles with large fonts filled it)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    band = (
        Line2D([], [], color="#e6b800", lw=1.6, label="Expected ±1σ")
        if cls_map
        else Patch(color="#ffdf3c", label="Expected ±1σ")
    )
    handles = [
        Line2D([], [], color="#d62728", lw=2.5, label=f"Observed {cl:.0%} CL"),
        Line2D([], [], color="black", ls="--", label="Expected"),
        band,
        *ax.get_legend_handles_labels()[0],
    ]
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.01),
        ncol=2,
        frameon=False,
        fontsize="small",
    )


def brazil(
    result: ScanResult,
    x: str | None = None,
    title: str | None = None,
    units: dict[str, str] | None = None,
    slices: dict[str, float] | None = None,
    xlabel: str | None = None,
) -> Figure:
    """Upper limits on mu along one label: observed, expected ±1σ, ±2σ, and mu = 1.

    With several labels, the others are held fixed: at ``slices``, or else at their most
    frequent value among the points with limits (said on the plot).

    Raises:
        InputError: No labels, or fewer than two points with upper limits.
    """
    plt = pyplot()
    if not result.labels:
        raise InputError("a Brazil band needs a labelled value per point (the patchset has none)")
    x = x or result.labels[0]
    if x not in result.labels:
        raise InputError(f"unknown label '{x}'; labels: {', '.join(result.labels)}")
    i = result.labels.index(x)
    with_ul = [p for p in result if p.ok and p.upper_limit is not None]
    fixed = dict(slices or {})
    for j, label in enumerate(result.labels):
        if label != x and label not in fixed and with_ul:
            values = [float(p.values[j]) for p in with_ul]
            fixed[label] = max(set(values), key=values.count)
    index = {label: j for j, label in enumerate(result.labels)}
    points = sorted(
        (
            p
            for p in with_ul
            if all(math.isclose(float(p.values[index[k]]), v) for k, v in fixed.items())
        ),
        key=lambda p: float(p.values[i]),
    )
    if len(points) < 2:
        raise InputError(
            f"a Brazil band needs upper limits at two points at least, got {len(points)} "
            "(scan with upper limits)",
            option="upper_limit",
        )
    xs = [float(p.values[i]) for p in points]
    exp = np.array([p.upper_limit.exp for p in points if p.upper_limit])
    obs = [p.upper_limit.obs for p in points if p.upper_limit]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.fill_between(xs, exp[:, 0], exp[:, 4], color="#ffdf3c", label="Expected ±2σ")
    ax.fill_between(xs, exp[:, 1], exp[:, 3], color="#2ca02c", label="Expected ±1σ")
    ax.plot(xs, exp[:, 2], "k--", label="Expected")
    ax.plot(xs, obs, "k-", marker="o", ms=3, label="Observed", gid="observed")
    ax.axhline(1.0, color="#d62728", lw=1.5, label="μ = 1")
    for p in result:
        on_line = all(math.isclose(float(p.values[index[k]]), v) for k, v in fixed.items())
        if not p.ok and on_line:
            ax.axvline(float(p.values[i]), color="#d62728", ls=":", lw=1)
    ax.set_xlabel(xlabel or _unit(result, x, units))
    level = points[0].upper_limit.level if points[0].upper_limit else 0.05
    ax.set_ylabel(f"{1 - level:.0%} CL upper limit on μ")
    ax.set_yscale("log")
    ax.legend(frameon=False)
    if fixed:
        where = ", ".join(f"{k} = {v:g}" for k, v in fixed.items())
        ax.text(0.98, 0.02, where, transform=ax.transAxes, ha="right")
    ax.set_title(title or "Upper limits")
    fig.tight_layout()
    return fig


def cls_vs_mu(point: PointResult, title: str | None = None) -> Figure:
    """CLs against mu with the expected band, from the values an upper limit visited.

    Raises:
        InputError: The point has no upper-limit scan.
    """
    plt = pyplot()
    ul = point.upper_limit
    if ul is None or len(ul.scan) < 2:
        raise InputError(
            f"patch '{point.patch}' has no scan over mu (compute its upper limit)",
            option="upper_limit",
        )
    mus = np.array([s.poi_value for s in ul.scan])
    obs = np.array([s.cls_obs for s in ul.scan])
    exp = np.array([s.cls_exp for s in ul.scan])
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.fill_between(mus, exp[:, 0], exp[:, 4], color="#ffdf3c", label="Expected ±2σ")
    ax.fill_between(mus, exp[:, 1], exp[:, 3], color="#2ca02c", label="Expected ±1σ")
    ax.plot(mus, exp[:, 2], "k--", label="Expected")
    ax.plot(mus, obs, "k-", marker="o", ms=3, label="Observed")
    ax.axhline(ul.level, color="#d62728", label=f"CLs = {ul.level:g}")
    ax.axvline(ul.obs, color="0.5", ls=":", label=f"μ up = {ul.obs:.3g}")
    ax.set_xlabel("μ")
    ax.set_ylabel("CLs")
    ax.set_ylim(0, 1.05)
    # root finding also visits the POI bounds: show the region around the limits
    ax.set_xlim(0, min(float(mus.max()), 2.0 * max(ul.exp[4], ul.obs)))
    ax.legend(frameon=False)
    ax.set_title(title or f"{point.patch}")
    fig.tight_layout()
    return fig


def toy_distributions(point: PointResult, title: str | None = None) -> Figure:
    """The test-statistic distributions of a toy-based test: the plot every toy user reads.

    Signal-plus-background and background-only toys as histograms, the observed test
    statistic, the background-only quantiles at -2..+2 sigma (where the expected band is
    read), and CLs with its Monte-Carlo uncertainty.

    Raises:
        InputError: The point has no toys.
    """
    from fitaas.inference.toys import NORMAL_PERCENTILES

    plt = pyplot()
    ht = point.hypotest
    if ht is None or ht.toys is None:
        raise InputError(
            f"patch '{point.patch}' has no toys (compute it with toys)",
            option="calctype",
            value="toybased",
        )
    toys = ht.toys
    sb, b = toys.distributions()
    finite = np.concatenate([sb, b, [toys.teststat_obs]])
    top = float(np.percentile(finite, 99.9)) if len(finite) else 1.0
    top = max(top, toys.teststat_obs * 1.1, 1e-3)
    bins = np.linspace(0.0, top, 60)
    fig, ax = plt.subplots(figsize=(7, 5))
    name = test_statistic(ht.test_stat).label
    ax.hist(np.clip(sb, 0, top), bins=bins, histtype="step", lw=1.6, color="#1f77b4",
            label=f"signal + background ({toys.ntoys_sb} toys)")  # fmt: skip
    ax.hist(np.clip(b, 0, top), bins=bins, histtype="step", lw=1.6, color="#d62728",
            label=f"background only ({toys.ntoys_b} toys)")  # fmt: skip
    ax.axvline(
        toys.teststat_obs, color="k", lw=2, label=f"observed {name} = {toys.teststat_obs:.3g}"
    )
    if len(b):
        # the expected band's quantiles, labelled at the foot of the axes (the legend is at
        # the top); a label nearer than 4% of the axis to the last one drawn is left out
        # (-2σ and -1σ of q̃ often both lie at 0)
        quantiles = np.percentile(b, NORMAL_PERCENTILES)
        last = -np.inf
        for sigma, value in zip((-2, -1, 0, 1, 2), quantiles, strict=True):
            ax.axvline(value, color="0.4", ls=":" if sigma else "--", lw=1)
            if value - last < 0.04 * top:
                continue
            last = value
            ax.text(value, 0.02, f"{sigma:+d}σ" if sigma else "median", rotation=90,
                    va="bottom", ha="right", fontsize=8, color="0.3", gid=f"quantile{sigma:+d}",
                    transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel(f"test statistic {name}")
    ax.set_ylabel("toys")
    if ht.discovery:
        text = f"p0 = {ht.clsb_obs:.3g} ± {toys.clsb_obs_error:.2g}, Z = {ht.z_obs:.2f}"
    else:
        text = f"CLs = {ht.cls_obs:.3g} ± {toys.cls_obs_error:.2g} (μ = {ht.poi_value:g})"
    failed = toys.failed_sb + toys.failed_b
    if failed:
        text += f"; {failed} failed toys left out"
    ax.legend(frameon=False, title=text, loc="upper right", fontsize=9, title_fontsize=9)
    ax.set_title(title or f"{point.patch}")
    fig.tight_layout()
    return fig
