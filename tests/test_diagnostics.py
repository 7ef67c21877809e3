"""Fits that report success but are wrong are caught, retried, and flagged if not rescued."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyhf
import pytest
from threadpoolctl import threadpool_limits

import fitaas
from conftest import load
from fitaas import InferenceOptions

POINTS = ["demo_600_400", "demo_700_0", "demo_800_200"]


def _tight_reference(demo: Path, name: str) -> float:
    """Plain pyhf with a tight scipy tolerance: the right answer."""
    ws = pyhf.Workspace(load(demo / "BkgOnly.json"))
    patch = next(
        p["patch"] for p in load(demo / "patchset.json")["patches"] if p["metadata"]["name"] == name
    )
    model = ws.model(patches=[patch])
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    try:
        with threadpool_limits(limits=1):
            return float(pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde"))
    finally:
        pyhf.set_backend("numpy", "scipy")


def test_an_optimizer_that_stops_early_is_caught_and_rescued(demo: Path) -> None:
    # A loose tolerance makes scipy report success before the minimum: CLs near 1,
    # "not excluded", for points that are excluded (pyhf issue #635's symptom).
    loose = InferenceOptions(tolerance=1.0)
    unchecked = fitaas.scan(
        demo, patches=POINTS, options=InferenceOptions(tolerance=1.0, retry_strategy="none")
    )
    for point in unchecked:
        assert point.status == "suspect"
        assert "stopped with a gradient of norm" in (point.reason or "")
    assert unchecked["demo_700_0"].cls_obs > 0.5  # wrong: the point is excluded
    checked = fitaas.scan(demo, patches=POINTS, options=loose)
    for point in checked:
        assert point.status == "ok", point.reason
        assert point.diagnostics["strategy"] == "tight"
        assert point.diagnostics["attempts"] == 2
        assert point.cls_obs == pytest.approx(_tight_reference(demo, point.patch), abs=1e-3)
    assert checked["demo_700_0"].cls_obs < 0.05


def test_well_behaved_pallets_stay_ok_without_retries(demo: Path, workspaces: Path) -> None:
    folder = workspaces / "sbottom" / "RegionA"
    cases = [
        (demo, None, None),
        (
            workspaces / "pyhf-examples" / "example_bkgonly.json",
            workspaces / "pyhf-examples" / "example_patchset.json",
            None,
        ),
        (
            folder / "BkgOnly.json",
            folder / "patchset.json.gz",
            ["sbottom_1000_131_1", "sbottom_700_550_60"],
        ),
    ]
    for workspace, patchset, patches in cases:
        checked = fitaas.scan(workspace, patchset, patches=patches, workers=2)
        plain = fitaas.scan(
            workspace,
            patchset,
            patches=patches,
            workers=2,
            options=InferenceOptions(retry_strategy="none"),
        )
        for point, reference in zip(checked, plain, strict=True):
            assert point.status == "ok", (point.patch, point.reason)
            diagnostics = point.diagnostics
            assert diagnostics["strategy"] == "default" and diagnostics["attempts"] == 1
            assert len(diagnostics["fits"]) == 5  # the retry path never ran: five fits only
            assert point.hypotest == reference.hypotest  # the checks change no number


def test_every_strategy_failing_is_failed_with_the_reason(demo: Path) -> None:
    result = fitaas.scan(demo, patches=["demo_700_0"], options=InferenceOptions(maxiter=2))
    point = result.points[0]
    assert point.status == "failed"
    assert point.diagnostics["attempts"] == 3
    assert "fit did not converge" in (point.error or "")


def test_results_json_carries_status_reason_and_diagnostics(demo: Path, tmp_path: Path) -> None:
    result = fitaas.scan(
        demo, patches=POINTS, options=InferenceOptions(tolerance=1.0, retry_strategy="none")
    )
    data = result.to_dict()["results"][0]
    assert data["status"] == "suspect" and data["reason"]
    fits = data["diagnostics"]["fits"]
    assert {
        "conditional",
        "success",
        "nfev",
        "twice_nll",
        "moved",
        "at_bounds",
        "grad_norm",
    } <= set(fits[0])
    assert np.isfinite([f["twice_nll"] for f in fits]).all()
    assert fitaas.ScanResult.from_dict(result.to_dict()).points[0].status == "suspect"
