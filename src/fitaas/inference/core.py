"""The pure inference core: typed wrappers over ``pyhf.infer`` for one model (built by
:mod:`fitaas.inference.models`).

Nothing here knows about engines, storage or HTTP: a pyhf workspace and JSON patch
operations go in, frozen result types come out. Results are those of plain pyhf
called with the same options.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyhf

from fitaas.errors import InputError
from fitaas.inference.options import InferenceOptions
from fitaas.inference.results import (
    FitResult,
    HypotestResult,
    UpperLimitResult,
    UpperLimitScanPoint,
)

__all__ = [
    "FitInputs",
    "check_options",
    "complete_fit_inputs",
    "fit",
    "fit_inputs",
    "hypotest",
    "upper_limit",
]

FitInputs = tuple[list[float] | None, list[list[float]] | None, list[bool] | None]


def _par_slice(model: pyhf.pdf.Model, name: str) -> slice:
    base, _, index = name.partition("[")
    try:
        full = model.config.par_slice(base)
    except (KeyError, pyhf.exceptions.InvalidModel):
        near = difflib.get_close_matches(base, model.config.parameters, n=5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise InputError(f"unknown parameter '{name}'{hint}") from None
    if not index:
        return slice(full.start, full.stop)
    position = full.start + int(index.rstrip("]"))
    if not full.start <= position < full.stop:
        raise InputError(f"parameter '{name}': index out of range ({full.stop - full.start})")
    return slice(position, position + 1)


def _values(name: str, value: Any, size: int) -> list[Any]:
    values = list(value) if isinstance(value, list | tuple) else [value] * size
    if len(values) != size:
        raise InputError(f"parameter '{name}' has {size} components, got {len(values)} values")
    return values


def fit_inputs(model: pyhf.pdf.Model, options: InferenceOptions) -> FitInputs:
    """Initial values, bounds and fixed flags for the fits, with the options' overrides.

    Args:
        model: The model.
        options: Inference options (``init_pars``, ``fixed_params``, ``par_bounds``).

    Returns:
        ``(init_pars, par_bounds, fixed_params)``; each is ``None`` when not overridden, so
        that pyhf uses its own suggestions exactly as a plain call would.
    """
    init = bounds = fixed = None
    if options.init_pars or options.fixed_params:
        init = list(model.config.suggested_init())
    if options.par_bounds:
        bounds = [list(b) for b in model.config.suggested_bounds()]
    if options.fixed_params:
        fixed = list(model.config.suggested_fixed())
    for name, value in options.init_pars.items():
        sl = _par_slice(model, name)
        init[sl] = _values(name, value, sl.stop - sl.start)  # type: ignore[index]
    for name, value in options.par_bounds.items():
        sl = _par_slice(model, name)
        for i in range(sl.start, sl.stop):
            bounds[i] = [float(value[0]), float(value[1])]  # type: ignore[index]
    for name, value in options.fixed_params.items():
        sl = _par_slice(model, name)
        init[sl] = _values(name, value, sl.stop - sl.start)  # type: ignore[index]
        fixed[sl] = [True] * (sl.stop - sl.start)  # type: ignore[index]
    return init, bounds, fixed


def check_options(
    model: pyhf.pdf.Model, options: InferenceOptions, kinds: Sequence[str] = ("hypotest",)
) -> None:
    """Refuse options the model cannot take, naming the option and the parameter.

    Unknown parameter names, initial or fixed values outside their bounds, and (for
    hypothesis tests among ``kinds``) a tested POI value outside the POI's bounds. The
    points of a scan share their parameters: checked once, before any is computed.

    Raises:
        InputError: The first such option.
    """
    init, bounds, _ = complete_fit_inputs(model, fit_inputs(model, options))
    names = model.config.par_names
    poi = model.config.poi_index
    if poi is not None and "hypotest" in kinds:
        low, high = bounds[poi]
        if not low <= options.poi_value <= high:
            raise InputError(
                f"POI value {options.poi_value:g} lies outside the bounds [{low:g}, {high:g}] "
                f"of '{names[poi]}' (widen them)",
                option="par_bounds",
                value=f"{names[poi]}=LOW,HIGH",
            )
    for name, value, (low, high) in zip(names, init, bounds, strict=True):
        if not low <= value <= high:
            raise InputError(
                f"parameter '{name}': initial or fixed value {value:g} lies outside its "
                f"bounds [{low:g}, {high:g}]"
            )


def complete_fit_inputs(
    model: pyhf.pdf.Model, inputs: FitInputs
) -> tuple[list[float], list[list[float]], list[bool]]:
    """``(init, bounds, fixed)`` of :func:`fit_inputs` with pyhf's suggestions where the
    options left ``None``."""
    init, bounds, fixed = inputs
    return (
        list(init or model.config.suggested_init()),
        [list(b) for b in bounds or model.config.suggested_bounds()],
        list(fixed or model.config.suggested_fixed()),
    )


def _float(value: Any) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0])


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(_float(v) for v in values)


def hypotest(
    model: pyhf.pdf.Model, data: Sequence[float], options: InferenceOptions
) -> HypotestResult:
    """CLs hypothesis test at ``options.poi_value`` with the expected band (asymptotics).

    Args:
        model: The model.
        data: Observed data (main + auxiliary).
        options: Inference options.

    Returns:
        Observed CLs, the five expected CLs, CLs+b and CLb.
    """
    init, bounds, fixed = fit_inputs(model, options)
    cls_obs, tails, cls_exp = pyhf.infer.hypotest(
        options.poi_value,
        data,
        model,
        init_pars=init,
        par_bounds=bounds,
        fixed_params=fixed,
        test_stat=options.test_stat,
        return_tail_probs=True,
        return_expected_set=True,
    )
    exp = _floats(cls_exp)
    # pyhf returns [CLs+b, CLb], or for q0 (discovery) only [CLb], p0 being the first value
    clsb, clb = (tails[0], tails[1]) if len(tails) == 2 else (cls_obs, tails[0])
    return HypotestResult(
        poi_value=float(options.poi_value),
        test_stat=options.test_stat,
        cls_obs=_float(cls_obs),
        cls_exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
        clsb_obs=_float(clsb),
        clb_obs=_float(clb),
    )


def upper_limit(
    model: pyhf.pdf.Model, data: Sequence[float], options: InferenceOptions
) -> UpperLimitResult:
    """Observed and expected upper limits on the POI at CLs = ``options.level``.

    With ``options.ul_scan`` unset this is pyhf's TOMS748 root finding between the POI
    bounds (``pyhf.infer.intervals.upper_limits.upper_limit(data, model)``, with the
    level passed through); otherwise pyhf's linear grid scan.

    Args:
        model: The model.
        data: Observed data (main + auxiliary).
        options: Inference options.

    Returns:
        The limits and the CLs values visited.
    """
    init, bounds, fixed = fit_inputs(model, options)
    kwargs = {
        "init_pars": init,
        "par_bounds": bounds,
        "fixed_params": fixed,
        "test_stat": options.test_stat,
    }
    if options.ul_scan is None:
        poi = model.config.poi_index
        low, high = (bounds or model.config.suggested_bounds())[poi]
        try:
            obs, exp, (mus, results) = _toms748(data, model, low, high, options.level, kwargs)
        except ValueError as exc:
            if "is NaN" in str(exc) and low == 0.0:
                # qtilde CLs is 0/0 at mu = 0 for some models: bracket from just above 0.
                low = high * 1e-3
                obs, exp, (mus, results) = _toms748(data, model, low, high, options.level, kwargs)
            elif "outside of its bounds" in str(exc):
                name = model.config.poi_name
                raise InputError(
                    f"the upper limit lies above the upper bound of {name} ({high:g}); widen it",
                    option="par_bounds",
                    value=f"{name}=0,{high * 10:g}",
                ) from None
            else:
                raise
        method = "toms748"
    else:
        start, stop, points = options.ul_scan
        grid = np.linspace(start, stop, points)
        obs, exp, (mus, results) = pyhf.infer.intervals.upper_limits.linear_grid_scan(
            data, model, grid, level=options.level, return_results=True, **kwargs
        )
        method = "grid"
    visited = sorted(
        UpperLimitScanPoint(_float(mu), _float(r[0]), _floats(r[1]))
        for mu, r in zip(mus, results, strict=True)
    )
    limits = _floats(exp)
    return UpperLimitResult(
        level=options.level,
        obs=_float(obs),
        exp=(limits[0], limits[1], limits[2], limits[3], limits[4]),
        method=method,
        scan=tuple(visited),
    )


def _toms748(
    data: Sequence[float],
    model: pyhf.pdf.Model,
    low: float,
    high: float,
    level: float,
    kwargs: dict[str, Any],
) -> Any:
    return pyhf.infer.intervals.upper_limits.toms748_scan(
        data, model, low, high, level=level, from_upper_limit_fn=True, **kwargs
    )


def _hesse(
    model: pyhf.pdf.Model,
    data: Sequence[float],
    bestfit: Sequence[float],
    bounds: Sequence[Sequence[float]],
    fixed: Sequence[bool],
    minos: Sequence[str] = (),
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...], dict[str, tuple[float, float]] | None]:
    """Symmetric uncertainties and the correlation matrix from MINUIT's HESSE at the
    minimum of twice the NLL (fixed parameters: 0 uncertainty, no correlation), and the
    MINOS intervals of the parameters named in ``minos``."""
    from iminuit import Minuit

    tensor_data = pyhf.tensorlib.astensor(data)

    def twice_nll(pars: np.ndarray) -> float:
        return _float(pyhf.infer.mle.twice_nll(pyhf.tensorlib.astensor(pars), tensor_data, model))

    names = list(model.config.par_names)
    minuit = Minuit(twice_nll, np.asarray(bestfit, dtype=float), name=names)
    minuit.errordef = Minuit.LEAST_SQUARES
    minuit.limits = [tuple(b) for b in bounds]
    # initial steps as pyhf's minuit optimizer sets them: 1/1000 of each parameter's range
    minuit.errors = [(b[1] - b[0]) / 1000.0 for b in bounds]
    minuit.fixed = list(fixed)
    intervals = None
    if minos:
        unknown = [n for n in minos if n not in names]
        if unknown:
            raise InputError(f"MINOS asked for unknown parameter(s): {', '.join(unknown)}")
        minuit.migrad()  # (MINOS needs MINUIT's own minimum; it starts at this one)
        minuit.minos(*minos)
        intervals = {
            n: (float(minuit.merrors[n].lower), float(minuit.merrors[n].upper)) for n in minos
        }
    minuit.hesse()
    errors = tuple(0.0 if f else float(e) for e, f in zip(minuit.errors, fixed, strict=True))
    covariance = np.asarray(minuit.covariance, dtype=float)
    scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = covariance / np.outer(scale, scale)
    free = ~np.asarray(fixed, dtype=bool) & (scale > 0)
    correlation = np.where(np.outer(free, free), correlation, 0.0)
    np.fill_diagonal(correlation, np.where(free, 1.0, 0.0))
    return errors, tuple(tuple(float(v) for v in row) for row in correlation), intervals


def fit(
    model: pyhf.pdf.Model,
    data: Sequence[float],
    options: InferenceOptions,
    with_correlations: bool = False,
    minos: Sequence[str] = (),
) -> FitResult:
    """Maximum-likelihood fit with uncertainties (``pyhf.infer.mle.fit``).

    MINUIT provides uncertainties itself; after a scipy fit they come from MINUIT's HESSE
    at the scipy minimum, as does the correlation matrix on both.

    Args:
        model: The model.
        data: Observed data (main + auxiliary).
        options: Inference options.
        with_correlations: Also keep the correlation matrix (npars x npars numbers: left
            out of scans' per-point fits).
        minos: Parameters (labels, ``name[i]`` for a component) whose MINOS intervals to
            find (MINUIT started at the minimum).

    Returns:
        Best-fit values, uncertainties, twice the NLL and the optimizer's report.
    """
    init, bounds, fixed = fit_inputs(model, options)
    with_unc = options.optimizer == "minuit"
    pars, twice_nll, result = pyhf.infer.mle.fit(
        data,
        model,
        init_pars=init,
        par_bounds=bounds,
        fixed_params=fixed,
        return_uncertainties=with_unc,
        return_fitted_val=True,
        return_result_obj=True,
    )
    values = np.asarray(pars, dtype=float)
    bestfit = tuple((values[:, 0] if with_unc else values).tolist())
    unc, correlations, intervals = _hesse(
        model,
        data,
        bestfit,
        bounds or model.config.suggested_bounds(),
        fixed or model.config.suggested_fixed(),
        minos,
    )
    if with_unc:  # MINUIT's own uncertainties, from its fit
        unc = tuple(values[:, 1].tolist())
    return FitResult(
        parameters=tuple(model.config.par_names),
        bestfit=bestfit,
        uncertainties=unc,
        twice_nll=_float(twice_nll),
        converged=bool(result.success),
        nfev=int(getattr(result, "nfev", 0)),
        message=str(getattr(result, "message", "")),
        correlations=correlations if with_correlations else None,
        minos=intervals,
    )
