"""Second-order fits of the compiled path, and finishing a fit that stopped short.

MINUIT (iminuit) with the compiled exact gradient and a trust-region Newton method with the
exact Hessian, both over the free parameters in their widths: the strict strategy of the fit
checks (:func:`strict_fit`), and what finishes a fit whose end is not a minimum
(:func:`finished`). Where rounding makes -2lnL noisy (an ill-scaled likelihood), MINUIT is
told the function's precision and Newton judges its steps by the exact gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fitaas.fast.kinks import at_kink
from fitaas.fast.scales import evaluation_noise

__all__ = ["Polish", "finished", "lower", "strict_fit"]

# Second-order fits (``second_order``): a trust-region Newton method with the exact Hessian,
# until the decrease of -2lnL it predicts is below NEWTON_TOLERANCE, in at most
# NEWTON_ITERATIONS; the first trust radius, in constraint widths.
NEWTON_TOLERANCE = 1e-10
NEWTON_ITERATIONS = 500
NEWTON_RADIUS = 1.0
# The strict strategy's MINUIT: its EDM goal in -2lnL, and its call limit.
MINUIT_EDM = 1e-8
MINUIT_CALLS = 20000


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


def strict_fit(
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


# A fit whose end has a projected gradient of norm above POLISH_GRADIENT (each parameter in
# its width) is looked at with the exact Hessian; where the decrease left that Newton's
# method predicts from there (the EDM, g H^-1 g / 2) exceeds POLISH_EDM, or the Hessian is
# not positive definite, it is finished by the strict fit (MINUIT with the exact gradient,
# then Newton) from its end, the lower end kept. (SLSQP stops early where rounding makes
# -2lnL noisy: an ill-scaled likelihood with constraint widths of 1e-6.)
POLISH_GRADIENT = 1e-2
POLISH_EDM = 1e-4


class Polish:
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


def finished(
    result: Any,
    func: Any,
    polish: Polish,
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
    again = strict_fit(func, polish.hessian, x, limits, scale, fixed_vals, maxiter, noise)
    # (within the rounding of -2lnL the converged end, whose gradient is the smaller, wins)
    within = bool(again.success) and float(again.fun) <= float(result.fun) + 10.0 * noise
    kept = again if within else lower(result, again)[0]
    if kept is again:
        again.message = f"{result.message}; finished by {again.message}"
    kept.nfev = int(getattr(result, "nfev", 0) or 0) + int(again.nfev)
    return kept


# Two minima of one fit closer than this in -2lnL are the same.
SAME_MINIMUM = 1e-6


def lower(first: Any, second: Any) -> tuple[Any, float | None]:
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
