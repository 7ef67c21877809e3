"""A pyhf scipy optimizer whose objective is the compiled one of the model's structure.

pyhf runs the statistics exactly as usual (numpy backend: Asimov data, test statistics,
CLs); only each minimisation gets -2lnL and its exact gradient from the compiled
structure (SLSQP with ``jac=True``) instead of finite differences over the numpy
objective. Models the structure cache cannot serve are minimised the plain way.

Warm starts: the fits of one hypothesis test share their model, and most share a
minimum's neighbourhood (the Asimov data are generated from the first fit's parameters,
whose free fit on them is that very point). Each minimisation starts from whichever of
pyhf's initial parameters and the earlier fits' results on the same model (with this fit's
fixed values) has the lowest -2lnL on this fit's data, with a tighter tolerance when it is
not pyhf's start (see ``WARM_TOLERANCE``). The first fit of a model starts where pyhf
starts it, with pyhf's tolerance, so the Asimov data are pyhf's; the fits that follow end
at the same minima, nearer than pyhf's cold fits do, in a third fewer evaluations. Fit
records still measure the distance moved from pyhf's start.

Every fit ends at the lowest minimum it can find: a fit that stops short of a minimum (its
projected gradient and exact EDM, in parameter widths) is finished by MINUIT with the exact
gradient and Newton's method (``_finished``); extra starts (pyhf's start, conditional
minima, starts the fit checks ask for) are fitted too, the lowest end kept and the others
reported (``other_minima``, ``from_pyhf_start``); parameters with a kinked interpolation
are tried on the other side of their kink (:mod:`fitaas.fast.kinks`). The strict strategy
(``second_order``) is MINUIT with the exact gradient then Newton with the exact Hessian.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import numpy as np
import pyhf

from fitaas.fast.kinks import at_kink, kink_sides, kinked_parameters
from fitaas.fast.structures import (
    StructureCache,
    evaluation_noise,
    fixed_key,
    held_key,
    parameter_scales,
)

__all__ = ["compiled_objective_optimizer", "parameter_scales", "restart_options"]

_FIXED_BY_BOUNDS = "fitaas_fixed_by_bounds"
_START = "fitaas_start"
_SCALE = "fitaas_scale"
_HESSIAN = "fitaas_hessian"
_HELD = "fitaas_held"
_STARTS = "fitaas_starts"
_KINKED = "fitaas_kinked"
_NOISE = "fitaas_noise"
_POLISH = "fitaas_polish"
# Second-order fits (``second_order``): a trust-region Newton method with the exact Hessian,
# until the decrease of -2lnL it predicts is below NEWTON_TOLERANCE, in at most
# NEWTON_ITERATIONS; the first trust radius, in constraint widths.
NEWTON_TOLERANCE = 1e-10
NEWTON_ITERATIONS = 500
NEWTON_RADIUS = 1.0
# The strict strategy's MINUIT: its EDM goal in -2lnL, and its call limit.
MINUIT_EDM = 1e-8
MINUIT_CALLS = 20000
# Results of earlier fits remembered as starting points, per model.
WARM_CANDIDATES = 4
# SLSQP stops when -2lnL changes by less than its tolerance between iterations (scipy's
# default 1e-6). Started next to a minimum, its first steps are small and it would stop
# early; warm-started fits run at 1e-8, which still takes fewer evaluations than a cold
# start at the default and ends nearer the minimum (measured on the demo and sbottom A:
# 125 and 164 evaluations per hypotest against 192 and 247, -2lnL within 8e-7 of a
# tolerance-1e-12 fit against 1.7e-6 for the cold default).
SLSQP_TOLERANCE = 1e-6
WARM_TOLERANCE = 1e-8


def _warm_start(
    compiled: Any,
    observed: np.ndarray,
    init: np.ndarray,
    fixed_vals: Any,
    candidates: list[np.ndarray],
) -> np.ndarray | None:
    """The earlier fit's result (with this fit's fixed values) with the lowest -2lnL on
    ``observed``, if lower than at pyhf's start; ``None``: start where pyhf does."""
    best, best_value = None, np.inf
    for candidate in [init, *candidates] if candidates else []:
        start = candidate.copy()
        for index, value in fixed_vals or []:
            start[index] = value
        value = compiled(start, observed)[0]
        if np.isfinite(value) and value < best_value:
            best, best_value = (None if candidate is init else start), value
    return best


def _returned(result: Any, fitted_val: bool, result_obj: bool) -> Any:
    """What pyhf's ``minimize`` returns, from a (possibly remembered) result: copies, so
    that a caller changing them does not change the remembered one."""
    kept = copy.copy(result)
    kept.x = np.array(result.x, dtype=float)
    returns: list[Any] = [kept.x]
    if fitted_val:
        returns.append(kept.fun)
    if result_obj:
        returns.append(kept)
    return tuple(returns) if len(returns) > 1 else returns[0]


def restart_options(
    options: dict[str, Any], start: np.ndarray, tolerance: float | None
) -> dict[str, Any]:
    """The ``_minimize`` options of a fit started again at ``start``, next to a minimum:
    the compiled path reads its start from them and runs at ``WARM_TOLERANCE`` or below
    (``tolerance``: the optimizer's own); pyhf's own path starts at its ``x0``."""
    if not options.get(_FIXED_BY_BOUNDS):
        return options
    tolerance = min(options.get("tolerance", tolerance) or SLSQP_TOLERANCE, WARM_TOLERANCE)
    # (a fit made anew, from this start only)
    options = {k: v for k, v in options.items() if k not in (_HELD, _STARTS)}
    return {**options, _START: np.asarray(start, dtype=float), "tolerance": tolerance}


def _in_widths(
    start: np.ndarray, held: np.ndarray, scale: np.ndarray, fixed_vals: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    """The free parameters' frame of a second-order fit: which parameters move (not
    fixed), their widths, their bounds as offsets from ``start`` in those widths, and
    ``full(y)``: the model's parameters at offsets ``y``."""
    free = np.ones(len(start), dtype=bool)
    for index, _ in fixed_vals or []:
        free[index] = False
    widths = scale[free]
    lower = (held[free, 0] - start[free]) / widths
    upper = (held[free, 1] - start[free]) / widths

    def full(y: Any) -> np.ndarray:
        x = start.copy()
        x[free] += widths * np.asarray(y, dtype=float)
        return x

    return free, widths, lower, upper, full


def _newton(
    func: Any,
    hessian: Any,
    start: np.ndarray,
    held: np.ndarray,
    scale: np.ndarray,
    fixed_vals: Any,
    maxiter: int,
    noise: float = 0.0,
) -> Any:
    """One fit by a trust-region Newton method with the exact Hessian, over parameters in
    their widths (``noise``: the rounding of -2lnL; where the decrease a step predicts is
    below it, the step is judged by the gradient, which stays exact); a parameter at a
    bound whose gradient points outwards is held there for the step (projection), fixed
    ones are left out.

    Each step minimises the quadratic model within the trust radius (the Hessian's
    eigenvalues shifted by the smallest ``λ`` that keeps the step inside, so that a flat or
    negative direction is followed as far as the radius allows while the well-measured ones
    take their Newton step); the radius grows where the model predicts well and shrinks
    where it does not. Done when the decrease the model predicts is below NEWTON_TOLERANCE.
    """
    from scipy.optimize import OptimizeResult

    free, widths, lower, upper, full = _in_widths(start, held, scale, fixed_vals)

    def evaluate(y: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = func(full(y))
        return float(value), np.asarray(grad, dtype=float)[free] * widths

    y = np.clip(np.zeros(int(free.sum())), lower, upper)
    value, grad = evaluate(y)
    radius, evaluations, converged = NEWTON_RADIUS, 1, False
    for _ in range(min(maxiter, NEWTON_ITERATIONS)):
        edge = 1e-12 * (1.0 + np.abs(y))
        moving = ~(((y <= lower + edge) & (grad > 0)) | ((y >= upper - edge) & (grad < 0)))
        curvature = hessian(full(y))[np.ix_(free, free)] * np.outer(widths, widths)
        step, predicted = _trust_step(curvature[np.ix_(moving, moving)], grad[moving], radius)
        if predicted <= NEWTON_TOLERANCE:
            converged = True
            break
        trial = y.copy()
        trial[moving] = np.clip(y[moving] + step, lower[moving], upper[moving])
        trial_value, trial_grad = evaluate(trial)
        evaluations += 1
        taken = trial[moving] - y[moving]
        expected = -(grad[moving] @ taken + 0.5 * taken @ curvature[np.ix_(moving, moving)] @ taken)
        finite = bool(np.isfinite(trial_value))  # (not so where a rate went negative)
        ratio = (value - trial_value) / expected if expected > 0 and finite else -1.0
        if finite and 0 < expected < 10.0 * noise:  # (values drown in rounding there)
            shrinks = np.linalg.norm(trial_grad[moving]) < np.linalg.norm(grad[moving])
            ratio = 1.0 if shrinks and trial_value <= value + 10.0 * noise else -1.0
        if ratio < 0.25:
            radius *= 0.25
        elif ratio > 0.75 and np.max(np.abs(taken)) > 0.9 * radius:
            radius *= 2.0
        if ratio > 1e-4:
            y, value, grad = trial, trial_value, trial_grad
        if radius < 1e-12:
            converged = bool(predicted <= 1e3 * NEWTON_TOLERANCE)
            break
    x = full(y)
    return OptimizeResult(
        x=x,
        fun=value,
        jac=np.asarray(func(x)[1], dtype=float),
        success=converged,
        message="trust-region Newton (exact Hessian) "
        + ("converged" if converged else "did not converge"),
        nfev=evaluations,
    )


def _minuit(
    func: Any,
    start: np.ndarray,
    held: np.ndarray,
    scale: np.ndarray,
    fixed_vals: Any,
    maxiter: int,
    noise: float = 0.0,
) -> Any:
    """One fit by MINUIT's MIGRAD (iminuit) with the compiled exact gradient, over the free
    parameters in their widths (``scale``), inside their bounds: strategy 1, then strategy
    2 from where it ended when strategy 1 finds no valid minimum (an EDM above its goal,
    HESSE failed). The EDM goal is ``MINUIT_EDM`` in -2lnL, or ten times the rounding of
    an evaluation (``noise``, see ``evaluation_noise``) where that is larger; MINUIT is
    told the function's precision, so that its line searches do not chase rounding."""
    from iminuit import Minuit
    from scipy.optimize import OptimizeResult

    free, widths, lower, upper, full = _in_widths(start, held, scale, fixed_vals)
    last: dict[str, Any] = {}

    def evaluate(y: Any) -> tuple[float, np.ndarray]:
        key = np.asarray(y, dtype=float).tobytes()
        if last.get("key") != key:
            value, grad = func(full(y))
            last.update(key=key, value=float(value), grad=np.asarray(grad, dtype=float))
        return last["value"], last["grad"][free] * widths

    def value(y: Any) -> float:
        found = evaluate(y)[0]
        return found if np.isfinite(found) else 1e300

    def gradient(y: Any) -> np.ndarray:
        return evaluate(y)[1]

    nfree = int(free.sum())
    if nfree == 0:
        found, grad = func(start)
        return OptimizeResult(
            x=start,
            fun=float(found),
            jac=np.asarray(grad),
            success=True,
            nfev=1,
            message="MINUIT: nothing to fit",
        )
    minuit = Minuit(value, np.clip(np.zeros(nfree), lower, upper), grad=gradient)
    minuit.errordef = Minuit.LEAST_SQUARES
    minuit.print_level = 0
    minuit.limits = list(zip(lower.tolist(), upper.tolist(), strict=True))
    minuit.tol = max(MINUIT_EDM, 10.0 * noise) / (0.002 * minuit.errordef)
    first = abs(value(np.clip(np.zeros(nfree), lower, upper)))
    if noise > 0.0 and first > 0.0:
        minuit.precision = max(noise / first, float(np.finfo(float).eps))
    calls = min(maxiter, MINUIT_CALLS) if maxiter else MINUIT_CALLS
    minuit.strategy = 1
    minuit.migrad(ncall=calls)
    if not minuit.valid:
        minuit.strategy = 2
        minuit.migrad(ncall=calls)
    x = full(np.asarray(minuit.values, dtype=float))
    found, grad = func(x)
    fmin = minuit.fmin
    return OptimizeResult(
        x=x,
        fun=float(found),
        jac=np.asarray(grad, dtype=float),
        success=bool(minuit.valid),
        message=f"MINUIT (strategy {minuit.strategy.strategy}, exact gradient) "
        + ("converged" if minuit.valid else "found no valid minimum")
        + f", EDM {fmin.edm:.2g}",
        nfev=int(minuit.nfcn),
        minuit=minuit,
    )


def _strict(
    func: Any,
    hessian: Any,
    start: np.ndarray,
    held: np.ndarray,
    scale: np.ndarray,
    fixed_vals: Any,
    maxiter: int,
    noise: float = 0.0,
) -> Any:
    """The strict strategy's fit: MINUIT with the exact gradient from ``start``, then
    refined by Newton's method with the exact Hessian (which ends where the decrease it
    predicts is below ``NEWTON_TOLERANCE``; kept if it is no higher). A fit MINUIT finds
    valid stays converged when Newton's refinement stalls on rounding (ill-scaled models)."""
    best = _minuit(func, start, held, scale, fixed_vals, maxiter, noise)
    nfev = int(best.nfev)
    refined = _newton(func, hessian, np.asarray(best.x), held, scale, fixed_vals, maxiter, noise)
    nfev += refined.nfev
    if refined.fun <= best.fun + 1e-9 + 10.0 * noise and (refined.success or not best.success):
        refined.message = f"{best.message}; then {refined.message}"
        best = refined
    best.nfev = nfev
    return best


def _trust_step(curvature: np.ndarray, grad: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    """The step minimising ``g·p + p·H·p / 2`` with ``max |p| <= radius`` (approximately:
    ``H`` shifted by the smallest ``λ >= 0`` that makes it positive definite and the step
    short enough), and the decrease it predicts."""
    if len(grad) == 0:
        return grad, 0.0
    values, vectors = np.linalg.eigh(0.5 * (curvature + curvature.T))
    along = vectors.T @ grad
    top = max(float(np.max(np.abs(values))), 1e-300)
    floor = max(0.0, -float(values[0])) + 1e-15 * top

    def step(shift: float) -> np.ndarray:
        return -vectors @ (along / (values + shift))

    shift = floor
    p = step(shift)
    if np.max(np.abs(p)) > radius:
        low, high = shift, shift + float(np.linalg.norm(grad)) / radius
        for _ in range(60):  # bisection on the shift, in its logarithm
            mid = float(np.sqrt(low * high)) if low > 0 else 0.5 * high
            if np.max(np.abs(step(mid))) > radius:
                low = mid
            else:
                high = mid
            if high - low <= 1e-6 * high:
                break
        p = step(high)
    predicted = -float(grad @ p + 0.5 * p @ curvature @ p)
    return p, predicted


class _Fitted:
    """What the fits of one model so far leave for the next ones: their minima (warm starts),
    the conditional minima per dataset (the free fit's extra starts), the parameters'
    widths and which have a kink."""

    def __init__(self, pdf: Any, scales: np.ndarray, kinked: np.ndarray) -> None:
        self.pdf = pdf
        self.scales = scales
        self.kinked = kinked
        self.minima: list[np.ndarray] = []
        self.conditional: list[tuple[bytes, np.ndarray]] = []

    def remember(self, x: np.ndarray, data_key: bytes, conditional: bool) -> None:
        self.minima.insert(0, x.copy())
        del self.minima[WARM_CANDIDATES:]
        if conditional:
            self.conditional.insert(0, (data_key, x.copy()))
            del self.conditional[WARM_CANDIDATES:]

    def extra_starts(
        self,
        optimizer: Any,
        data_key: bytes,
        fixed_vals: Any,
        init: np.ndarray,
        conditional: bool,
    ) -> list[np.ndarray]:
        """A fit's extra starts: pyhf's start, and for a free fit every conditional minimum
        of the same data (where the model has kinks, or every point gets several starts);
        for every fit, the starts the fit checks ask for (``start_hints``, by data and
        fixed values: see ``fitaas.inference.diagnostics``)."""
        starts: list[np.ndarray] = []
        several = self.kinked.any() or getattr(optimizer, "several_starts", False)
        if several:  # (pyhf's start for every fit: where it ends is reported where it matters)
            starts = [init]
        if several and not conditional:
            starts += [x for key, x in self.conditional if key == data_key]
        hints = getattr(optimizer, "start_hints", None) or {}
        chosen = hints.get((data_key, fixed_key(fixed_vals)), [])
        return [*starts, *(np.asarray(h, dtype=float) for h in chosen)]


@cache
def compiled_objective_optimizer(base: type) -> type:
    """A subclass of pyhf's ``base`` optimizer using a :class:`StructureCache`.

    Instances need ``structures`` (the cache) and ``modifier_settings`` set; with
    ``second_order`` set, fits are MINUIT with the exact gradient, refined by a trust-region
    Newton method with the exact Hessian, from pyhf's start and the best earlier minimum,
    instead of SLSQP: the strict strategy of the fit checks. ``start_hints`` (extra starts
    by data and fixed values) and ``several_starts`` (free fits from pyhf's start and the
    conditional minima too) are read where set.
    """
    return type(f"compiled_{base.__name__}", (_CompiledObjective, base), {})


class _CompiledObjective:
    """The compiled path of a pyhf optimizer (mixed in before it: see
    :func:`compiled_objective_optimizer`)."""

    structures: StructureCache
    modifier_settings: Any
    second_order: bool
    tolerance: Any
    maxiter: Any
    verbose: Any
    solver_options: Any
    _internal_minimize: Any
    _internal_postprocess: Any

    def minimize(
        self,
        objective: Any,
        data: Any,
        pdf: Any,
        init_pars: Any,
        par_bounds: Any,
        fixed_vals: Any = None,
        return_fitted_val: bool = False,
        return_result_obj: bool = False,
        return_uncertainties: bool = False,
        return_correlations: bool = False,
        do_grad: Any = None,
        do_stitch: bool = False,
        **kwargs: Any,
    ) -> Any:
        """pyhf's ``minimize``, on the compiled structure of ``pdf`` where it serves (and
        not asked for uncertainties); pyhf's own path otherwise."""
        bound = None
        if objective is pyhf.infer.mle.twice_nll and not (
            return_uncertainties or return_correlations
        ):
            bound = self.structures.bound(pdf, self.modifier_settings)
        if bound is None:
            return super().minimize(  # type: ignore[misc]
                objective,
                data,
                pdf,
                init_pars,
                par_bounds,
                fixed_vals=fixed_vals,
                return_fitted_val=return_fitted_val,
                return_result_obj=return_result_obj,
                return_uncertainties=return_uncertainties,
                return_correlations=return_correlations,
                do_grad=do_grad,
                do_stitch=do_stitch,
                **kwargs,
            )
        observed = np.asarray(data, dtype=float)
        init = np.asarray(init_pars, dtype=float)
        args = (bound, pdf, observed, init, par_bounds, fixed_vals, kwargs)
        # (fits someone watches, the fit checks' and the mirror search's, are all made)
        if getattr(self, "on_fit", None) or getattr(self, "mirror", None):
            return _returned(self._compiled_fit(*args), return_fitted_val, return_result_obj)
        memo = self.structures.memo(pdf)
        key = (
            observed.tobytes(),
            init.tobytes(),
            np.asarray(par_bounds, dtype=float).tobytes(),
            repr(fixed_vals),
            bool(getattr(self, "second_order", False)),
            self.tolerance,
            repr(sorted(kwargs.items())),
        )
        found = memo.get(key)
        if found is None:  # else asked before (pyhf's hypotest at another POI value)
            found = memo[key] = self._compiled_fit(*args)
        return _returned(found, return_fitted_val, return_result_obj)

    def _compiled_fit(
        self,
        bound: Any,
        pdf: Any,
        observed: np.ndarray,
        init: np.ndarray,
        par_bounds: Any,
        fixed_vals: Any,
        kwargs: dict[str, Any],
    ) -> Any:
        """One minimisation on the compiled objective: warm-started from the best earlier
        minimum of this model, with its extra starts (or the strict fit from pyhf's start and
        the best earlier minimum, ``second_order``)."""
        compiled = bound.value_and_grad

        def func(pars: Any) -> tuple[float, np.ndarray]:
            return compiled(np.asarray(pars, dtype=float), observed)

        fitted: _Fitted | None = getattr(self, "_fitted", None)
        if fitted is None or fitted.pdf is not pdf:
            fitted = _Fitted(pdf, bound.scales, kinked_parameters(pdf))
            self._fitted = fitted
        options = {**kwargs, _FIXED_BY_BOUNDS: True, _SCALE: fitted.scales}
        if fitted.kinked.any():
            options[_KINKED] = fitted.kinked
        held = None
        second_order = getattr(self, "second_order", False)
        if not second_order:  # (a tighter fit than the held one is made anew)
            key = held_key(observed, fixed_vals, par_bounds)
            held = self.structures.held(pdf, key, self.tolerance)
            options[_POLISH] = _Polish(pdf, bound, observed)
        else:
            hessian = bound.structure.hessian()

            def exact(pars: Any) -> np.ndarray:
                return np.asarray(hessian(pars, observed, bound.arrays), dtype=float)

            options[_HESSIAN] = exact
            options[_NOISE] = evaluation_noise(pdf, init, observed)
        conditional = pdf.config.poi_index in {int(i) for i, _ in fixed_vals or []}
        data_key = observed.tobytes()
        extra = fitted.extra_starts(self, data_key, fixed_vals, init, conditional)
        if held is not None:  # found in lockstep with other points' fits
            options[_HELD] = held
            start = None
        elif second_order:  # from pyhf's start and from the best earlier minimum
            start = None
            warm = _warm_start(compiled, observed, init, fixed_vals, fitted.minima)
            extra = [s for s in [warm, *extra] if s is not None and s is not init]
        else:
            start = _warm_start(compiled, observed, init, fixed_vals, fitted.minima)
            if start is None:  # (pyhf's start is the main one)
                extra = [s for s in extra if s is not init]
        if start is not None:
            options = restart_options(options, start, self.tolerance)
        if extra:
            options[_STARTS] = extra
        result = self._internal_minimize(
            func=func,
            x0=list(init),
            do_grad=True,
            bounds=par_bounds,
            fixed_vals=fixed_vals or [],
            options=options,
            par_names=list(pdf.config.par_names),
        )
        if result.success:
            fitted.remember(np.asarray(result.x, dtype=float), data_key, conditional)
        return self._internal_postprocess(result, lambda pars, stitch_with=None: pars)

    def _minimize(
        self,
        minimizer: Any,
        func: Any,
        x0: Any,
        do_grad: bool = False,
        bounds: Any = None,
        fixed_vals: Any = None,
        options: Any = None,
    ) -> Any:
        """pyhf's scipy call, with fixed parameters held by equal bounds.

        pyhf holds them with an equality constraint, whose Jacobian SLSQP takes by
        finite differences (a third of a 1Lbb fit's time once the objective is
        compiled); scipy removes variables with equal bounds from the problem instead.
        """
        options = dict(options or {})
        warm = options.pop(_START, None)
        scale = options.pop(_SCALE, None)
        found = options.pop(_HELD, None)
        hessian = options.pop(_HESSIAN, None)
        starts = options.pop(_STARTS, None)
        kinked = options.pop(_KINKED, None)
        noise = float(options.pop(_NOISE, 0.0))
        polish = options.pop(_POLISH, None)
        if not options.pop(_FIXED_BY_BOUNDS, False):
            return super()._minimize(  # type: ignore[misc]
                minimizer, func, x0, do_grad, bounds, fixed_vals, options
            )
        assert do_grad and scale is not None
        maxiter = options.pop("maxiter", self.maxiter)
        verbose = options.pop("verbose", self.verbose)
        method = options.pop("method", "SLSQP")
        tolerance = options.pop("tolerance", self.tolerance)
        solver_options = options.pop("solver_options", self.solver_options)
        if options:
            raise pyhf.exceptions.Unsupported(
                f"Unsupported options were passed in: {list(options)}."
            )
        # (only minimize() above takes this path: compiled objective, exact gradient)
        start = np.array(x0 if warm is None else warm, dtype=float)
        limits = np.array(bounds, dtype=float)
        for index, value in fixed_vals or []:
            start[index] = value
            limits[index] = [value, value]
        free = limits[:, 0] < limits[:, 1]

        def slsqp(point: np.ndarray, lims: np.ndarray) -> Any:
            def scaled(y: np.ndarray) -> tuple[float, np.ndarray]:
                value, grad = func(point + scale * y)
                return value, grad * scale

            result = minimizer(
                scaled,
                np.zeros_like(point),
                method=method,
                jac=True,
                bounds=(lims - point[:, None]) / scale[:, None],
                tol=tolerance,
                options=dict(maxiter=maxiter, disp=bool(verbose), **solver_options),
            )
            # back to pyhf's parameters
            result.x = point + scale * np.asarray(result.x, dtype=float)
            if getattr(result, "jac", None) is not None:
                result.jac = np.asarray(result.jac, dtype=float) / scale
            return result

        def strict(point: np.ndarray, lims: np.ndarray) -> Any:
            return _strict(func, hessian, point, lims, scale, fixed_vals, maxiter, noise)

        fit = strict if hessian is not None else slsqp
        if found is not None:
            from scipy.optimize import OptimizeResult

            result = OptimizeResult(
                x=found.x.copy(),
                fun=found.fun,
                jac=found.jac.copy(),
                nfev=found.nfev,
                success=True,
                message="found in lockstep with other points' fits",
            )
        else:
            result = fit(start, limits)
        if hessian is None and polish is not None:
            result = _finished(result, func, polish, limits, scale, fixed_vals, maxiter, kinked)
        from_pyhf_start = float(result.fun) if warm is None and found is None else None
        others: list[float] = []
        nfev = int(getattr(result, "nfev", 0) or 0)
        for point in starts or []:
            pyhf_start = np.array_equal(np.asarray(point, dtype=float), np.asarray(x0, dtype=float))
            point = np.clip(np.array(point, dtype=float), limits[:, 0], limits[:, 1])
            again = fit(point, limits)
            nfev += int(getattr(again, "nfev", 0) or 0)
            value = float(again.fun)
            if pyhf_start:
                from_pyhf_start = value
            result, other = _lower(result, again)
            if other is not None:
                others.append(other)
        result.nfev = nfev
        if kinked is not None and (kinked & free).any():
            result, more = kink_sides(fit, result, limits, kinked, free, scale)
            others += more
        result.other_minima = others
        result.from_pyhf_start = from_pyhf_start
        return result


# A fit whose end has a projected gradient of norm above POLISH_GRADIENT (each parameter in
# its width) is looked at with the exact Hessian; where the decrease left that Newton's
# method predicts from there (the EDM, g H^-1 g / 2) exceeds POLISH_EDM, or the Hessian is
# not positive definite, it is finished by the strict fit (MINUIT with the exact gradient,
# then Newton) from its end, the lower end kept. (SLSQP stops early where rounding makes
# -2lnL noisy: an ill-scaled likelihood with constraint widths of 1e-6.)
POLISH_GRADIENT = 1e-2
POLISH_EDM = 1e-4


class _Polish:
    """What finishing a fit needs: the exact Hessian, the rounding of -2lnL (lazily)."""

    def __init__(self, pdf: Any, bound: Any, observed: np.ndarray) -> None:
        self.pdf, self.bound, self.observed = pdf, bound, observed

    def hessian(self, pars: np.ndarray) -> np.ndarray:
        compiled = self.bound.structure.hessian()
        return np.asarray(compiled(pars, self.observed, self.bound.arrays), dtype=float)

    def noise(self, pars: np.ndarray) -> float:
        return evaluation_noise(self.pdf, pars, self.observed)


def _edm(hessian: np.ndarray, grad: np.ndarray, index: np.ndarray, scale: np.ndarray) -> float:
    """``g H^-1 g / 2`` on the parameters ``index``, in their widths (inf where the Hessian
    there is not positive definite)."""
    widths = scale[index]
    reduced = hessian[np.ix_(index, index)] * np.outer(widths, widths)
    reduced = 0.5 * (reduced + reduced.T)
    gradient = grad[index] * widths
    try:
        factor = np.linalg.cholesky(reduced)
    except np.linalg.LinAlgError:
        return float("inf")
    solved = np.linalg.solve(factor, gradient)
    return 0.5 * float(solved @ solved)


def _finished(
    result: Any,
    func: Any,
    polish: _Polish,
    limits: np.ndarray,
    scale: np.ndarray,
    fixed_vals: Any,
    maxiter: int,
    kinked: np.ndarray | None,
) -> Any:
    """``result``, or the strict fit from its end where it did not end at a minimum (see
    ``POLISH_GRADIENT``)."""
    x = np.asarray(result.x, dtype=float)
    value, grad = func(x)
    grad = np.asarray(grad, dtype=float)
    span = np.maximum(limits[:, 1] - limits[:, 0], 1e-12)
    edge = 1e-6 * span
    interior = (x - limits[:, 0] > edge) & (limits[:, 1] - x > edge)
    if kinked is not None:
        interior &= ~at_kink(x, kinked, scale)
    index = np.flatnonzero(interior)
    if not len(index) or not np.isfinite(value):
        return result
    if result.success and float(np.linalg.norm(grad[index] * scale[index])) <= POLISH_GRADIENT:
        return result
    if result.success and _edm(polish.hessian(x), grad, index, scale) <= POLISH_EDM:
        return result
    noise = polish.noise(x)
    finished = _strict(func, polish.hessian, x, limits, scale, fixed_vals, maxiter, noise)
    # (within the rounding of -2lnL the converged end, whose gradient is the smaller, wins)
    within = bool(finished.success) and float(finished.fun) <= float(result.fun) + 10.0 * noise
    kept = finished if within else _lower(result, finished)[0]
    if kept is finished:
        finished.message = f"{result.message}; finished by {finished.message}"
    kept.nfev = int(getattr(result, "nfev", 0) or 0) + int(finished.nfev)
    return kept


# Two minima of one fit closer than this in -2lnL are the same.
SAME_MINIMUM = 1e-6


def _lower(first: Any, second: Any) -> tuple[Any, float | None]:
    """The lower of two results of one fit (a converged one before one that is not, unless
    it is lower by more than ``SAME_MINIMUM``), and the other's -2lnL where it is another
    minimum (``None``: the same one, not converged, or not a number)."""
    a, b = float(first.fun), float(second.fun)
    if not np.isfinite(b):
        return first, None
    if not np.isfinite(a):
        return second, None
    better = b < a - SAME_MINIMUM or (
        b <= a + SAME_MINIMUM and bool(second.success) and not bool(first.success)
    )
    kept, other = (second, first) if better else (first, second)
    # (a fit that stopped early is no other minimum)
    distinct = abs(a - b) > SAME_MINIMUM and bool(other.success)
    return kept, (float(other.fun) if distinct else None)
