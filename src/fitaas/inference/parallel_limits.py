"""Upper limits whose CLs evaluations run concurrently: pyhf's procedures, spread.

pyhf's ``toms748_scan`` finds the observed limit and then the five expected ones one
after another, each a TOMS748 root finding of ``CLs(mu) - level``. Here the six root
findings run as many at once as there are workers, each in its own thread, with pyhf's
brackets (the search interval halved below and doubled above until it holds the level)
and tolerances, and every CLs evaluation is shared through a cache: whoever asks for a
POI value first computes it (a task on an engine's worker), the others wait for it. Each
limit is a root within pyhf's tolerance.
A grid (pyhf's ``linear_grid_scan``) evaluates every value at once and interpolates as
pyhf does.

This module knows nothing of engines: it is given the evaluation.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from scipy.optimize import toms748

from fitaas.errors import InputError
from fitaas.inference.results import UpperLimitResult, UpperLimitScanPoint

__all__ = ["CLsCache", "Evaluate", "grid_limits", "limit_result", "toms748_limits"]

# CLs observed and expected (-2..+2 sigma) at a POI value.
CLs = tuple[float, tuple[float, ...]]
Evaluate = Callable[[float], CLs]

# pyhf's toms748_scan tolerances.
ATOL = 2e-12
RTOL = 1e-4
CURVES = 6  # observed, then the expected band's five
# The order root findings start in: observed, median, then outwards (later ones start from
# brackets the earlier ones' evaluations tightened).
ORDER = (0, 3, 2, 4, 1, 5)


def _curve(value: CLs, index: int) -> float:
    return value[0] if index == 0 else value[1][index - 1]


class CLsCache:
    """Each POI value evaluated once, whatever the number of threads asking for it.

    Args:
        evaluate: Computes CLs at a POI value (a task on a worker, typically).
    """

    def __init__(self, evaluate: Evaluate) -> None:
        self._evaluate = evaluate
        self._lock = threading.Lock()
        self._values: dict[float, Future[CLs]] = {}

    def __call__(self, mu: float) -> CLs:
        mu = float(mu)
        with self._lock:
            future = self._values.get(mu)
            mine = future is None
            if future is None:
                future = self._values[mu] = Future()
        if mine:
            try:
                future.set_result(self._evaluate(mu))
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def known(self) -> dict[float, CLs]:
        """The values evaluated so far (successfully)."""
        with self._lock:
            futures = dict(self._values)
        return {mu: f.result() for mu, f in futures.items() if f.done() and f.exception() is None}

    def visited(self) -> tuple[UpperLimitScanPoint, ...]:
        """The evaluations, by POI value, as an upper limit reports them."""
        return tuple(
            UpperLimitScanPoint(mu, value[0], tuple(value[1]))
            for mu, value in sorted(self.known().items())
        )


def _bracket(
    cache: CLsCache, low: float, high: float, level: float, name: str, bound: float
) -> tuple[float, float]:
    """pyhf's search interval: ``low`` halved while a curve lies below ``level`` there,
    ``high`` doubled while one lies above (both ends evaluated at once)."""
    with ThreadPoolExecutor(2) as pool:
        at_low, at_high = pool.map(cache, (low, high))
    if low == 0.0 and not all(math.isfinite(v) for v in (at_low[0], *at_low[1])):
        low = high * 1e-3  # qtilde CLs is 0/0 at mu = 0 for some models: from just above
        at_low = cache(low)
    while any(v < level for v in (at_low[0], *at_low[1])):
        low /= 2
        at_low = cache(low)
    while any(v > level for v in (at_high[0], *at_high[1])):
        if high * 2 > bound:
            raise InputError(
                f"the upper limit lies above the upper bound of {name} ({bound:g}); widen it",
                option="par_bounds",
                value=f"{name}=0,{bound * 10:g}",
            )
        high *= 2
        at_high = cache(high)
    return low, high


def _best_bracket(cache: CLsCache, index: int, level: float) -> tuple[float, float]:
    """The tightest bracket of one curve among the values known (as pyhf's)."""
    known = cache.known()
    above = [(v - level, mu) for mu, cls in known.items() if (v := _curve(cls, index)) >= level]
    below = [(v - level, mu) for mu, cls in known.items() if (v := _curve(cls, index)) < level]
    return min(above)[1], max(below)[1]


def toms748_limits(
    cache: CLsCache,
    low: float,
    high: float,
    level: float,
    threads: int,
    name: str = "mu",
    bound: float = math.inf,
) -> tuple[float, tuple[float, ...]]:
    """The observed and expected limits, up to ``threads`` TOMS748 root findings at once.

    Each root finding starts from the tightest bracket of its curve among the values
    known when it starts (as pyhf's do, one after another): with one thread this is
    pyhf's ``toms748_scan`` step for step.

    Args:
        cache: The shared evaluation.
        low: Lower end of the search (the POI's lower bound, as pyhf).
        high: Upper end (the POI's upper bound).
        level: CLs level (0.05 for 95% CL).
        threads: Root findings at once (the workers; at most 6).
        name: The POI's name (for errors).
        bound: The POI's upper bound: a search past it is an error naming it.

    Returns:
        ``(observed, expected -2..+2 sigma)``.
    """
    low, high = _bracket(cache, low, high, level, name, bound)

    def solve(index: int) -> float:
        a, b = _best_bracket(cache, index, level)

        def f(mu: float) -> float:
            return _curve(cache(mu), index) - level

        return float(toms748(f, a, b, k=2, xtol=ATOL, rtol=RTOL))

    with ThreadPoolExecutor(max(1, min(threads, CURVES))) as pool:
        roots = dict(zip(ORDER, pool.map(solve, ORDER), strict=True))
    return roots[0], tuple(roots[i] for i in range(1, CURVES))


def grid_limits(
    cache: CLsCache, grid: Sequence[float], level: float, threads: int
) -> tuple[float, tuple[float, ...]]:
    """The limits of a grid scan (pyhf's ``linear_grid_scan``): every value evaluated at
    once, each curve interpolated at ``level``."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        values = list(pool.map(cache, grid))
    scan = np.asarray(grid, dtype=float)
    limits = [
        float(np.interp(level, np.asarray([_curve(v, i) for v in values])[::-1], scan[::-1]))
        for i in range(CURVES)
    ]
    return limits[0], tuple(limits[1:])


def limit_result(
    cache: CLsCache, obs: float, exp: Sequence[float], level: float, method: str
) -> UpperLimitResult:
    """The result type of :func:`fitaas.inference.upper_limit` for these limits."""
    return UpperLimitResult(
        level=level,
        obs=obs,
        exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
        method=method,
        scan=cache.visited(),
    )
