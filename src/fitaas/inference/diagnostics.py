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

What a fit is judged by lives in :mod:`fitaas.inference.fit_checks`, the verdict and its
words in :mod:`fitaas.inference.verdicts`; this module runs the strategies.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyhf

from fitaas.fast import parameter_scales
from fitaas.fast.structure_cache import fixed_key
from fitaas.inference.backend import compiled_fits, pyhf_backend
from fitaas.inference.core import complete_fit_inputs, fit_inputs, hypotest
from fitaas.inference.fit_checks import (
    POI_AT_BOUND,
    PRECISION,
    FitRecord,
    diagnose,
    fit_record,
    parameter_units,
)
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import HypotestResult
from fitaas.inference.verdicts import SECOND_START_GAIN, Diagnosis, several_minima, verdict

__all__ = [
    "checked_hypotest",
]

# Tried in order until one is ok: the options' own fits, the same at tolerance 1e-10, pyhf's
# own scipy fits at 1e-10 (plain path, cold start: what rescued points on a published
# likelihood where the fast path's fits stalled), MINUIT with the exact gradient then
# Newton's method with the exact Hessian, from pyhf's start and the best earlier minimum
# (``strict``; MINUIT alone where nothing is compiled).
STRATEGIES = ("default", "tight", "plain", "strict")
# The second start: every free parameter moved from pyhf's start by this many constraint
# widths (unconstrained ones by this fraction of their value, at least of 1), in directions of
# a fixed seed, inside its bounds; its fit gets at most SECOND_START_MAXITER iterations (one
# that wanders is given up: pyhf's default is 100,000).
SECOND_START_STEP = 1.0
SECOND_START_FREE = 0.2
SECOND_START_MAXITER = 1000
SECOND_START_SEED = 20211116
# A test is computed again, at most this many times, while one of its fits' minima is a
# better start for another fit of the same data (see _Attempt.better_starts).
MINIMA_ROUNDS = 3


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
            fit_record(self.model, fit, start, bounds, fixed, observed, bound, rows, self.units)
        )

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
