"""Mirror starts: the other side of a nuisance parameter whose response is nearly even.

A systematic whose up and down variations move a yield the same way (one-sided
uncertainties symmetrised, such as ATLAS's jet energy resolution) makes -2lnL nearly even
in its parameter: when the data pull on it, there is a minimum on either side of its
nominal value, and a fit picks one by the sign of a tiny start value. With several such
parameters the minima multiply (2^n sign patterns), their -2lnL apart by up to a few
tenths: measured on sbottom RegionC, conditional fits of pyhf at tolerance 1e-10 ended
0.14-0.45 above the lowest pattern from either start.

After a fit, every constrained parameter pulled from its nominal value is mirrored
through it at the fit's other values (one batched evaluation on the compiled structure);
while a mirror lowers -2lnL, the lowest is taken and the others are tried again from
there; the fit starts again where that ends. A fit with nothing pulled, or whose mirrors
all rise (a pull with a reason), costs one evaluation of a few points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fitaas.fast.structures import Bound

__all__ = ["MIRROR_GAIN", "mirror_start"]

# A constrained parameter farther than this many constraint widths from its nominal value is
# mirrored through it.
MIRROR_MOVED = 0.3
# Mirrors are taken one at a time, the lowest first, at most this many.
MIRROR_MAX = 8
# A mirror lower than the point it is taken from by more than this is taken.
MIRROR_GAIN = 1e-4
# Points evaluated per call of the compiled structure.
MIRROR_BATCH = 16


def _values(bound: Bound, points: np.ndarray, data: np.ndarray) -> np.ndarray:
    """-2lnL at each row of ``points``, in batches of ``MIRROR_BATCH``."""
    compiled = bound.structure.batched_value(MIRROR_BATCH)
    out = []
    for first in range(0, len(points), MIRROR_BATCH):
        chunk = points[first : first + MIRROR_BATCH]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], MIRROR_BATCH - len(chunk), 0)])
        out.append(np.asarray(compiled(padded, data, bound.arrays), dtype=float)[: len(chunk)])
    return np.concatenate(out)


def mirror_start(
    bound: Bound,
    pdf: Any,
    data: Any,
    x: Any,
    fixed_vals: Any,
    bounds: Any,
    value: float,
) -> np.ndarray | None:
    """Where a fit that ended at ``x`` (-2lnL ``value``) should start again, if anywhere.

    Args:
        bound: The model's compiled structure.
        pdf: The model.
        data: The data the fit ran on.
        x: The fit's end point.
        fixed_vals: ``(index, value)`` of the parameters the fit held.
        bounds: The fit's parameter bounds.
        value: -2lnL at ``x``.

    Returns:
        The sign pattern of the pulled parameters reached by taking lower mirrors one at a
        time, when it lies more than ``MIRROR_GAIN`` below ``value``; ``None`` otherwise.
    """
    end = np.asarray(x, dtype=float).reshape(-1)
    rows = np.asarray(data, dtype=float).reshape(-1)
    nominal = np.asarray(pdf.config.suggested_init(), dtype=float)
    mirrored = 2.0 * nominal - end
    limits = np.asarray(bounds, dtype=float)
    free = bound.constrained.copy()
    free[[int(i) for i, _ in fixed_vals or []]] = False
    pulled = np.flatnonzero(
        free
        & (np.abs(end - nominal) > MIRROR_MOVED * bound.scales)
        & (mirrored >= limits[:, 0])
        & (mirrored <= limits[:, 1])
    ).tolist()
    point, lowest = end.copy(), value
    for _ in range(MIRROR_MAX):
        if not pulled:
            break
        singles = np.tile(point, (len(pulled), 1))
        singles[np.arange(len(pulled)), pulled] = mirrored[pulled]
        values = _values(bound, singles, rows)
        best = int(np.argmin(values))
        if not np.isfinite(values[best]) or values[best] >= lowest - MIRROR_GAIN:
            break
        point, lowest = singles[best], float(values[best])
        del pulled[best]
    return point if lowest < value - MIRROR_GAIN else None
