"""Choosing pyhf's backend and optimizer for the duration of a task."""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import pyhf

from fitaas.errors import FitaasError, InputError
from fitaas.fast import compiled_objective_optimizer
from fitaas.fast.mirrors import mirror_start
from fitaas.fast.optimizer import restart_options
from fitaas.inference.options import InferenceOptions

__all__ = ["FitTimeout", "checking_backend", "compiled_fits", "honest_message", "pyhf_backend"]

_EXTRA = {"jax": "jax", "minuit": "minuit"}

# pyhf keeps its backend and optimizer in process-global state, so two threads that each set
# their own would compute with each other's (the fits of one point reported to another's
# checks: measured 59 of 60 points with 4 threads). Tasks of a thread executor therefore take
# turns within a process; processes (every fitaas engine) run in parallel.
_PYHF_IN_USE = threading.RLock()


# A fit is started again from its mirror sign patterns at most this many times (see
# fitaas.fast.mirrors).
MIRROR_ROUNDS = 3

# (result, start, bounds, fixed values, the data the fit ran on)
OnFit = Callable[[Any, np.ndarray, Any, Any, Any], None]


class FitTimeout(FitaasError):
    """A minimisation ran past the ``fit_timeout`` option."""


_MINUIT_PROBLEMS = (
    ("hesse_failed", "HESSE failed"),
    ("has_made_posdef_covar", "the covariance had to be forced positive definite"),
    ("is_above_max_edm", "the estimated distance to the minimum is above the goal"),
    ("has_reached_call_limit", "the call limit was reached"),
    ("has_parameters_at_limit", "parameters are at their limits"),
)


def honest_message(result: Any) -> Any:
    """Make a failed minimisation's message say why, never "terminated successfully".

    pyhf's MINUIT optimizer words its message after MIGRAD, then runs HESSE, which can
    invalidate the minimum: the result then fails with "Optimization terminated
    successfully." (seen on a published likelihood). The message is rewritten from
    MINUIT's own flags (or says that the minimiser's verdict was a failure).
    """
    if getattr(result, "success", True) or "success" not in str(getattr(result, "message", "")):
        return result
    minuit = getattr(result, "minuit", None)
    fmin = getattr(minuit, "fmin", None)
    problems = [text for flag, text in _MINUIT_PROBLEMS if getattr(fmin, flag, False)]
    if fmin is not None:
        result.message = "MINUIT found no valid minimum after HESSE" + (
            f": {'; '.join(problems)}" if problems else ""
        )
    else:
        result.message = "the minimiser reported its result as not converged"
    return result


@cache
def _watched(base: type) -> type:
    """A subclass of a pyhf optimizer that bounds and reports its minimisations.

    With ``fit_timeout`` set, the objective is wrapped: past the deadline its next call
    raises :class:`FitTimeout`, which ends scipy's or MINUIT's loop (a fit that cannot
    converge otherwise runs until its iteration limit: 100,000 for pyhf's scipy, minutes to
    hours). With ``on_fit`` set, every minimisation is reported to it.
    """

    return type(f"watched_{base.__name__}", (_WatchedFits, base), {})


class _WatchedFits:
    """Bounded, reported minimisations (mixed in before a pyhf optimizer: see
    :func:`_watched`)."""

    fit_data: Any = None
    fit_model: Any = None
    fit_timeout: float | None = None
    mirror: Any = None
    on_fit: Any = None

    def minimize(self, objective: Any, data: Any, pdf: Any, *args: Any, **kwargs: Any) -> Any:
        self.fit_data = data  # (reported to on_fit with the result)
        self.fit_model = pdf
        return super().minimize(objective, data, pdf, *args, **kwargs)  # type: ignore[misc]

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
        start = np.array(x0, dtype=float).reshape(-1)
        limit = self.fit_timeout
        objective = func
        if limit is not None:
            deadline = time.monotonic() + limit

            def objective(*args: Any) -> Any:
                if time.monotonic() > deadline:
                    raise FitTimeout(f"a fit ran past the fit_timeout of {limit:g} s")
                return func(*args)

        result = super()._minimize(  # type: ignore[misc]
            minimizer,
            objective,
            x0,
            do_grad=do_grad,
            bounds=bounds,
            fixed_vals=fixed_vals,
            options=options if options is not None else {},
        )
        honest_message(result)
        if self.mirror is not None and getattr(result, "success", False):
            result = self._mirrored(
                minimizer, objective, result, do_grad, bounds, fixed_vals, options or {}
            )
        if self.on_fit is not None:
            self.on_fit(result, start, bounds, fixed_vals, getattr(self, "fit_data", None))
        return result

    def _mirrored(
        self,
        minimizer: Any,
        objective: Any,
        result: Any,
        do_grad: bool,
        bounds: Any,
        fixed_vals: Any,
        options: dict[str, Any],
    ) -> Any:
        """The fit started again where ``mirror`` finds a lower sign pattern of its
        pulled parameters, while it does (at most ``MIRROR_ROUNDS`` times); the result
        records the gain in -2lnL (``mirror_gain``) and the seconds spent."""

        began = time.perf_counter()
        gain, nfev = 0.0, int(getattr(result, "nfev", 0) or 0)
        for _ in range(MIRROR_ROUNDS):
            value = float(np.asarray(result.fun, dtype=float).reshape(-1)[0])
            start = self.mirror(self.fit_model, self.fit_data, result.x, fixed_vals, bounds, value)
            if start is None:
                break
            again = super()._minimize(  # type: ignore[misc]
                minimizer,
                objective,
                start,
                do_grad=do_grad,
                bounds=bounds,
                fixed_vals=fixed_vals,
                options=restart_options(options, start, getattr(self, "tolerance", None)),
            )
            nfev += int(getattr(again, "nfev", 0) or 0)
            lower = float(np.asarray(again.fun, dtype=float).reshape(-1)[0])
            if not getattr(again, "success", False) or not lower < value:
                break
            gain += value - lower
            result = again
        result.nfev = nfev
        result.mirror_gain = gain
        result.mirror_seconds = time.perf_counter() - began
        return result


def _no_jax(exc: object) -> InputError:
    return InputError(
        f"the fast path needs jax ({exc}); install it with: pip install 'fitaas[jax]'"
    )


def _compiled(base: type) -> type:
    """The compiled-objective subclass of ``base`` (the fast path), if jax is installed."""
    try:
        import jax  # noqa: F401 - fitaas.fast imports it only when it first compiles
    except ImportError as exc:
        raise _no_jax(exc) from None

    return compiled_objective_optimizer(base)


@contextmanager
def checking_backend(options: InferenceOptions) -> Iterator[None]:
    """pyhf's backend and optimizer of ``options`` set for checks that fit nothing (a
    scan's plan in the main process): the fast path's jax is found, not imported (0.6 s
    that the workers, starting beside it, are better off with).

    Raises:
        InputError: The backend, optimizer or the fast path's jax is not installed.
    """
    if compiled_fits(options) and importlib.util.find_spec("jax") is None:
        raise _no_jax("jax is not installed")
    with pyhf_backend(dataclasses.replace(options, fast=False)):
        yield


def _mirror_search(structures: Any, settings: dict[str, Any] | None) -> Any:
    """``mirror(pdf, data, x, fixed_vals, bounds, value)``: where a compiled fit that ended
    at ``x`` should start again (``None``: nowhere), by :func:`fitaas.fast.mirrors.mirror_start`."""

    def mirror(pdf: Any, data: Any, x: Any, fixed_vals: Any, bounds: Any, value: float) -> Any:
        bound = structures.bound(pdf, settings)
        if bound is None or len(np.asarray(x).reshape(-1)) != pdf.config.npars:
            return None
        return mirror_start(bound, pdf, data, x, fixed_vals, bounds, value)

    return mirror


def compiled_fits(options: InferenceOptions) -> bool:
    """Whether ``options`` minimise on the compiled objective (the fast path): MINUIT chosen
    by the user runs the plain way."""
    return bool(options.fast) and options.optimizer == "scipy"


def _optimizer(
    options: InferenceOptions,
    on_fit: OnFit | None = None,
    structures: Any = None,
    strict: bool = False,
    mirrors: bool = False,
) -> Any:
    # The strict strategy: MINUIT with the exact gradient, then Newton's method with the
    # exact Hessian, on the fast path; MINUIT with its own tolerance on the plain path.
    fast = compiled_fits(options)
    mirrors = mirrors and fast
    minuit = options.optimizer == "minuit" or (strict and not fast)
    kwargs: dict[str, Any] = {}
    if options.tolerance is not None and not (strict and minuit):
        kwargs["tolerance"] = options.tolerance
    if options.maxiter is not None:
        kwargs["maxiter"] = options.maxiter
    try:
        base = pyhf.optimize.minuit_optimizer if minuit else pyhf.optimize.scipy_optimizer
        if fast:
            base = _compiled(base)
        watched = on_fit is not None or options.fit_timeout is not None or mirrors
        optimizer = (_watched(base) if watched else base)(**kwargs)
        if watched:
            optimizer.fit_timeout = options.fit_timeout
            optimizer.on_fit = on_fit
            optimizer.mirror = None
        if fast:
            from fitaas.fast import StructureCache

            optimizer.structures = structures if structures is not None else StructureCache()
            optimizer.second_order = strict
            optimizer.modifier_settings = options.pyhf_modifier_settings()
            if mirrors:
                optimizer.mirror = _mirror_search(optimizer.structures, optimizer.modifier_settings)
        return optimizer
    except (ImportError, pyhf.exceptions.ImportBackendError) as exc:
        raise InputError(
            f"the {options.optimizer} optimizer is not available ({exc}); "
            f"install it with: pip install 'fitaas[{_EXTRA[options.optimizer]}]'"
        ) from None


@contextmanager
def pyhf_backend(
    options: InferenceOptions,
    on_fit: OnFit | None = None,
    structures: Any = None,
    strict: bool = False,
    mirrors: bool = False,
) -> Iterator[None]:
    """Set pyhf's backend and optimizer from ``options``; restore the previous ones after.

    pyhf keeps its backend in process-global state; this is the only place fitaas
    touches it, and always inside the task that needs it. One thread of a process at a
    time is inside the block (others wait): pyhf's state cannot serve two at once.

    Args:
        options: The inference options naming backend, optimizer and tolerance.
        on_fit: Called after every minimisation with ``(result, start, bounds, fixed,
            data)``.
        structures: On the fast path, the worker's :class:`~fitaas.fast.StructureCache`
            (default: a new one, for this block only).
        strict: The strictest fits, for retries: MINUIT with the exact gradient, then
            Newton's method with the exact Hessian of the compiled structure, on the fast
            path; MINUIT on the plain path.
        mirrors: On the fast path, every fit whose pulled nuisance parameters have a lower
            mirror sign pattern is started again there (:mod:`fitaas.fast.mirrors`); the
            plain path is pyhf's own.

    Yields:
        Nothing; pyhf is configured inside the ``with`` block.

    Raises:
        InputError: The backend or optimizer cannot be imported (missing extra).
    """
    optimizer = _optimizer(options, on_fit, structures, strict, mirrors)
    with _PYHF_IN_USE:
        previous = pyhf.get_backend()
        try:
            pyhf.set_backend(options.backend, optimizer, precision="64b")
        except (ImportError, pyhf.exceptions.ImportBackendError) as exc:
            extra = _EXTRA.get(options.backend, options.backend)
            raise InputError(
                f"the {options.backend} backend is not available ({exc}); "
                f"install it with: pip install 'fitaas[{extra}]'"
            ) from None
        try:
            yield
        finally:
            pyhf.set_backend(*previous)
