"""Per pallet: status counts with the fit checks, rescues by retries, and agreement with a
tight-tolerance reference (scipy tolerance 1e-10, no retries).

Usage::

    python benchmarks/diagnostics.py sbottom/RegionA sbottom/RegionB 1Lbb --reference
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import fitaas
from fitaas import InferenceOptions

WORKSPACES = Path(__file__).resolve().parents[2] / "shared" / "workspaces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pallets", nargs="+")
    parser.add_argument("--reference", action="store_true", help="also scan with tight tolerance")
    args = parser.parse_args()
    table = Table(title="Fit checks per pallet (numpy/scipy, qtilde, mu=1)")
    for column in (
        "pallet",
        "points",
        "ok",
        "suspect",
        "failed",
        "rescued",
        "retry share of time",
        "wall s",
        "max |ΔCLs| ok vs tight",
        "ok points off by > 1e-3",
    ):
        table.add_column(column, justify="right")
    for name in args.pallets:
        folder = Path(name) if Path(name).is_dir() else WORKSPACES / name
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = fitaas.scan(folder, store=Path(tmp) / "s.sqlite")
            wall = time.perf_counter() - start
            reference = None
            if args.reference:
                tight = InferenceOptions(tolerance=1e-10, retry_strategy="none")
                reference = fitaas.scan(folder, options=tight, store=Path(tmp) / "s.sqlite")
        counts = result.counts()
        retried = [p for p in result if (p.diagnostics or {}).get("attempts", 1) > 1]
        rescued = [p for p in retried if p.ok]
        total = sum(p.seconds for p in result) or 1.0
        share = sum(p.seconds for p in retried) / total
        delta, off = "–", "–"
        if reference is not None:
            deltas = [
                max(
                    abs(a - b)
                    for a, b in zip(
                        [p.hypotest.cls_obs, *p.hypotest.cls_exp],
                        [r.hypotest.cls_obs, *r.hypotest.cls_exp],
                        strict=True,
                    )
                )
                for p, r in zip(result, reference, strict=True)
                if p.ok and p.hypotest and r.hypotest
            ]
            delta = f"{max(deltas):.1e}" if deltas else "–"
            off = str(sum(d > 1e-3 for d in deltas))
            for p, r in zip(result, reference, strict=True):
                if p.ok and p.hypotest and r.hypotest:
                    d = max(
                        abs(a - b)
                        for a, b in zip(
                            [p.hypotest.cls_obs, *p.hypotest.cls_exp],
                            [r.hypotest.cls_obs, *r.hypotest.cls_exp],
                            strict=True,
                        )
                    )
                    if d > 1e-3:
                        strategy = (p.diagnostics or {}).get("strategy")
                        Console().print(f"  {name} {p.patch}: ok ({strategy}) but off by {d:.1e}")
        table.add_row(
            name,
            str(len(result)),
            str(counts.get("ok", 0)),
            str(counts.get("suspect", 0)),
            str(counts.get("failed", 0)),
            str(len(rescued)),
            f"{share:.1%}",
            f"{wall:.0f}",
            delta,
            off,
        )
        for point in [*result.suspect, *result.failed]:
            Console().print(
                f"  {name} {point.patch}: {point.status}: {point.reason or point.error}"
            )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
