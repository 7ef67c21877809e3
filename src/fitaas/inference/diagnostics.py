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
from scipy.stats import norm

from fitaas.inference.backend import pyhf_backend
from fitaas.inference.core import hypotest
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import HypotestResult

__all__ = ["Diagnosis", "FitRecord", "checked_hypotest", "cls_sensitivity", "diagnose"]

# -2lnL of a conditional fit may not lie below the unconditional one by more than this.
NLL_TOLERANCE = 1e-3
# A free fit whose parameters moved less than this never left its start.
NOT_MOVED = 1e-10
# Projected gradient norm of -2lnL beyond which a minimum is not one.
GRADIENT_LIMIT = 1.0
# Tried in order until one is ok: the options' own fits, the same at tolerance 1e-10, pyhf's
# own scipy fits at 1e-10 (plain path, cold start: what rescued points on a published
# likelihood where the fast path's fits stalled), MINUIT.
STRATEGIES = ("default", "tight", "plain", "minuit")
# How far from its true minimum a fit's -2lnL may stop, per strategy (measured on the
# sbottom pallets: pyhf's default SLSQP stops within ~1e-6..1e-5 of a tolerance-1e-10 fit;
# MINUIT's default EDM goal leaves up to ~1e-4).
PRECISION = {"default": 1e-5, "tight": 1e-9, "plain": 1e-9, "minuit": 1e-4}
# The largest error in any CLs value a fit's precision may cause for a point to be ``ok``.
CLS_PRECISION = 1e-3
# A reason that stricter strategies cannot remove (they stop at the same bound).
POI_AT_BOUND = "the POI ended at its upper bound"


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
    poi_at_upper_bound: float | None = None  # the POI's value when it ended at its upper bound

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
    tried: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values: ``strategy`` produced the numbers, ``tried`` lists every
        strategy run for the point, in order."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "strategy": self.strategy,
            "attempts": self.attempts,
            "tried": list(self.tried or (self.strategy,)),
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
    poi_at_upper_bound = None
    for i in free:
        low, high = bounds[i] if bounds is not None else (-np.inf, np.inf)
        span = max(high - low, 1e-12)
        if min(x[i] - low, high - x[i]) < 1e-6 * span:
            at_bounds.append(names[i])
            if i == model.config.poi_index and high - x[i] < 1e-6 * span:
                poi_at_upper_bound = float(x[i])
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
        poi_at_upper_bound=poi_at_upper_bound,
    )


def _asymptotic_cls(sq: float, sqa: float, tilde: bool) -> np.ndarray:
    """Observed and five expected CLs from sqrt(q) and sqrt(q_A) (asymptotic formulas)."""
    if tilde and sq > sqa:
        clsb = norm.sf((sq * sq + sqa * sqa) / (2 * sqa))
        clb = norm.sf((sq * sq - sqa * sqa) / (2 * sqa))
    else:
        clsb, clb = norm.sf(sq), norm.cdf(sqa - sq)
    bands = np.array([2.0, 1.0, 0.0, -1.0, -2.0])
    exp = norm.cdf(bands - sqa) / norm.cdf(bands)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.concatenate([[clsb / clb], exp])


def cls_sensitivity(result: HypotestResult, twice_nll_error: float) -> float:
    """How much an error of ``twice_nll_error`` in each fit's -2lnL can move CLs.

    q and q_A are read back from the result (CLs+b and the median expected CLs), then
    shifted by the error; the answer is the largest change of the observed or any expected
    CLs. Large when q_A is tiny (a point without sensitivity): sqrt(q_A) moves by
    sqrt(error) there, and the expected CLs with it.

    Returns:
        The largest absolute change (0 for the discovery test statistic q0).
    """
    if result.test_stat not in ("qtilde", "q"):
        return 0.0
    sqa = float(norm.isf(result.cls_exp[2] / 2.0))
    if not np.isfinite(sqa) or sqa <= 0.0:
        sqa = 0.0
    t = float(norm.isf(result.clsb_obs))
    if result.clsb_obs >= 0.5 or not np.isfinite(t):
        sq = 0.0  # q was clipped to 0 (mu-hat above the tested mu): no fit error enters
    elif result.test_stat == "qtilde" and t > sqa > 0.0:
        sq = float(np.sqrt(max(2 * sqa * t - sqa * sqa, 0.0)))
    else:
        sq = t
    tilde = result.test_stat == "qtilde"
    base = _asymptotic_cls(sq, sqa, tilde)
    shifted_sqa = float(np.sqrt(sqa * sqa + twice_nll_error))
    shifted_sq = float(np.sqrt(sq * sq + twice_nll_error)) if sq > 0.0 else 0.0
    worst = 0.0
    for a, b in ((shifted_sq, sqa), (sq, shifted_sqa), (shifted_sq, shifted_sqa)):
        delta = np.abs(_asymptotic_cls(a, b, tilde) - base)
        worst = max(worst, float(np.nanmax(delta)) if np.isfinite(delta).any() else 0.0)
    return worst


def _bound_matters(at: float | None, result: HypotestResult) -> bool:
    """Whether an unconditional fit's POI at its upper bound ``at`` changes the test.

    q and q-tilde are 0 whenever mu-hat lies above the tested mu, wherever the bound puts it:
    a bound above the tested value changes nothing. q0 uses the likelihood at mu-hat itself.
    (At the lower bound, q-tilde's 0, the test statistic is built to expect it.)
    """
    if at is None:
        return False
    return result.test_stat == "q0" or at <= result.poi_value + 1e-9 * max(1.0, abs(at))


def diagnose(
    records: Sequence[FitRecord],
    result: HypotestResult | None,
    twice_nll_error: float = PRECISION["default"],
) -> tuple[str, ...]:
    """The reasons to distrust a hypothesis test (none: it is ``ok``).

    Args:
        records: The fits of the test, in the order pyhf ran them.
        result: The test's result (``None`` when it raised).
        twice_nll_error: How far from the minimum the optimizer may stop, in -2lnL.
    """
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
        for record in records:
            if not record.conditional and _bound_matters(record.poi_at_upper_bound, result):
                reasons.append(
                    f"{POI_AT_BOUND} ({record.poi_at_upper_bound:g}) in an unconditional fit, "
                    "so the test statistic depends on where the bound is: widen it (par_bounds)"
                )
        values = [result.cls_obs, *result.cls_exp, result.clsb_obs, result.clb_obs]
        if not all(np.isfinite(values)):
            reasons.append("a CLs value is not a number (0/0: both tails vanished)")
            return tuple(dict.fromkeys(reasons))
        if result.cls_obs == 1.0:
            reasons.append("observed CLs is exactly 1")
        low, high = min(result.cls_exp), max(result.cls_exp)
        # (a point excluded far beyond doubt has every expected CLs ~ 0: that is no collapse)
        if high > 1e-10 and high - low <= 1e-9 * high:
            reasons.append("the expected band collapsed to one value")
        moved = cls_sensitivity(result, twice_nll_error)
        if moved > CLS_PRECISION:
            reasons.append(
                f"CLs is ill-conditioned here (q_A = {norm.isf(result.cls_exp[2] / 2) ** 2:.2g}):"
                f" the fits' precision ({twice_nll_error:.0e} in -2lnL) moves it by up to"
                f" {moved:.1g}"
            )
    return tuple(dict.fromkeys(reasons))


def _precision(options: InferenceOptions) -> float:
    if options.optimizer == "minuit":
        return PRECISION["minuit"]
    if options.tolerance is not None and options.tolerance <= 1e-8:
        return PRECISION["tight"]
    return PRECISION["default"]


def _strategy(options: InferenceOptions, name: str) -> InferenceOptions:
    if name == "tight":
        return dataclasses.replace(options, tolerance=1e-10)
    if name == "plain":
        return dataclasses.replace(options, tolerance=1e-10, fast=False)
    if name == "minuit":
        return dataclasses.replace(options, optimizer="minuit")
    return options


def checked_hypotest(
    model: Any, data: Sequence[float], options: InferenceOptions, structures: Any = None
) -> tuple[HypotestResult | None, Diagnosis]:
    """A hypothesis test whose fits are checked, retried with stricter strategies if needed.

    Strategies, in order: the options as given (``default``), the same at tolerance 1e-10
    (``tight``), pyhf's own scipy fits at 1e-10 (``plain``; skipped where it is ``tight``
    already), MINUIT (``minuit``); ``options.retry_strategy = "none"`` stops after the
    first. The first ``ok`` result wins; otherwise the first result that exists is kept
    as ``suspect``, or the point is ``failed``. The diagnosis names the strategy that
    produced the numbers and every strategy tried.

    Returns:
        The result (``None`` when every strategy failed) and its diagnosis.
    """
    plan: list[tuple[InferenceOptions, str]] = []
    for name in STRATEGIES if options.retry_strategy != "none" else STRATEGIES[:1]:
        strategy = _strategy(options, name)
        if all(strategy != planned for planned, _ in plan):  # the same fits are not run twice
            plan.append((strategy, name))
    names = tuple(name for _, name in plan)
    kept: tuple[HypotestResult | None, Diagnosis] | None = None
    retries: list[str] = []
    for attempt, (strategy, name) in enumerate(plan, start=1):
        result: HypotestResult | None = None
        records: list[FitRecord] = []

        def on_fit(fit: Any, start: Any, bounds: Any, fixed: Any) -> None:
            records.append(_record(model, fit, start, bounds, fixed))  # noqa: B023

        with pyhf_backend(strategy, on_fit, structures):
            try:
                result = hypotest(model, data, strategy)
                reasons = diagnose(records, result, _precision(strategy))
            except pyhf.exceptions.FailedMinimization as exc:
                reasons = (f"fit did not converge: {exc}",)
        status = "ok" if result is not None and not reasons else "suspect"
        if result is None:
            status = "failed"
        diagnosis = Diagnosis(status, reasons, name, tuple(records), attempt, names[:attempt])
        if status == "ok":
            return result, diagnosis
        if kept is None or (kept[0] is None and result is not None):
            kept = (result, diagnosis)
        if attempt > 1:
            retries.append(f"retried with {name}: {'; '.join(reasons) or status}")
        if reasons and all(r.startswith(POI_AT_BOUND) for r in reasons):
            names = names[:attempt]  # every strategy stops at the same bound
            break
    assert kept is not None
    result, diagnosis = kept
    return result, dataclasses.replace(
        diagnosis, reasons=(*diagnosis.reasons, *retries), attempts=len(names), tried=names
    )
