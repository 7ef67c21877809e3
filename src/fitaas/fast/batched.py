"""Fits of many datasets of one model in lockstep: the toys' fast path.

A toy changes the data, never the model, so every fit of a block of toys uses the same
compiled objective, evaluated for many datasets per call (``vmap``). The minimiser is a
projected quasi-Newton method run on all datasets at once:

- the first Hessian estimate is the exact Hessian of -2lnL at the start, on the expected
  data of the toys' generating parameters (toys are fluctuations around it, so it is close
  to every toy's own), then each dataset refines its estimate with BFGS updates;
- bounds are held by projection: a parameter at a bound whose gradient points outwards is
  held there for the step (Bertsekas' projected Newton), the others take the quasi-Newton
  step solved on the free parameters;
- a step is accepted when -2lnL falls enough (Armijo), otherwise halved; a dataset is done
  when the predicted remaining decrease of -2lnL is below ``tolerance``.

Datasets that do not converge within ``maxiter`` iterations are reported as such; the
caller fits them one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchFit", "in_padded_calls", "minimize_batch", "positive_definite"]

Evaluate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

ARMIJO = 1e-4
# Halvings of a step before a fit is given up as stuck (fitted again on its own).
MAX_HALVINGS = 12
# Parameters newly at a bound beyond which a fit is given up as strayed.
MAX_NEW_BOUNDS = 2
# The largest move of a parameter in one step, in its widths.
MAX_MOVE = 1.0


@dataclass(frozen=True)
class BatchFit:
    """The minima of a batch of fits.

    Attributes:
        x: Best-fit parameters, one row per dataset.
        fun: -2lnL at the minimum.
        converged: Whether each dataset's fit met the tolerance.
        evaluations: Value-and-gradient evaluations per dataset.
        grad: The gradient of -2lnL at the minimum.
        hessian: The last estimate of the Hessian of each fit (BFGS-refined).
    """

    x: np.ndarray
    fun: np.ndarray
    converged: np.ndarray
    evaluations: np.ndarray
    grad: np.ndarray
    hessian: np.ndarray


def in_padded_calls(
    count: int,
    widths: Sequence[int],
    call: Callable[[np.ndarray], tuple[Any, Any]],
    npars: int,
) -> tuple[np.ndarray, np.ndarray]:
    """-2lnL and its gradient of ``count`` rows, in compiled calls of a few widths.

    Each call takes the narrowest width that holds the rows left (else the widest), the
    last one padded with copies of its first row.

    Args:
        count: Rows to evaluate.
        widths: The compiled widths, ascending.
        call: ``call(index)`` evaluates the rows ``index`` (as long as a width).
        npars: Parameters per row.

    Returns:
        Values and gradients of the rows.
    """
    values = np.empty(count)
    grads = np.empty((count, npars))
    start = 0
    while start < count:
        left = count - start
        width = next((w for w in widths if w >= left), widths[-1])
        take = min(width, left)
        index = np.concatenate([np.arange(start, start + take), np.full(width - take, start)])
        value, grad = call(index)
        values[start : start + take] = np.asarray(value)[:take]
        grads[start : start + take] = np.asarray(grad)[:take]
        start += take
    return values, grads


def positive_definite(hessian: np.ndarray, floor: float = 1e-8) -> np.ndarray:
    """The nearest symmetric matrix with eigenvalues at least ``floor`` times the largest."""
    symmetric = 0.5 * (hessian + hessian.T)
    values, vectors = np.linalg.eigh(symmetric)
    top = max(float(np.max(np.abs(values))), 1.0)
    values = np.clip(values, floor * top, None)
    return (vectors * values) @ vectors.T


def minimize_batch(
    evaluate: Evaluate,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    variable: np.ndarray,
    hessian: np.ndarray,
    scale: np.ndarray,
    *,
    tolerance: float = 1e-8,
    maxiter: int = 60,
    max_move: float = MAX_MOVE,
) -> BatchFit:
    """Minimise -2lnL for every dataset of a batch, in lockstep.

    Args:
        evaluate: ``evaluate(pars[r, n], rows[r])`` gives -2lnL and its gradient of the
            datasets ``rows`` (indices into the batch) at ``pars``.
        x0: Starting parameters, one row per dataset (held parameters at their values).
        lower: Lower bounds of the parameters (shared, or one row per dataset).
        upper: Upper bounds of the parameters (shared, or one row per dataset).
        variable: Which parameters the fits move (the others are held at ``x0``; shared,
            or one row per dataset).
        hessian: First estimate of the Hessian of -2lnL (positive definite; shared, or
            one per dataset).
        scale: Each parameter's typical width (constraint width; 1 when unconstrained;
            shared, or one row per dataset): no step moves a parameter by more than
            ``MAX_MOVE`` widths (a trust region: a poor early Hessian estimate must not
            throw a fit into a far, degenerate region, e.g. a staterror gamma at its lower
            bound).
        tolerance: A fit is done when its predicted remaining decrease of -2lnL (from its
            quasi-Newton model) is below this.
        maxiter: Iterations before a fit is given up as not converged.

    Returns:
        The minima, -2lnL and its gradient there, convergence flags, evaluation counts
        and the refined Hessian estimates.
    """
    size, npars = x0.shape
    lower, upper, variable, scale = (
        np.broadcast_to(a, (size, npars)) for a in (lower, upper, variable, scale)
    )
    first = np.broadcast_to(hessian, (size, npars, npars))
    held = ~variable
    x = np.where(variable, np.clip(x0, lower, upper), x0)
    fun, grad = evaluate(x, np.arange(size))
    evaluations = np.ones(size, dtype=int)
    estimate = first.copy()
    converged = np.zeros(size, dtype=bool)
    finished = ~np.isfinite(fun) | ~np.all(np.isfinite(grad), axis=1)
    span = np.maximum(np.abs(lower), np.abs(upper))
    edge = 1e-10 * (1.0 + span)
    started_at_bound = (x <= lower + edge) | (x >= upper - edge)
    for _ in range(maxiter):
        lanes = np.flatnonzero(~finished)
        if len(lanes) == 0:
            break
        xs, gs = x[lanes], grad[lanes]
        low, high, wide = lower[lanes], upper[lanes], edge[lanes]
        at_bound = ((xs <= low + wide) & (gs > 0)) | ((xs >= high - wide) & (gs < 0))
        # A fit whose parameters pile up at bounds they did not start at has left the
        # minimum next to its start for a region where -2lnL keeps falling (1Lbb: a
        # background normalisation towards 0, staterror gammas to their lower bound); it
        # is given up now (the caller fits it again as pyhf does) instead of at maxiter.
        strayed = np.sum(at_bound & ~started_at_bound[lanes], axis=1) > MAX_NEW_BOUNDS
        if np.any(strayed):
            finished[lanes[strayed]] = True
            keep = ~strayed
            lanes, xs, gs, at_bound = lanes[keep], xs[keep], gs[keep], at_bound[keep]
            if len(lanes) == 0:
                break
        free = ~held[lanes] & ~at_bound
        projected = np.where(free, gs, 0.0)
        step = _step(estimate[lanes], free, projected)
        slope = np.sum(projected * step, axis=1)
        broken = ~np.isfinite(slope) | (slope >= 0) & (np.abs(projected).max(axis=1) > 0)
        if np.any(broken):  # a lost estimate: start again from the first one
            estimate[lanes[broken]] = first[lanes[broken]]
            step[broken] = _step(estimate[lanes[broken]], free[broken], projected[broken])
            slope[broken] = np.sum(projected[broken] * step[broken], axis=1)
        done = -0.5 * slope <= tolerance
        reach = np.max(np.abs(step) / scale[lanes], axis=1)
        step *= np.minimum(1.0, max_move / np.maximum(reach, 1e-300))[:, None]
        converged[lanes[done]] = True
        finished[lanes[done]] = True
        moving = ~done
        lanes, step = lanes[moving], step[moving]
        stuck = _line_search(
            evaluate, lanes, step, x, fun, grad, estimate, lower, upper, evaluations
        )
        finished[stuck] = True
        finished[lanes[~np.isfinite(fun[lanes])]] = True
    return BatchFit(
        x=x, fun=fun, converged=converged, evaluations=evaluations, grad=grad, hessian=estimate
    )


def _step(estimates: np.ndarray, free: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """The quasi-Newton step of each lane on its free parameters (0 on the held ones)."""
    reduced = estimates * (free[:, :, None] & free[:, None, :])
    diagonal = np.arange(free.shape[1])
    reduced[:, diagonal, diagonal] += ~free
    try:
        return -np.linalg.solve(reduced, projected[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.full_like(projected, np.nan)


def _line_search(
    evaluate: Evaluate,
    lanes: np.ndarray,
    step: np.ndarray,
    x: np.ndarray,
    fun: np.ndarray,
    grad: np.ndarray,
    estimate: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    evaluations: np.ndarray,
) -> np.ndarray:
    """Backtrack along ``step`` for each lane; accept, update x, -2lnL, gradient and BFGS.

    Returns:
        The lanes that found no decrease along their step (stuck).
    """
    alpha = np.ones(len(lanes))
    searching = np.ones(len(lanes), dtype=bool)
    stuck = np.zeros(len(lanes), dtype=bool)
    while np.any(searching):
        index = np.flatnonzero(searching)
        rows = lanes[index]
        trial = np.clip(x[rows] + alpha[index, None] * step[index], lower[rows], upper[rows])
        trial = np.where(step[index] == 0.0, x[rows], trial)
        value, gradient = evaluate(trial, rows)
        evaluations[rows] += 1
        moved = trial - x[rows]
        expected = np.sum(grad[rows] * moved, axis=1)
        accept = np.isfinite(value) & (value <= fun[rows] + ARMIJO * np.minimum(expected, 0.0))
        taken = rows[accept]
        _bfgs(estimate, taken, moved[accept], gradient[accept] - grad[taken])
        x[taken], fun[taken], grad[taken] = trial[accept], value[accept], gradient[accept]
        searching[index[accept]] = False
        alpha[index[~accept]] *= 0.5
        giving_up = searching & (alpha < 0.5**MAX_HALVINGS)
        stuck |= giving_up
        searching[giving_up] = False
    return lanes[stuck]


def _bfgs(estimate: np.ndarray, lanes: np.ndarray, moved: np.ndarray, change: np.ndarray) -> None:
    """BFGS updates of the lanes' Hessian estimates in place (skipped where the curvature
    is not positive)."""
    if len(lanes) == 0:
        return
    current = estimate[lanes]
    curvature = np.sum(moved * change, axis=1)
    product = np.einsum("kij,kj->ki", current, moved)
    quadratic = np.sum(moved * product, axis=1)
    scale = np.linalg.norm(moved, axis=1) * np.linalg.norm(change, axis=1)
    ok = np.isfinite(curvature) & (curvature > 1e-12 * scale) & (quadratic > 0)
    if not np.any(ok):
        return
    c, p, q = change[ok], product[ok], quadratic[ok]
    current[ok] += (
        c[:, :, None] * c[:, None, :] / curvature[ok][:, None, None]
        - p[:, :, None] * p[:, None, :] / q[:, None, None]
    )
    estimate[lanes] = current
