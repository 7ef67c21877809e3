"""The analyst's fits: an impacts ranking with fitaas's workers against the plain way.

For each case (a published pallet, a patch or the background-only workspace, a POI), in
one run:

- fitaas: ``fitaas.ranking(...)`` on ``--workers`` local workers (the nominal fit in the
  main process, every held fit a task, the fast path);
- the plain way: cabinetry's ``fit.ranking`` procedure, a loop of pyhf MINUIT fits on the
  numpy backend, one after another (what an analyst runs today). With ``--sample K`` only
  the first K nuisance parameters' fits are run and timed, and the full loop's time is
  extrapolated from them (marked ``~``); ``--sample 0`` runs every fit.

Printed per case: fits, wall of each, the ratio, and the largest difference of an impact
between the two (in units of the POI's post-fit error), over the parameters both computed.

Then one point's upper limit (``--limit-pallet``, ``--limit-patch``): pyhf's
``upper_limit`` in one process, and ``fitaas.upper_limit`` on 1 and on ``--workers``
workers (each a fresh engine: worker start included), with the limits and evaluations;
pyhf's runs on fitaas's fast path (``--plain-limit``: also on its own fits, slow).

    python benchmarks/fits.py                               # 1Lbb bkg-only + one point, sbottom A
    python benchmarks/fits.py --sample 0 --case sbottom     # the full plain loop
    python benchmarks/fits.py --case none                   # only the upper limit
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import pyhf

sys.path.insert(0, str(Path(__file__).parent))

import fitaas
from common import pallet_folder
from fitaas.inference import InferenceOptions, build_model, pyhf_backend
from fitaas.inference.ranking import VARIATIONS, RankingResult, prefit_widths

# name: (pallet, patch or None for the background-only workspace, POI or None)
CASES: dict[str, tuple[str, str | None, str | None]] = {
    "1Lbb-bkg": ("1Lbb", None, "mu_Top"),
    "1Lbb-point": ("1Lbb", "C1N2_Wh_hbb_1000_150", None),
    "sbottom": ("sbottom/RegionA", "sbottom_1000_205_60", None),
}


def _plain_ranking(
    model: Any, data: Any, poi: int, sample: int
) -> tuple[dict[str, Any], int, float]:
    """cabinetry's ranking loop with pyhf's MINUIT (numpy), on the first ``sample``
    nuisance parameters (0: all). Returns the impacts by label, the fits made, seconds."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    start = time.perf_counter()
    init = model.config.suggested_init()
    fixed = model.config.suggested_fixed()
    bounds = model.config.suggested_bounds()
    bestfit, errors = pyhf.infer.mle.fit(data, model, return_uncertainties=True).T
    widths = prefit_widths(model, fixed)
    labels = model.config.par_names
    impacts: dict[str, Any] = {}
    fits = 0
    others = [i for i in range(len(labels)) if i != poi]
    for index in others[:sample] if sample else others:
        shifts = (widths[index], -widths[index], errors[index], -errors[index])
        row = []
        for shift in shifts:
            value = min(max(bestfit[index] + shift, bounds[index][0]), bounds[index][1])
            if value == bestfit[index]:
                row.append(0.0)
                continue
            held_init, held_fixed = list(init), list(fixed)
            held_init[index], held_fixed[index] = value, True
            pars = pyhf.infer.mle.fit(data, model, held_init, bounds, held_fixed)
            row.append(float(pars[poi]) - float(bestfit[poi]))
            fits += 1
        impacts[labels[index]] = row
    return impacts, fits, time.perf_counter() - start


def _case(name: str, workers: int, sample: int) -> dict[str, Any]:
    pallet_name, patch, poi = CASES[name]
    folder = pallet_folder(pallet_name)
    pallet = fitaas.load_pallet(folder if patch else folder / "BkgOnly.json")
    start = time.perf_counter()
    ours: RankingResult = fitaas.ranking(
        pallet, patch=patch, poi=poi, compute=fitaas.Compute(workers=workers)
    )
    fitaas_wall = time.perf_counter() - start
    options = InferenceOptions()
    point = pallet.point(patch) if patch else None
    model, data = build_model(
        pyhf.Workspace(pallet.workspace, validate=False),
        point.operations if point else None,
        options,
        without_poi=True,
    )
    index = model.config.par_names.index(ours.poi)
    theirs, fits, plain_wall = _plain_ranking(model, data, index, sample)
    total = ours.fits
    extrapolated = bool(sample) and fits < total
    plain_total = plain_wall / max(fits, 1) * total if extrapolated else plain_wall
    by_label = {impact.parameter: impact for impact in ours.impacts}
    worst = max(
        abs(getattr(by_label[label], variation) - value)
        for label, row in theirs.items()
        for variation, value in zip(VARIATIONS, row, strict=True)
        if math.isfinite(getattr(by_label[label], variation))
    )
    return {
        "case": name,
        "parameters": len(ours.impacts),
        "fits": total,
        "fitaas_s": fitaas_wall,
        "plain_s": plain_total,
        "extrapolated": extrapolated,
        "ratio": plain_total / fitaas_wall,
        "worst": worst / ours.poi_error,
        "compared": len(theirs),
        "failed": len(ours.failed),
    }


def _limits(pallet_name: str, patch: str, workers: int, plain: bool) -> None:
    """One point's upper limit: pyhf's ``upper_limit`` in one process (on fitaas's fast
    path; with ``plain`` also pyhf's own fits), fitaas on 1 and ``workers`` workers."""
    pallet = fitaas.load_pallet(pallet_folder(pallet_name))
    options = InferenceOptions()
    model, data = build_model(
        pyhf.Workspace(pallet.workspace, validate=False), pallet.point(patch).operations, options
    )
    rows = []
    for name, fast in (("pyhf upper_limit, one process, fast path", True), ("pyhf, plain", False)):
        if not fast and not plain:
            continue
        with pyhf_backend(InferenceOptions(fast=fast)):
            start = time.perf_counter()
            obs, exp, (visited, _) = pyhf.infer.intervals.upper_limits.upper_limit(
                data, model, return_results=True
            )
            rows.append((name, time.perf_counter() - start, float(obs), exp, len(visited)))
    for count in sorted({1, workers}):
        start = time.perf_counter()
        found = fitaas.upper_limit(
            pallet, patch=patch, options=options, compute=fitaas.Compute(workers=count)
        )
        wall = time.perf_counter() - start
        rows.append(
            (f"fitaas.upper_limit, {count} worker(s)", wall, found.obs, found.exp, len(found.scan))
        )
    print(f"\nupper limit of {pallet_name} {patch}")
    print("| run | wall s | observed | expected median | CLs evaluations |")
    print("|---|---|---|---|---|")
    for name, wall, observed, expected, evaluations in rows:
        print(
            f"| {name} | {wall:.1f} | {observed:.4f} | {float(expected[2]):.4f} | {evaluations} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=[*sorted(CASES), "none"])
    parser.add_argument("--limit-pallet", default="1Lbb")
    parser.add_argument("--limit-patch", default="C1N2_Wh_hbb_500_150")
    parser.add_argument(
        "--plain-limit", action="store_true", help="also pyhf's own fits (1Lbb: ~30 min)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=6, help="plain-loop parameters (0: all)")
    args = parser.parse_args()
    cases = [c for c in args.case or list(CASES) if c != "none"]
    rows = [_case(name, args.workers, args.sample) for name in cases]
    if rows:
        print(f"\nimpacts ranking, fitaas on {args.workers} workers vs cabinetry's MINUIT loop")
        print(
            "| case | parameters | fits | fitaas s | plain s | ratio "
            "| max |Δimpact| / σ(POI) (params) | failed |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            mark = "~" if row["extrapolated"] else ""
            print(
                f"| {row['case']} | {row['parameters']} | {row['fits']} | {row['fitaas_s']:.1f} | "
                f"{mark}{row['plain_s']:.0f} | {mark}{row['ratio']:.0f}x | {row['worst']:.2g} "
                f"({row['compared']}) | {row['failed']} |"
            )
    if any(row["extrapolated"] for row in rows):
        print("~: the plain loop timed on --sample parameters' fits, scaled to all fits")
    if args.limit_patch:
        _limits(args.limit_pallet, args.limit_patch, args.workers, args.plain_limit)


if __name__ == "__main__":
    main()
