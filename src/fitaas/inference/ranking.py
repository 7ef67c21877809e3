"""Impacts ranking: how far the POI moves when each nuisance parameter is held at ±1σ.

The definition is cabinetry's ``fit.ranking``: after the nominal fit, each parameter
other than the POI is held at its best-fit value plus and minus its pre-fit width (the
constraint width; 0 for unconstrained and fixed parameters) and its post-fit
uncertainty (0 for fixed parameters), the other parameters fitted again from their
suggested start; the impact is the POI's best-fit value there minus its nominal one. A
zero variation needs no fit (impact 0). A variation beyond the parameter's bounds is held
at the bound (cabinetry stops there with pyhf's error: a start outside the bounds).
Parameters are sorted by ``|postfit_up| + |postfit_down|``, largest first.

:func:`plan_ranking` lists the fits, anything may run them (:func:`held_fit`),
:func:`assemble_ranking` makes the result; :func:`ranking` does all three in this process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from fitaas.errors import InputError
from fitaas.fast.scales import constraint_widths
from fitaas.inference.core import complete_fit_inputs, fit, fit_inputs
from fitaas.inference.held_fits import HeldFit, HeldFitResult, held_fit, scalar_parameter
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import FitResult

__all__ = [
    "VARIATIONS",
    "Impact",
    "RankingResult",
    "assemble_ranking",
    "nominal_fit",
    "plan_ranking",
    "poi_index",
    "prefit_widths",
    "ranking",
]

# The four impacts of a parameter, in cabinetry's order.
VARIATIONS = ("prefit_up", "prefit_down", "postfit_up", "postfit_down")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Impact:
    """The impact of one nuisance parameter on the POI.

    Attributes:
        parameter: The parameter's label (``name[i]`` for a component of a vector).
        value: Its best-fit value in the nominal fit.
        error: Its post-fit uncertainty.
        pull: ``(value - nominal) / pre-fit width`` (``None``: unconstrained or fixed).
        pull_error: ``error / pre-fit width`` (``None`` likewise).
        prefit_up: POI shift with the parameter held at ``value + pre-fit width``.
        prefit_down: ... at ``value - pre-fit width``.
        postfit_up: ... at ``value + error``.
        postfit_down: ... at ``value - error``. NaN where that fit failed.
    """

    parameter: str
    value: float
    error: float
    pull: float | None
    pull_error: float | None
    prefit_up: float
    prefit_down: float
    postfit_up: float
    postfit_down: float

    @property
    def size(self) -> float:
        """What the ranking sorts by: ``|postfit_up| + |postfit_down|`` (NaN counts as 0)."""
        return float(np.nansum([abs(self.postfit_up), abs(self.postfit_down)]))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (NaN as ``None``)."""
        out: dict[str, Any] = {"parameter": self.parameter}
        for name in VARIATIONS:
            out[name] = _json_number(getattr(self, name))
        out.update(value=self.value, error=self.error, pull=self.pull, pull_error=self.pull_error)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Impact:
        """Inverse of :meth:`to_dict`."""
        return cls(
            parameter=str(data["parameter"]),
            value=float(data["value"]),
            error=float(data["error"]),
            pull=None if data.get("pull") is None else float(data["pull"]),
            pull_error=None if data.get("pull_error") is None else float(data["pull_error"]),
            **{name: _number(data.get(name)) for name in VARIATIONS},
        )


@dataclass(frozen=True)
class RankingResult:
    """An impacts ranking, largest impact first.

    Attributes:
        poi: The parameter whose shifts are ranked.
        poi_value: Its best-fit value in the nominal fit.
        poi_error: Its post-fit uncertainty.
        impacts: One per other parameter, sorted by :attr:`Impact.size`, largest first.
        failed: ``(parameter, variation, reason)`` of every fit that failed (its impact NaN).
        fits: How many fits were made (the nominal one not counted).
    """

    poi: str
    poi_value: float
    poi_error: float
    impacts: tuple[Impact, ...]
    failed: tuple[tuple[str, str, str], ...] = ()
    fits: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "poi": self.poi,
            "poi_value": self.poi_value,
            "poi_error": self.poi_error,
            "fits": self.fits,
            "impacts": [impact.to_dict() for impact in self.impacts],
            "failed": [list(item) for item in self.failed],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankingResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            poi=str(data["poi"]),
            poi_value=float(data["poi_value"]),
            poi_error=float(data["poi_error"]),
            impacts=tuple(Impact.from_dict(item) for item in data["impacts"]),
            failed=tuple((str(p), str(v), str(r)) for p, v, r in data.get("failed", [])),
            fits=int(data.get("fits", 0)),
        )


def poi_index(model: pyhf.pdf.Model, poi: str | None) -> int:
    """The index of the parameter a ranking or scan is about: ``poi``, else the model's POI.

    Raises:
        InputError: The model has no POI and none was named, or the name is unknown.
    """
    if poi is not None:
        return scalar_parameter(model, poi)
    if model.config.poi_index is not None:
        return int(model.config.poi_index)
    free = [name for name in model.config.par_order if not model.config.param_set(name).constrained]
    hint = f" (free parameters: {', '.join(free)})" if free else ""
    raise InputError(f"the model has no parameter of interest: name one{hint}", option="poi")


def prefit_widths(model: pyhf.pdf.Model, fixed: Sequence[bool]) -> np.ndarray:
    """Each parameter's pre-fit width: its constraint width, 0 when unconstrained or fixed
    (cabinetry's ``prefit_uncertainties``)."""

    widths = np.nan_to_num(constraint_widths(model), nan=0.0)
    return np.where(np.asarray(fixed, dtype=bool), 0.0, widths)


def plan_ranking(
    model: pyhf.pdf.Model, nominal: FitResult, options: InferenceOptions, poi: int
) -> list[tuple[int, str, HeldFit]]:
    """The fits of a ranking: ``(parameter index, variation, fit)`` for every non-zero one."""
    _, bounds, fixed = complete_fit_inputs(model, fit_inputs(model, options))
    widths = prefit_widths(model, fixed)
    plan = []
    for index in range(model.config.npars):
        if index == poi:
            continue
        value = nominal.bestfit[index]
        error = 0.0 if fixed[index] else nominal.uncertainties[index]
        shifts = (widths[index], -widths[index], error, -error)
        low, high = bounds[index]
        for variation, shift in zip(VARIATIONS, shifts, strict=True):
            held = min(max(value + shift, low), high)  # pyhf refuses a start out of bounds
            if held != value:
                plan.append((index, variation, HeldFit(index, float(held))))
    return plan


def assemble_ranking(
    model: pyhf.pdf.Model,
    nominal: FitResult,
    options: InferenceOptions,
    poi: int,
    fitted: Mapping[tuple[int, str], HeldFitResult],
) -> RankingResult:
    """The ranking from the nominal fit and the held fits (by parameter index and variation).

    A planned fit missing from ``fitted`` or failed counts as failed (impact NaN).
    """
    _, _, fixed = complete_fit_inputs(model, fit_inputs(model, options))
    widths = prefit_widths(model, fixed)
    planned = {
        (index, variation) for index, variation, _ in plan_ranking(model, nominal, options, poi)
    }
    labels = list(model.config.par_names)
    suggested = model.config.suggested_init()
    nominal_poi = nominal.bestfit[poi]
    impacts, failed = [], []
    for index, label in enumerate(labels):
        if index == poi:
            continue
        shifts = {}
        for variation in VARIATIONS:
            if (index, variation) not in planned:
                shifts[variation] = 0.0
                continue
            result = fitted.get((index, variation))
            if result is None or result.error is not None or not result.bestfit:
                reason = "not computed" if result is None else str(result.error)
                failed.append((label, variation, reason))
                shifts[variation] = math.nan
            else:
                shifts[variation] = result.bestfit[poi] - nominal_poi
        width = float(widths[index])
        value = nominal.bestfit[index]
        error = 0.0 if fixed[index] else nominal.uncertainties[index]
        impacts.append(
            Impact(
                parameter=label,
                value=value,
                error=error,
                pull=(value - suggested[index]) / width if width > 0 else None,
                pull_error=error / width if width > 0 else None,
                **shifts,
            )
        )
    impacts.sort(key=lambda impact: -impact.size)
    return RankingResult(
        poi=labels[poi],
        poi_value=nominal_poi,
        poi_error=nominal.uncertainties[poi],
        impacts=tuple(impacts),
        failed=tuple(failed),
        fits=len(planned),
    )


def nominal_fit(
    model: pyhf.pdf.Model, data: Sequence[float], options: InferenceOptions
) -> FitResult:
    """The nominal fit of a ranking (raises :class:`InputError` when it fails)."""
    try:
        return fit(model, data, options)
    except pyhf.exceptions.FailedMinimization as exc:
        raise InputError(f"the nominal fit did not converge: {exc}") from None


def ranking(
    model: pyhf.pdf.Model,
    data: Sequence[float],
    options: InferenceOptions,
    poi: str | None = None,
) -> RankingResult:
    """An impacts ranking computed in this process, one fit after another.

    Args:
        model: The model.
        data: Observed data (main + auxiliary).
        options: Inference options (bounds, fixed parameters, optimizer).
        poi: The parameter whose shifts are ranked (default: the model's POI).

    Returns:
        The ranking.
    """
    index = poi_index(model, poi)
    nominal = nominal_fit(model, data, options)
    fitted = {
        (par, variation): held_fit(model, data, options, held)
        for par, variation, held in plan_ranking(model, nominal, options, index)
    }
    return assemble_ranking(model, nominal, options, index, fitted)
