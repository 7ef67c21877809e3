"""Test statistics of a block of toys, every fit of the block in lockstep.

The same definitions as :func:`fitaas.inference.toys.plain_teststats` (pyhf's
``qmu_tilde``, ``qmu`` and ``q0``: a fit with the POI held at the tested value, a free
fit, their difference clipped at 0, and 0 where the free POI lies above (below, for
``q0``) the tested value), with the fits of :mod:`fitaas.fast.batched`. A toy whose
batched fit does not converge is fitted again on its own with pyhf's test statistic
(through the compiled objective); if that fails too its value is NaN (a failed toy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from fitaas.fast.batched import BatchFit, in_padded_calls, minimize_batch, positive_definite
from fitaas.fast.kinks import kinked_parameters
from fitaas.fast.structures import Bound
from fitaas.inference.core import complete_fit_inputs
from fitaas.inference.options import InferenceOptions
from fitaas.inference.teststats import test_statistic
from fitaas.inference.toys import ToyReference, plain_teststats, tested_poi

__all__ = ["ToyFits", "fast_teststats", "lane_width"]

# Datasets per compiled call on the CPU: measured on 1Lbb, a value and gradient per
# dataset costs 0.98 ms alone, 0.35 ms in calls of 16, 0.66 ms in calls of 256 (cache).
CPU_LANES = 16


@dataclass(frozen=True)
class ToyFits:
    """Test statistics of a block of toys, and how their fits went.

    Attributes:
        teststats: One value per toy (NaN: its fits failed).
        refitted: Toys fitted again one at a time (the batched fit did not converge).
        evaluations: Mean value-and-gradient evaluations per toy (both fits).
    """

    teststats: np.ndarray
    refitted: int
    evaluations: float


def lane_width(size: int) -> int:
    """Datasets per compiled call: the whole block on an accelerator, 16 on the CPU."""
    import jax

    return size if jax.default_backend() != "cpu" else min(size, CPU_LANES)


def _evaluator(bound: Bound, toys: np.ndarray) -> Any:
    """``evaluate(pars, rows)`` in calls of a few compiled widths (few rows: a narrow one)."""
    import jax

    widest = lane_width(len(toys))
    widths = sorted({w for w in (1, 4, widest) if w <= widest})
    arrays = bound.arrays

    def evaluate(pars: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def call(index: np.ndarray) -> Any:
            compiled = bound.structure.batched_value_and_grad(len(index))
            return jax.device_get(compiled(pars[index], toys[rows[index]], arrays))

        return in_padded_calls(len(rows), widths, call, pars.shape[1])

    return evaluate


# A free fit's -2lnL above the conditional one's by more than this is fitted again.
TOY_SAME = 1e-6


def _subset(evaluate: Any, rows: np.ndarray) -> Any:
    """``evaluate`` of the toys ``rows`` (the batch's row ``r`` is toy ``rows[r]``)."""

    def chosen(pars: np.ndarray, index: np.ndarray) -> Any:
        return evaluate(pars, rows[index])

    return chosen


def _take_lower(kept: BatchFit, other: BatchFit, rows: np.ndarray) -> None:
    """Where ``other`` (fits of the toys ``rows``) converged lower, it replaces ``kept``'s."""
    lower = other.converged & (other.fun < kept.fun[rows] - TOY_SAME)
    lower |= other.converged & ~kept.converged[rows] & (other.fun <= kept.fun[rows] + TOY_SAME)
    chosen = rows[lower]
    kept.x[chosen] = other.x[lower]
    kept.fun[chosen] = other.fun[lower]
    kept.grad[chosen] = other.grad[lower]
    kept.converged[chosen] = True
    kept.evaluations[rows] += other.evaluations


def fast_teststats(
    bound: Bound,
    model: pyhf.pdf.Model,
    toys: np.ndarray,
    options: InferenceOptions,
    fit_inputs: tuple[Any, Any, Any],
    reference: ToyReference,
    ensemble: str,
) -> ToyFits:
    """The test statistic of every toy of a block (fits in lockstep).

    Args:
        bound: The compiled structure bound to the model.
        model: The model.
        toys: Pseudo-datasets, one row each.
        options: Inference options (test statistic, tested POI value).
        fit_inputs: ``(init, bounds, fixed)`` as :func:`fitaas.inference.fit_inputs` gives.
        reference: The point's observed test statistic and generating parameters.
        ensemble: Which ensemble the toys belong to (their fits start at its parameters).

    Returns:
        The test statistics and how the fits went.
    """
    init_list, bounds, fixed = complete_fit_inputs(model, fit_inputs)
    init = np.asarray(init_list, dtype=float)
    limits = np.asarray(bounds, dtype=float)
    held = np.asarray(fixed, dtype=bool)
    poi = model.config.poi_index
    mu = tested_poi(options)
    lower, upper = limits[:, 0], limits[:, 1]
    generating = np.where(held, init, np.asarray(reference.pars[ensemble], dtype=float))
    asimov = np.asarray(model.expected_data(generating), dtype=float)
    hessian = bound.structure.hessian()
    evaluate = _evaluator(bound, toys)
    size = len(toys)
    widths = bound.scales
    free_vars = ~held
    fixed_vars = free_vars.copy()
    fixed_vars[poi] = False
    first = {}
    for name, variable, at in (
        ("free", free_vars, generating),
        ("fixed", fixed_vars, np.where(np.arange(len(init)) == poi, mu, generating)),
    ):
        exact = np.asarray(hessian(at, asimov, bound.arrays), dtype=float)
        estimate = np.eye(len(at))
        moving = np.flatnonzero(variable)
        estimate[np.ix_(moving, moving)] = positive_definite(exact[np.ix_(moving, moving)])
        first[name] = estimate

    def run(name: str, starts: np.ndarray, rows: np.ndarray | None = None) -> BatchFit:
        variable = free_vars if name == "free" else fixed_vars
        starts = starts.copy()
        if name == "fixed":
            starts[:, poi] = mu
        chosen = evaluate if rows is None else _subset(evaluate, rows)
        return minimize_batch(chosen, starts, lower, upper, variable, first[name], widths)

    # Both fits start at the ensemble's generating parameters (the toys fluctuate around
    # them). Where a likelihood has several minima a fit can end in another one than
    # pyhf's from its own start (measured: 1 toy in 20 of a sbottom A point; started also
    # from the other fit's minimum, it ended in the same one).
    free_fit = run("free", np.tile(generating, (size, 1)))
    fixed_fit = run("fixed", np.tile(generating, (size, 1)))
    # The minimum rules of the fit checks: a free fit may not end above the conditional one
    # (it is fitted again from there); where the model has kinks (code0 / code1), each fit
    # is also started from the other's minimum, the lower end winning, and every toy is
    # then fitted one at a time as a hypothesis test's fits are (several starts, both sides
    # of every kink): kink models are small, and their toys slower than others.
    kinks = bool(kinked_parameters(model).any())
    rows = np.arange(size) if kinks else np.flatnonzero(free_fit.fun > fixed_fit.fun + TOY_SAME)
    if len(rows):
        _take_lower(free_fit, run("free", fixed_fit.x[rows], rows), rows)
    if kinks:
        _take_lower(fixed_fit, run("fixed", free_fit.x[rows], rows), rows)
    statistic = np.clip(fixed_fit.fun - free_fit.fun, 0.0, None)
    muhat = free_fit.x[:, poi]
    statistic = np.where(test_statistic(options.test_stat).zero_where(muhat, mu), 0.0, statistic)
    again = np.flatnonzero(~(fixed_fit.converged & free_fit.converged))
    if kinks:  # every toy one at a time: each fit from several starts and both sides of its kinks
        again = np.arange(size)
    if len(again):  # pyhf's own test statistic (NaN where its fits fail too)
        found = plain_teststats(model, toys[again], options, fit_inputs)
        kept = np.isfinite(found) | ~np.isfinite(statistic[again]) | (not kinks)
        statistic[again[kept]] = found[kept]
    evaluations = float(np.mean(fixed_fit.evaluations + free_fit.evaluations))
    return ToyFits(teststats=statistic, refitted=len(again), evaluations=evaluations)
