"""Fits that report success but are wrong: record every fit, check, retry, say why.

Each minimisation inside a hypothesis test is recorded (success, message, evaluations,
-2lnL, distance moved from the start, parameters at bounds, gradient norm where the
optimizer gives one). Checks then decide ``ok``, ``suspect`` or ``failed`` with the reason
in words; a point that is not ``ok`` is computed again with stricter strategies, and the
result records which strategy produced the final numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from fitaas.inference.backend import pyhf_backend
from fitaas.inference.core import hypotest
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import HypotestResult

__all__ = ["Diagnosis", "FitRecord", "checked_hypotest", "diagnose"]

# -2lnL of a conditional fit may not lie below the unconditional one by more than this.
NLL_TOLERANCE = 1e-3
# A free fit whose parameters moved less than this never left its start.
NOT_MOVED = 1e-10
# Projected gradient norm of -2lnL beyond which a minimum is not one.
GRADIENT_LIMIT = 1.0
STRATEGIES = ("default", "tight", "minuit")


@dataclass(frozen=True)
class FitRecord:
    """One minimisation, as the optimizer reported it."""

    conditional: bool
    success: bool
    message: str
    nfev: int
    twice_nll: float
    moved: float
    at_bounds: tuple[str, ...]
    grad_norm: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return dataclasses.asdict(self) | {"at_bounds": list(self.at_bounds)}


@dataclass(frozen=True)
class Diagnosis:
    """The verdict on a hypothesis test, and the fits it rests on."""

    status: str
    reasons: tuple[str, ...]
    strategy: str
    fits: tuple[FitRecord, ...]
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "strategy": self.strategy,
            "attempts": self.attempts,
            "fits": [f.to_dict() for f in self.fits],
        }


def _record(model: Any, result: Any, start: np.ndarray, bounds: Any, fixed: Any) -> FitRecord:
    fixed_idx = {i for i, _ in (fixed or [])}
    x = np.asarray(result.x, dtype=float).reshape(-1)
    free = [i for i in range(len(x)) if i not in fixed_idx]
    moved = float(np.linalg.norm((x - start)[free])) if len(start) == len(x) else float("nan")
    names = model.config.par_names
    at_bounds = []
    interior = []
    for i in free:
        low, high = bounds[i] if bounds is not None else (-np.inf, np.inf)
        span = max(high - low, 1e-12)
        if min(x[i] - low, high - x[i]) < 1e-6 * span:
            at_bounds.append(names[i])
        else:
            interior.append(i)
    jac = getattr(result, "jac", None)
    grad = None
    if jac is not None and len(np.asarray(jac).reshape(-1)) == len(x):
        grad = float(np.linalg.norm(np.asarray(jac, dtype=float).reshape(-1)[interior]))
    return FitRecord(
        conditional=model.config.poi_index in fixed_idx,
        success=bool(getattr(result, "success", False)),
        message=str(getattr(result, "message", "")),
        nfev=int(getattr(result, "nfev", 0) or 0),
        twice_nll=float(np.asarray(result.fun, dtype=float).reshape(-1)[0]),
        moved=moved,
        at_bounds=tuple(at_bounds),
        grad_norm=grad,
    )


def diagnose(records: Sequence[FitRecord], result: HypotestResult | None) -> tuple[str, ...]:
    """The reasons to distrust a hypothesis test (none: it is ``ok``)."""
    reasons = []
    for i, record in enumerate(records):
        if not record.success:
            reasons.append(f"a fit did not converge ({record.message})")
        if record.conditional:
            continue
        if record.moved < NOT_MOVED:
            reasons.append(
                f"an unconditional fit never left its starting point ({record.nfev} evaluations)"
            )
        if record.grad_norm is not None and record.grad_norm > GRADIENT_LIMIT:
            reasons.append(
                f"an unconditional fit stopped with a gradient of norm {record.grad_norm:.3g}"
            )
        if i and records[i - 1].conditional:
            gap = record.twice_nll - records[i - 1].twice_nll
            if gap > NLL_TOLERANCE:
                reasons.append(
                    f"a conditional fit lies {gap:.3g} below the unconditional one in -2lnL "
                    "(the unconditional fit stopped early)"
                )
    if result is not None:
        if result.cls_obs == 1.0:
            reasons.append("observed CLs is exactly 1")
        low, high = min(result.cls_exp), max(result.cls_exp)
        # (a point excluded far beyond doubt has every expected CLs ~ 0: that is no collapse)
        if high > 1e-10 and high - low <= 1e-9 * high:
            reasons.append("the expected band collapsed to one value")
    return tuple(dict.fromkeys(reasons))


def _strategy(options: InferenceOptions, name: str) -> InferenceOptions:
    if name == "tight":
        return dataclasses.replace(options, tolerance=1e-10)
    if name == "minuit":
        return dataclasses.replace(options, optimizer="minuit")
    return options


def checked_hypotest(
    model: Any, data: Sequence[float], options: InferenceOptions
) -> tuple[HypotestResult | None, Diagnosis]:
    """A hypothesis test whose fits are checked, retried with stricter strategies if needed.

    Strategies, in order: pyhf's defaults (``default``), scipy with tolerance 1e-10
    (``tight``), MINUIT (``minuit``); ``options.retry_strategy = "none"`` stops after the
    first. The first ``ok`` result wins; otherwise the first result that exists is kept
    as ``suspect``, or the point is ``failed``.

    Returns:
        The result (``None`` when every strategy failed) and its diagnosis.
    """
    names = STRATEGIES if options.retry_strategy != "none" else STRATEGIES[:1]
    kept: tuple[HypotestResult | None, Diagnosis] | None = None
    for attempt, name in enumerate(names, start=1):
        strategy = _strategy(options, name)
        result: HypotestResult | None = None
        records: list[FitRecord] = []

        def on_fit(fit: Any, start: Any, bounds: Any, fixed: Any) -> None:
            records.append(_record(model, fit, start, bounds, fixed))  # noqa: B023

        with pyhf_backend(strategy, on_fit):
            try:
                result = hypotest(model, data, strategy)
                reasons = diagnose(records, result)
            except pyhf.exceptions.FailedMinimization as exc:
                reasons = (f"fit did not converge: {exc}",)
        status = "ok" if result is not None and not reasons else "suspect"
        if result is None:
            status = "failed"
        diagnosis = Diagnosis(status, reasons, name, tuple(records), attempt)
        if status == "ok":
            return result, diagnosis
        if kept is None or (kept[0] is None and result is not None):
            kept = (result, diagnosis)
    assert kept is not None
    result, diagnosis = kept
    return result, dataclasses.replace(diagnosis, attempts=len(names))
