"""Theory scans: N generated models streamed, against the same models as one patchset.

Models are generated over a pallet's structure: model i is patch ``i mod P`` of the
pallet's patchset with every signal yield (and its modifiers' data) scaled by a
log-uniform factor in [0.3, 3], and its values moved by that factor. They are written to a
JSON Lines file and scanned twice, each in a fresh store:

- streamed (``fitaas.stream_scan(..., output="results.jsonl")``, as ``fitaas scan
  BkgOnly.json --models models.jsonl``),
- as one in-memory patchset (``fitaas.scan(workspace, patchset)``), the way before.

Printed: wall, models per second, peak resident memory of the main process and of the
largest worker (sampled every 0.1 s), and whether the two give the same CLs.

    python benchmarks/theory.py                       # demo: 20,000 models
    python benchmarks/theory.py --models 100000       # the issue's figure
    python benchmarks/theory.py --pallet sbottom/RegionA --models 10000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))

import fitaas
from common import pallet_folder
from fitaas.inputs.json_files import load_json

SCALED = ("data", "hi_data", "lo_data")


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, dict):
        return {
            k: [x * factor for x in v]
            if k in SCALED and isinstance(v, list) and all(isinstance(x, int | float) for x in v)
            else _scaled(v, factor)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scaled(v, factor) for v in value]
    return value


def generated_models(patchset: dict[str, Any], count: int, seed: int = 0) -> Iterator[dict]:
    """``count`` models over the patchset's structure (see the module docstring)."""
    rng = np.random.default_rng(seed)
    patches = patchset["patches"]
    for index in range(count):
        template = patches[index % len(patches)]
        factor = float(math.exp(rng.uniform(math.log(0.3), math.log(3.0))))
        values = [float(v) * factor for v in template["metadata"]["values"]]
        yield {
            "name": f"model_{index}",
            "values": values,
            "patch": [_scaled(op, factor) for op in template["patch"]],
        }


class PeakMemory:
    """Peak resident memory of this process and of its largest child, sampled."""

    def __init__(self, period: float = 0.1) -> None:
        self.main = self.worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                self.main = max(self.main, me.memory_info().rss)
                for child in me.children(recursive=True):
                    self.worker = max(self.worker, child.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(period)

    def __enter__(self) -> PeakMemory:
        self.main = psutil.Process().memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(run: Callable[[], Any]) -> tuple[float, PeakMemory, Any, int]:
    base = psutil.Process().memory_info().rss
    with PeakMemory() as memory:
        start = time.perf_counter()
        out = run()
        wall = time.perf_counter() - start
    return wall, memory, out, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pallet", default="demo", help="demo, or a pallet folder")
    parser.add_argument("--models", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip-patchset", action="store_true", help="stream only")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fitaas-theory-"))
    if args.pallet == "demo":
        from fitaas.inputs.example import write_example

        write_example(work / "demo")
        folder = work / "demo"
    else:
        folder = pallet_folder(args.pallet)
    workspace = folder / "BkgOnly.json"
    patchset_file = next(p for p in folder.iterdir() if p.name.startswith("patchset.json"))
    patchset = load_json(patchset_file)
    labels = list(patchset["metadata"].get("labels") or [])
    models_file = work / "models.jsonl"
    with models_file.open("w") as out:
        for model in generated_models(patchset, args.models):
            out.write(json.dumps(model) + "\n")
    print(
        f"{args.models} models over {args.pallet} in {models_file} "
        f"({models_file.stat().st_size / 1e6:.0f} MB)",
        flush=True,
    )

    rows = []
    wall, memory, summary, base = measure(
        lambda: fitaas.stream_scan(
            workspace,
            models_file,
            labels=labels,
            compute=fitaas.Compute(workers=args.workers),
            store=work / "stream.sqlite",
            output=work / "results.jsonl",
        )
    )
    rows.append(("streamed (--models, JSONL out)", summary.models, wall, memory, base))
    streamed = {p.patch: p.cls_obs for p in fitaas.read_results(work / "results.jsonl")}
    del summary
    agree = "-"
    if not args.skip_patchset:

        def as_patchset() -> Any:
            with models_file.open() as lines:
                models = [json.loads(line) for line in lines]
            spec = {
                "metadata": {**patchset["metadata"], "labels": labels},
                "version": patchset.get("version", "1.0.0"),
                "patches": [
                    {"metadata": {"name": m["name"], "values": m["values"]}, "patch": m["patch"]}
                    for m in models
                ],
            }
            return fitaas.scan(
                workspace,
                spec,
                compute=fitaas.Compute(workers=args.workers),
                store=work / "patchset.sqlite",
            )

        wall, memory, result, base = measure(as_patchset)
        rows.append(("one in-memory patchset (before)", len(result), wall, memory, base))
        differences = [abs((streamed[p.patch] or 0) - (p.cls_obs or 0)) for p in result]
        agree = f"{max(differences):.1e}"
        del result

    print(
        f"\npallet {args.pallet}, {os.cpu_count()} cores; max |dCLs| streamed vs patchset: "
        f"{agree}\n"
    )
    print("| run | models | wall s | models/s | main peak MB | main growth MB | worker peak MB |")
    print("|---|---|---|---|---|---|---|")
    for name, count, wall, memory, base in rows:
        print(
            f"| {name} | {count} | {wall:.1f} | {count / wall:.0f} | "
            f"{memory.main / 1e6:.0f} | {(memory.main - base) / 1e6:.0f} | "
            f"{memory.worker / 1e6:.0f} |"
        )


if __name__ == "__main__":
    main()
