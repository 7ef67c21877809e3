"""Benchmark: the plain pyhf loop versus ``fitaas.scan`` on the same points, in one run.

Usage::

    python benchmarks/scan.py --pallet sbottom/RegionA            # all points
    python benchmarks/scan.py --pallet 1Lbb --points 10           # an even subsample
    python benchmarks/scan.py --pallet 1Lbb --engines local,local+plain  # fast and plain paths
    python benchmarks/scan.py --pallet 1Lbb --engines local,local+lockstep,local+gpu
    python benchmarks/scan.py --pallet 1Lbb --cold-cache

``--pallet`` is a folder under ``../shared/workspaces`` (or any folder holding
``BkgOnly.json`` and ``patchset.json[.gz]``). The plain loop is what an analyst writes:
one process, ``ws.model(patches=[patch])`` and ``pyhf.infer.hypotest`` per point (numpy,
scipy, qtilde, mu=1, expected band). Prints a table with wall time, seconds per point,
the ratio to the plain loop, the largest |ΔCLs| over observed and the five expected values
(and how many points differ by more than 1e-4), and peak memory: the plain process, and
the sum over fitaas's process tree sampled every 0.2 s.

The fast path keeps compiled code in a persistent cache (``~/.cache/fitaas/jax``): a
later scan of the same analysis loads it. ``--cold-cache`` gives each fast run an empty
cache instead, as on a machine that never scanned it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyhf
from rich.console import Console
from rich.table import Table

import fitaas
from common import pallet_folder
from fitaas.engines import default_workers
from fitaas.engines.endpoint import engine_from_settings
from fitaas.inputs.pallets import Pallet, load_pallet

# The paths a configuration's +flag chooses (no flag: fitaas's default).
PATHS: dict[str, dict[str, Any]] = {
    "": {},
    "fast": {"fast": True},
    "plain": {"fast": False},
    "lockstep": {"lockstep": True},
    "gpu": {"lockstep": True},  # (the engine's device: the GPU fits in lockstep)
}


def plain_loop(pallet: Pallet, names: list[str]) -> dict[str, list[float]]:
    """CLs (observed + 5 expected) per point, the plain pyhf way, in this process."""
    pyhf.set_backend("numpy", "scipy")
    ws = pyhf.Workspace(pallet.workspace)
    ops = {p.name: list(p.operations) for p in pallet.points}
    out = {}
    for name in names:
        try:
            model = ws.model(patches=[ops[name]])
        except pyhf.exceptions.InvalidModel:  # (a patch without the POI: fitaas fails it too)
            out[name] = [float("nan")] * 6
            continue
        obs, exp = pyhf.infer.hypotest(
            1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True
        )
        out[name] = [float(obs), *(float(e) for e in exp)]
    return out


def _delta(x: float, y: float) -> float:
    """|x - y|, 0 where both are NaN (0/0 at a point without sensitivity, in both), inf
    where one is."""
    if math.isnan(x) or math.isnan(y):
        return 0.0 if math.isnan(x) and math.isnan(y) else math.inf
    return abs(x - y)


def max_delta(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    """Largest absolute CLs difference over all points and values."""
    return max(_delta(x, y) for name in a for x, y in zip(a[name], b[name], strict=True))


def differing(a: dict[str, list[float]], b: dict[str, list[float]], limit: float = 1e-4) -> int:
    """Points whose CLs differ by more than ``limit`` anywhere."""
    return sum(
        any(_delta(x, y) > limit for x, y in zip(a[name], b[name], strict=True)) for name in a
    )


class TreeMemory:
    """Peak of the summed RSS of this process's children (the workers), sampled."""

    def __init__(self, every: float = 0.2) -> None:
        import psutil

        self.peak = 0.0
        self._stop = threading.Event()
        self._me = psutil.Process(os.getpid())
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for child in self._me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total / 2**20)
            self._stop.wait(every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pallet", default="sbottom/RegionA")
    parser.add_argument("--points", type=int, default=0, help="even subsample (0: all)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument(
        "--engines",
        default="local",
        help="comma-separated engines to run fitaas on: local, parsl, dask, each with "
        "fitaas's default path (the fast one) or +plain for pyhf's own fits, +fast to insist, "
        "+lockstep for the fast path's fits in lockstep, +gpu for them on the GPU (one "
        "worker, or --workers sharing it) (default: local)",
    )
    parser.add_argument(
        "--save", type=Path, help="write every configuration's CLs per point to this JSON file"
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="an empty compilation cache for each fast run (default: the user's cache)",
    )
    args = parser.parse_args()

    folder = pallet_folder(args.pallet)
    pallet = load_pallet(folder)
    names = [str(p.name) for p in pallet.points]
    if args.points and args.points < len(names):
        step = len(names) / args.points
        names = [names[int(i * step)] for i in range(args.points)]

    rows: list[tuple[str, float, dict[str, list[float]], float]] = []
    reference: dict[str, list[float]] | None = None
    if not args.skip_plain:
        start = time.perf_counter()
        reference = plain_loop(pallet, names)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(("plain pyhf loop (1 process)", time.perf_counter() - start, reference, rss))

    workers = args.workers or default_workers()
    for config in args.engines.split(","):
        name, _, flag = config.partition("+")
        settings: dict[str, Any] = {"engine": name, "workers": workers}
        if flag not in PATHS:
            parser.error(f"--engines: '+{flag}' is not one of +{', +'.join(PATHS[1:])}")
        # no flag: fitaas's default (the fast path wherever it applies)
        options = fitaas.InferenceOptions(**PATHS[flag])
        if flag == "gpu":  # one worker per GPU, unless --workers shares it among several
            settings.update(device="gpu", workers=args.workers or 1)
        first: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            if args.cold_cache:  # read by the workers, started below
                os.environ["FITAAS_JAX_CACHE"] = str(Path(tmp) / "jax")
            start = time.perf_counter()

            def progress(
                state: fitaas.ScanProgress, t0: float = start, first: list[float] = first
            ) -> None:
                if state.done and not first:
                    first.append(time.perf_counter() - t0)

            with TreeMemory() as memory, engine_from_settings(settings) as engine:
                result = fitaas.scan(
                    pallet,
                    patches=names,
                    options=options,
                    compute=engine,
                    store=Path(tmp) / "s.sqlite",
                    progress=progress,
                )
            wall = time.perf_counter() - start
        ours: dict[str, Any] = {
            str(p.patch): [p.hypotest.cls_obs, *p.hypotest.cls_exp]
            if p.hypotest
            else [float("nan")] * 6
            for p in result
        }
        path = "fast path" if options.fast else "plain path"
        path += ", lockstep" if options.lockstep else ""
        path += ", GPU" if flag == "gpu" else ""
        cache = ", cold cache" if args.cold_cache and options.fast else ""
        label = (
            f"fitaas scan, {name}, {path} ({settings['workers']} workers{cache}; "
            f"first result {first[0] if first else math.nan:.1f} s)"
        )
        rows.append((label, wall, ours, memory.peak))
        if result.failed:
            Console().print(f"[red]{name}: {len(result.failed)} points failed")

    table = Table(title=f"{folder.name}: {len(names)} points, CLs at mu=1 (qtilde, numpy/scipy)")
    for column in (
        "configuration",
        "points",
        "wall s",
        "s/point",
        "ratio to plain",
        "max |ΔCLs|",
        "points > 1e-4",
        "peak RSS MB",
    ):
        table.add_column(column, justify="right")
    plain_wall = rows[0][1] if reference is not None else None
    for label, seconds, values, memory in rows:
        table.add_row(
            label,
            str(len(values)),
            f"{seconds:.1f}",
            f"{seconds / len(values):.3f}",
            f"{plain_wall / seconds:.2f}x" if plain_wall else "—",
            f"{max_delta(values, reference):.1e}" if reference is not None else "—",
            str(differing(values, reference)) if reference is not None else "—",
            f"{memory:.0f}" + (" (all workers)" if "fitaas" in label else ""),
        )
    Console(width=150).print(table)
    if reference is not None:
        for label, _, values, _ in rows[1:]:
            for name in names:
                delta = max_delta({name: values[name]}, {name: reference[name]})
                if not delta <= 1e-4:
                    Console().print(f"{label.split(' (')[0]}: {name} differs by {delta:.1e}")
    if args.save:
        args.save.write_text(json.dumps({label: values for label, _, values, _ in rows}))


if __name__ == "__main__":
    main()
