"""Kinks: -2lnL that bends at alpha = 0, and a fit's minimum on each side of the bend.

HistFactory's interpolation codes code0 (histosys, piecewise linear) and code1 (normsys,
piecewise exponential) join their two branches at alpha = 0 with a kink: the derivative jumps
there. A variation that moves a yield the same way on both sides (one sample of several with
both variations below nominal in a bin) makes -2lnL a kink maximum at 0 with a well on each
side; a minimum may also sit on the kink itself. A gradient method stalls at a kink (its
derivative there is one branch's) or stays in the well it started in. After a fit, every
kinked parameter is tried on its other side (:func:`kink_sides`): a fit with the parameter's
bounds cut at the kink, started at its mirror image (or at the kink when it sits there, on
the side its one-sided derivatives descend), the lowest minimum kept. On each side the
objective is smooth, so each sided fit is an ordinary bounded minimisation; a minimum on
the kink is one at the sided fit's cut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["KINK_CODES", "KINK_EPS", "at_kink", "kink_sides", "kinked_parameters"]

# The interpolation code with a kink at 0, per modifier type: also pyhf's own default when
# the settings do not name the modifier type (code1 for normsys, code0 for histosys).
KINK_CODES = {"normsys": "code1", "histosys": "code0"}
# A sided fit's cut on the upper side sits this many widths above the kink (at 0 itself the
# compiled gradient is the lower branch's).
KINK_EPS = 1e-9
# A parameter this close to its kink (in widths) is on the kink: both sides are looked at.
KINK_NEAR = 1e-4
# At most this many kinked parameters are tried per fit (the nearest to their kink first).
KINK_MAX = 8
# A side whose minimum is lower than the fit's by more than this wins.
KINK_GAIN = 1e-6
# A parameter on its kink is started this many widths into each side.
KINK_STEP = 0.5

Fit = Callable[[np.ndarray, np.ndarray], Any]


def kinked_parameters(pdf: Any) -> np.ndarray:
    """Which parameters of ``pdf`` enter through an interpolation with a kink at 0 (a mask in
    pyhf's parameter order): normsys with code1, histosys with code0."""
    settings = getattr(pdf.config, "modifier_settings", None) or {}
    kinked = {
        kind
        for kind, code in KINK_CODES.items()
        if (settings.get(kind) or {}).get("interpcode", code) == code
    }
    mask = np.zeros(pdf.config.npars, dtype=bool)
    for name, kind in pdf.config.modifiers:
        if kind in kinked:
            mask[pdf.config.par_slice(name)] = True
    return mask


def at_kink(x: np.ndarray, kinked: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Which parameters sit on their kink (within ``KINK_NEAR`` widths of 0)."""
    return kinked & (np.abs(np.asarray(x, dtype=float)) <= KINK_NEAR * scale)


def _sides(x: np.ndarray, k: int, scale: float) -> list[tuple[float, float]]:
    """The sides of the kink of parameter ``k`` (at ``x``) worth a fit, with their starts:
    where it sits on the kink, both, ``KINK_STEP`` widths in (a kink minimum may hold
    every one-sided derivative at bay while a deeper well lies a step away); elsewhere the
    other side, at its mirror image."""
    if abs(x[k]) > KINK_NEAR * scale:
        return [(-float(np.sign(x[k])), -float(x[k]))]
    return [(1.0, KINK_STEP * scale), (-1.0, -KINK_STEP * scale)]


def kink_sides(
    fit: Fit,
    result: Any,
    limits: np.ndarray,
    kinked: np.ndarray,
    free: np.ndarray,
    scale: np.ndarray,
) -> tuple[Any, list[float]]:
    """The lowest minimum of a fit (``result``) and of its sided fits (see the module's text).

    Args:
        fit: ``fit(start, limits)``: one minimisation from ``start`` within ``limits``
            (rows ``[low, high]``), a scipy ``OptimizeResult`` in the model's parameters.
        result: The fit's own result.
        limits: Its bounds.
        kinked: Which parameters have a kink (:func:`kinked_parameters`).
        free: Which parameters the fit moves.
        scale: Each parameter's width.

    Returns:
        The lowest result (``nfev`` summed over every fit made) and the -2lnL of the other
        minima the sided fits found (for "several minima").
    """
    best = result
    others: list[float] = []
    nfev = int(getattr(result, "nfev", 0) or 0)
    candidates = [int(k) for k in np.flatnonzero(kinked & free)]
    x0 = np.asarray(result.x, dtype=float)
    candidates.sort(key=lambda k: abs(x0[k]) / scale[k])
    for k in candidates[:KINK_MAX]:
        x = np.asarray(best.x, dtype=float)
        for side, begin in _sides(x, k, float(scale[k])):
            cut = limits.copy()
            if side > 0:
                cut[k, 0] = max(cut[k, 0], KINK_EPS * scale[k])
            else:
                cut[k, 1] = min(cut[k, 1], 0.0)
            if cut[k, 0] > cut[k, 1]:
                continue
            start = x.copy()
            start[k] = np.clip(begin, cut[k, 0], cut[k, 1])
            found = fit(start, cut)
            nfev += int(getattr(found, "nfev", 0) or 0)
            value = float(found.fun)
            if not np.isfinite(value):
                continue
            # (a sided fit that ends on its cut found the kink, not a minimum of its own)
            own = bool(found.success) and abs(float(found.x[k])) > 2 * KINK_EPS * scale[k]
            if value < float(best.fun) - KINK_GAIN:
                if bool(best.success):
                    others.append(float(best.fun))
                best = found
            elif value > float(best.fun) + KINK_GAIN and own:
                others.append(value)
    best.nfev = nfev
    return best, others
