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
gradient and Newton's method (:mod:`fitaas.fast.second_order`); extra starts (pyhf's start,
conditional minima, starts the fit checks ask for) are fitted too, the lowest end kept and
the others reported (``other_minima``, ``from_pyhf_start``); parameters with a kinked interpolation
are tried on the other side of their kink (:mod:`fitaas.fast.kinks`). The strict strategy
(``second_order``) is MINUIT with the exact gradient then Newton with the exact Hessian.
"""

from __future__ import annotations

import copy
import math
from functools import cache
from typing import Any

import numpy as np
import pyhf

from fitaas.fast.differences import NOISY, Anchors
from fitaas.fast.kinks import kink_sides, kinked_parameters
from fitaas.fast.scales import evaluation_noise, parameter_scales
from fitaas.fast.second_order import Polish, finished, lower, strict_fit
from fitaas.fast.structure_cache import StructureCache, fixed_key, held_key

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
_ANCHORS = "fitaas_anchors"
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


# SLSQP stops at a non-finite -2lnL only at its iteration limit (a held fit where the expected
# counts go negative ran for four minutes): this many non-finite values in a row end the fit
# as failed.
NOT_FINITE_STREAK = 50


class _NotFinite(Exception):
    """-2lnL stayed non-finite (its argument: the last point)."""


def _anchors(pdf: Any, compiled: Any, init: np.ndarray, data: np.ndarray) -> Anchors | None:
    """The anchors of a model's fits where its -2lnL is noisy, else ``None``."""
    noise = evaluation_noise(pdf, init, data)
    if not noise > NOISY:
        return None
    return Anchors(lambda pars, rows: compiled(np.asarray(pars, dtype=float), rows)[1], noise)


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
            options[_POLISH] = Polish(pdf, bound, observed)
        else:
            hessian = bound.structure.hessian()

            def exact(pars: Any) -> np.ndarray:
                return np.asarray(hessian(pars, observed, bound.arrays), dtype=float)

            options[_HESSIAN] = exact
            options[_NOISE] = evaluation_noise(pdf, init, observed)
        anchors = self.structures.anchors(pdf, lambda: _anchors(pdf, compiled, init, observed))
        if anchors is not None:  # (a noisy -2lnL: see fitaas.fast.differences)
            options[_ANCHORS] = (anchors, observed)
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
        anchors = options.pop(_ANCHORS, None)
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
            streak = [0, 0]  # (non-finite values in a row, evaluations)

            def scaled(y: np.ndarray) -> tuple[float, np.ndarray]:
                value, grad = func(point + scale * y)
                streak[1] += 1
                streak[0] = 0 if math.isfinite(value) else streak[0] + 1
                if streak[0] >= NOT_FINITE_STREAK:
                    raise _NotFinite(point + scale * y)
                return value, grad * scale

            try:
                result = minimizer(
                    scaled,
                    np.zeros_like(point),
                    method=method,
                    jac=True,
                    bounds=(lims - point[:, None]) / scale[:, None],
                    tol=tolerance,
                    options=dict(maxiter=maxiter, disp=bool(verbose), **solver_options),
                )
            except _NotFinite as stuck:
                from scipy.optimize import OptimizeResult

                return OptimizeResult(
                    x=np.asarray(stuck.args[0], dtype=float),
                    fun=math.nan,
                    jac=np.full_like(point, math.nan),
                    nfev=streak[1],
                    success=False,
                    message=f"-2lnL is not finite at {NOT_FINITE_STREAK} points in a row "
                    "(expected counts below zero?)",
                )
            # back to pyhf's parameters
            result.x = point + scale * np.asarray(result.x, dtype=float)
            if getattr(result, "jac", None) is not None:
                result.jac = np.asarray(result.jac, dtype=float) / scale
            return result

        def strict(point: np.ndarray, lims: np.ndarray) -> Any:
            return strict_fit(func, hessian, point, lims, scale, fixed_vals, maxiter, noise)

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
            if hessian is not None:
                # MINUIT and SLSQP can end in different wells from one start (a likelihood
                # with several minima): the strict fit goes on from SLSQP's end too, so
                # that it never ends above the default strategy's minimum from there
                starts = [*(starts or []), slsqp(start, limits).x]
        if hessian is None and polish is not None:
            result = finished(result, func, polish, limits, scale, fixed_vals, maxiter, kinked)
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
            result, other = lower(result, again)
            if other is not None:
                others.append(other)
        result.nfev = nfev
        if kinked is not None and (kinked & free).any():
            result, more = kink_sides(fit, result, limits, kinked, free, scale)
            others += more
        result.other_minima = others
        result.from_pyhf_start = from_pyhf_start
        if anchors is not None and result.success:
            found, rows = anchors
            x = np.asarray(result.x, dtype=float)
            result.fun = found.value(rows, x, float(np.asarray(result.fun).reshape(-1)[0]))
        return result
