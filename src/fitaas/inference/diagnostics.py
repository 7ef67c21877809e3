"""Fits that report success but are wrong: record every fit, check, retry, say why.

Each minimisation inside a hypothesis test is recorded (success, message, evaluations,
-2lnL, distance moved from the start, parameters at bounds, gradient norm where the
optimizer gives one). The unconditional fit on the observed data, the minimum every test
statistic rests on, gets a certificate where the model's structure is compiled: the exact
Hessian of -2lnL on its free parameters (positive definite at a minimum) and the remaining
decrease of -2lnL it predicts from the gradient (Newton's estimate of how far above its
minimum the fit stopped). Checks then decide ``ok``, ``suspect`` or ``failed`` with the
reason in words; a point that is not ``ok`` is computed again with stricter strategies,
and a point with a sign of a second minimum is fitted again from a second start (the
lower minimum wins). On the fast path every fit also tries the mirror images of its pulled
nuisance parameters (:mod:`fitaas.fast.mirrors`), unless ``retry_strategy`` is ``"none"``.
The result records which strategy produced the final numbers.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf
from scipy.stats import norm

from fitaas.inference.backend import compiled_fits, pyhf_backend
from fitaas.inference.core import complete_fit_inputs, fit_inputs, hypotest
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import HypotestResult
from fitaas.inference.teststats import test_statistic

__all__ = [
    "Diagnosis",
    "FitRecord",
    "certificate",
    "checked_hypotest",
    "cls_sensitivity",
    "diagnose",
    "parameter_units",
    "several_minima",
    "verdict",
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
# Tried in order until one is ok: the options' own fits, the same at tolerance 1e-10, pyhf's
# own scipy fits at 1e-10 (plain path, cold start: what rescued points on a published
# likelihood where the fast path's fits stalled), MINUIT with the exact gradient then
# Newton's method with the exact Hessian, from pyhf's start and the best earlier minimum
# (``strict``; MINUIT alone where nothing is compiled).
STRATEGIES = ("default", "tight", "plain", "strict")
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
# A second start whose minimum is lower than the first by more than this (-2lnL) wins.
SECOND_START_GAIN = 1e-4
# The second start: every free parameter moved from pyhf's start by this many constraint
# widths (unconstrained ones by this fraction of their value, at least of 1), in directions of
# a fixed seed, inside its bounds; its fit gets at most SECOND_START_MAXITER iterations (one
# that wanders is given up: pyhf's default is 100,000).
SECOND_START_STEP = 1.0
SECOND_START_FREE = 0.2
SECOND_START_MAXITER = 1000
SECOND_START_SEED = 20211116
# The largest error in any CLs value a fit's precision may cause for a point to be ``ok``.
CLS_PRECISION = 1e-3
# A test is computed again, at most this many times, while one of its fits' minima is a
# better start for another fit of the same data (see _Attempt.better_starts).
MINIMA_ROUNDS = 3
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


@dataclass(frozen=True)
class Diagnosis:
    """The verdict on a hypothesis test, and the fits it rests on."""

    status: str
    reasons: tuple[str, ...]
    strategy: str
    fits: tuple[FitRecord, ...]
    attempts: int = 1
    tried: tuple[str, ...] = ()
    second_start: float | None = None
    check_seconds: float = 0.0
    mirror_seconds: float = 0.0
    several_minima: tuple[dict[str, Any], ...] = ()
    rounds: int = 0

    @property
    def notes(self) -> tuple[str, ...]:
        """What a user should know of an ``ok`` point: one line per fit with another minimum
        that would change CLs (see :func:`several_minima`)."""
        return tuple(_minimum_note(m) for m in self.several_minima)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values: ``strategy`` produced the numbers, ``tried`` lists every
        strategy run for the point, in order; ``second_start`` is how much lower in -2lnL a
        second start's minimum was than the first's (``None``: no second start was run; the
        numbers come from the second minimum when it exceeds ``SECOND_START_GAIN``);
        ``check_seconds`` is the time the certificates and the second start took,
        ``mirror_seconds`` the time of the fits' mirror starts (their searches and the fits
        started again; see :mod:`fitaas.fast.mirrors`); ``several_minima`` lists the other
        minima of the test's fits that would change CLs by more than ``CLS_PRECISION``
        (``notes``: the same in words); ``rounds`` counts the times the test was computed
        again because one fit's minimum was a better start for another."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "strategy": self.strategy,
            "attempts": self.attempts,
            "tried": list(self.tried or (self.strategy,)),
            "second_start": self.second_start,
            "check_seconds": round(self.check_seconds, 6),
            "mirror_seconds": round(self.mirror_seconds, 6),
            "several_minima": [dict(m) for m in self.several_minima],
            "notes": list(self.notes),
            "rounds": self.rounds,
            "fits": [f.to_dict() for f in self.fits],
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
    from fitaas.fast.kinks import kinked_parameters
    from fitaas.fast.structures import parameter_scales

    return parameter_scales(model), kinked_parameters(model)


def _record(
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
    from fitaas.fast.kinks import at_kink

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
    base = _asymptotic_cls(sq, sqa, stat.tilde)
    shifted_sqa = float(np.sqrt(sqa * sqa + twice_nll_error))
    shifted_sq = float(np.sqrt(sq * sq + twice_nll_error)) if sq > 0.0 else 0.0
    worst = 0.0
    for a, b in ((shifted_sq, sqa), (sq, shifted_sqa), (shifted_sq, shifted_sqa)):
        delta = np.abs(_asymptotic_cls(a, b, stat.tilde) - base)
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


def _precision(options: InferenceOptions, strict: bool = False) -> float:
    if strict and compiled_fits(options):
        return PRECISION["strict"]
    if options.optimizer == "minuit" or strict:
        return PRECISION["minuit"]
    if options.tolerance is not None and options.tolerance <= 1e-8:
        return PRECISION["tight"]
    return PRECISION["default"]


def _strategy(options: InferenceOptions, name: str) -> InferenceOptions:
    if name == "tight":
        return dataclasses.replace(options, tolerance=1e-10)
    if name == "plain":
        return dataclasses.replace(options, tolerance=1e-10, fast=False)
    return options


def _plan(options: InferenceOptions) -> list[tuple[str, InferenceOptions, bool]]:
    """The strategies to try, in order: ``(name, options, strict)``, none twice."""
    names = {"none": STRATEGIES[:1], "strict": ("strict",)}.get(options.retry_strategy, STRATEGIES)
    plan: list[tuple[str, InferenceOptions, bool]] = []
    for name in names:
        entry = (name, _strategy(options, name), name == "strict")
        if all(entry[1:] != planned[1:] for planned in plan):  # the same fits not run twice
            plan.append(entry)
    return plan


class _Attempt:
    """One strategy's hypothesis test of a model, with its fits recorded."""

    def __init__(
        self, model: Any, data: Sequence[float], structures: Any, settings: Any = None
    ) -> None:
        self.model = model
        self.data = data
        self.observed = np.asarray(data, dtype=float).reshape(-1)
        self.structures = structures
        self.settings = settings
        self.records: list[FitRecord] = []
        self.units: tuple[np.ndarray, np.ndarray] | None = None
        self.check_seconds = 0.0
        self.mirror_seconds = 0.0
        # where each fit ended: (its data, fixed values, bounds, end point), as records
        self.ends: list[
            tuple[np.ndarray, tuple[tuple[int, float], ...], np.ndarray | None, np.ndarray]
        ]
        self.ends = []
        # extra starts for the fits of the next run, by (data, fixed values)
        self.hints: dict[tuple[bytes, tuple[tuple[int, float], ...]], list[np.ndarray]] = {}

    def _bound(self) -> Any:
        if self.structures is None:
            return None
        try:
            return self.structures.bound(self.model, self.settings)
        except Exception:  # no certificate where the structure cannot be compiled
            return None

    def on_fit(self, fit: Any, start: Any, bounds: Any, fixed: Any, data: Any) -> None:
        rows = np.asarray(data, dtype=float).reshape(-1) if data is not None else None
        observed = rows is not None and np.array_equal(rows, self.observed)
        conditional = self.model.config.poi_index in {i for i, _ in (fixed or [])}
        began = time.perf_counter()
        bound = self._bound() if observed and not conditional else None
        if self.units is None:
            self.units = parameter_units(self.model)
        self.records.append(
            _record(self.model, fit, start, bounds, fixed, observed, bound, rows, self.units)
        )
        from fitaas.fast.structures import fixed_key

        x = np.asarray(fit.x, dtype=float).reshape(-1)
        limits = np.asarray(bounds, dtype=float) if bounds is not None else None
        self.ends.append((rows if rows is not None else np.zeros(0), fixed_key(fixed), limits, x))
        if bound is not None:
            self.check_seconds += time.perf_counter() - began
        self.mirror_seconds += float(getattr(fit, "mirror_seconds", 0.0))

    def run(
        self, options: InferenceOptions, strict: bool
    ) -> tuple[HypotestResult | None, tuple[str, ...]]:
        self.records = []
        self.ends = []
        result = None
        mirrors = options.retry_strategy != "none"
        with pyhf_backend(options, self.on_fit, self.structures, strict, mirrors):
            optimizer = pyhf.get_backend()[1]
            optimizer.start_hints = {key: list(v) for key, v in self.hints.items()}
            optimizer.several_starts = options.retry_strategy == "thorough"
            try:
                result = hypotest(self.model, self.data, options)
                reasons = diagnose(self.records, result, _precision(options, strict))
            except pyhf.exceptions.FailedMinimization as exc:
                reasons = (f"fit did not converge: {exc}",)
        return result, reasons

    def better_starts(self, every_pair: bool) -> int:
        """Where a fit's minimum, with another fit's fixed values, lies lower than that
        fit's own on the same data, it becomes that fit's extra start in the next run
        (``hints``): a free fit above a conditional one of the same data (read from the
        records: a conditional minimum is a start of the free fit), or, with
        ``every_pair`` (models with kinks, ``thorough``), any fit that stayed in another
        well (one evaluation per pair of fits of the same data). On the compiled path only
        (pyhf's own fits stay pyhf's).

        Returns:
            How many starts were added.
        """
        bound = self._bound()
        if bound is None or len(self.ends) != len(self.records):
            return 0
        added = 0
        poi = self.model.config.poi_index
        for i, (rows, fixed, limits, _) in enumerate(self.ends):
            key = (rows.tobytes(), fixed)
            known = self.hints.setdefault(key, [])
            free = poi not in {index for index, _ in fixed}
            for j, (other_rows, _, _, x) in enumerate(self.ends):
                if i == j or not np.array_equal(rows, other_rows) or len(x) != len(bound.scales):
                    continue
                below = self.records[j].twice_nll < self.records[i].twice_nll - SECOND_START_GAIN
                if not every_pair and not (free and self.records[j].conditional and below):
                    continue
                start = x.copy()
                for index, value in fixed:
                    start[index] = value
                if limits is not None:
                    start = np.clip(start, limits[:, 0], limits[:, 1])
                if any(np.allclose(start, h, rtol=0.0, atol=1e-12) for h in known):
                    continue
                value = float(bound.value_and_grad(start, rows)[0])
                if value < self.records[i].twice_nll - SECOND_START_GAIN:
                    known.append(start)
                    added += 1
        return added

    def observed_fit(self) -> FitRecord | None:
        """The unconditional fit of the observed data (the last one, if several)."""
        found = [r for r in self.records if r.observed and not r.conditional]
        return found[-1] if found else None


def _second_start_signs(record: FitRecord, model: Any) -> bool:
    """Whether an unconditional fit's end suggests another minimum may lie elsewhere: no
    certified minimum (flat or negative curvature) or a parameter other than the POI that
    ended at a bound (a minimum pushed against a wall, the other side unexplored)."""
    poi = model.config.poi_name
    walls = [name for name in record.at_bounds if name.split("[")[0] != poi]
    return bool(walls) or (record.curvature is not None and record.remaining is None)


def _second_start(
    model: Any,
    data: np.ndarray,
    options: InferenceOptions,
    strict: bool,
    structures: Any,
) -> tuple[float, dict[str, Any]]:
    """The unconditional fit of ``data`` from a second start.

    Every free parameter is moved from its start by ``SECOND_START_STEP`` constraint widths
    (unconstrained ones by ``SECOND_START_FREE`` of their value), up or down (a fixed seed),
    and kept inside its bounds.

    Returns:
        -2lnL at the minimum found, and its parameters by name (``init_pars`` for a test
        started from there).
    """
    from fitaas.fast import parameter_scales

    init, bounds, fixed = complete_fit_inputs(model, fit_inputs(model, options))
    start = np.asarray(init, dtype=float)
    limits = np.asarray(bounds, dtype=float)
    held = np.asarray(fixed, dtype=bool)
    signs = np.random.default_rng(SECOND_START_SEED).choice([-1.0, 1.0], size=len(start))
    steps = SECOND_START_STEP * parameter_scales(model)
    for name in model.config.par_order:  # unconstrained: a fifth of their value (a rate
        if not getattr(model.config.param_set(name), "constrained", False):  # at 0 is no start)
            sl = model.config.par_slice(name)
            steps[sl] = SECOND_START_FREE * np.maximum(np.abs(start[sl]), 1.0)
    moved = start + signs * steps
    inside = limits[:, 0] + 1e-3 * (limits[:, 1] - limits[:, 0])
    outside = limits[:, 1] - 1e-3 * (limits[:, 1] - limits[:, 0])
    moved = np.where(held, start, np.clip(moved, inside, outside))
    limited = dataclasses.replace(
        options, maxiter=min(options.maxiter or SECOND_START_MAXITER, SECOND_START_MAXITER)
    )
    with pyhf_backend(limited, None, structures, strict, mirrors=True):
        x, value = pyhf.infer.mle.fit(
            data,
            model,
            init_pars=moved.tolist(),
            par_bounds=limits.tolist(),
            fixed_params=held.tolist(),
            return_fitted_val=True,
        )
    x = np.asarray(x, dtype=float).reshape(-1)
    pars: dict[str, Any] = {}
    for name in model.config.par_order:
        sl = model.config.par_slice(name)
        values = x[sl].tolist()
        pars[name] = values if len(values) > 1 else values[0]
    return float(np.asarray(value, dtype=float).reshape(-1)[0]), pars


def checked_hypotest(
    model: Any, data: Sequence[float], options: InferenceOptions, structures: Any = None
) -> tuple[HypotestResult | None, Diagnosis]:
    """A hypothesis test whose fits are checked, retried with stricter strategies if needed.

    Strategies, in order: the options as given (``default``), the same at tolerance 1e-10
    (``tight``), pyhf's own scipy fits at 1e-10 (``plain``; skipped where it is ``tight``
    already), MINUIT with the exact gradient then Newton's method with the exact Hessian
    (``strict``; MINUIT alone where the model's structure is not compiled). The first ``ok``
    result wins; otherwise the first result that exists is kept as ``suspect``, or the
    point is ``failed``.

    Second start: where the unconditional fit of the observed data shows a sign of another
    minimum (no certified minimum; a parameter other than the POI at a bound), it is fitted
    again from a second start, once per point; a lower minimum wins: the test is computed
    again with every fit started from it (and so are later strategies).

    ``options.retry_strategy``: ``"none"`` runs the first strategy only, no second start;
    ``"strict"`` runs only the strict one; ``"thorough"`` gives every point a second start.

    Returns:
        The result (``None`` when every strategy failed) and its diagnosis, which names the
        strategy that produced the numbers, every strategy tried and the second start's gain.
    """
    plan = _plan(options)
    names = tuple(name for name, _, _ in plan)
    attempt_ = _Attempt(model, data, structures, options.pyhf_modifier_settings())
    kept: tuple[HypotestResult | None, Diagnosis] | None = None
    gain: float | None = None  # of the second start (None: not run)
    start: dict[str, Any] | None = None  # its minimum, where lower
    rounds = 0  # runs again from a better start (see _Attempt.better_starts)
    seen: list[tuple[str, tuple[str, ...]]] = []  # each strategy's reasons
    for attempt, (name, strategy, strict) in enumerate(plan, start=1):
        if start is not None:
            strategy = dataclasses.replace(strategy, init_pars=start)
        result, reasons = attempt_.run(strategy, strict)
        if gain is None and _wants_second_start(attempt_, options):
            gain, start, result, reasons = _from_second_start(
                attempt_, strategy, strict, result, reasons
            )
        if options.retry_strategy != "none":
            while rounds < MINIMA_ROUNDS and result is not None:
                began = time.perf_counter()
                every_pair = options.retry_strategy == "thorough" or _has_kinks(attempt_)
                better = attempt_.better_starts(every_pair)
                attempt_.check_seconds += time.perf_counter() - began
                if not better:
                    break
                rounds += 1
                result, reasons = attempt_.run(strategy, strict)
        seen.append((name, reasons))
        status = "ok" if result is not None and not reasons else "suspect"
        if result is None:
            status = "failed"
        diagnosis = Diagnosis(
            status,
            reasons,
            name,
            tuple(attempt_.records),
            attempt,
            names[:attempt],
            gain,
            attempt_.check_seconds,
            attempt_.mirror_seconds,
            several_minima(attempt_.records, result, _precision(options, strict)),
            rounds,
        )
        if status == "ok":
            return result, diagnosis
        if kept is None or (kept[0] is None and result is not None):
            kept = (result, diagnosis)
        if reasons and all(r.startswith(POI_AT_BOUND) for r in reasons):
            names = names[:attempt]  # every strategy stops at the same bound
            break
    assert kept is not None
    result, diagnosis = kept
    return result, dataclasses.replace(
        diagnosis,
        reasons=verdict(seen, diagnosis.strategy),
        attempts=len(names),
        tried=names,
        second_start=gain,
        check_seconds=attempt_.check_seconds,
        mirror_seconds=attempt_.mirror_seconds,
    )


def verdict(seen: Sequence[tuple[str, Sequence[str]]], kept: str) -> tuple[str, ...]:
    """A point's reasons as a short list: one line per reason (reasons that differ only in
    their numbers are one, in the words of the strategy whose numbers were kept, else the
    first), each with the strategies that saw it, those of the kept strategy first."""
    order = sorted(seen, key=lambda entry: entry[0] != kept)
    lines: dict[str, tuple[str, list[str]]] = {}
    for name, reasons in order:
        for reason in reasons:
            key = _NUMBER.sub("#", reason)
            _, names = lines.setdefault(key, (reason, []))
            if name not in names:
                names.append(name)
    return tuple(f"{text} [{', '.join(names)}]" for text, names in lines.values())


_NUMBER = re.compile(r"[-+]?\d[\d.]*(?:e[-+]?\d+)?")


def _cls_of_fits(values: Sequence[float], clipped: bool, tilde: bool) -> np.ndarray:
    """Observed and expected CLs (asymptotic) from the -2lnL of a test's five fits."""
    q = 0.0 if clipped else max(values[0] - values[1], 0.0)
    q_a = max(values[3] - values[4], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _asymptotic_cls(np.float64(q) ** 0.5, np.float64(q_a) ** 0.5, tilde)


def several_minima(
    records: Sequence[FitRecord], result: HypotestResult | None, precision: float
) -> tuple[dict[str, Any], ...]:
    """The other minima of a test's fits that would change its CLs.

    For a q or q-tilde test: each fit (but the background-only one, which makes the Asimov
    data) with another minimum (from another start: pyhf's own, a conditional minimum, the
    other side of a kink) higher by more than ``precision`` and ``SECOND_START_GAIN``, whose
    -2lnL in place of the fit's own moves the observed or an expected CLs by more than
    ``CLS_PRECISION`` (asymptotic formulas).

    Returns:
        One mapping per such minimum: ``fit`` (its name), ``twice_nll``, ``above`` (how much
        higher), ``pyhf_start`` (whether pyhf's own start ends there), ``cls_obs`` and
        ``cls_exp`` (the CLs values there).
    """
    kinds = [(r.conditional, r.observed) for r in records]
    pattern = [(True, True), (False, True), (True, True), (True, False), (False, False)]
    if result is None or test_statistic(result.test_stat).discovery or kinds != pattern:
        return ()
    values = [r.twice_nll for r in records]
    clipped = result.clsb_obs >= 0.5  # q = 0: mu-hat above the tested mu
    tilde = test_statistic(result.test_stat).tilde
    base = _cls_of_fits(values, clipped, tilde)
    found: list[dict[str, Any]] = []
    for index in (0, 1, 3, 4):
        record = records[index]
        # (per fit: the nearest other minimum that matters, and pyhf's own where it differs)
        pyhf_start = record.from_pyhf_start
        candidates = sorted(v for v in record.other_minima if v - values[index] > 0)
        if pyhf_start is not None:
            candidates = [v for v in candidates if abs(v - pyhf_start) > SAME_MINIMUM]
            candidates.append(pyhf_start)
        for other in candidates:
            above = other - values[index]
            if above <= max(precision, SECOND_START_GAIN):
                continue
            changed = list(values)
            changed[index] = other
            there = _cls_of_fits(changed, clipped, tilde)
            if not np.all(np.isfinite(there)):
                continue
            if float(np.max(np.abs(there - base))) <= CLS_PRECISION:
                continue
            from_pyhf = pyhf_start is not None and abs(pyhf_start - other) <= SAME_MINIMUM
            if found and found[-1]["fit"] == FIT_NAMES[index] and not from_pyhf:
                continue  # (one other minimum per fit, besides pyhf's own)
            found.append(
                {
                    "fit": FIT_NAMES[index],
                    "twice_nll": other,
                    "above": above,
                    "pyhf_start": from_pyhf,
                    "cls_obs": float(there[0]),
                    "cls_exp": [float(v) for v in there[1:]],
                }
            )
    return tuple(found)


def _minimum_note(minimum: dict[str, Any]) -> str:
    start = " (where the fit from pyhf's suggested start ends)" if minimum.get("pyhf_start") else ""
    return (
        f"several minima: {minimum['fit']} has another {minimum['above']:.3g} higher in"
        f" -2lnL{start}, where CLs would be {minimum['cls_obs']:.4g}"
    )


def _has_kinks(attempt: _Attempt) -> bool:
    if attempt.units is None:
        attempt.units = parameter_units(attempt.model)
    return bool(attempt.units[1].any())


def _wants_second_start(attempt: _Attempt, options: InferenceOptions) -> bool:
    first = attempt.observed_fit()
    if first is None or options.retry_strategy == "none":
        return False
    return options.retry_strategy == "thorough" or _second_start_signs(first, attempt.model)


def _from_second_start(
    attempt: _Attempt,
    options: InferenceOptions,
    strict: bool,
    result: HypotestResult | None,
    reasons: tuple[str, ...],
) -> tuple[float, dict[str, Any] | None, HypotestResult | None, tuple[str, ...]]:
    """The second start of a test whose fits ``attempt`` recorded: its gain in -2lnL, its
    minimum (``None`` unless lower by more than ``SECOND_START_GAIN``), and the test's
    result and reasons (computed again from that minimum where it is lower)."""
    first = attempt.observed_fit()
    assert first is not None
    began = time.perf_counter()
    try:
        value, pars = _second_start(
            attempt.model, attempt.observed, options, strict, attempt.structures
        )
    except pyhf.exceptions.FailedMinimization:
        return 0.0, None, result, reasons
    finally:
        attempt.check_seconds += time.perf_counter() - began
    gain = max(first.twice_nll - value, 0.0)
    if gain <= SECOND_START_GAIN:
        return gain, None, result, reasons
    again, more = attempt.run(dataclasses.replace(options, init_pars=pars), strict)
    lower = attempt.observed_fit()
    if lower is None or lower.twice_nll > value + SECOND_START_GAIN:
        more = (
            *more,
            f"a second start found a minimum {gain:.3g} lower in -2lnL, but the test's fits"
            " started there did not stay there",
        )
    return gain, pars, again, more
