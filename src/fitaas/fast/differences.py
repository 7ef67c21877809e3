"""Differences of -2lnL below the rounding of its values, from the exact gradient.

A test statistic is a difference of two minima of -2lnL. Where the likelihood has terms
far larger than that difference (a Poisson constraint with an aux count of 2.5e11, for a
shapesys gamma of width 2e-6, has terms of ~6e12), each value is rounded by ~1e-3, and so
is q: an expected band with q_A ~ 0.02 moves by 1e-2 in CLs. The gradient has no such
cancellation (its terms are ``tau - n / gamma``, rounded relative to their own size), so the
difference between two points is taken as the integral of the gradient along the segment
between them (Gauss-Legendre), to ~1e-9.

Fits of one dataset are made consistent through an anchor: the first minimum of each
dataset keeps its own value, and every later minimum of the same data gets the anchor's value
plus the integral from the anchor to it. Only models whose evaluation noise exceeds
``NOISY`` are treated so; elsewhere values are pyhf's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["NOISY", "Anchors", "line_difference"]

# Evaluation noise of -2lnL (see fitaas.fast.structures.evaluation_noise) above which the
# fits' values are anchored: a published likelihood's is ~1e-11.
NOISY = 1e-7
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)
# the quadrature's own precision: one panel and two panels of 8 nodes must agree this well
_QUADRATURE_ATOL = 1e-8
_QUADRATURE_RTOL = 1e-7


def line_difference(
    gradient: Callable[[np.ndarray], np.ndarray], start: np.ndarray, end: np.ndarray
) -> float | None:
    """``f(end) - f(start)`` as the integral of ``gradient`` along the segment between them.

    Two panels of 8-point Gauss-Legendre (exact for a polynomial of degree 15 along the
    line), checked against one panel.

    Returns:
        The difference, or ``None`` where a gradient is not finite or the two quadratures
        disagree (``f`` not smooth along the segment: a kink of an interpolation).
    """
    step = np.asarray(end, dtype=float) - np.asarray(start, dtype=float)
    if not np.any(step):
        return 0.0

    def panel(low: float, high: float) -> float:
        nodes = low + (high - low) * (_NODES + 1.0) / 2.0
        slopes = [float(np.dot(gradient(start + t * step), step)) for t in nodes]
        return float((high - low) / 2.0 * np.dot(_WEIGHTS, slopes))

    one = panel(0.0, 1.0)
    two = panel(0.0, 0.5) + panel(0.5, 1.0)
    if not (np.isfinite(one) and np.isfinite(two)):
        return None
    if abs(one - two) > _QUADRATURE_ATOL + _QUADRATURE_RTOL * abs(two):
        return None
    return two


class Anchors:
    """Per dataset, the first minimum and its value; later minima's values from it.

    Args:
        gradient: The gradient of -2lnL at a point, for a dataset: ``gradient(pars, data)``.
        noise: The rounding of an evaluation of -2lnL (see
            :func:`fitaas.fast.structures.evaluation_noise`): a value whose difference from
            the anchor's disagrees with the integral by more than 20 times that keeps its
            own (the integral is then not to be trusted).
    """

    def __init__(self, gradient: Callable[[np.ndarray, Any], np.ndarray], noise: float) -> None:
        self._gradient = gradient
        self.noise = noise
        self._anchors: dict[bytes, tuple[np.ndarray, float]] = {}

    def value(self, data: np.ndarray, x: np.ndarray, fun: float) -> float:
        """The value of -2lnL at the minimum ``x`` of a fit of ``data`` (``fun``: its own
        evaluation), consistent with the other minima of the same data."""
        key = np.asarray(data, dtype=float).tobytes()
        found = self._anchors.get(key)
        if found is None:
            self._anchors[key] = (np.array(x, dtype=float), float(fun))
            return float(fun)
        anchor, anchored = found
        difference = line_difference(
            lambda pars: np.asarray(self._gradient(pars, data), dtype=float), anchor, x
        )
        if difference is None or abs(difference - (fun - anchored)) > 20 * self.noise + 1e-9:
            return float(fun)
        return anchored + difference
