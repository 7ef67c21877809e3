"""The inference core and the scan give what plain pyhf gives on the same inputs."""

from __future__ import annotations

import json
from concurrent.futures import Executor
from pathlib import Path

import jsonpatch
import numpy as np
import pyhf
import pytest

import fitaas
from conftest import load, plain_hypotest
from fitaas import InferenceOptions, InputError
from fitaas.inference import FitResult, build_model, fit, pyhf_backend, upper_limit

RTOL = 1e-6
# The plain path (pyhf's own fits) gives pyhf's numbers; the default fast path is held to
# plain pyhf within its fits' tolerance in test_fast.py.
PLAIN = InferenceOptions(fast=False)


def _assert_same(point: fitaas.PointResult, plain: tuple[float, list[float], float, float]) -> None:
    assert point.ok, point.error
    assert point.hypotest is not None
    cls_obs, cls_exp, clsb, clb = plain
    np.testing.assert_allclose(point.hypotest.cls_obs, cls_obs, rtol=RTOL)
    np.testing.assert_allclose(point.hypotest.cls_exp, cls_exp, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(point.hypotest.clsb_obs, clsb, rtol=RTOL)
    np.testing.assert_allclose(point.hypotest.clb_obs, clb, rtol=RTOL)


@pytest.fixture(scope="module")
def examples(workspaces: Path) -> tuple[dict, dict]:
    folder = workspaces / "pyhf-examples"
    return load(folder / "example_bkgonly.json"), load(folder / "example_patchset.json")


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize(
    ("test_stat", "mu", "interp"),
    [
        ("qtilde", 1.0, None),
        ("q", 0.7, None),
        ("q0", 0.0, None),
        ("qtilde", 1.3, {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}),
    ],
)
def test_scan_equals_plain_pyhf_on_pyhf_examples(
    examples: tuple[dict, dict], test_stat: str, mu: float, interp: dict | None
) -> None:
    ws, ps = examples
    options = InferenceOptions(
        poi_value=mu, test_stat=test_stat, modifier_settings=interp, fast=False
    )
    result = fitaas.scan(ws, ps, options=options, compute=fitaas.Compute(workers=1))
    kwargs = {"modifier_settings": interp} if interp else {}
    plain = plain_hypotest(ws, ps["patches"][0]["patch"], mu, test_stat, **kwargs)
    _assert_same(result.points[0], plain)
    assert result.points[0].patch == "patch_channel1_signal_syst1"


def test_to_pandas_and_csv_rows(examples: tuple[dict, dict], inline: Executor) -> None:
    result = fitaas.scan(*examples, options=PLAIN, compute=inline)
    frame = result.to_pandas()
    assert list(frame["patch"]) == ["patch_channel1_signal_syst1"]
    assert frame["cls_obs"].iloc[0] == result.points[0].cls_obs
    assert frame["cls_exp_p2"].iloc[0] == result.points[0].hypotest.cls_exp[4]
    assert frame["x"].iloc[0] == 0  # the patchset label is a column


def test_reference_value_pyhf_examples(examples: tuple[dict, dict], inline: Executor) -> None:
    result = fitaas.scan(*examples, options=PLAIN, compute=inline)
    assert result.points[0].cls_obs == pytest.approx(0.52998, abs=1e-5)


def _model(examples: tuple[dict, dict], options: InferenceOptions) -> tuple:
    ws, ps = examples
    return build_model(pyhf.Workspace(ws), ps["patches"][0]["patch"], options)


@pytest.mark.slow  # (pyhf's limits are compared by default on the fast path and over workers)
def test_upper_limit_equals_pyhf(examples: tuple[dict, dict]) -> None:
    options = PLAIN
    with pyhf_backend(options):
        model, data = _model(examples, options)
        ours = upper_limit(model, data, options)
        obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(data, model)
        grid_options = InferenceOptions(ul_scan=(0.0, 3.0, 21), fast=False)
        grid = upper_limit(model, data, grid_options)
        g_obs, g_exp = pyhf.infer.intervals.upper_limits.upper_limit(
            data, model, np.linspace(0, 3, 21)
        )
    assert ours.method == "toms748"
    np.testing.assert_allclose(ours.obs, float(obs), rtol=RTOL)
    np.testing.assert_allclose(ours.exp, [float(e) for e in exp], rtol=RTOL)
    assert grid.method == "grid" and len(grid.scan) == 21
    np.testing.assert_allclose(grid.obs, float(g_obs), rtol=RTOL)
    np.testing.assert_allclose(grid.exp, [float(e) for e in g_exp], rtol=RTOL)
    # the visited points are in increasing mu and CLs falls through the level
    mus = [p.poi_value for p in ours.scan]
    assert mus == sorted(mus)


def test_fit_equals_pyhf_with_uncertainties(examples: tuple[dict, dict]) -> None:
    options = PLAIN
    with pyhf_backend(options):
        model, data = _model(examples, options)
        ours = fit(model, data, options, with_correlations=True)
        pars, twice_nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    np.testing.assert_allclose(ours.bestfit, np.asarray(pars), rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(ours.twice_nll, float(twice_nll), rtol=RTOL)
    assert ours.converged and ours.nfev > 0
    assert ours.parameters == tuple(model.config.par_names)
    # HESSE after scipy agrees with MINUIT's own uncertainties
    minuit_options = InferenceOptions(optimizer="minuit")
    with pyhf_backend(minuit_options):
        minuit = fit(model, data, minuit_options)
    poi = model.config.poi_index
    assert ours.uncertainties[poi] == pytest.approx(minuit.uncertainties[poi], rel=0.02)
    assert ours.uncertainties[model.config.par_slice("lumi").start] == 0.0  # fixed
    # the correlation matrix: MINUIT's own (pyhf's return_correlations) at its minimum
    with pyhf_backend(minuit_options):
        _, correlations = pyhf.infer.mle.fit(data, model, return_correlations=True)
    assert ours.correlations is not None
    np.testing.assert_allclose(np.asarray(ours.correlations), correlations, atol=0.02)
    assert FitResult.from_dict(ours.to_dict()) == ours


def test_fixed_and_init_parameters(examples: tuple[dict, dict]) -> None:
    options = InferenceOptions(
        fixed_params={"syst1": 0.5}, init_pars={"SigXsecOverSM": 1.5}, fast=False
    )
    with pyhf_backend(options):
        model, data = _model(examples, options)
        ours = fit(model, data, options)
        init = model.config.suggested_init()
        fixed = model.config.suggested_fixed()
        index = model.config.par_slice("syst1").start
        init[index], fixed[index] = 0.5, True
        init[model.config.poi_index] = 1.5
        pars = pyhf.infer.mle.fit(data, model, init_pars=init, fixed_params=fixed)
    assert ours.bestfit[index] == 0.5
    np.testing.assert_allclose(ours.bestfit, np.asarray(pars), rtol=RTOL, atol=1e-9)
    with pytest.raises(InputError, match=r"unknown parameter 'syst_1'.*did you mean syst1"):
        bad = InferenceOptions(fixed_params={"syst_1": 0.0})
        with pyhf_backend(bad):
            fit(model, data, bad)


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(InputError, match="option backend: 'torch'"):
        InferenceOptions(backend="torch")
    with pytest.raises(InputError, match="option modifier_settings: normsys needs"):
        InferenceOptions(modifier_settings={"normsys": {"interpcode": "code9"}})
    with pytest.raises(InputError, match="unknown option"):
        InferenceOptions.from_dict({"poi": 1.0})
    with pytest.raises(InputError, match="option par_bounds: mu has low >= high"):
        InferenceOptions(par_bounds={"mu": [2, 1]})
    options = InferenceOptions(ul_scan=(0, 5, 11), tolerance=1e-8)
    assert InferenceOptions.from_dict(options.to_dict()) == options


@pytest.mark.slow
def test_several_sbottom_points_equal_plain_pyhf(workspaces: Path) -> None:
    folder = workspaces / "sbottom" / "RegionA"
    ws, ps = load(folder / "BkgOnly.json"), load(folder / "patchset.json.gz")
    names = ["sbottom_1000_131_1", "sbottom_700_550_60", "sbottom_1400_1250_60"]
    result = fitaas.scan(ws, ps, patches=names, options=PLAIN, compute=fitaas.Compute(workers=2))
    patches = {p["metadata"]["name"]: p["patch"] for p in ps["patches"]}
    for point in result:
        _assert_same(point, plain_hypotest(ws, patches[point.patch]))
    assert result["sbottom_1000_131_1"].cls_obs == pytest.approx(0.6437, abs=1e-4)


@pytest.mark.slow
def test_1lbb_reference_point(workspaces: Path) -> None:
    folder = workspaces / "1Lbb"
    ws, ps = load(folder / "BkgOnly.json"), load(folder / "patchset.json.gz")
    name = "C1N2_Wh_hbb_1000_0"
    result = fitaas.scan(ws, ps, patches=[name], options=PLAIN, compute=fitaas.Compute(workers=1))
    patch = next(p["patch"] for p in ps["patches"] if p["metadata"]["name"] == name)
    _assert_same(result[name], plain_hypotest(ws, patch))
    assert result[name].cls_obs == pytest.approx(0.58568, abs=1e-5)
    assert result[name].values == (1000, 0)
    # the fit checks pass on it: no retry ran (five fits), the numbers are pyhf's
    diagnostics = result[name].diagnostics
    assert diagnostics["strategy"] == "default" and diagnostics["attempts"] == 1
    assert len(diagnostics["fits"]) == 5


@pytest.mark.slow  # (the fast path's jax evaluation is compared by default)
def test_jax_backend_agrees_with_numpy(demo: Path) -> None:
    pytest.importorskip("jax")
    names = ["demo_600_200", "demo_700_0", "demo_900_400"]
    numpy_result = fitaas.scan(demo, patches=names, compute=fitaas.Compute(workers=1))
    jax_result = fitaas.scan(demo, patches=names, options=InferenceOptions(backend="jax"))
    for ours, reference in zip(jax_result, numpy_result, strict=True):
        assert ours.ok, ours.error
        assert ours.hypotest.cls_obs == pytest.approx(reference.hypotest.cls_obs, abs=2e-5)
        np.testing.assert_allclose(ours.hypotest.cls_exp, reference.hypotest.cls_exp, atol=2e-5)
    assert jax_result.options.backend == "jax"


def test_patched_spec_is_what_pyhf_builds_and_leaves_the_workspace_alone(demo: Path) -> None:
    from fitaas.inference.models import patched_spec
    from fitaas.inputs.pallets import load_pallet

    pallet = load_pallet(demo)
    ws = pyhf.Workspace(pallet.workspace)
    before = json.dumps(ws, sort_keys=True)
    measurement = ws.get_measurement()
    signal = list(pallet.points[0].operations)
    edits = [
        {"op": "replace", "path": "/channels/0/samples/0/data/0", "value": 12.5},
        {"op": "add", "path": "/channels/0/samples/-", "value": {**signal[0]["value"]}},
        {"op": "move", "from": "/channels/0/samples/0", "path": "/channels/0/samples/-"},
        {"op": "copy", "from": "/parameters/0", "path": "/parameters/-"},
        {"op": "remove", "path": "/parameters/0"},
    ]
    edits[1]["value"]["name"] = "signal~/copy"
    edits.append(
        {"op": "replace", "path": "/channels/0/samples/1/name", "value": "renamed"},
    )
    for operations in [*(list(p.operations) for p in pallet.points), edits]:
        spec = patched_spec(ws, measurement, operations)
        assert spec == ws.model(patches=[operations], validate=False).spec
    assert json.dumps(ws, sort_keys=True) == before
    assert json.dumps(pallet.points[0].operations, sort_keys=True) == json.dumps(
        signal, sort_keys=True
    )
    with pytest.raises(jsonpatch.JsonPatchException):
        patched_spec(ws, measurement, [{"op": "remove", "path": "/channels/0/samples/99"}])
    with pytest.raises(jsonpatch.JsonPatchException):
        patched_spec(
            ws, measurement, [*signal, {"op": "test", "path": "/channels/0/name", "value": 1}]
        )
    assert json.dumps(ws, sort_keys=True) == before


def test_a_patched_model_is_the_one_pyhf_builds_and_leaves_the_workspace_alone(
    demo: Path,
) -> None:
    workspace, patchset = load(demo / "BkgOnly.json"), load(demo / "patchset.json")
    before = json.dumps(workspace, sort_keys=True)
    ws = pyhf.Workspace(workspace)
    for patch in patchset["patches"][:3]:
        model, data = build_model(ws, patch["patch"], PLAIN)
        plain = ws.model(patches=[patch["patch"]])
        assert type(model.spec) is dict and model.spec == plain.spec
        assert list(data) == list(ws.data(plain))
        # the model's copy is its own: changing it changes no other model nor the workspace
        model.spec["channels"][0]["samples"][0]["data"][0] = -1.0
        assert build_model(ws, patch["patch"], PLAIN)[0].spec == plain.spec
    assert json.dumps(dict(ws), sort_keys=True) == before
