"""Likelihood scans: -2Δln L of a parameter over a grid of values, one fit per value.

Each value is one fit with the parameter held there (:func:`held_fit`); -2Δln L is its
-2lnL minus the nominal (free) fit's. The 1σ and 2σ intervals are where the curve
crosses 1 and 4 (linear interpolation between grid values).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from fitaas.errors import InputError
from fitaas.inference.core import complete_fit_inputs, fit_inputs
from fitaas.inference.held_fits import HeldFit, HeldFitResult, held_fit
from fitaas.inference.options import InferenceOptions
from fitaas.inference.ranking import nominal_fit, poi_index
from fitaas.inference.results import FitResult

__all__ = [
    "LikelihoodScan",
    "assemble_scan",
    "check_grid",
    "likelihood_scan",
    "plan_scan",
    "scan_values",
]


def check_grid(low: float, high: float, count: int) -> None:
    """A scan range's own rule (before any model): finite bounds, LOW < HIGH, 2 values or more.

    Raises:
        InputError: The range, named.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"the scan range needs finite bounds, got {low:g},{high:g},{count}")
    if count < 2 or not low < high:
        raise InputError(
            f"the scan range needs LOW < HIGH and at least 2 values, got {low:g},{high:g},{count}"
        )


def scan_values(
    model: pyhf.pdf.Model,
    options: InferenceOptions,
    index: int,
    grid: tuple[float, float, int] | None,
) -> list[float]:
    """The grid: ``(low, high, n)`` evenly spaced, or 21 values over the parameter's bounds.

    Raises:
        InputError: A grid outside the parameter's bounds, or fewer than 2 values.
    """
    _, bounds, _ = complete_fit_inputs(model, fit_inputs(model, options))
    low_bound, high_bound = bounds[index]
    low, high, count = grid if grid is not None else (low_bound, high_bound, 21)
    name = model.config.par_names[index]
    check_grid(low, high, count)
    if low < low_bound or high > high_bound:
        raise InputError(
            f"the scan range [{low:g}, {high:g}] leaves the bounds [{low_bound:g}, "
            f"{high_bound:g}] of '{name}' (widen them)",
            option="par_bounds",
            value=f"{name}=LOW,HIGH",
        )
    return [float(v) for v in np.linspace(low, high, int(count))]


def _crossings(
    values: Sequence[float], delta: Sequence[float], level: float, best: float
) -> tuple[float | None, float | None]:
    """Where the curve crosses ``level`` below and above the best-fit value (``None``:
    not within the grid)."""
    low = high = None
    points = [(v, d) for v, d in zip(values, delta, strict=True) if math.isfinite(d)]
    for (v0, d0), (v1, d1) in itertools.pairwise(points):
        if (d0 - level) * (d1 - level) > 0 or d0 == d1:
            continue
        crossing = v0 + (level - d0) * (v1 - v0) / (d1 - d0)
        if crossing <= best and d0 >= level:
            low = crossing
        elif crossing >= best and d1 >= level and high is None:
            high = crossing
    return low, high


@dataclass(frozen=True)
class LikelihoodScan:
    """A likelihood scan of one parameter.

    Attributes:
        parameter: The scanned parameter.
        bestfit: Its value in the nominal (free) fit.
        twice_nll_min: -2lnL of the nominal fit.
        values: The grid.
        delta: -2Δln L at each value (NaN where the fit failed).
        converged: Whether each fit converged.
        interval_1sigma: Where -2Δln L crosses 1 below and above the best fit.
        interval_2sigma: ... crosses 4.
        failed: ``(value, reason)`` of every fit that failed.
    """

    parameter: str
    bestfit: float
    twice_nll_min: float
    values: tuple[float, ...]
    delta: tuple[float, ...]
    converged: tuple[bool, ...]
    interval_1sigma: tuple[float | None, float | None]
    interval_2sigma: tuple[float | None, float | None]
    failed: tuple[tuple[float, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (NaN as ``None``)."""
        return {
            "parameter": self.parameter,
            "bestfit": self.bestfit,
            "twice_nll_min": self.twice_nll_min,
            "values": list(self.values),
            "delta_twice_nll": [d if math.isfinite(d) else None for d in self.delta],
            "converged": list(self.converged),
            "interval_1sigma": list(self.interval_1sigma),
            "interval_2sigma": list(self.interval_2sigma),
            "failed": [list(item) for item in self.failed],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LikelihoodScan:
        """Inverse of :meth:`to_dict`."""

        def pair(key: str) -> tuple[float | None, float | None]:
            low, high = data[key]
            return (None if low is None else float(low), None if high is None else float(high))

        return cls(
            parameter=str(data["parameter"]),
            bestfit=float(data["bestfit"]),
            twice_nll_min=float(data["twice_nll_min"]),
            values=tuple(float(v) for v in data["values"]),
            delta=tuple(math.nan if d is None else float(d) for d in data["delta_twice_nll"]),
            converged=tuple(bool(c) for c in data["converged"]),
            interval_1sigma=pair("interval_1sigma"),
            interval_2sigma=pair("interval_2sigma"),
            failed=tuple((float(v), str(r)) for v, r in data.get("failed", [])),
        )


def plan_scan(index: int, values: Sequence[float]) -> list[HeldFit]:
    """One fit per grid value."""
    return [HeldFit(index, value) for value in values]


def assemble_scan(
    model: pyhf.pdf.Model,
    nominal: FitResult,
    index: int,
    values: Sequence[float],
    fitted: Sequence[HeldFitResult],
) -> LikelihoodScan:
    """The scan from the nominal fit and one held fit per value (in the grid's order).

    A fit that ends below the nominal minimum (the nominal fit missed it) moves the
    minimum there: -2Δln L is never negative.
    """
    nll = [r.twice_nll if r.error is None else math.nan for r in fitted]
    finite = [v for v in nll if math.isfinite(v)]
    minimum = min([nominal.twice_nll, *finite])
    best = nominal.bestfit[index]
    if minimum < nominal.twice_nll:
        best = values[nll.index(minimum)]
    delta = [v - minimum for v in nll]
    return LikelihoodScan(
        parameter=model.config.par_names[index],
        bestfit=best,
        twice_nll_min=minimum,
        values=tuple(values),
        delta=tuple(delta),
        converged=tuple(r.converged for r in fitted),
        interval_1sigma=_crossings(values, delta, 1.0, best),
        interval_2sigma=_crossings(values, delta, 4.0, best),
        failed=tuple((v, str(r.error)) for v, r in zip(values, fitted, strict=True) if r.error),
    )


def likelihood_scan(
    model: pyhf.pdf.Model,
    data: Sequence[float],
    options: InferenceOptions,
    parameter: str | None = None,
    grid: tuple[float, float, int] | None = None,
) -> LikelihoodScan:
    """A likelihood scan computed in this process, one fit after another.

    Args:
        model: The model.
        data: Observed data (main + auxiliary).
        options: Inference options.
        parameter: The scanned parameter (default: the POI).
        grid: ``(low, high, n)``; default 21 values over the parameter's bounds.

    Returns:
        The scan.
    """
    index = poi_index(model, parameter)
    values = scan_values(model, options, index, grid)
    nominal = nominal_fit(model, data, options)
    fitted = [held_fit(model, data, options, held) for held in plan_scan(index, values)]
    return assemble_scan(model, nominal, index, values, fitted)
