"""The per-point task kinds: what each computes, and the result type it gives.

One home for what a kind *is*: workers (:mod:`fitaas.worker.tasks`), the scan (reading outcomes
back into results) and the single-point commands all go through :func:`compute` and
:data:`RESULT_TYPES`. The options a kind's result depends on (its content key) are defined
with the options (:meth:`InferenceOptions.for_kind`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

import pyhf

from fitaas.errors import FitaasError
from fitaas.inference.core import fit, upper_limit
from fitaas.inference.diagnostics import checked_hypotest
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import FitResult, HypotestResult, UpperLimitResult

__all__ = ["RESULT_TYPES", "compute", "error_text", "first_reason", "outcome"]

# What each kind's outcome holds under "result" (``from_dict`` reads it back).
RESULT_TYPES: dict[str, type[HypotestResult] | type[UpperLimitResult] | type[FitResult]] = {
    "hypotest": HypotestResult,
    "upper_limit": UpperLimitResult,
    "fit": FitResult,
}


def first_reason(reasons: Sequence[str]) -> str | None:
    """A point's ``reason``: its first reason, and how many more its diagnostics list."""
    if not reasons:
        return None
    more = len(reasons) - 1
    return reasons[0] + (f" (and {more} more: see diagnostics.reasons)" if more else "")


def error_text(exc: BaseException) -> str:
    """One line naming what went wrong in a computation."""
    if isinstance(exc, pyhf.exceptions.FailedMinimization):
        return f"fit did not converge: {exc}"
    if isinstance(exc, FitaasError):
        return str(exc)
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:500] if first else type(exc).__name__


def outcome(status: str, result: Any, error: str | None, seconds: float) -> dict[str, Any]:
    """An outcome as workers return it and the store keeps it."""
    return {"status": status, "result": result, "error": error, "seconds": round(seconds, 6)}


def compute(
    kind: str,
    model: pyhf.pdf.Model,
    data: Sequence[float],
    options: InferenceOptions,
    structures: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """One kind's outcome for a model: never raises for a computation that fails.

    Hypothesis tests go through the fit checks (:func:`checked_hypotest`): status ``ok``,
    ``suspect`` or ``failed`` with the reason and the diagnostics; upper limits and fits run
    as they are (``extra``: a fit's ``with_correlations``, ``minos``).

    Returns:
        ``{"status", "result", "error", "seconds"}`` (``seconds`` 0: the caller times it),
        with ``reason`` and ``diagnostics`` for hypothesis tests and ``traceback`` for an
        unexpected error.
    """
    try:
        if kind == "hypotest":
            checked, diagnosis = checked_hypotest(model, data, options, structures)
            reason = first_reason(diagnosis.reasons)
            failed = diagnosis.status == "failed"
            result = checked.to_dict() if checked else None
            found = outcome(diagnosis.status, result, reason if failed else None, 0.0)
            found["reason"] = reason
            found["diagnostics"] = diagnosis.to_dict()
            return found
        functions: dict[str, Callable[..., Any]] = {"upper_limit": upper_limit, "fit": fit}
        return outcome("ok", functions[kind](model, data, options, **extra).to_dict(), None, 0.0)
    except Exception as exc:
        found = outcome("failed", None, error_text(exc), 0.0)
        found["traceback"] = traceback.format_exc(limit=-3)
        return found
