"""What one hypothesis test's fits are judged by: each fit recorded, the unconditional fit's
certificate (the exact Hessian at its minimum), the reasons a point is not ``ok``, and how
far a fit's precision can move CLs. :mod:`fitaas.inference.diagnostics` runs the checks and
the retries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from fitaas.fast.kinks import at_kink, kinked_parameters
from fitaas.fast.scales import parameter_scales
from fitaas.inference.results import HypotestResult
from fitaas.inference.teststats import test_statistic

__all__ = [
    "CLS_PRECISION",
    "FIT_NAMES",
    "POI_AT_BOUND",
    "PRECISION",
    "SAME_MINIMUM",
    "FitRecord",
    "asymptotic_cls",
    "certificate",
    "cls_sensitivity",
    "diagnose",
    "fit_record",
    "parameter_units",
]


# -2lnL of a conditional fit may not lie below the unconditional one by more than this.
NLL_TOLERANCE = 1e-3

# A free fit whose parameters moved less than this never left its start.
NOT_MOVED = 1e-10

# Projected gradient norm of -2lnL, each parameter in its width (the gradient times the
# width: what moving by one width changes, to first order), beyond which a minimum is not
# one. (A raw norm says little where a gamma's width is 1e-6: an offset of 1e-7 from its
# minimum is a gradient of ~5e4 there.)
GRADIENT_LIMIT = 1.0

# How far from its true minimum a fit's -2lnL may stop, per strategy (measured on the
# sbottom pallets: pyhf's default SLSQP stops within ~1e-6..1e-5 of a tolerance-1e-10 fit;
# MINUIT's default EDM goal leaves up to ~1e-4; Newton stops at a predicted 1e-10).
PRECISION = {"default": 1e-5, "tight": 1e-9, "plain": 1e-9, "strict": 1e-9, "minuit": 1e-4}

# The Hessian's smallest eigenvalue over its largest (parameters in constraint widths) below
# which a minimum is not certified: a saddle, or a direction along which -2lnL is flat, where
# another minimum may lie.
CURVATURE_FLOOR = 1e-9

# Two minima of one fit closer than this in -2lnL are one.
SAME_MINIMUM = 1e-6

# The largest error in any CLs value a fit's precision may cause for a point to be ``ok``.
CLS_PRECISION = 1e-3

# The five fits of a q or q-tilde test, in pyhf's order.
FIT_NAMES = (
    "the fit of the observed data at the tested mu",
    "the free fit of the observed data",
    "the background-only fit of the observed data",
    "the fit of the Asimov data at the tested mu",
    "the free fit of the Asimov data",
)

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
    observed: bool = False  # a fit of the observed data (not of an Asimov dataset)
    curvature: float | None = None  # certificate: see certificate()
    remaining: float | None = None  # certificate: see certificate()
    mirror_gain: float = 0.0  # how much lower the fit ended for its mirror starts
    # -2lnL of the other minima its several starts found (higher than the one it ended at)
    other_minima: tuple[float, ...] = ()
    # -2lnL where the fit ends from pyhf's own start (None: not fitted from there)
    from_pyhf_start: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return dataclasses.asdict(self) | {
            "at_bounds": list(self.at_bounds),
            "other_minima": list(self.other_minima),
        }


def certificate(
    hessian: np.ndarray, grad: np.ndarray, free: Sequence[int], scale: np.ndarray
) -> tuple[float, float | None]:
    """How sure a fit's end point is a minimum, from the exact Hessian and gradient there.

    Args:
        hessian: The Hessian of -2lnL at the fit's end.
        grad: The gradient of -2lnL there.
        free: The parameters the fit moved that did not end at a bound.
        scale: Each parameter's constraint width (1 when unconstrained).

    Returns:
        ``curvature``: the Hessian's smallest eigenvalue on the free parameters over its
        largest, the parameters measured in their widths (positive at a minimum; near 0: a
        flat direction; negative: a saddle); and ``remaining``: the decrease of -2lnL that
        Newton's method predicts from there, ``g H⁻¹ g / 2`` (how far above its minimum the
        fit stopped; ``None`` when the Hessian is not positive definite).
    """
    index = np.asarray(list(free), dtype=int)
    if len(index) == 0:
        return 1.0, 0.0
    widths = scale[index]
    reduced = hessian[np.ix_(index, index)] * np.outer(widths, widths)
    reduced = 0.5 * (reduced + reduced.T)
    gradient = grad[index] * widths
    values = np.linalg.eigvalsh(reduced)
    top = float(np.max(np.abs(values))) if np.all(np.isfinite(values)) else 0.0
    if top <= 0.0:
        return float("nan"), None
    curvature = float(values[0]) / top
    if curvature <= CURVATURE_FLOOR:
        return curvature, None
    remaining = 0.5 * float(gradient @ np.linalg.solve(reduced, gradient))
    return curvature, max(remaining, 0.0)


def _free_interior(
    model: Any, x: np.ndarray, bounds: Any, fixed_idx: set[int], on_kink: Any = None
) -> tuple[list[int], list[str], float | None]:
    """The parameters that moved freely and ended inside their bounds and off a kink of
    their interpolation (``on_kink``: a mask); the names of those at a bound; the POI's
    value if it ended at its upper bound."""
    names = model.config.par_names
    interior, at_bounds = [], []
    poi_at_upper_bound = None
    for i in range(len(x)):
        if i in fixed_idx or (on_kink is not None and on_kink[i]):
            continue
        low, high = bounds[i] if bounds is not None else (-np.inf, np.inf)
        span = max(high - low, 1e-12)
        if min(x[i] - low, high - x[i]) < 1e-6 * span:
            at_bounds.append(names[i])
            if i == model.config.poi_index and high - x[i] < 1e-6 * span:
                poi_at_upper_bound = float(x[i])
        else:
            interior.append(i)
    return interior, at_bounds, poi_at_upper_bound


def parameter_units(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each parameter's width (its constraint width, at most 1; 1 when unconstrained: the
    units of every check) and which parameters have a kink in their interpolation."""

    return parameter_scales(model), kinked_parameters(model)


def fit_record(
    model: Any,
    result: Any,
    start: np.ndarray,
    bounds: Any,
    fixed: Any,
    observed: bool = False,
    bound: Any = None,
    data: Any = None,
    units: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitRecord:
    """One fit's record; ``bound`` (the compiled structure bound to ``model``, given for
    the unconditional fit of the observed ``data``) adds the certificate; ``units``: the
    parameters' widths and which have a kink (:func:`parameter_units`)."""

    fixed_idx = {i for i, _ in (fixed or [])}
    x = np.asarray(result.x, dtype=float).reshape(-1)
    free = [i for i in range(len(x)) if i not in fixed_idx]
    moved = float(np.linalg.norm((x - start)[free])) if len(start) == len(x) else float("nan")
    scales, kinked = units if units is not None else parameter_units(model)
    on_kink = at_kink(x, kinked, scales) if len(x) == len(scales) else None
    interior, at_bounds, poi_at_upper_bound = _free_interior(model, x, bounds, fixed_idx, on_kink)
    conditional = model.config.poi_index in fixed_idx
    jac = getattr(result, "jac", None)
    grad = None
    if jac is not None and len(np.asarray(jac).reshape(-1)) == len(x):  # (in widths)
        scaled = np.asarray(jac, dtype=float).reshape(-1) * scales
        grad = float(np.linalg.norm(scaled[interior]))
    curvature = remaining = None
    if bound is not None:
        rows = np.asarray(data, dtype=float)
        hessian = np.asarray(bound.structure.hessian()(x, rows, bound.arrays), dtype=float)
        gradient = np.asarray(bound.value_and_grad(x, rows)[1], dtype=float)
        grad = float(np.linalg.norm((gradient * scales)[interior]))
        curvature, remaining = certificate(hessian, gradient, interior, bound.scales)
    return FitRecord(
        conditional=conditional,
        success=bool(getattr(result, "success", False)),
        message=str(getattr(result, "message", "")),
        nfev=int(getattr(result, "nfev", 0) or 0),
        twice_nll=float(np.asarray(result.fun, dtype=float).reshape(-1)[0]),
        moved=moved,
        at_bounds=tuple(at_bounds),
        grad_norm=grad,
        poi_at_upper_bound=poi_at_upper_bound,
        observed=observed,
        curvature=curvature,
        remaining=remaining,
        mirror_gain=float(getattr(result, "mirror_gain", 0.0)),
        other_minima=tuple(float(v) for v in getattr(result, "other_minima", ()) or ()),
        from_pyhf_start=_float_or_none(getattr(result, "from_pyhf_start", None)),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def asymptotic_cls(sq: float, sqa: float, tilde: bool) -> np.ndarray:
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
    stat = test_statistic(result.test_stat)
    if stat.discovery:
        return 0.0
    sqa = float(norm.isf(result.cls_exp[2] / 2.0))
    if not np.isfinite(sqa) or sqa <= 0.0:
        sqa = 0.0
    t = float(norm.isf(result.clsb_obs))
    if result.clsb_obs >= 0.5 or not np.isfinite(t):
        sq = 0.0  # q was clipped to 0 (mu-hat above the tested mu): no fit error enters
    elif stat.tilde and t > sqa > 0.0:
        sq = float(np.sqrt(max(2 * sqa * t - sqa * sqa, 0.0)))
    else:
        sq = t
    base = asymptotic_cls(sq, sqa, stat.tilde)
    shifted_sqa = float(np.sqrt(sqa * sqa + twice_nll_error))
    shifted_sq = float(np.sqrt(sq * sq + twice_nll_error)) if sq > 0.0 else 0.0
    worst = 0.0
    for a, b in ((shifted_sq, sqa), (sq, shifted_sqa), (shifted_sq, shifted_sqa)):
        delta = np.abs(asymptotic_cls(a, b, stat.tilde) - base)
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
    return test_statistic(result.test_stat).discovery or at <= result.poi_value + 1e-9 * max(
        1.0, abs(at)
    )


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
    reasons = [reason for i, record in enumerate(records) for reason in _fit_reasons(records, i)]
    if result is not None:
        reasons += _result_reasons(records, result, twice_nll_error)
    return tuple(dict.fromkeys(reasons))


def _fit_reasons(records: Sequence[FitRecord], i: int) -> list[str]:
    """What is wrong with fit ``i`` of a test: not converged, not moved, not a certified
    minimum, a large gradient, an unconditional fit above the conditional one before it."""
    record = records[i]
    reasons = []
    if not record.success:
        reasons.append(f"a fit did not converge ({record.message})")
    if record.conditional:
        return reasons
    certified = record.remaining is not None and record.remaining <= NLL_TOLERANCE
    if record.moved < NOT_MOVED and not certified:  # (a certified minimum may be its start)
        reasons.append(
            f"an unconditional fit never left its starting point ({record.nfev} evaluations)"
        )
    if record.curvature is not None:  # certified by the exact Hessian
        if record.remaining is None:
            reasons.append(
                "the Hessian where an unconditional fit stopped is not positive definite"
                f" (curvature {record.curvature:.2g}): a saddle point or a flat direction,"
                " not a certified minimum"
            )
        elif record.remaining > NLL_TOLERANCE:
            reasons.append(
                f"an unconditional fit stopped {record.remaining:.3g} above its minimum in"
                " -2lnL (Newton's estimate from the exact Hessian)"
            )
    elif record.grad_norm is not None and record.grad_norm > GRADIENT_LIMIT:
        reasons.append(
            f"an unconditional fit stopped with a gradient of norm {record.grad_norm:.3g}"
            " (in parameter widths)"
        )
    if i and records[i - 1].conditional:
        gap = record.twice_nll - records[i - 1].twice_nll
        if gap > NLL_TOLERANCE:
            reasons.append(
                f"a conditional fit lies {gap:.3g} below the unconditional one in -2lnL "
                "(the unconditional fit stopped early)"
            )
    return reasons


def _result_reasons(
    records: Sequence[FitRecord], result: HypotestResult, twice_nll_error: float
) -> list[str]:
    """What is wrong with a test's numbers: a POI at its bound that matters, CLs not a
    number, exactly 1, a collapsed band, or ill-conditioned at the fits' precision."""
    reasons = []
    for record in records:
        if not record.conditional and _bound_matters(record.poi_at_upper_bound, result):
            reasons.append(
                f"{POI_AT_BOUND} ({record.poi_at_upper_bound:g}) in an unconditional fit, "
                "so the test statistic depends on where the bound is: widen it (par_bounds)"
            )
    values = [result.cls_obs, *result.cls_exp, result.clsb_obs, result.clb_obs]
    if not all(np.isfinite(values)):
        reasons.append("a CLs value is not a number (0/0: both tails vanished)")
        return reasons
    if result.cls_obs == 1.0:
        reasons.append("observed CLs is exactly 1")
    low, high = min(result.cls_exp), max(result.cls_exp)
    # (a point excluded far beyond doubt has every expected CLs ~ 0: that is no collapse)
    if high > 1e-10 and high - low <= 1e-9 * high:
        reasons.append("the expected band collapsed to one value")
    # (where a certificate says the fit stopped farther from its minimum, that distance)
    remaining = [r.remaining for r in records if r.remaining is not None]
    twice_nll_error = max([twice_nll_error, *remaining])
    moved = cls_sensitivity(result, twice_nll_error)
    if moved > CLS_PRECISION:
        reasons.append(
            f"CLs is ill-conditioned here (q_A = {norm.isf(result.cls_exp[2] / 2) ** 2:.2g}):"
            f" the fits' precision ({twice_nll_error:.0e} in -2lnL) moves it by up to"
            f" {moved:.1g}"
        )
    return reasons
