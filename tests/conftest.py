"""Shared fixtures: the published workspaces (skipped when absent), the demo pallet, plain pyhf."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


@pytest.fixture(autouse=True)
def _own_results_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's command-line runs share a results store of their own (the user's,
    ``results.sqlite`` in the cache folder, is never touched by the tests)."""
    monkeypatch.setenv("FITAAS_STORE", str(tmp_path / "fitaas-store.sqlite"))


def pytest_configure(config: pytest.Config) -> None:
    """A results store for what runs before any test (module and session fixtures)."""
    import os
    import tempfile

    folder = tempfile.mkdtemp(prefix="fitaas-tests-")
    os.environ.setdefault("FITAAS_STORE", str(Path(folder) / "fitaas-store.sqlite"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that read the published likelihoods (``-m needs_workspaces``)."""
    for item in items:
        if "workspaces" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_workspaces)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Count the tests skipped for want of ``../shared/workspaces``: never silently."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "needs_workspaces" in getattr(report, "keywords", {})
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests that need the published likelihoods were skipped: "
            f"not found at {WORKSPACES}",
            yellow=True,
        )


@pytest.fixture(scope="session")
def workspaces() -> Path:
    """The folder of published likelihoods; tests skip cleanly without it."""
    if not WORKSPACES.is_dir():
        pytest.skip(f"published workspaces not found at {WORKSPACES}")
    return WORKSPACES


@pytest.fixture(scope="session")
def inline() -> Iterator[ThreadPoolExecutor]:
    """One thread of this process as a scan's executor, for tests of what a scan gives
    rather than where it runs: no worker processes to start, code compiled once."""
    with ThreadPoolExecutor(1) as pool:
        yield pool


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated demo pallet, written once per test session."""
    from fitaas.inputs.example import write_example

    folder = tmp_path_factory.mktemp("demo")
    write_example(folder)
    return folder


def workspace_with_every_modifier(
    signal: list[float],
    background: list[float],
    observed: list[float],
    *,
    channels: int = 1,
    extra: bool = True,
    shared_shape: bool = False,
    shapefactor: bool = False,
) -> dict[str, Any]:
    """A small workspace with every kind of modifier pyhf knows (several channels).

    Args:
        signal: The signal's yields per bin.
        background: The background's yields per bin (scaled up by 30% per channel).
        observed: The observed counts (scaled as the background).
        channels: How many channels.
        extra: Add a third sample (shapesys, a bounded normfactor, a normsys).
        shared_shape: The background's histosys also on the signal and the third sample
            (one histosys shared by three samples in every channel).
        shapefactor: A shapefactor (one free factor per bin) on the third sample.
    """
    spec_channels, observations = [], []
    for c in range(channels):
        scale = 1.0 + 0.3 * c
        bkg = [b * scale for b in background]
        samples: list[dict[str, Any]] = [
            {
                "name": "signal",
                "data": signal,
                "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "lumi", "type": "lumi", "data": None},
                    {"name": "sig_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.92}},
                ],
            },
            {
                "name": "background",
                "data": bkg,
                "modifiers": [
                    {"name": "lumi", "type": "lumi", "data": None},
                    {
                        "name": "shape",
                        "type": "histosys",
                        "data": {
                            "hi_data": [b * 1.08 for b in bkg],
                            "lo_data": [b * 0.95 for b in bkg],
                        },
                    },
                    {
                        "name": f"stat_{c}",
                        "type": "staterror",
                        "data": [math.sqrt(b) * 0.3 for b in bkg],
                    },
                ],
            },
        ]
        if extra:
            samples.append(
                {
                    "name": "other",
                    "data": [b * 0.3 for b in bkg],
                    "modifiers": [
                        {
                            "name": f"unc_{c}",
                            "type": "shapesys",
                            "data": [b * 0.3 * 0.2 for b in bkg],
                        },
                        {"name": "k_other", "type": "normfactor", "data": None},
                        {"name": "other_norm", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
                    ],
                }
            )
        if shared_shape:
            for sample, (hi, lo) in zip(samples[::2], ((1.05, 0.9), (0.93, 1.06)), strict=False):
                sample["modifiers"].append(
                    {
                        "name": "shape",
                        "type": "histosys",
                        "data": {
                            "hi_data": [y * hi for y in sample["data"]],
                            "lo_data": [y * lo for y in sample["data"]],
                        },
                    }
                )
        if shapefactor and extra:
            samples[2]["modifiers"].append({"name": f"sf_{c}", "type": "shapefactor", "data": None})
        spec_channels.append({"name": f"SR{c}", "samples": samples})
        observations.append({"name": f"SR{c}", "data": [o * scale for o in observed]})
    parameters = [
        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]}
    ]
    if extra:
        parameters.append({"name": "k_other", "bounds": [[0.5, 2.0]], "inits": [1.0]})
    return {
        "channels": spec_channels,
        "observations": observations,
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": parameters}}],
        "version": "1.0.0",
    }


def excess_workspace() -> dict[str, Any]:
    """Every modifier type (an unconstrained, bounded normfactor among them) in two
    channels, an excess over the background: the POI's best fit lies inside its bounds, and
    ``k_other``'s bounds hold its ±1σ (cabinetry stops at a variation beyond the bounds)."""
    spec = workspace_with_every_modifier([6.0, 9.0], [50.0, 40.0], [62.0, 55.0], channels=2)
    spec["measurements"][0]["config"]["parameters"][1]["bounds"] = [[-3.0, 10.0]]
    return spec


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
    *args: str, cwd: Path | None = None, timeout: float = 600, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console script (``stdin``: text on its standard input)."""
    return subprocess.run(
        [str(FITAAS), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
