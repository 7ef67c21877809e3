"""Benchmark: a scan at 1, 2, ... N local workers, where its fixed cost goes, and T(N).

Usage::

    python benchmarks/scaling.py                                 # 1Lbb and sbottom/RegionA
    python benchmarks/scaling.py --pallets 1Lbb --workers 1,2,4,8,16
    python benchmarks/scaling.py --cold                          # empty caches for every run

Every run is a fresh Python process doing what ``fitaas scan`` does (import fitaas, load
and validate the pallet, start the local workers, scan every point, default fast path,
results kept in memory), so imports and worker start are measured as a user pays them.
For each pallet and worker count it prints the wall time from the process's start, the
time to the first result, the speed-up and efficiency T(1) / (N · T(N)); then the parts:
imports, load and validation (first time and remembered), worker start (pools of each
size, timed until every worker has run a task), compile per structure (empty and warm
compile cache), and the per-point compute (sum and longest). From those parts a model

    T(N) = imports + load + start(N) + (compute) / N + longest point / 2

predicts T(N) for worker counts this machine does not have (``--predict 16``; start(N)
extrapolated linearly from the largest two pools measured), and the efficiency
T(2) / (8 · T(16)) the issue targets. It is a benchmark, not a timed test.

Caches: by default the caches (``FITAAS_CACHE``: compiled code, workspace files,
validated digests) are warmed by one run first and kept, as on a machine that scanned
the analysis before; ``--cold`` gives every run an empty cache folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from common import pallet_folder


def child_scan(pallet_path: str, workers: int) -> dict[str, Any]:
    """In a fresh process: what a ``fitaas scan`` run spends, by phase."""
    start = time.time()
    import fitaas
    from fitaas.inputs.pallets import load_pallet

    imported = time.time()
    pallet = load_pallet(pallet_path)
    loaded = time.time()
    first: list[float] = []

    def progress(state: Any) -> None:
        if state.latest is not None and not first:
            first.append(time.time())

    result = fitaas.scan(pallet, compute=fitaas.Compute(workers=workers), progress=progress)
    end = time.time()
    seconds = [p.seconds for p in result.points]
    return {
        "start": start,
        "imports": imported - start,
        "load": loaded - imported,
        "first": first[0] - start if first else float("nan"),
        "wall": end - start,
        "compute": sum(seconds),
        "longest": max(seconds),
        "points": len(seconds),
        "failed": sum(p.status == "failed" for p in result.points),
    }


def child_parts(pallet_path: str, pools: list[int]) -> dict[str, Any]:
    """In a fresh process: validation (first and remembered), worker start, compiling."""
    import pyhf

    from fitaas import InferenceOptions
    from fitaas.caches import cache_folder
    from fitaas.engines import LocalEngine
    from fitaas.fast import StructureCache
    from fitaas.inference.models import build_model
    from fitaas.inputs.pallets import load_pallet

    out: dict[str, Any] = {}
    begin = time.perf_counter()
    pallet = load_pallet(pallet_path)
    out["load_remembered"] = time.perf_counter() - begin
    for marker in cache_folder("validated").glob("*"):
        marker.unlink()
    begin = time.perf_counter()
    load_pallet(pallet_path)
    out["load_first"] = time.perf_counter() - begin
    out["start"] = {}
    for workers in pools:
        begin = time.perf_counter()
        with LocalEngine(workers) as engine:
            engine.install(pallet.workspace_digest, pallet.workspace)
            futures = [engine.executor.submit(time.sleep, 0.5) for _ in range(workers)]
            for future in futures:
                future.result()
            out["start"][workers] = time.perf_counter() - begin - 0.5
    ws = pyhf.Workspace(pallet.workspace, validate=False)
    options = InferenceOptions()
    models = [build_model(ws, p.operations, options)[0] for p in pallet.points[::8]]
    for label in ("compile_cold", "compile_warm"):
        if label == "compile_cold":
            os.environ["FITAAS_JAX_CACHE"] = tempfile.mkdtemp(prefix="fitaas-jax-")
        cache = StructureCache()
        spent = 0.0
        for model in models:
            before, begin = cache.compiled, time.perf_counter()
            cache.bound(model, None)
            if cache.compiled > before:
                spent += time.perf_counter() - begin
        out[label] = spent / max(cache.compiled, 1)
        out["structures"] = cache.compiled
        if label == "compile_cold":  # the next process-level compile reads this cache
            import jax

            jax.clear_caches()
    return out


def _run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if "start" in found and isinstance(found["start"], float):
        offset = found["start"] - spawned  # the interpreter's own start
        for key in ("wall", "first"):
            found[key] += offset
        found["imports"] += offset
    return found


def model_time(parts: dict[str, Any], run: dict[str, Any], workers: int) -> float:
    """T(N) from the measured parts (see the module docstring)."""
    starts = {int(k): v for k, v in parts["start"].items()}
    sizes = sorted(starts)
    if workers in starts:
        start = starts[workers]
    else:
        low, high = sizes[-2:] if len(sizes) > 1 else (sizes[0], sizes[0])
        slope = (starts[high] - starts[low]) / (high - low) if high > low else 0.0
        start = starts[high] + slope * (workers - high)
    return float(
        run["imports"]
        + parts["load_remembered"]
        + start
        + run["compute"] / workers
        + run["longest"] / 2
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pallets", default="1Lbb,sbottom/RegionA")
    parser.add_argument("--workers", default="", help="e.g. 1,2,4 (default: 1, 2, ... cores)")
    parser.add_argument("--predict", type=int, default=16, help="model T(N) up to this N")
    parser.add_argument("--cold", action="store_true", help="an empty cache for every run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, pallet, *rest = args.child
        if mode == "scan":
            found = child_scan(pallet, int(rest[0]))
        else:
            found = child_parts(pallet, [int(n) for n in rest])
        print(json.dumps(found))
        return

    from rich.console import Console
    from rich.table import Table

    cores = len(os.sched_getaffinity(0))
    counts = (
        [int(n) for n in args.workers.split(",")] if args.workers else [1, *range(2, cores + 1)]
    )
    console = Console()
    base_env = dict(os.environ)
    warm_cache = tempfile.mkdtemp(prefix="fitaas-cache-")
    for name in args.pallets.split(","):
        path = str(pallet_folder(name))
        env = {**base_env, "FITAAS_CACHE": warm_cache}
        env.pop("FITAAS_JAX_CACHE", None)
        if not args.cold:
            _run_child(["scan", path, str(counts[-1])], env)  # warms the caches
        runs = {}
        for workers in counts:
            if args.cold:
                env = {**env, "FITAAS_CACHE": tempfile.mkdtemp(prefix="fitaas-cache-")}
            runs[workers] = _run_child(["scan", path, str(workers)], env)
        parts = _run_child(["parts", path, *map(str, counts)], env)

        table = Table(
            title=f"{name}: scans ({'empty' if args.cold else 'warm'} caches, {cores} cores)"
        )
        for column in ("workers", "wall s", "first result s", "speed-up", "efficiency", "model s"):
            table.add_column(column, justify="right")
        one = runs[counts[0]]["wall"] * counts[0]
        for workers, run in runs.items():
            table.add_row(
                str(workers),
                f"{run['wall']:.1f}",
                f"{run['first']:.2f}",
                f"{one / run['wall']:.2f}x",
                f"{one / (workers * run['wall']):.2f}",
                f"{model_time(parts, run, workers):.1f}",
            )
        reference = runs[counts[-1]]
        for workers in sorted({4, 8, args.predict} - set(runs)):
            if workers > counts[-1]:
                table.add_row(
                    f"{workers} (model)",
                    "",
                    "",
                    "",
                    "",
                    f"{model_time(parts, reference, workers):.1f}",
                )
        console.print(table)

        two = runs.get(2, reference)
        t2, t16 = model_time(parts, two, 2), model_time(parts, reference, args.predict)
        fixed = Table(title=f"{name}: where the time goes")
        fixed.add_column("part")
        fixed.add_column("seconds", justify="right")
        fixed.add_row("imports (process start to fitaas imported)", f"{reference['imports']:.2f}")
        fixed.add_row("load + validate, first time", f"{parts['load_first']:.2f}")
        fixed.add_row("load + validate, digest remembered", f"{parts['load_remembered']:.2f}")
        for workers, seconds in parts["start"].items():
            fixed.add_row(f"worker start, pool of {workers}", f"{seconds:.2f}")
        fixed.add_row(
            f"compile per structure ({parts['structures']}), empty cache",
            f"{parts['compile_cold']:.2f}",
        )
        fixed.add_row("compile per structure, warm cache", f"{parts['compile_warm']:.2f}")
        fixed.add_row(
            f"compute, sum over {reference['points']} points", f"{reference['compute']:.1f}"
        )
        fixed.add_row("compute, longest point", f"{reference['longest']:.2f}")
        fixed.add_row(
            f"model: T(2) / ({args.predict // 2} * T({args.predict}))",
            f"{t2 / (args.predict // 2 * t16):.2f}",
        )
        console.print(fixed)


if __name__ == "__main__":
    main()
