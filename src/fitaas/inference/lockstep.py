"""The fits of many points' hypothesis tests in lockstep: ``--lockstep`` and the GPU.

A scan's points of one model structure share their compiled -2lnL; only their arrays
(the signal's rates, its modifiers) and data differ. Here the five fits of each point's
asymptotic hypothesis test run for all points at once, in three stages: the fit with the
POI held at the Asimov value on the observed data (from pyhf's start: its expected data
are the Asimov data); on the observed and on the Asimov data, the fits with the POI held at
the tested value; then the free fits, each started from the lower of the two minima on its
data. Every evaluation is one call of the structure's ``vmap``-ped -2lnL and gradient over
the points' own arrays, minimised by the batched quasi-Newton method of
:mod:`fitaas.fast.batched`, started from each point's exact Hessian (later stages from the
refined estimates of the earlier ones).

The minima are then *held* for each model (:meth:`StructureCache.hold`): the point's
hypothesis test runs as always (pyhf's statistics, fit checks, retries), and each of its
fits that asks for a held minimum (same data, same fixed values, same bounds) gets it
instead of fitting again. A fit the lockstep did not make or did not converge is made
the usual way; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fitaas.fast.batched import in_padded_calls, minimize_batch, positive_definite
from fitaas.fast.structure_cache import HeldFit, StructureCache, held_key
from fitaas.fast.structures import Bound, Structure
from fitaas.inference.core import complete_fit_inputs, fit_inputs
from fitaas.inference.options import InferenceOptions
from fitaas.inference.teststats import test_statistic
from fitaas.inference.toys import tested_poi

__all__ = ["lockstep_hypotests", "lockstep_widths"]

# Lanes per compiled call on the CPU: 16, the rest of a stage in calls of 4 (padded).
# Measured per lane (one value and gradient, every array varying): sbottom A 0.56 ms alone,
# 0.30 ms in calls of 4, 0.20 ms in calls of 16; 1Lbb 1.7, 0.94 and 1.0 ms (its compute
# dominates). On an accelerator, one call takes every fit of a stage.
CPU_LANES = (16, 4)
# Fewer points of a structure than this are fitted one at a time (nothing to share).
MIN_POINTS = 2
# The batched minimiser's tolerance: the predicted remaining decrease of -2lnL (or the
# options' tolerance, if tighter). A fit asked for at a tighter one (the fit checks' tight
# retry) is made anew.
TOLERANCE = 1e-8
MAXITER = 200


@dataclass
class _Entry:
    model: Any
    data: np.ndarray
    bound: Bound
    init: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fixed: np.ndarray


def lockstep_widths(fits: int) -> tuple[int, ...]:
    """The compiled widths (fits per call): ``CPU_LANES`` on the CPU; on an accelerator
    all of a stage's fits, rounded up to a power of two (few compiled widths)."""
    import jax

    if jax.default_backend() == "cpu":
        return CPU_LANES
    return (1 << max(int(fits) - 1, 0).bit_length(),)


def lockstep_hypotests(
    models: Sequence[tuple[Any, Any]], options: InferenceOptions, structures: StructureCache
) -> int:
    """Fit every point's hypothesis-test fits in lockstep and hold the minima for its test.

    Args:
        models: ``(model, observed data)`` of each point (numpy models, as built for the
            point's test).
        options: The inference options of the tests (test statistic, POI value, fit
            inputs).
        structures: The worker's compiled structures; the minima are held there until
            :meth:`StructureCache.release`.

    Returns:
        How many points' fits were made in lockstep.
    """
    settings = options.pyhf_modifier_settings()
    groups: dict[int, list[_Entry]] = {}
    for model, data in models:
        if model.config.poi_index is None:
            continue
        bound = structures.bound(model, settings)
        if bound is None:
            continue
        init, bounds, fixed = complete_fit_inputs(model, fit_inputs(model, options))
        limits = np.asarray(bounds, dtype=float)
        groups.setdefault(id(bound.structure), []).append(
            _Entry(
                model,
                np.asarray(data, dtype=float),
                bound,
                np.asarray(init, dtype=float),
                limits[:, 0],
                limits[:, 1],
                np.asarray(fixed, dtype=bool),
            )
        )
    done = 0
    for entries in groups.values():
        if len(entries) >= MIN_POINTS:
            _fit_group(entries, options, structures)
            done += len(entries)
    return done


@dataclass
class _Stage:
    """One round of fits: per fit, its point, data and held POI value (NaN: free)."""

    entry: np.ndarray
    data: np.ndarray
    poi: np.ndarray
    start: np.ndarray


@dataclass(frozen=True)
class _Group:
    """One structure's points and what their fits share."""

    entries: list[_Entry]
    structure: Structure
    poi: int
    varying: tuple[bool, ...]
    stacked: list[np.ndarray]
    tolerance: float


def _fit_group(
    entries: list[_Entry], options: InferenceOptions, structures: StructureCache
) -> None:
    """The three stages of fits of one structure's points, their minima held."""
    structure = entries[0].bound.structure
    poi = entries[0].model.config.poi_index
    tolerance = TOLERANCE if options.tolerance is None else min(TOLERANCE, options.tolerance)
    group = _Group(entries, structure, poi, *_stacked_arrays(structure, entries), tolerance)
    count = len(entries)
    asimov_mu = test_statistic(options.test_stat).asimov_poi
    indices = np.arange(count)
    observed = np.stack([e.data for e in entries])
    first = _Stage(
        indices, observed, np.full(count, asimov_mu), np.stack([e.init for e in entries])
    )
    found = _run(group, first, _start_hessians(group, asimov_mu))
    asimov = np.stack(
        [np.asarray(e.model.expected_data(found.x[i]), dtype=float) for i, e in enumerate(entries)]
    )
    # then on the observed and on the Asimov data: the fits with the POI held at the
    # tested value, and the free fits, started (as the one-at-a-time fits' warm starts)
    # from whichever minimum on their data is lower: an identical minimum of a free and a
    # held fit gives a test statistic of exactly 0, as pyhf's fits do
    pairs = np.repeat(indices, 2)
    both = np.where(np.tile([True, False], count)[:, None], observed[pairs], asimov[pairs])
    tested_stage = _Stage(pairs, both, np.full(2 * count, tested_poi(options)), found.x[pairs])
    at_tested = _run(group, tested_stage, found.hessian[pairs])
    free_stage = _Stage(pairs, both, np.full(2 * count, np.nan), found.x[pairs])
    first_values = _evaluator(group, free_stage)(found.x[pairs], np.arange(2 * count))[0]
    better = at_tested.converged & (at_tested.fun < first_values)
    free_stage.start[better] = at_tested.x[better]
    hessians = np.where(better[:, None, None], at_tested.hessian, found.hessian[pairs])
    free = _run(group, free_stage, hessians)
    for stage, result in ((first, found), (tested_stage, at_tested), (free_stage, free)):
        _hold(group, stage, result, structures)


def _stacked_arrays(
    structure: Structure, entries: list[_Entry]
) -> tuple[tuple[bool, ...], list[np.ndarray]]:
    """Which of the structure's arrays differ between the points, and the arrays as the
    stacked call takes them (one row per point where they differ, else the one array)."""
    host = [[np.asarray(a) for a in structure.arrays(e.model) or []] for e in entries]
    varying = tuple(
        any(not np.array_equal(rows[j], host[0][j]) for rows in host[1:])
        for j in range(len(structure.shapes))
    )
    stacked = [
        np.stack([rows[j] for rows in host]) if varying[j] else host[0][j]
        for j in range(len(varying))
    ]
    return varying, stacked


def _hold(group: _Group, stage: _Stage, result: Any, structures: StructureCache) -> None:
    """Hold each converged minimum of a stage under the request pyhf's fit will make."""
    for row, index in enumerate(stage.entry):
        if not result.converged[row]:
            continue
        entry = group.entries[index]
        fixed = entry.fixed.copy()
        values = entry.init.copy()
        if np.isfinite(stage.poi[row]):
            fixed[group.poi], values[group.poi] = True, stage.poi[row]
        key = held_key(
            stage.data[row],
            [(i, values[i]) for i in np.flatnonzero(fixed)],
            np.stack([entry.lower, entry.upper], axis=1),
        )
        fit = HeldFit(
            result.x[row].copy(),
            float(result.fun[row]),
            result.grad[row].copy(),
            int(result.evaluations[row]),
            group.tolerance,
        )
        structures.hold(entry.model, entry.bound, key, fit)


def _start_hessians(group: _Group, asimov_mu: float) -> np.ndarray:
    """Each point's exact Hessian of -2lnL at its first fit's start (positive definite)."""
    hessian = group.structure.hessian()
    out = []
    for entry in group.entries:
        start = entry.init.copy()
        start[group.poi] = asimov_mu
        found = np.asarray(hessian(start, entry.data, entry.bound.arrays), dtype=float)
        out.append(
            positive_definite(found)
            if np.all(np.isfinite(found))
            else np.diag(1.0 / entry.bound.scales**2)
        )
    return np.stack(out)


def _run(group: _Group, stage: _Stage, hessians: np.ndarray) -> Any:
    """A stage's fits, in lockstep."""
    entries = [group.entries[i] for i in stage.entry]
    fixed = np.stack([e.fixed for e in entries])
    held = np.isfinite(stage.poi)
    fixed[held, group.poi] = True
    start = stage.start.copy()
    for row, entry in enumerate(entries):
        start[row, entry.fixed] = entry.init[entry.fixed]
    start[held, group.poi] = stage.poi[held]
    return minimize_batch(
        _evaluator(group, stage),
        start,
        np.stack([e.lower for e in entries]),
        np.stack([e.upper for e in entries]),
        ~fixed,
        hessians,
        np.stack([e.bound.scales for e in entries]),
        tolerance=group.tolerance,
        maxiter=MAXITER,
    )


def _evaluator(group: _Group, stage: _Stage) -> Any:
    """``evaluate(pars, rows)``: -2lnL and its gradient of the stage's fits ``rows`` (each
    with its point's arrays and its data), in compiled calls of the device's widths."""
    import jax

    widths = sorted(lockstep_widths(len(stage.entry)))

    def evaluate(pars: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def call(index: np.ndarray) -> Any:
            points = stage.entry[rows[index]]
            arrays = [
                a[points] if v else a for a, v in zip(group.stacked, group.varying, strict=True)
            ]
            compiled = group.structure.stacked_value_and_grad(len(index), group.varying)
            return jax.device_get(compiled(pars[index], stage.data[rows[index]], arrays))

        return in_padded_calls(len(rows), widths, call, pars.shape[1])

    return evaluate
