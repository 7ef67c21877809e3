"""What a worker keeps of the compiled path: its structures (at most ``MAX_STRUCTURES``), each
model's binding, and the minima of held fits by their data and fixed values, the best
starts for the next fits of the same structure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fitaas.fast.structures import Bound, Objective, Structure

__all__ = [
    "MAX_STRUCTURES",
    "HeldFit",
    "StructureCache",
    "fixed_key",
    "held_key",
]


MAX_STRUCTURES = 16


def fixed_key(fixed_vals: Any) -> tuple[tuple[int, float], ...]:
    """A fit's fixed ``(index, value)`` pairs, sorted, as plain numbers (a key part)."""
    return tuple(sorted((int(i), float(v)) for i, v in fixed_vals or []))


def held_key(data: Any, fixed_vals: Any, par_bounds: Any) -> tuple[bytes, tuple[Any, ...], bytes]:
    """What identifies a fit of a model for :meth:`StructureCache.hold`: its data, its fixed
    ``(index, value)`` pairs and its bounds."""
    return (
        np.asarray(data, dtype=float).tobytes(),
        fixed_key(fixed_vals),
        np.asarray(par_bounds, dtype=float).tobytes(),
    )


@dataclass(frozen=True)
class HeldFit:
    """A minimum found ahead of its request (:mod:`fitaas.inference.lockstep`).

    Attributes:
        x: The parameters at the minimum (fixed ones included).
        fun: -2lnL there.
        jac: Its gradient there.
        nfev: Evaluations the fit took.
        tolerance: The decrease of -2lnL still possible at the minimum, at most.
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nfev: int
    tolerance: float


class StructureCache:
    """The structures a worker has compiled, and the objective of the model in use."""

    def __init__(self) -> None:
        self._structures: dict[str, list[Structure]] = {}
        self._last: tuple[Any, Bound | None] = (None, None)
        self._memo: tuple[Any, dict[Any, Any]] = (None, {})
        self._anchors: tuple[Any, Any] = (None, None)
        self._held: dict[int, tuple[Any, Bound, dict[Any, HeldFit]]] = {}
        self.compiled = 0
        self.refused = 0

    def hold(
        self, model: Any, bound: Bound, key: tuple[bytes, tuple[Any, ...], bytes], fit: HeldFit
    ) -> None:
        """Keep a minimum of ``model``'s fit ``key`` (see :func:`held_key`) for its request,
        and the model's bound, until :meth:`release`."""
        _, _, fits = self._held.setdefault(id(model), (model, bound, {}))
        fits[key] = fit

    def held(
        self, model: Any, key: tuple[bytes, tuple[Any, ...], bytes], tolerance: float | None
    ) -> HeldFit | None:
        """The minimum held for ``model``'s fit ``key``, if any, and if as precise as a fit
        at ``tolerance`` (``None``: pyhf's default) would be."""
        found = self._held.get(id(model))
        fit = found[2].get(key) if found is not None and found[0] is model else None
        return (
            fit if fit is not None and (tolerance is None or fit.tolerance <= tolerance) else None
        )

    def release(self, model: Any) -> None:
        """Forget the minima held for ``model``."""
        self._held.pop(id(model), None)

    def anchors(self, model: Any, make: Callable[[], Any]) -> Any:
        """The anchors of ``model``'s fits (see :mod:`fitaas.fast.differences`), made by
        ``make`` for a new model and shared by every fit of it while it is in use, so that
        the values of all its fits (every strategy, every start) agree beyond rounding."""
        if self._anchors[0] is not model:
            self._anchors = (model, make())
        return self._anchors[1]

    def memo(self, model: Any) -> dict[Any, Any]:
        """The minima found for ``model`` by request (data, start, bounds, fixed values,
        strategy), kept while the same model object is in use: pyhf's hypothesis test makes
        three of its five fits anew for every POI value of an upper limit."""
        if self._memo[0] is not model:
            self._memo = (model, {})
        return self._memo[1]

    def objective(self, model: Any, modifier_settings: dict[str, Any] | None) -> Objective | None:
        """The compiled objective for ``model``, compiling its structure if new.

        Returns:
            ``(value, gradient)`` of -2lnL as a function of ``(pars, data)``, or ``None``
            when the model cannot be served (the caller uses plain pyhf).
        """
        bound = self.bound(model, modifier_settings)
        return bound.value_and_grad if bound is not None else None

    def bound(self, model: Any, modifier_settings: dict[str, Any] | None) -> Bound | None:
        """The compiled structure bound to ``model``, compiling the structure if new.

        Returns:
            ``None`` when the model cannot be served (the caller uses plain pyhf).
        """
        if self._last[0] is model:
            return self._last[1]
        held = self._held.get(id(model))
        if held is not None and held[0] is model:
            self._last = (model, held[1])
            return held[1]
        key = repr(sorted((modifier_settings or {}).items()))
        known = self._structures.setdefault(key, [])
        found = None
        for structure in known:
            found = structure.bind(model)
            if found is not None:
                break
        if found is None and sum(map(len, self._structures.values())) < MAX_STRUCTURES:
            made: Structure | None
            try:
                made = Structure(model, modifier_settings)
            except Exception:  # a model pyhf's jax backend cannot trace: plain pyhf
                made = None
            if made is not None:
                self.compiled += 1
                known.append(made)
                found = made.bind(model)
        if found is None:
            self.refused += 1
        self._last = (model, found)
        return found
