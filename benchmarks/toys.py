"""Toys: pyhf's ToyCalculator against fitaas's toy-based scan on one point, in one run.

    python benchmarks/toys.py --pallet 1Lbb --patch C1N2_Wh_hbb_1000_0 --pyhf-toys 20 --toys 10000

Prints one table: toys per ensemble, wall seconds, CPU seconds per toy (both ensembles
counted), the ratio per toy to pyhf, and CLs (observed, expected median) with their
Monte-Carlo uncertainties. pyhf 0.7.6's toy calculator needs a shim under numpy 2
(``np.percentile(interpolation=...)`` is gone); fitaas does not use it.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from typing import Any

import numpy as np
import pyhf
from threadpoolctl import threadpool_limits

import fitaas
from common import pallet_folder
from fitaas import InferenceOptions


def _shim() -> None:
    from pyhf.tensor.numpy_backend import numpy_backend

    def percentile(
        self: Any, tensor_in: Any, q: Any, axis: Any = None, interpolation: str = ("linear")
    ) -> Any:
        return np.percentile(tensor_in, q, axis=axis, method=interpolation)

    numpy_backend.percentile = percentile  # type: ignore[method-assign]


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_pyhf(pallet: Any, patch: str, ntoys: int, seed: int) -> dict[str, Any]:
    _shim()
    (point,) = pallet.select([patch])
    pyhf.set_backend("numpy", "scipy")
    ws = pyhf.Workspace(pallet.workspace, validate=False)
    model = ws.model(patches=[list(point.operations)])
    data = ws.data(model)
    np.random.seed(seed)
    start, cpu = time.perf_counter(), _cpu()
    with threadpool_limits(1):
        cls, tails, band = pyhf.infer.hypotest(
            1.0, data, model, calctype="toybased", ntoys=ntoys, track_progress=False,
            return_tail_probs=True, return_expected_set=True,
        )  # fmt: skip
    wall, used = time.perf_counter() - start, _cpu() - cpu
    clsb, clb = float(tails[0]), float(tails[1])
    err = float(cls) * math.hypot(
        math.sqrt(clsb * (1 - clsb) / ntoys) / clsb if clsb else 0.0,
        math.sqrt(clb * (1 - clb) / ntoys) / clb if clb else 0.0,
    )
    return {
        "what": "pyhf ToyCalculator (1 process)",
        "toys": ntoys,
        "wall": wall,
        "cpu": used,
        "cls": float(cls),
        "cls_err": err,
        "exp": float(band[2]),
        "exp_err": math.nan,
    }


def run_fitaas(pallet: Any, patch: str, ntoys: int, seed: int, workers: int, fast: bool) -> dict:
    options = InferenceOptions(calctype="toybased", ntoys=ntoys, seed=seed, fast=fast)
    start, cpu = time.perf_counter(), _cpu()
    result = fitaas.scan(
        pallet, patches=[patch], options=options, compute=fitaas.Compute(workers=workers)
    )
    wall, used = time.perf_counter() - start, _cpu() - cpu
    (point,) = result.points
    ht = point.hypotest
    if ht is None or ht.toys is None:
        raise SystemExit(f"fitaas failed: {point.error}")
    return {
        "what": f"fitaas scan, toys {'fast' if fast else 'plain'} ({workers} workers)",
        "toys": ntoys,
        "wall": wall,
        "cpu": used,
        "cls": ht.cls_obs,
        "cls_err": ht.toys.cls_obs_error,
        "exp": ht.cls_exp[2],
        "exp_err": ht.toys.cls_exp_error[2],
        "failed": ht.toys.failed_sb + ht.toys.failed_b,
        "compute": point.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pallet", default="1Lbb")
    parser.add_argument("--patch", default="C1N2_Wh_hbb_1000_0")
    parser.add_argument("--pyhf-toys", type=int, default=20, help="pyhf toys per ensemble")
    parser.add_argument("--toys", type=int, default=2000, help="fitaas toys per ensemble")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="also fitaas --plain (pyhf fits)")
    args = parser.parse_args()
    pallet = fitaas.load_pallet(pallet_folder(args.pallet))
    rows = [run_pyhf(pallet, args.patch, args.pyhf_toys, args.seed)]
    if args.plain:
        rows.append(run_fitaas(pallet, args.patch, args.pyhf_toys, args.seed, args.workers, False))
    rows.append(run_fitaas(pallet, args.patch, args.toys, args.seed, args.workers, True))
    base = rows[0]["cpu"] / (2 * rows[0]["toys"])
    print(f"\n{args.pallet} {args.patch}, mu=1, qtilde; CPU s per toy counts both ensembles\n")
    print("| configuration | toys per ensemble | wall s | CPU s per toy | ratio per toy "
          "| CLs obs | CLs exp (median) | failed toys |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        per_toy = row["cpu"] / (2 * row["toys"])
        print(
            f"| {row['what']} | {row['toys']} | {row['wall']:.1f} | {per_toy:.4f} "
            f"| {base / per_toy:.1f}x | {row['cls']:.4f} ± {row['cls_err']:.4f} "
            f"| {row['exp']:.4f} ± {row['exp_err']:.4f} | {row.get('failed', '–')} |"
        )


if __name__ == "__main__":
    main()
