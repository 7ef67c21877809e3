"""A hypothesis test's verdict: its :class:`Diagnosis` (status, reasons, the strategy whose
numbers were kept, every fit's record), its reasons in short, and the other minima of its fits
that would change CLs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fitaas.inference.fit_checks import (
    CLS_PRECISION,
    FIT_NAMES,
    SAME_MINIMUM,
    FitRecord,
    asymptotic_cls,
)
from fitaas.inference.results import HypotestResult
from fitaas.inference.teststats import test_statistic

__all__ = [
    "SECOND_START_GAIN",
    "Diagnosis",
    "several_minima",
    "verdict",
]


# A second start whose minimum is lower than the first by more than this (-2lnL) wins.
SECOND_START_GAIN = 1e-4


@dataclass(frozen=True)
class Diagnosis:
    """The verdict on a hypothesis test, and the fits it rests on."""

    status: str
    reasons: tuple[str, ...]
    strategy: str
    fits: tuple[FitRecord, ...]
    attempts: int = 1
    tried: tuple[str, ...] = ()
    second_start: float | None = None
    check_seconds: float = 0.0
    mirror_seconds: float = 0.0
    several_minima: tuple[dict[str, Any], ...] = ()
    rounds: int = 0

    @property
    def notes(self) -> tuple[str, ...]:
        """What a user should know of an ``ok`` point: one line per fit with another minimum
        that would change CLs (see :func:`several_minima`)."""
        return tuple(_minimum_note(m) for m in self.several_minima)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values: ``strategy`` produced the numbers, ``tried`` lists every
        strategy run for the point, in order; ``second_start`` is how much lower in -2lnL a
        second start's minimum was than the first's (``None``: no second start was run; the
        numbers come from the second minimum when it exceeds ``SECOND_START_GAIN``);
        ``check_seconds`` is the time the certificates and the second start took,
        ``mirror_seconds`` the time of the fits' mirror starts (their searches and the fits
        started again; see :mod:`fitaas.fast.mirrors`); ``several_minima`` lists the other
        minima of the test's fits that would change CLs by more than ``CLS_PRECISION``
        (``notes``: the same in words); ``rounds`` counts the times the test was computed
        again because one fit's minimum was a better start for another."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "strategy": self.strategy,
            "attempts": self.attempts,
            "tried": list(self.tried or (self.strategy,)),
            "second_start": self.second_start,
            "check_seconds": round(self.check_seconds, 6),
            "mirror_seconds": round(self.mirror_seconds, 6),
            "several_minima": [dict(m) for m in self.several_minima],
            "notes": list(self.notes),
            "rounds": self.rounds,
            "fits": [f.to_dict() for f in self.fits],
        }


def verdict(seen: Sequence[tuple[str, Sequence[str]]], kept: str) -> tuple[str, ...]:
    """A point's reasons as a short list: one line per reason (reasons that differ only in
    their numbers are one, in the words of the strategy whose numbers were kept, else the
    first), each with the strategies that saw it, those of the kept strategy first."""
    order = sorted(seen, key=lambda entry: entry[0] != kept)
    lines: dict[str, tuple[str, list[str]]] = {}
    for name, reasons in order:
        for reason in reasons:
            key = _NUMBER.sub("#", reason)
            _, names = lines.setdefault(key, (reason, []))
            if name not in names:
                names.append(name)
    return tuple(f"{text} [{', '.join(names)}]" for text, names in lines.values())


_NUMBER = re.compile(r"[-+]?\d[\d.]*(?:e[-+]?\d+)?")


def _cls_of_fits(values: Sequence[float], clipped: bool, tilde: bool) -> np.ndarray:
    """Observed and expected CLs (asymptotic) from the -2lnL of a test's five fits."""
    q = 0.0 if clipped else max(values[0] - values[1], 0.0)
    q_a = max(values[3] - values[4], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return asymptotic_cls(np.float64(q) ** 0.5, np.float64(q_a) ** 0.5, tilde)


def several_minima(
    records: Sequence[FitRecord], result: HypotestResult | None, precision: float
) -> tuple[dict[str, Any], ...]:
    """The other minima of a test's fits that would change its CLs.

    For a q or q-tilde test: each fit (but the background-only one, which makes the Asimov
    data) with another minimum (from another start: pyhf's own, a conditional minimum, the
    other side of a kink) higher by more than ``precision`` and ``SECOND_START_GAIN``, whose
    -2lnL in place of the fit's own moves the observed or an expected CLs by more than
    ``CLS_PRECISION`` (asymptotic formulas).

    Returns:
        One mapping per such minimum: ``fit`` (its name), ``twice_nll``, ``above`` (how much
        higher), ``pyhf_start`` (whether pyhf's own start ends there), ``cls_obs`` and
        ``cls_exp`` (the CLs values there).
    """
    kinds = [(r.conditional, r.observed) for r in records]
    pattern = [(True, True), (False, True), (True, True), (True, False), (False, False)]
    if result is None or test_statistic(result.test_stat).discovery or kinds != pattern:
        return ()
    values = [r.twice_nll for r in records]
    clipped = result.clsb_obs >= 0.5  # q = 0: mu-hat above the tested mu
    tilde = test_statistic(result.test_stat).tilde
    base = _cls_of_fits(values, clipped, tilde)
    found: list[dict[str, Any]] = []
    for index in (0, 1, 3, 4):
        record = records[index]
        # (per fit: the nearest other minimum that matters, and pyhf's own where it differs)
        pyhf_start = record.from_pyhf_start
        candidates = sorted(v for v in record.other_minima if v - values[index] > 0)
        if pyhf_start is not None:
            candidates = [v for v in candidates if abs(v - pyhf_start) > SAME_MINIMUM]
            candidates.append(pyhf_start)
        for other in candidates:
            above = other - values[index]
            if above <= max(precision, SECOND_START_GAIN):
                continue
            changed = list(values)
            changed[index] = other
            there = _cls_of_fits(changed, clipped, tilde)
            if not np.all(np.isfinite(there)):
                continue
            if float(np.max(np.abs(there - base))) <= CLS_PRECISION:
                continue
            from_pyhf = pyhf_start is not None and abs(pyhf_start - other) <= SAME_MINIMUM
            if found and found[-1]["fit"] == FIT_NAMES[index] and not from_pyhf:
                continue  # (one other minimum per fit, besides pyhf's own)
            found.append(
                {
                    "fit": FIT_NAMES[index],
                    "twice_nll": other,
                    "above": above,
                    "pyhf_start": from_pyhf,
                    "cls_obs": float(there[0]),
                    "cls_exp": [float(v) for v in there[1:]],
                }
            )
    return tuple(found)


def _minimum_note(minimum: dict[str, Any]) -> str:
    start = " (where the fit from pyhf's suggested start ends)" if minimum.get("pyhf_start") else ""
    return (
        f"several minima: {minimum['fit']} has another {minimum['above']:.3g} higher in"
        f" -2lnL{start}, where CLs would be {minimum['cls_obs']:.4g}"
    )
