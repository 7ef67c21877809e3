"""Shared fixtures: the published workspaces (skipped when absent), the demo pallet, plain pyhf."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyhf
import pytest
from threadpoolctl import threadpool_limits

WORKSPACES = Path(__file__).resolve().parents[2] / "shared" / "workspaces"
FITAAS = Path(sys.executable).parent / "fitaas"
# Debian's Chromium, driven by Playwright (never `playwright install`: it downloads)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def load(path: Path) -> Any:
    """Read a .json or .json.gz file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.load(handle)


@pytest.fixture(scope="session")
def workspaces() -> Path:
    """The folder of published likelihoods; tests skip cleanly without it."""
    if not WORKSPACES.is_dir():
        pytest.skip(f"published workspaces not found at {WORKSPACES}")
    return WORKSPACES


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated demo pallet, written once per test session."""
    from fitaas.example import write_example

    folder = tmp_path_factory.mktemp("demo")
    write_example(folder)
    return folder


def plain_hypotest(
    workspace: dict[str, Any],
    patch: list[dict[str, Any]] | None,
    mu: float = 1.0,
    test_stat: str = "qtilde",
    **model_kwargs: Any,
) -> tuple[float, list[float], float, float]:
    """CLs the plain pyhf way: ``ws.model(patches=[patch])``, ``pyhf.infer.hypotest``.

    It runs with one BLAS thread, as fitaas workers do: the thread count changes the
    order of floating-point sums, and pyhf's own results move with it (up to ~1e-4
    relative in small expected CLs, within the optimizer's tolerance).
    """
    pyhf.set_backend("numpy", "scipy")
    ws = pyhf.Workspace(workspace)
    model = ws.model(patches=[patch] if patch else None, **model_kwargs)
    with threadpool_limits(limits=1):
        cls_obs, tails, exp = pyhf.infer.hypotest(
            mu,
            ws.data(model),
            model,
            test_stat=test_stat,
            return_tail_probs=True,
            return_expected_set=True,
        )
    clsb, clb = tails if len(tails) == 2 else (cls_obs, tails[0])  # q0: [CLb] only
    return float(cls_obs), [float(e) for e in exp], float(clsb), float(clb)


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real console script."""
    return subprocess.run(
        [str(FITAAS), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
