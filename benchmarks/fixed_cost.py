"""Benchmark: what one point costs on the command line beyond its own fits, side by side with
the plain pyhf way (a fresh Python that imports pyhf, loads the pallet, patches and tests).

Each run is a fresh process, as a user's is: ``fitaas scan`` of a one-patch patchset (its
wall time, the point's own seconds from the results file, their difference: the fixed cost)
and the plain pyhf script. Runs alternate; the compile cache is the user's (warm after the
first run).

    python benchmarks/fixed_cost.py                     # 1Lbb's first patch, 3 runs each
    python benchmarks/fixed_cost.py --pallet sbottom/RegionA --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common import pallet_folder

PLAIN = """
import sys, time, json, gzip
start = time.perf_counter()
import pyhf
def load(path):
    raw = open(path, "rb").read()
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\\x1f\\x8b" else raw)
ws = pyhf.Workspace(load(sys.argv[1]))
patchset = pyhf.PatchSet(load(sys.argv[2]))
model = ws.model(patches=[patchset.patches[0]])
cls = pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde")
print(json.dumps({"cls": float(cls), "seconds": time.perf_counter() - start}))
"""


def _files(folder: Path) -> tuple[Path, Path]:
    workspace = next(p for p in folder.iterdir() if p.name.lower().startswith("bkgonly"))
    patchset = next(p for p in folder.iterdir() if p.name.startswith("patchset"))
    return workspace, patchset


def _load(path: Path) -> Any:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pallet", default="1Lbb")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-plain", action="store_true")
    args = parser.parse_args()
    workspace, patchset = _files(pallet_folder(args.pallet))
    spec = _load(patchset)
    spec["patches"] = spec["patches"][:1]
    name = spec["patches"][0]["metadata"]["name"]
    rows: list[tuple[str, float, float | None, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one_patch.json"
        one.write_text(json.dumps(spec))
        fitaas = Path(sys.executable).with_name("fitaas")
        for run in range(args.runs):
            store, out = Path(tmp) / f"s{run}.sqlite", Path(tmp) / f"r{run}.json"
            begin = time.perf_counter()
            command = [str(fitaas), "scan", str(workspace), str(one), "-q", "-o", str(out)]
            subprocess.run([*command, "--store", str(store)], check=True, env=os.environ)
            wall = time.perf_counter() - begin
            point = json.loads(out.read_text())["results"][0]
            rows.append(("fitaas scan (one point)", wall, point["seconds"], point["cls_obs"]))
            if args.skip_plain:
                continue
            begin = time.perf_counter()
            found = subprocess.run(
                [sys.executable, "-c", PLAIN, str(workspace), str(one)],
                check=True,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - begin
            plain = json.loads(found.stdout.strip().splitlines()[-1])
            rows.append(("plain pyhf (import, load, patch, hypotest)", wall, None, plain["cls"]))
    table = Table(title=f"{args.pallet}: one point ({name}), a fresh process per run")
    for column in ("way", "wall s", "the point's own s", "fixed cost s", "CLs obs"):
        table.add_column(column, justify="right")
    plain_walls = [wall for way, wall, _, _ in rows if way.startswith("plain")]
    for way, wall, own, cls in rows:
        fixed = f"{wall - own:.2f}" if own is not None else "—"
        table.add_row(
            way, f"{wall:.2f}", f"{own:.2f}" if own is not None else "—", fixed, f"{cls:.6f}"
        )
    Console().print(table)
    if plain_walls:
        ours = [wall for way, wall, _, _ in rows if not way.startswith("plain")]
        ratio = min(plain_walls) / min(ours)
        Console().print(
            f"best wall: plain {min(plain_walls):.2f} s, fitaas {min(ours):.2f} s ({ratio:.1f}x)"
        )


if __name__ == "__main__":
    main()
