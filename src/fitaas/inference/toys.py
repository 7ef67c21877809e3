"""Pseudo-experiments (toys): seeds, sampling, test statistics per block, and merging.

The definitions are pyhf's ``ToyCalculator`` (0.7.6): toys of the signal-plus-background
ensemble are drawn from the model at the conditional fit of the observed data at the
tested POI value, those of the background-only ensemble at POI 0 (1 for ``q0``); every
toy's test statistic is computed with the same fits as the observed one; p-values count
the toys with a test statistic at least the observed one; the expected band is the
percentiles (-2..+2 sigma) of CLs over the background-only toys.

What differs from pyhf, on purpose: toys come in *blocks* of a fixed size, each drawn
from its own random stream, seeded from the user's seed and the block's identity (so a
block's numbers do not depend on the worker, the engine or the order in which blocks
finish, and more toys extend a run instead of replacing it); a toy whose fit fails is
counted and left out instead of stopping the test; Monte-Carlo uncertainties come with
every number.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from fitaas.inference.core import complete_fit_inputs
from fitaas.inference.options import InferenceOptions
from fitaas.inference.teststats import test_statistic

__all__ = [
    "ENSEMBLES",
    "NORMAL_PERCENTILES",
    "ToyReference",
    "block_seed",
    "generating_poi",
    "merge_toys",
    "plain_teststats",
    "sample_toys",
    "teststat_function",
    "toy_reference",
]

# "sb": toys of the tested hypothesis (signal plus background at the tested POI value);
# "b": toys of the alternative (background only: POI 0; for q0, POI 1).
ENSEMBLES = ("sb", "b")
# The percentiles of -2, -1, 0, +1, +2 standard deviations, as pyhf uses them.
NORMAL_PERCENTILES = (2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681)
BOOTSTRAP_RESAMPLES = 200


def generating_poi(options: InferenceOptions, ensemble: str) -> float:
    """The POI value toys of ``ensemble`` are drawn at (pyhf's choice)."""
    return test_statistic(options.test_stat).generating_poi(ensemble, options.poi_value)


def tested_poi(options: InferenceOptions) -> float:
    """The POI value the test statistic tests (0 for q0, as pyhf sets it)."""
    return test_statistic(options.test_stat).tested_poi(options.poi_value)


def block_seed(
    seed: int,
    workspace_digest: str,
    patch_digest: str,
    options: InferenceOptions,
    ensemble: str,
    index: int,
) -> np.random.SeedSequence:
    """The random stream of one block, from the user's seed and the block's identity.

    The identity is the workspace and patch digests, the tested POI value, the test
    statistic, the ensemble and the block's index: the same block gets the same toys on
    any worker and engine, and different blocks get independent streams.
    """
    identity = "|".join(
        [
            workspace_digest,
            patch_digest,
            repr(float(options.poi_value)),
            options.test_stat,
            ensemble,
            str(int(index)),
        ]
    )
    words = hashlib.sha256(identity.encode()).digest()
    key = [int.from_bytes(words[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence(entropy=int(seed), spawn_key=key)


def _draw(pdf: Any, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw ``size`` samples of a pyhf probability object with ``rng``."""
    prob = pyhf.probability
    if isinstance(pdf, prob.Simultaneous):
        return np.asarray(pdf.tv.stitch([_draw(p, rng, size) for p in pdf]), dtype=float)
    if isinstance(pdf, prob.Independent):
        return _draw(pdf._pdf, rng, size)
    if isinstance(pdf, prob.Poisson):
        rate = np.asarray(pdf.rate, dtype=float)
        return rng.poisson(np.clip(rate, 0.0, None), size=(size, *rate.shape)).astype(float)
    if isinstance(pdf, prob.Normal):
        loc = np.asarray(pdf.loc, dtype=float)
        scale = np.asarray(pdf.scale, dtype=float)
        return rng.normal(loc, scale, size=(size, *loc.shape))
    raise TypeError(f"cannot draw toys from a {type(pdf).__name__}")


def sample_toys(
    model: pyhf.pdf.Model, pars: Sequence[float], size: int, seed: np.random.SeedSequence
) -> np.ndarray:
    """``size`` pseudo-datasets (main and auxiliary data) of ``model`` at ``pars``.

    The distributions are pyhf's own (``model.make_pdf(pars)``: Poisson main data,
    Gaussian and Poisson auxiliary data); only the random numbers are fitaas's, drawn
    from ``seed`` (PCG64) so that a block is reproducible bit for bit.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    pdf = model.make_pdf(pyhf.tensorlib.astensor(np.asarray(pars, dtype=float)))
    return _draw(pdf, rng, size)


def teststat_function(test_stat: str) -> Any:
    """pyhf's test statistic function for ``test_stat``."""
    return pyhf.infer.utils.get_test_stat(test_stat)


@dataclass(frozen=True)
class ToyReference:
    """What every block of a point needs: the observed test statistic and where toys start.

    Attributes:
        teststat_obs: The test statistic of the observed data.
        pars: The parameters each ensemble's toys are drawn at, by ensemble.
    """

    teststat_obs: float
    pars: dict[str, tuple[float, ...]]


def toy_reference(
    model: pyhf.pdf.Model,
    data: Sequence[float],
    options: InferenceOptions,
    fit_inputs: tuple[Any, Any, Any],
) -> ToyReference:
    """The observed test statistic and the generating parameters (conditional fits).

    Runs with pyhf's backend and optimizer as set by the caller.
    """
    init, bounds, fixed = complete_fit_inputs(model, fit_inputs)
    tensor_data = pyhf.tensorlib.astensor(data)
    teststat = teststat_function(options.test_stat)(
        tested_poi(options), tensor_data, model, init, bounds, fixed
    )
    pars = {}
    for ensemble in ENSEMBLES:
        fitted = pyhf.infer.mle.fixed_poi_fit(
            generating_poi(options, ensemble), tensor_data, model, init, bounds, fixed
        )
        pars[ensemble] = tuple(float(v) for v in np.asarray(fitted, dtype=float))
    return ToyReference(float(np.asarray(teststat, dtype=float).reshape(-1)[0]), pars)


def plain_teststats(
    model: pyhf.pdf.Model,
    toys: np.ndarray,
    options: InferenceOptions,
    fit_inputs: tuple[Any, Any, Any],
) -> np.ndarray:
    """The test statistic of each toy with pyhf's own fits (NaN where a fit failed)."""
    init, bounds, fixed = complete_fit_inputs(model, fit_inputs)
    function = teststat_function(options.test_stat)
    mu = tested_poi(options)
    out = np.full(len(toys), np.nan)
    for i, toy in enumerate(toys):
        try:
            value = function(mu, pyhf.tensorlib.astensor(toy), model, init, bounds, fixed)
        except pyhf.exceptions.FailedMinimization:
            continue
        out[i] = float(np.asarray(value, dtype=float).reshape(-1)[0])
    return out


def _pvalues(sorted_toys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fraction of toys with a test statistic >= each value (pyhf's ``pvalue``)."""
    if len(sorted_toys) == 0:
        return np.full(np.shape(values), np.nan)
    below = np.searchsorted(sorted_toys, values, side="left")
    return (len(sorted_toys) - below) / len(sorted_toys)


def _expected(sb: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The expected band: percentiles of (CLs+b, CLb, CLs) over the background-only toys."""
    sb_sorted, b_sorted = np.sort(sb), np.sort(b)
    clsb = _pvalues(sb_sorted, b)
    clb = _pvalues(b_sorted, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        cls = clsb / clb
    table = np.stack([clsb, clb, cls], axis=1)
    return np.percentile(table, NORMAL_PERCENTILES, axis=0, method="linear").T


def _binomial_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n else math.nan


def merge_toys(
    teststat_obs: float,
    sb: np.ndarray,
    b: np.ndarray,
    test_stat: str,
    seed: int,
) -> dict[str, Any]:
    """p-values, the expected band and their Monte-Carlo uncertainties from two ensembles.

    Args:
        teststat_obs: The observed test statistic.
        sb: Test statistics of the signal-plus-background toys (NaN: failed fits).
        b: Test statistics of the background-only toys (NaN: failed fits).
        test_stat: The test statistic's name (``q0``: the values are p0, as pyhf has them).
        seed: The user's seed (also seeds the bootstrap of the band's uncertainties).

    Returns:
        ``cls_obs``, ``cls_exp`` (5), ``clsb_obs``, ``clb_obs`` as pyhf's toy calculator
        defines them (for ``q0``: ``cls_obs`` and ``cls_exp`` hold p0, like pyhf), and
        ``errors`` with their uncertainties.
    """
    failed_sb, failed_b = int(np.isnan(sb).sum()), int(np.isnan(b).sum())
    sb, b = sb[~np.isnan(sb)], b[~np.isnan(b)]
    n_sb, n_b = len(sb), len(b)
    clsb = float(_pvalues(np.sort(sb), np.asarray(teststat_obs)))
    clb = float(_pvalues(np.sort(b), np.asarray(teststat_obs)))
    cls = clsb / clb if clb > 0 else math.nan
    err_sb, err_b = _binomial_error(clsb, n_sb), _binomial_error(clb, n_b)
    # CLs+b and CLb come from independent ensembles: relative errors add in quadrature
    err_cls = cls * math.hypot(err_sb / clsb, err_b / clb) if clsb > 0 and clb > 0 else math.nan
    if clsb == 0 and clb > 0:  # no toy beyond the observed value: the binomial bound
        err_cls = 1.0 / (n_sb * clb) if n_sb else math.nan
    band = _expected(sb, b) if n_sb and n_b else np.full((3, 5), np.nan)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0xB007])))
    boot = []
    if n_sb > 1 and n_b > 1:
        for _ in range(BOOTSTRAP_RESAMPLES):
            boot.append(_expected(sb[rng.integers(0, n_sb, n_sb)], b[rng.integers(0, n_b, n_b)]))
    spread = np.nanstd(np.asarray(boot), axis=0) if boot else np.full((3, 5), np.nan)
    stat = test_statistic(test_stat)
    row = stat.reported_row  # pyhf's q0 reports CLs+b (p0) where others CLs
    first = clsb if stat.discovery else cls
    first_error = err_sb if stat.discovery else err_cls
    return {
        "cls_obs": first,
        "cls_exp": [float(v) for v in band[row]],
        "clsb_obs": clsb,
        "clb_obs": clb,
        "errors": {
            "cls_obs": first_error,
            "cls_exp": [float(v) for v in spread[row]],
            "clsb_obs": err_sb,
            "clb_obs": err_b,
        },
        "ntoys": {"sb": n_sb, "b": n_b},
        "failed": {"sb": failed_sb, "b": failed_b},
        "teststat_obs": float(teststat_obs),
    }
