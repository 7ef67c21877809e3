"""A pyhf scipy optimizer whose objective is the compiled one of the model's structure.

pyhf runs the statistics exactly as usual (numpy backend: Asimov data, test statistics,
CLs); only each minimisation gets -2lnL and its exact gradient from the compiled
structure (SLSQP with ``jac=True``) instead of finite differences over the numpy
objective. Models the structure cache cannot serve are minimised the plain way.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pyhf

from fitaas.fast.structures import StructureCache

__all__ = ["compiled_objective_optimizer"]

_FIXED_BY_BOUNDS = "fitaas_fixed_by_bounds"


@cache
def compiled_objective_optimizer(base: type) -> type:
    """A subclass of pyhf's ``base`` optimizer using a :class:`StructureCache`.

    Instances need ``structures`` (the cache) and ``modifier_settings`` set.
    """

    class CompiledObjective(base):
        __slots__ = ("modifier_settings", "structures")

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
            cache_: StructureCache = self.structures
            compiled = None
            if objective is pyhf.infer.mle.twice_nll and not (
                return_uncertainties or return_correlations
            ):
                compiled = cache_.objective(pdf, self.modifier_settings)
            if compiled is None:
                return super().minimize(
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

            def func(pars: Any) -> tuple[float, np.ndarray]:
                return compiled(np.asarray(pars, dtype=float), observed)

            result = self._internal_minimize(
                func=func,
                x0=list(np.asarray(init_pars, dtype=float)),
                do_grad=True,
                bounds=par_bounds,
                fixed_vals=fixed_vals or [],
                options={**kwargs, _FIXED_BY_BOUNDS: True},
                par_names=list(pdf.config.par_names),
            )
            result = self._internal_postprocess(result, lambda pars, stitch_with=None: pars)
            returns = [result.x]
            if return_fitted_val:
                returns.append(result.fun)
            if return_result_obj:
                returns.append(result)
            return tuple(returns) if len(returns) > 1 else returns[0]

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
            if not options.pop(_FIXED_BY_BOUNDS, False):
                return super()._minimize(minimizer, func, x0, do_grad, bounds, fixed_vals, options)
            maxiter = options.pop("maxiter", self.maxiter)
            verbose = options.pop("verbose", self.verbose)
            method = options.pop("method", "SLSQP")
            tolerance = options.pop("tolerance", self.tolerance)
            solver_options = options.pop("solver_options", self.solver_options)
            if options:
                raise pyhf.exceptions.Unsupported(
                    f"Unsupported options were passed in: {list(options)}."
                )
            start = np.array(x0, dtype=float)
            held = [list(b) for b in bounds]
            for index, value in fixed_vals or []:
                start[index] = value
                held[index] = [value, value]
            return minimizer(
                func,
                start,
                method=method,
                jac=do_grad,
                bounds=held,
                tol=tolerance,
                options=dict(maxiter=maxiter, disp=bool(verbose), **solver_options),
            )

    CompiledObjective.__name__ = f"compiled_{base.__name__}"
    return CompiledObjective
