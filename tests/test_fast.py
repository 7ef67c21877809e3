"""The fast path (one compiled objective per model structure) against plain pyhf."""

from __future__ import annotations

import json
from pathlib import Path

import pyhf
import pytest

import fitaas
from conftest import load, plain_hypotest, run_cli
from fitaas import InferenceOptions
from fitaas.inference import pyhf_backend
from fitaas.inference.core import build_model, hypotest

pytest.importorskip("jax")
from fitaas.fast import StructureCache

FAST = InferenceOptions(fast=True)


def _patches(patchset: dict, names: list[str]) -> dict[str, list]:
    return {
        p["metadata"]["name"]: p["patch"]
        for p in patchset["patches"]
        if p["metadata"]["name"] in names
    }


def _fast_cls(workspace: dict, patch: list, cache: StructureCache) -> list[float]:
    ws = pyhf.Workspace(workspace)
    model, data = build_model(ws, patch, FAST)
    with pyhf_backend(FAST, structures=cache):
        result = hypotest(model, data, FAST)
    return [result.cls_obs, *result.cls_exp]


def test_one_compilation_serves_every_point_of_a_structure(demo: Path) -> None:
    workspace = load(demo / "BkgOnly.json")
    names = ["demo_300_0", "demo_700_0", "demo_800_400", "demo_1000_200"]
    patches = _patches(load(demo / "patchset.json"), names)
    cache = StructureCache()
    for name in names:
        fast = _fast_cls(workspace, patches[name], cache)
        cls_obs, cls_exp, _, _ = plain_hypotest(workspace, patches[name])
        assert fast == pytest.approx([cls_obs, *cls_exp], abs=1e-5, rel=1e-4)
    assert (cache.compiled, cache.refused) == (1, 0)


def test_a_model_the_guard_refuses_is_fitted_the_plain_way(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # If the compiled -2lnL ever disagreed with pyhf's, the model must not be served.
    workspace = load(demo / "BkgOnly.json")
    patch = _patches(load(demo / "patchset.json"), ["demo_700_0"])["demo_700_0"]
    true_twice_nll = pyhf.infer.mle.twice_nll
    cache = StructureCache()
    monkeypatch.setattr(
        "fitaas.fast.structures.pyhf.infer.mle.twice_nll",
        lambda pars, data, pdf: true_twice_nll(pars, data, pdf) + 1.0,
    )
    ws = pyhf.Workspace(workspace)
    model, data = build_model(ws, patch, FAST)
    assert cache.objective(model, None) is None and cache.refused == 1
    monkeypatch.undo()
    with pyhf_backend(FAST, structures=cache):
        result = hypotest(model, data, FAST)  # no compiled objective: pyhf's own fits
    with pyhf_backend(InferenceOptions()):
        plain = hypotest(model, data, InferenceOptions())
    assert result == plain


def test_published_points_equal_plain_pyhf(workspaces: Path) -> None:
    folder = workspaces / "sbottom" / "RegionA"
    workspace = load(folder / "BkgOnly.json")
    names = ["sbottom_1000_131_1", "sbottom_700_550_60", "sbottom_900_630_500"]
    patches = _patches(load(folder / "patchset.json.gz"), names)
    cache = StructureCache()
    for name in names:
        fast = _fast_cls(workspace, patches[name], cache)
        cls_obs, cls_exp, _, _ = plain_hypotest(workspace, patches[name])
        assert fast == pytest.approx([cls_obs, *cls_exp], abs=1e-4), name
    assert cache.refused == 0


@pytest.mark.slow
def test_1lbb_reference_point_on_the_fast_path(workspaces: Path) -> None:
    folder = workspaces / "1Lbb"
    name = "C1N2_Wh_hbb_1000_0"
    patch = _patches(load(folder / "patchset.json.gz"), [name])[name]
    fast = _fast_cls(load(folder / "BkgOnly.json"), patch, StructureCache())
    assert fast[0] == pytest.approx(0.58568, abs=1e-4)


def test_scan_and_cli_take_fast(demo: Path, tmp_path: Path) -> None:
    names = ["demo_600_200", "demo_900_0"]
    fast = fitaas.scan(demo, patches=names, options=FAST)
    plain = fitaas.scan(demo, patches=names)
    for a, b in zip(fast, plain, strict=True):
        assert a.status == "ok" and a.hypotest is not None and b.hypotest is not None
        assert [a.cls_obs, *a.hypotest.cls_exp] == pytest.approx(
            [b.cls_obs, *b.hypotest.cls_exp], abs=1e-5, rel=1e-4
        )
    assert fast.options.fast and fast.workspace_digest == plain.workspace_digest
    out = tmp_path / "fast.json"
    done = run_cli("scan", str(demo), "--fast", "--patch", names[0], "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["options"]["fast"] is True
    assert result["results"][0]["cls_obs"] == pytest.approx(fast[names[0]].cls_obs, rel=1e-9)


def test_upper_limits_and_fits_on_the_fast_path(demo: Path) -> None:
    names = ["demo_700_0"]
    kinds = ("hypotest", "upper_limit", "fit")
    fast = fitaas.scan(demo, patches=names, options=FAST, kinds=kinds)[names[0]]
    plain = fitaas.scan(demo, patches=names, kinds=kinds)[names[0]]
    assert fast.upper_limit is not None and plain.upper_limit is not None
    assert fast.upper_limit.obs == pytest.approx(plain.upper_limit.obs, rel=1e-4)
    assert list(fast.upper_limit.exp) == pytest.approx(list(plain.upper_limit.exp), rel=1e-4)
    assert fast.fit is not None and plain.fit is not None
    assert fast.fit.twice_nll == pytest.approx(plain.fit.twice_nll, abs=1e-5)
