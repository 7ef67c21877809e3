"""Inputs no fit can use are refused up front; fits are bounded; a scan can be stopped."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pyhf
import pytest

import fitaas
from conftest import load
from fitaas import InferenceOptions
from fitaas.inference import build_model
from fitaas.jobs.gathering import ScanStopped


@pytest.mark.parametrize(
    ("where", "value", "words"),
    [
        ("observations", -5.0, "observed count -5.0 in channel 'SR_low' bin 0"),
        ("observations", math.nan, "observed count nan in channel 'SR_low' bin 0"),
        ("samples", math.inf, "yield inf of sample"),
    ],
)
def test_counts_no_fit_can_use_are_refused_with_the_place(
    demo: Path, where: str, value: float, words: str
) -> None:
    spec = load(demo / "BkgOnly.json")
    if where == "observations":
        spec["observations"][0]["data"][0] = value
    else:
        spec["channels"][0]["samples"][0]["data"][1] = value
    with pytest.raises(fitaas.InputError, match=words.replace("(", r"\(")):
        fitaas.load_pallet(spec)


def test_a_patch_that_makes_counts_infinite_fails_its_point_only(demo: Path) -> None:
    workspace = pyhf.Workspace(load(demo / "BkgOnly.json"))
    signal = load(demo / "patchset.json")["patches"][0]["patch"]
    bad = [*signal, {"op": "replace", "path": "/channels/1/samples/0/data/0", "value": math.inf}]
    with pytest.raises(
        fitaas.InputError, match=r"expected count (inf|nan) in channel 'SR_mid' bin 0"
    ):
        build_model(workspace, bad, InferenceOptions())


def test_a_fit_past_its_time_limit_fails_its_point_with_that_reason(demo: Path) -> None:
    options = InferenceOptions(fast=False, fit_timeout=1e-6)
    (point,) = fitaas.scan(
        demo, patches=["demo_700_0"], options=options, compute=fitaas.Compute(workers=1)
    )
    assert point.status == "failed"
    assert point.error is not None and "fit_timeout of 1e-06 s" in point.error
    with pytest.raises(fitaas.InputError, match="fit_timeout"):
        InferenceOptions(fit_timeout=-1)


def test_a_stopped_scan_stops_within_a_second(demo: Path) -> None:
    # plain toys: one block is a long task; the stop must not wait for it
    options = InferenceOptions(fast=False, calctype="toybased", ntoys=20_000, toy_block_size=20_000)
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()
    begin = time.monotonic()
    with pytest.raises(ScanStopped):
        fitaas.scan(
            demo,
            patches=["demo_700_0"],
            options=options,
            compute=fitaas.Compute(workers=2),
            stop=stop,
        )
    assert time.monotonic() - begin < 3.0 + 5.0  # (the blocks alone take minutes)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_local_workers_exit_when_their_parent_is_killed(demo: Path, tmp_path: Path) -> None:
    # A SIGKILLed scan (or service) cannot stop its pool: its workers, reparented to init,
    # used to go on computing.
    import os
    import signal
    import subprocess
    import sys

    import psutil

    script = tmp_path / "scan.py"
    script.write_text(
        "import fitaas\n"
        "if __name__ == '__main__':\n"
        f"    fitaas.scan({str(demo)!r}, options=fitaas.InferenceOptions(fast=False),\n"
        "                compute=fitaas.Compute(workers=2))\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
            children = psutil.Process(parent.pid).children()
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        time.sleep(1.0)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers still running 10 s after their parent was killed: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_patch_named_twice_is_one_point(demo: Path) -> None:
    pallet = fitaas.load_pallet(demo)
    chosen = pallet.select(["demo_700_0", "demo_300_0", *["demo_700_0"] * 1000])
    assert [p.name for p in chosen] == ["demo_700_0", "demo_300_0"]
