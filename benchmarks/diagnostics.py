"""Per pallet: status counts with the fit checks, rescues by retries, second starts and mirror
starts, what the checks and the mirror starts cost, and agreement with the best minimum any
strategy finds.

References (``--reference``), each a scan of its own: ``tight`` (the fast path's SLSQP at
tolerance 1e-10, no retries), ``strict`` (trust-region Newton with the exact Hessian for
every fit) and ``thorough`` (the default strategies plus a second start for every point).
Per point, the best minimum is taken fit by fit: each of the test's five fits (mu = 1 and
free on the observed data, the background-only fit that makes the Asimov data, mu = 1 and
free on those) at the lowest -2lnL any scan reached (the Asimov fits only from scans whose
background-only fit was the lowest, so that their Asimov data are the same); CLs follows
from those q and q_A by the asymptotic formulas, and the default scan's ``ok`` points are
compared with it (their own CLs recomputed the same way from their own fits). Points whose
fits are not the five of a q-tilde test are compared with the reference whose unconditional
fit of the observed data is the lowest.

Generated sets (``--ill-scaled N``, ``--kinks N``: N models each, from
``tests/stress_models.py``) are tested one point at a time (``checked_hypotest``, the path a
worker takes): the default strategies against references made of the strict strategy
(MINUIT with the exact gradient, then Newton), pyhf's own fits at tolerance 1e-10, and for
the three fits of the observed data the lowest minimum of pyhf at tolerance 1e-12 from
pyhf's start and 24 random starts. Per set: points ok / suspect / failed, fits of the observed
data above that best minimum by more than 1e-4, points that record several minima, the
largest |ΔCLs| of an ``ok`` point from the CLs of the lowest fits (those of different runs
combined: their values agree only to the rounding of -2lnL) and from the strict run's own
CLs where its three observed fits end at the same minima (within 1e-3), and the time share of
the checks and retries.

Usage::

    python benchmarks/diagnostics.py sbottom/RegionA sbottom/RegionB 1Lbb --reference
    python benchmarks/diagnostics.py --ill-scaled 10 --kinks 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import fitaas
from common import pallet_folder
from fitaas import InferenceOptions
from fitaas.inference.verdicts import _cls_of_fits

REFERENCES = {
    "tight": InferenceOptions(tolerance=1e-10, retry_strategy="none"),
    "strict": InferenceOptions(retry_strategy="strict"),
    "thorough": InferenceOptions(retry_strategy="thorough"),
}
OFF = 1e-3


def _observed_minimum(point: Any) -> float:
    """-2lnL of the point's unconditional fit of the observed data (inf if none)."""
    fits = [
        f
        for f in (point.diagnostics or {}).get("fits", [])
        if f.get("observed") and not f["conditional"]
    ]
    return float(fits[-1]["twice_nll"]) if fits and point.hypotest else float("inf")


def _cls(point: Any) -> list[float]:
    return [point.hypotest.cls_obs, *point.hypotest.cls_exp]


def _fits(point: Any) -> list[float] | None:
    """-2lnL of a q-tilde test's five fits, in pyhf's order; ``None`` if it has others."""
    fits = (point.diagnostics or {}).get("fits", [])
    kinds = [(f["conditional"], f["observed"]) for f in fits]
    if point.hypotest is None or kinds != [(1, 1), (0, 1), (1, 1), (1, 0), (0, 0)]:
        return None
    return [float(f["twice_nll"]) for f in fits]


def _cls_from_fits(fits: list[float], clipped: bool, tilde: bool = True) -> list[float]:
    """Observed and expected CLs (asymptotic) from the five fits' -2lnL."""
    return [float(v) for v in _cls_of_fits(fits, clipped, tilde)]


def _best_fits(points: list[Any]) -> list[float] | None:
    """The lowest -2lnL of each fit among ``points`` (one per scan), see the module's text."""
    found = [f for f in map(_fits, points) if f is not None]
    if len(found) < len(points):
        return None
    background = min(f[2] for f in found)
    same = [f for f in found if f[2] <= background + 1e-6]
    return [
        min(f[0] for f in found),
        min(f[1] for f in found),
        background,
        min(f[3] for f in same),
        min(f[4] for f in same),
    ]


def _scan(folder: Path, options: InferenceOptions, store: Path) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fitaas.scan(folder, options=options, store=store)
    return result, time.perf_counter() - start


def _generated_point(spec: dict[str, Any], options: InferenceOptions) -> dict[str, Any]:
    """One generated model's test with the default strategies and the references."""
    import dataclasses

    import pyhf

    from fitaas.fast import StructureCache
    from fitaas.inference.diagnostics import checked_hypotest
    from fitaas.inference.models import build_model
    from stress_models import best_minimum

    model, data = build_model(pyhf.Workspace(spec), None, options)
    runs = {}
    for label, chosen in (
        ("default", options),
        ("strict", dataclasses.replace(options, retry_strategy="strict")),
        (
            "pyhf 1e-10",
            dataclasses.replace(options, fast=False, tolerance=1e-10, retry_strategy="none"),
        ),
    ):
        began = time.perf_counter()
        result, diagnosis = checked_hypotest(model, data, chosen, StructureCache())
        runs[label] = (result, diagnosis, time.perf_counter() - began)
    poi = model.config.poi_index
    pyhf.set_backend("numpy", "scipy")
    observed_best = [
        best_minimum(model, data, {poi: 1.0})[0],
        best_minimum(model, data, None)[0],
        best_minimum(model, data, {poi: 0.0})[0],
    ]
    return {"runs": runs, "observed_best": observed_best}


def _generated_row(name: str, points: list[dict[str, Any]], tilde: bool) -> list[str]:
    statuses = [p["runs"]["default"][1].status for p in points]
    above, several, deltas, wall, checks, retries = 0, 0, [], 0.0, 0.0, 0.0
    minuit: list[float] = []  # |ΔCLs| from the strict run's, where both found one minimum
    for point in points:
        result, diagnosis, seconds = point["runs"]["default"]
        wall += seconds
        checks += diagnosis.check_seconds
        if diagnosis.attempts > 1 or getattr(diagnosis, "rounds", 0):
            retries += seconds
        fits = [f.twice_nll for f in diagnosis.fits]
        all_fits = [
            [f.twice_nll for f in run[1].fits]
            for run in point["runs"].values()
            if run[0] is not None and len(run[1].fits) == 5
        ]
        if len(fits) != 5 or not all_fits:
            continue
        best = [min(f[i] for f in all_fits) for i in range(5)]
        best[:3] = [min(a, b) for a, b in zip(best[:3], point["observed_best"], strict=True)]
        background = best[2]
        same = [f for f in all_fits if f[2] <= background + 1e-6] or all_fits
        best[3], best[4] = min(f[3] for f in same), min(f[4] for f in same)
        above += sum(fits[i] - best[i] > 1e-4 for i in range(3))
        several += bool(getattr(diagnosis, "several_minima", ()))
        strict_result, strict = point["runs"]["strict"][:2]
        strict_fits = [f.twice_nll for f in strict.fits]
        if (
            diagnosis.status == "ok"
            and result is not None
            and strict_result is not None
            and len(strict_fits) == 5
            and max(abs(a - b) for a, b in zip(fits[:3], strict_fits[:3], strict=True)) < OFF
        ):
            ours = [result.cls_obs, *result.cls_exp]
            theirs_ = [strict_result.cls_obs, *strict_result.cls_exp]
            minuit.append(max(abs(float(a) - float(b)) for a, b in zip(ours, theirs_, strict=True)))
        if diagnosis.status == "ok" and result is not None:
            clipped = result.clsb_obs >= 0.5
            mine = _cls_from_fits(fits, clipped, tilde)
            theirs = _cls_from_fits(best, clipped, tilde)
            deltas.append(max(abs(a - b) for a, b in zip(mine, theirs, strict=True)))
    return [
        name,
        str(len(points)),
        str(statuses.count("ok")),
        str(statuses.count("suspect")),
        str(statuses.count("failed")),
        f"{above} of {3 * len(points)}",
        str(several),
        f"{max(deltas):.1e}" if deltas else "–",
        f"{max(minuit):.1e} ({len(minuit)})" if minuit else "–",
        f"{checks / wall:.1%}" if wall else "–",
        f"{retries / wall:.1%}" if wall else "–",
        f"{wall:.1f}",
    ]


def generated(ill_scaled: int, kinks: int, console: Console) -> None:
    """The generated sets' table (see the module's text)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from stress_models import KINK_SETTINGS, ill_scaled_workspace, kink_workspace

    table = Table(title="Fit checks on generated models (one point at a time, fast path)")
    for column in (
        "set",
        "points",
        "ok",
        "suspect",
        "failed",
        "observed fits above the best minimum by > 1e-4",
        "points with several minima",
        "max |ΔCLs| ok vs lowest fits",
        "max |ΔCLs| ok vs MINUIT at the same minimum (points)",
        "checks share",
        "retries share",
        "wall s (default)",
    ):
        table.add_column(column, justify="right")
    sets = (
        ("ill-scaled", ill_scaled, ill_scaled_workspace, InferenceOptions(), True),
        (
            "kinks (code1/code0, q)",
            kinks,
            kink_workspace,
            InferenceOptions(test_stat="q", modifier_settings=KINK_SETTINGS),
            False,
        ),
    )
    for name, count, make, options, tilde in sets:
        if not count:
            continue
        points = []
        for seed in range(count):
            point = _generated_point(make(seed), options)
            default = point["runs"]["default"]
            console.print(
                f"  {name} {seed}: {default[1].status} ({default[1].strategy}) fits "
                + ", ".join(f"{f.twice_nll:.4f}" for f in default[1].fits)
                + " | best observed "
                + ", ".join(f"{v:.4f}" for v in point["observed_best"])
                + "".join(f"\n      {r}" for r in default[1].reasons)
                + "".join(f"\n      {n}" for n in getattr(default[1], "notes", ()))
            )
            points.append(point)
        table.add_row(*_generated_row(name, points, tilde))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pallets", nargs="*")
    parser.add_argument("--reference", action="store_true", help="also scan the references")
    parser.add_argument("--ill-scaled", type=int, default=0, help="generated ill-scaled models")
    parser.add_argument("--kinks", type=int, default=0, help="generated models with kinks")
    args = parser.parse_args()
    console = Console(width=200)
    if args.ill_scaled or args.kinks:
        generated(args.ill_scaled, args.kinks, console)
    if not args.pallets:
        return
    table = Table(title="Fit checks per pallet (numpy/scipy, fast path, qtilde, mu=1)")
    for column in (
        "pallet",
        "points",
        "ok",
        "suspect",
        "failed",
        "rescued by a retry",
        "second starts (won)",
        "points lowered by mirrors",
        "checks share",
        "mirrors share",
        "retries share",
        "wall s",
        "max |ΔCLs| ok vs best",
        f"ok off by > {OFF:g}",
        "suspect, clean in a reference",
        "best minimum from",
    ):
        table.add_column(column, justify="right")
    walls: dict[str, float] = {}
    for name in args.pallets:
        folder = pallet_folder(name)
        with tempfile.TemporaryDirectory() as tmp:
            result, wall = _scan(folder, InferenceOptions(), Path(tmp) / "default.sqlite")
            references = {}
            for label, options in REFERENCES.items() if args.reference else ():
                references[label], walls[f"{name} {label}"] = _scan(
                    folder, options, Path(tmp) / f"{label}.sqlite"
                )
        retried = [p for p in result if (p.diagnostics or {}).get("attempts", 1) > 1]
        rescued = [p for p in retried if p.ok]
        total = sum(p.seconds for p in result) or 1.0
        checks = sum((p.diagnostics or {}).get("check_seconds", 0.0) for p in result) / total
        retries = sum(p.seconds for p in retried) / total
        mirrors = sum((p.diagnostics or {}).get("mirror_seconds", 0.0) for p in result) / total
        starts = [(p.diagnostics or {}).get("second_start") for p in result]
        ran = [g for g in starts if g is not None]
        won = [g for g in ran if g > 1e-4]
        mirrored = [
            p
            for p in result
            if any(f.get("mirror_gain", 0.0) > 0 for f in (p.diagnostics or {}).get("fits", []))
        ]
        delta, off, clean, sources = "–", "–", "–", "–"
        if references:
            deltas, tally, clean_count = [], dict.fromkeys(references, 0), 0
            for point in result:
                others = {label: ref[point.patch] for label, ref in references.items()}
                label = min(others, key=lambda k: _observed_minimum(others[k]))
                best = others[label]
                if best.hypotest is None:
                    continue
                tally[label] += 1
                if point.ok and point.hypotest:
                    lowest = _best_fits([point, *others.values()])
                    own = _fits(point)
                    if lowest is not None and own is not None:
                        clipped = point.hypotest.clsb_obs >= 0.5  # q = 0 (mu-hat above mu)
                        mine = _cls_from_fits(own, clipped)
                        theirs = _cls_from_fits(lowest, clipped)
                        label = "the lowest fits of all"
                    else:
                        mine, theirs = _cls(point), _cls(best)
                    d = max(abs(a - b) for a, b in zip(mine, theirs, strict=True))
                    deltas.append(d)
                    if d > OFF:
                        console.print(
                            f"  {name} {point.patch}: ok ({point.diagnostics['strategy']}) but "
                            f"off by {d:.1e} from {label} (fits above the lowest by "
                            + ", ".join(
                                f"{a - b:.2g}" for a, b in zip(own or [], lowest or [], strict=True)
                            )
                            + ")"
                        )
                elif not point.ok and any(o.ok for o in others.values()):
                    clean_count += 1
                    console.print(
                        f"  {name} {point.patch}: {point.status}, ok in "
                        + ", ".join(k for k, o in others.items() if o.ok)
                    )
            delta = f"{max(deltas):.1e}" if deltas else "–"
            off = str(sum(d > OFF for d in deltas))
            clean = str(clean_count)
            sources = " / ".join(f"{k} {v}" for k, v in tally.items())
        table.add_row(
            name,
            *result.status_cells(),
            str(len(rescued)),
            f"{len(ran)} ({len(won)})",
            str(len(mirrored)),
            f"{checks:.1%}",
            f"{mirrors:.1%}",
            f"{retries:.1%}",
            f"{wall:.0f}",
            delta,
            off,
            clean,
            sources,
        )
        for point in [*result.suspect, *result.failed]:
            console.print(f"  {name} {point.patch}: {point.status}: {point.reason or point.error}")
    console.print(table)
    if walls:
        console.print("reference walls: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items()))


if __name__ == "__main__":
    main()
