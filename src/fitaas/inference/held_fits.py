"""Fits with one parameter held at a value: the unit of rankings and likelihood scans.

An impacts ranking and a likelihood scan are both many independent fits of one model,
each with one parameter held constant at a chosen value; anything (one process, the
engines' workers) may run them. This module fits one; :mod:`fitaas.inference.ranking`
and :mod:`fitaas.inference.likelihood_scan` plan and assemble them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from fitaas.errors import InputError
from fitaas.inference.core import complete_fit_inputs, fit_inputs
from fitaas.inference.options import InferenceOptions

__all__ = ["HeldFit", "HeldFitResult", "held_fit", "scalar_parameter"]


@dataclass(frozen=True)
class HeldFit:
    """One fit to make: parameter ``index`` held at ``value``.

    Attributes:
        index: The held parameter's index in the model's parameter order.
        value: Where it is held.
    """

    index: int
    value: float


@dataclass(frozen=True)
class HeldFitResult:
    """The minimum of a fit with one parameter held.

    Attributes:
        bestfit: Best-fit values of every parameter (empty when the fit failed).
        twice_nll: -2lnL at the minimum (NaN when the fit failed).
        converged: Whether the optimizer reported success.
        error: Why the fit failed, else ``None``.
    """

    bestfit: tuple[float, ...]
    twice_nll: float
    converged: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (NaN as ``None``)."""
        nll = self.twice_nll if math.isfinite(self.twice_nll) else None
        return {
            "bestfit": list(self.bestfit),
            "twice_nll": nll,
            "converged": self.converged,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeldFitResult:
        """Inverse of :meth:`to_dict`."""
        nll = data.get("twice_nll")
        return cls(
            bestfit=tuple(float(v) for v in data.get("bestfit") or ()),
            twice_nll=math.nan if nll is None else float(nll),
            converged=bool(data.get("converged")),
            error=data.get("error"),
        )

    @classmethod
    def failed(cls, error: str) -> HeldFitResult:
        """A fit that could not be made, and why."""
        return cls(bestfit=(), twice_nll=math.nan, converged=False, error=error)


def scalar_parameter(model: pyhf.pdf.Model, name: str) -> int:
    """The index of a one-component parameter (``name``, or ``name[i]`` of a vector).

    Raises:
        InputError: No such parameter, or a vector parameter named without its index.
    """
    labels = list(model.config.par_names)
    if name in labels:
        return labels.index(name)
    base = name.partition("[")[0]
    if base in model.config.parameters:
        size = model.config.param_set(base).n_parameters
        raise InputError(
            f"parameter '{name}' has {size} components: name one, e.g. '{base}[0]'"
            if "[" not in name
            else f"parameter '{name}': index out of range ({size} components)"
        )
    near = difflib.get_close_matches(name, labels, n=5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise InputError(f"unknown parameter '{name}'{hint}")


def held_fit(
    model: pyhf.pdf.Model, data: Sequence[float], options: InferenceOptions, held: HeldFit
) -> HeldFitResult:
    """Fit with parameter ``held.index`` held at ``held.value`` (``pyhf.infer.mle.fit``).

    The other parameters start where the options and pyhf suggest (as cabinetry's ranking
    starts them), with the options' bounds and fixed parameters.

    Args:
        model: The model.
        data: Observed data (main + auxiliary).
        options: Inference options.
        held: Which parameter is held, and where.

    Returns:
        The minimum; a fit that fails is reported, not raised.
    """
    init, bounds, fixed = complete_fit_inputs(model, fit_inputs(model, options))
    init[held.index] = float(held.value)
    fixed[held.index] = True
    try:
        pars, twice_nll, result = pyhf.infer.mle.fit(
            data,
            model,
            init_pars=init,
            par_bounds=bounds,
            fixed_params=fixed,
            return_fitted_val=True,
            return_result_obj=True,
        )
    except pyhf.exceptions.FailedMinimization as exc:
        return HeldFitResult.failed(f"fit did not converge: {exc}")
    return HeldFitResult(
        bestfit=tuple(np.asarray(pars, dtype=float).tolist()),
        twice_nll=float(np.asarray(twice_nll, dtype=float).reshape(-1)[0]),
        converged=bool(result.success),
    )
