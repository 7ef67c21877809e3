"""Toy-based hypothesis tests as blocks: which blocks a point needs, and merging them.

A point's toys are cut into blocks of ``toy_block_size`` per ensemble; each block is one
task and one stored result, keyed by its content (the point, the options it depends on,
its ensemble and index). ``ntoys`` toys use the first blocks (the last one in part), so
asking for more toys later computes only the blocks not stored yet; ``cls_accuracy`` adds
blocks until the observed CLs is known well enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fitaas.inference import HypotestResult, InferenceOptions, ToySummary
from fitaas.inference.arrays import decode_array, encode_array
from fitaas.inference.teststats import test_statistic
from fitaas.inference.toys import ENSEMBLES, merge_toys
from fitaas.jobs.outcomes import Outcome

__all__ = ["Block", "blocks_for", "merge_blocks", "more_toys"]

Block = tuple[str, int]
# A point is suspect when more than this share of its toys' fits failed.
FAILED_SHARE_SUSPECT = 0.01


def blocks_for(options: InferenceOptions, total: int) -> list[Block]:
    """The blocks of both ensembles that ``total`` toys per ensemble need."""
    count = math.ceil(total / options.toy_block_size)
    return [(ensemble, index) for index in range(count) for ensemble in ENSEMBLES]


def merge_blocks(
    options: InferenceOptions, blocks: Mapping[Block, dict[str, Any]], total: int
) -> Outcome:
    """A point's hypothesis-test outcome from its stored blocks.

    Args:
        options: The scan's options (``calctype="toybased"``).
        blocks: Every block :func:`blocks_for` names for ``total``, by ``(ensemble, index)``.
        total: Toys per ensemble to use (the first ones, in block order).

    Returns:
        An outcome like every task's: ``status`` (``ok``, ``suspect`` when more than 1% of
        the toys' fits failed, ``failed`` when a block failed), ``result`` (the
        :class:`HypotestResult` as a dict, with its :class:`ToySummary`), ``error``,
        ``reason`` and ``seconds`` (the blocks' compute time).
    """
    needed = blocks_for(options, total)
    seconds = round(sum(float(blocks[b].get("seconds") or 0.0) for b in needed), 6)
    errors = [blocks[b].get("error") or "failed" for b in needed if blocks[b]["status"] != "ok"]
    if errors:
        return Outcome.failed(f"toys failed: {errors[0]}", seconds)
    values = {
        ensemble: np.concatenate(
            [decode_array(blocks[b]["teststats"]) for b in needed if b[0] == ensemble]
        )[:total]
        for ensemble in ENSEMBLES
    }
    observed = float(blocks[needed[0]]["teststat_obs"])
    merged = merge_toys(observed, values["sb"], values["b"], options.test_stat, options.seed)
    uncertainties = merged["errors"]
    summary = ToySummary(
        ntoys_sb=merged["ntoys"]["sb"],
        ntoys_b=merged["ntoys"]["b"],
        failed_sb=merged["failed"]["sb"],
        failed_b=merged["failed"]["b"],
        seed=options.seed,
        teststat_obs=observed,
        cls_obs_error=uncertainties["cls_obs"],
        cls_exp_error=tuple(uncertainties["cls_exp"]),
        clsb_obs_error=uncertainties["clsb_obs"],
        clb_obs_error=uncertainties["clb_obs"],
        teststats_sb=encode_array(values["sb"][~np.isnan(values["sb"])], "float32"),
        teststats_b=encode_array(values["b"][~np.isnan(values["b"])], "float32"),
    )
    exp = merged["cls_exp"]
    result = HypotestResult(
        poi_value=test_statistic(options.test_stat).tested_poi(options.poi_value),
        test_stat=options.test_stat,
        cls_obs=merged["cls_obs"],
        cls_exp=(exp[0], exp[1], exp[2], exp[3], exp[4]),
        clsb_obs=merged["clsb_obs"],
        clb_obs=merged["clb_obs"],
        calctype="toybased",
        toys=summary,
    )
    failed = summary.failed_sb + summary.failed_b
    status, reason = "ok", None
    if failed:
        reason = f"{failed} of {2 * total} toys' fits failed (left out of the distributions)"
        if failed > FAILED_SHARE_SUSPECT * 2 * total:
            status = "suspect"
    return Outcome(status, result.to_dict(), None, seconds, reason)


def more_toys(options: InferenceOptions, outcome: Outcome, total: int) -> int | None:
    """How many toys per ensemble ``cls_accuracy`` asks for next (``None``: enough).

    The Monte-Carlo uncertainty falls as 1/sqrt(N): the next total is the one the current
    uncertainty predicts, with 10% to spare, at least one block more, at most
    ``max_toys``.
    """
    if options.cls_accuracy is None or outcome.status == "failed" or outcome.result is None:
        return None
    limit = max(options.max_toys, options.ntoys)
    if total >= limit:
        return None
    error = float(outcome.result["toys"]["errors"]["cls_obs"] or math.nan)
    if math.isfinite(error) and error <= options.cls_accuracy:
        return None
    if math.isfinite(error) and error > 0:
        wanted = math.ceil(total * (error / options.cls_accuracy) ** 2 * 1.1)
    else:  # no estimate yet (no toy beyond the observed value): twice as many
        wanted = 2 * total
    return min(limit, max(wanted, total + options.toy_block_size))
