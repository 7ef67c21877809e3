"""Fits that report success but are wrong are caught, retried, and flagged if not rescued."""

from __future__ import annotations

import json
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pyhf
import pytest
from scipy.stats import norm
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


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_an_optimizer_that_stops_early_is_caught_and_rescued(demo: Path) -> None:
    # A loose tolerance makes scipy report success before the minimum: CLs near 1,
    # "not excluded", for points that are excluded (pyhf issue #635's symptom). On the
    # plain path (pyhf's own fits), where pyhf's optimizer is the one that stops early.
    loose = InferenceOptions(tolerance=1.0, fast=False)
    unchecked = fitaas.scan(
        demo,
        patches=POINTS,
        options=InferenceOptions(tolerance=1.0, retry_strategy="none", fast=False),
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
        assert point.diagnostics["tried"] == ["default", "tight"]
        assert point.cls_obs == pytest.approx(_tight_reference(demo, point.patch), abs=1e-3)
    assert checked["demo_700_0"].cls_obs < 0.05


@pytest.mark.slow
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
        checked = fitaas.scan(
            workspace, patchset, patches=patches, compute=fitaas.Compute(workers=2)
        )
        plain = fitaas.scan(
            workspace,
            patchset,
            patches=patches,
            compute=fitaas.Compute(workers=2),
            options=InferenceOptions(retry_strategy="none"),
        )
        for point, reference in zip(checked, plain, strict=True):
            assert point.status == "ok", (point.patch, point.reason)
            diagnostics = point.diagnostics
            assert diagnostics["strategy"] == "default" and diagnostics["attempts"] == 1
            assert len(diagnostics["fits"]) == 5  # the retry path never ran: five fits only
            assert point.hypotest == reference.hypotest  # the checks change no number


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_every_strategy_failing_is_failed_with_the_reason(demo: Path) -> None:
    result = fitaas.scan(demo, patches=["demo_700_0"], options=InferenceOptions(maxiter=2))
    point = result.points[0]
    assert point.status == "failed"
    # the fast path's fits, tighter; pyhf's own at 1e-10 (plain, cold start); strict MINUIT
    assert point.diagnostics["tried"] == ["default", "tight", "plain", "strict"]
    assert point.diagnostics["attempts"] == 4
    assert "fit did not converge" in (point.error or "")
    # from the plain path, "tight" is pyhf's own fits at 1e-10 already: not run twice
    plain = fitaas.scan(
        demo, patches=["demo_700_0"], options=InferenceOptions(maxiter=2, fast=False)
    ).points[0]
    assert plain.diagnostics["tried"] == ["default", "tight", "strict"]


def test_results_json_carries_status_reason_and_diagnostics(
    demo: Path, tmp_path: Path, inline: Executor
) -> None:
    result = fitaas.scan(
        demo,
        patches=POINTS,
        options=InferenceOptions(tolerance=1.0, retry_strategy="none", fast=False),
        compute=inline,
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


def _faint_signal_patchset(demo: Path, tmp_path: Path, scale: float) -> Path:
    """The demo's points with their signal scaled down: next to no sensitivity (q_A ~ 0)."""
    patchset = load(demo / "patchset.json")
    for patch in patchset["patches"]:
        for operation in patch["patch"]:
            sample = operation["value"]
            sample["data"] = [value * scale for value in sample["data"]]
    path = tmp_path / "faint.json"
    path.write_text(json.dumps(patchset))
    return path


@pytest.mark.slow
def test_ill_conditioned_cls_is_computed_again_with_tight_fits(demo: Path, tmp_path: Path) -> None:
    # With q_A ~ 1e-6, sqrt(q_A) moves by sqrt(error) for an error in -2lnL: the default
    # SLSQP precision (~1e-5) moves the expected CLs by ~1e-2. The check catches it.
    patchset = _faint_signal_patchset(demo, tmp_path, 1e-3)
    names = ["demo_300_0", "demo_600_200"]
    unchecked = fitaas.scan(
        demo / "BkgOnly.json",
        patchset,
        patches=names,
        options=InferenceOptions(retry_strategy="none", fast=False),
    )
    for point in unchecked:
        assert point.status == "suspect"
        assert "ill-conditioned" in (point.reason or "")
    plain = fitaas.scan(
        demo / "BkgOnly.json", patchset, patches=names, options=InferenceOptions(fast=False)
    )
    for point in plain:
        assert point.status == "ok", point.reason
        assert point.diagnostics["strategy"] == "tight"
    # the fast path (the default) fits more precisely: ok at once or after a retry, and
    # equal to tight pyhf fits as well
    fast = fitaas.scan(demo / "BkgOnly.json", patchset, patches=names)
    assert fast.options.fast
    ws = pyhf.Workspace(load(demo / "BkgOnly.json"))
    patches = {p["metadata"]["name"]: p["patch"] for p in load(patchset)["patches"]}
    # pyhf's own fits at 1e-10 for the plain path (its tight retry is pyhf's SLSQP); at
    # 1e-12 for the fast path: on demo_600_200 pyhf at 1e-10 is itself 5e-3 off in the
    # expected band, and the fast path equals pyhf at 1e-12
    for points, tolerance in ((plain, 1e-10), (fast, 1e-12)):
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=tolerance))
        try:
            for point in points:
                assert point.status == "ok", point.reason
                model = ws.model(patches=[patches[point.patch]])
                with threadpool_limits(limits=1):
                    obs, exp = pyhf.infer.hypotest(
                        1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True
                    )
                reference = [float(obs), *(float(v) for v in exp)]
                assert point.hypotest is not None
                got = [point.hypotest.cls_obs, *point.hypotest.cls_exp]
                assert got == pytest.approx(reference, abs=1e-3), (point.patch, tolerance)
        finally:
            pyhf.set_backend("numpy", "scipy")


def test_cls_sensitivity_follows_the_asymptotic_formulas() -> None:
    from fitaas.inference.fit_checks import cls_sensitivity
    from fitaas.inference.results import HypotestResult

    def result(sqa: float) -> HypotestResult:
        bands = np.array([2.0, 1.0, 0.0, -1.0, -2.0])
        exp = norm.cdf(bands - sqa) / norm.cdf(bands)
        return HypotestResult(1.0, "qtilde", 1.0, tuple(exp), 0.5, 0.5)  # type: ignore[arg-type]

    # no sensitivity: sqrt(q_A) jumps by sqrt(1e-5); the -2 sigma band moves most
    tiny = cls_sensitivity(result(0.0), 1e-5)
    assert tiny == pytest.approx(norm.pdf(-2.0) / norm.cdf(-2.0) * np.sqrt(1e-5), rel=0.05)
    # a sensitive point: the same error is harmless
    assert cls_sensitivity(result(2.0), 1e-5) < 1e-5
    assert cls_sensitivity(result(2.0), 1e-5) > 0.0


def _excess(observed: float) -> dict[str, object]:
    model = pyhf.simplemodels.uncorrelated_background(
        signal=[5.0], bkg=[50.0], bkg_uncertainty=[5.0]
    )
    return {
        "channels": model.spec["channels"],
        "observations": [{"name": "singlechannel", "data": [observed]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_poi_at_its_upper_bound_is_flagged_where_it_changes_the_test() -> None:
    # 150 observed over 50 expected: mu-hat = 20, beyond the POI's bound of 10. The discovery
    # statistic q0 uses the likelihood at mu-hat, so the bound changes it; q-tilde at mu = 1
    # is 0 for any mu-hat above 1, so there the bound changes nothing (issue 14).
    spec = _excess(150.0)
    (q0,) = fitaas.scan(spec, options=InferenceOptions(test_stat="q0", poi_value=0.0))
    assert q0.status == "suspect", q0
    assert q0.reason is not None and "POI ended at its upper bound (10)" in q0.reason
    assert q0.diagnostics is not None and q0.diagnostics["tried"] == ["default"]  # no retry
    assert "retried" not in q0.reason

    (qtilde,) = fitaas.scan(spec, options=InferenceOptions(test_stat="qtilde"))
    assert qtilde.status == "ok", qtilde.reason

    widened = InferenceOptions(test_stat="q0", poi_value=0.0, par_bounds={"mu": [0.0, 50.0]})
    (free,) = fitaas.scan(spec, options=widened)
    assert free.status == "ok", free.reason
    # and the numbers are pyhf's on the same model with the same bounds
    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = (0.0, 50.0)
    p0, _expected = pyhf.infer.hypotest(
        0.0, workspace.data(model), model, test_stat="q0", par_bounds=bounds,
        return_expected=True,
    )  # fmt: skip
    assert free.hypotest is not None
    assert free.hypotest.cls_obs == pytest.approx(float(p0), rel=1e-5, abs=1e-8)
    assert q0.hypotest is not None and q0.hypotest.cls_obs > 10 * float(p0)  # the bound's bias


def test_significance_of_tiny_p_values() -> None:
    # 1 - p0 rounds to 1 below ~1e-16: the point used to fail with "p must be in the range"
    from fitaas.inference.results import significance

    for p0 in (0.5, 1e-3, 2.9e-7, 1e-12, 1e-17, 1e-300):
        assert significance(p0) == pytest.approx(-norm.ppf(p0), rel=1e-12)
    assert significance(0.0) == np.inf and np.isnan(significance(float("nan")))


def test_a_failed_fit_never_reads_terminated_successfully() -> None:
    # pyhf's MINUIT optimizer words its message before HESSE, which can invalidate the
    # minimum: points were reported "fit did not converge: Optimization terminated
    # successfully." (issue 14). The message now says what MINUIT's flags say.
    import scipy.optimize
    from iminuit import Minuit

    from fitaas.inference.backend import honest_message

    minuit = Minuit(lambda x, y: (x - y) ** 2, x=1.0, y=2.0)
    minuit.errordef = 1
    minuit.migrad()
    minuit.hesse()
    failed = scipy.optimize.OptimizeResult(
        success=False, message="Optimization terminated successfully.", minuit=minuit
    )
    message = honest_message(failed).message
    assert "success" not in message and message.startswith("MINUIT found no valid minimum")
    assert "forced positive definite" in message  # this function's flat direction
    plain = scipy.optimize.OptimizeResult(
        success=False, message="Optimization terminated successfully."
    )
    assert "success" not in honest_message(plain).message
    for kept in (
        scipy.optimize.OptimizeResult(
            success=True, message="Optimization terminated successfully."
        ),
        scipy.optimize.OptimizeResult(success=False, message="Iteration limit reached"),
    ):
        before = kept.message
        assert honest_message(kept).message == before


def _background_with_theta(
    sr: tuple[float, float], cr: tuple[float, float]
) -> tuple[pyhf.pdf.Model, list[float]]:
    """A signal region (signal 10, background 50, 60 observed) and a control region
    (background 100, 130 observed: 30% more than expected); the backgrounds' one nuisance
    parameter theta moves them to ``(hi, lo)`` in each region (a histosys)."""

    def background(nominal: float, hi_lo: tuple[float, float]) -> dict[str, object]:
        data = {"hi_data": [hi_lo[0]], "lo_data": [hi_lo[1]]}
        return {
            "name": "background",
            "data": [nominal],
            "modifiers": [{"name": "theta", "type": "histosys", "data": data}],
        }

    signal = {
        "name": "signal",
        "data": [10.0],
        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
    }
    spec = {
        "channels": [
            {"name": "SR", "samples": [signal, background(50.0, sr)]},
            {"name": "CR", "samples": [background(100.0, cr)]},
        ]
    }
    model = pyhf.Model(spec, poi_name="mu")
    observed = {"SR": 60.0, "CR": 130.0}
    return model, [*(observed[c] for c in model.config.channels), *model.config.auxdata]


def _saddle_model() -> tuple[pyhf.pdf.Model, list[float]]:
    """Backgrounds that rise the same either way their nuisance parameter moves (histosys
    up = down, both above nominal), a control region with 30% more events than expected.

    Every fit starts at theta = 0, where -2lnL has a maximum along theta and a gradient of
    exactly 0: pyhf's own fits never move theta and end on a saddle point; the minima lie
    at theta ~ +-1.3."""
    return _background_with_theta((55.0, 55.0), (120.0, 120.0))


def test_a_fit_stuck_on_a_saddle_is_caught_and_a_second_start_finds_the_minimum() -> None:
    from fitaas.fast import StructureCache
    from fitaas.inference.diagnostics import checked_hypotest

    model, data = _saddle_model()
    theta = model.config.par_slice("theta").start
    structures = StructureCache()
    unchecked, diagnosis = checked_hypotest(
        model, data, InferenceOptions(retry_strategy="none"), structures
    )
    assert diagnosis.status == "suspect" and diagnosis.second_start is None
    assert "not positive definite" in "; ".join(diagnosis.reasons)
    observed = [f for f in diagnosis.fits if f.observed and not f.conditional]
    assert observed and observed[0].curvature is not None and observed[0].curvature < 0
    checked, diagnosis = checked_hypotest(model, data, InferenceOptions(), structures)
    assert diagnosis.status == "ok", diagnosis.reasons
    assert diagnosis.second_start is not None and diagnosis.second_start > 1.0
    # the test computed again from the second minimum is ok as it is: a fit that starts at a
    # certified minimum does not move, and that is no reason to retry
    assert diagnosis.tried == ("default",)
    assert diagnosis.to_dict()["second_start"] == diagnosis.second_start
    assert checked is not None and unchecked is not None
    # the reference: pyhf's own fits at 1e-10, started at the lowest of the two minima
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    try:
        with threadpool_limits(limits=1):
            default = pyhf.infer.hypotest(1.0, data, model, return_expected_set=True)
            lowest = None
            for side in (-1.5, 1.5):
                init = model.config.suggested_init()
                init[theta] = side
                pars, value = pyhf.infer.mle.fit(data, model, init, return_fitted_val=True)
                if lowest is None or float(value) < lowest[1]:
                    lowest = (list(map(float, pars)), float(value))
            assert lowest is not None
            reference = pyhf.infer.hypotest(
                1.0, data, model, init_pars=lowest[0], return_expected_set=True
            )
    finally:
        pyhf.set_backend("numpy", "scipy")
    got = [checked.cls_obs, *checked.cls_exp]
    expected = [float(reference[0]), *map(float, reference[1])]
    assert got == pytest.approx(expected, abs=1e-5)
    # pyhf's default start stays on the saddle: the numbers the second start corrected
    assert abs(float(default[0]) - expected[0]) > 1e-2
    assert abs(unchecked.cls_obs - expected[0]) > 1e-2


def _double_well_model() -> tuple[pyhf.pdf.Model, list[float]]:
    """A one-sided systematic symmetrised the ATLAS way (up and down both raise the
    background, by different amounts), the control region's excess as above: -2lnL has a
    minimum on either side of theta = 0, the upper side's lower."""
    return _background_with_theta((55.0, 54.0), (120.0, 116.0))


def test_fits_on_the_higher_side_of_a_double_well_take_the_mirror_start() -> None:
    from fitaas.fast import StructureCache
    from fitaas.inference.diagnostics import checked_hypotest

    model, data = _double_well_model()
    theta = model.config.par_slice("theta").start
    structures = StructureCache()
    wrong_side = {"theta": -0.5}  # every fit then descends to the upper minimum
    options = InferenceOptions(init_pars=wrong_side, retry_strategy="none")
    unmirrored, diagnosis = checked_hypotest(model, data, options, structures)
    assert unmirrored is not None and diagnosis.status == "ok"
    assert all(f.mirror_gain == 0.0 for f in diagnosis.fits)
    mirrored, diagnosis = checked_hypotest(
        model, data, InferenceOptions(init_pars=wrong_side), structures
    )
    assert mirrored is not None and diagnosis.status == "ok", diagnosis.reasons
    assert any(f.mirror_gain > 0.1 for f in diagnosis.fits)
    assert diagnosis.to_dict()["mirror_seconds"] > 0.0
    # the reference: pyhf's own fits at 1e-10 started on the lower side
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    try:
        with threadpool_limits(limits=1):
            init = model.config.suggested_init()
            init[theta] = 1.0
            lower = pyhf.infer.hypotest(1.0, data, model, init_pars=init, return_expected_set=True)
            init[theta] = -0.5
            upper = pyhf.infer.hypotest(1.0, data, model, init_pars=init, return_expected_set=True)
    finally:
        pyhf.set_backend("numpy", "scipy")
    expected = [float(lower[0]), *map(float, lower[1])]
    assert [mirrored.cls_obs, *mirrored.cls_exp] == pytest.approx(expected, abs=1e-5)
    # without mirror starts, fitaas and pyhf both end on the upper side, with other numbers
    stuck = [float(upper[0]), *map(float, upper[1])]
    assert [unmirrored.cls_obs, *unmirrored.cls_exp] == pytest.approx(stuck, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(stuck, expected, strict=True)) > 1e-2


def test_the_certificate_reads_the_hessian_in_constraint_widths() -> None:
    from fitaas.inference.fit_checks import certificate

    # a unit nuisance parameter and a staterror gamma of width 0.02, equally well measured
    hessian = np.diag([4.0, 10000.0, 1.0])
    grad = np.array([0.2, 1.0, 0.0])
    scale = np.array([1.0, 0.02, 1.0])
    curvature, remaining = certificate(hessian, grad, [0, 1], scale)
    assert curvature == pytest.approx(1.0)  # in their widths, both have curvature 4
    assert remaining == pytest.approx(0.5 * (0.2**2 / 4.0 + 1.0**2 / 10000.0))
    saddle, none = certificate(np.diag([4.0, -1.0]), np.zeros(2), [0, 1], np.ones(2))
    assert saddle == pytest.approx(-0.25) and none is None
    # a parameter at a bound is left out: its curvature does not count
    assert certificate(np.diag([4.0, -1.0]), np.zeros(2), [0], np.ones(2)) == (1.0, 0.0)


def test_the_strict_strategy_is_newton_with_the_exact_hessian(demo: Path) -> None:
    from fitaas.fast import StructureCache
    from fitaas.inference.backend import pyhf_backend
    from fitaas.inference.diagnostics import checked_hypotest

    strict = InferenceOptions(retry_strategy="strict")
    with pyhf_backend(strict, strict=True):
        optimizer = pyhf.get_backend()[1]
        assert optimizer.second_order and hasattr(optimizer, "structures")
    ws = pyhf.Workspace(load(demo / "BkgOnly.json"))
    patch = next(
        p["patch"]
        for p in load(demo / "patchset.json")["patches"]
        if p["metadata"]["name"] == "demo_700_0"
    )
    model = ws.model(patches=[patch])
    structures = StructureCache()
    result, diagnosis = checked_hypotest(model, ws.data(model), strict, structures)
    assert diagnosis.status == "ok", diagnosis.reasons
    assert diagnosis.strategy == "strict" and diagnosis.tried == ("strict",)
    assert structures.compiled == 1
    assert result is not None
    assert result.cls_obs == pytest.approx(_tight_reference(demo, "demo_700_0"), abs=1e-5)
    # converged in Newton's sense: the decrease left that the exact Hessian predicts
    observed = [f for f in diagnosis.fits if f.observed and not f.conditional]
    assert observed[0].remaining is not None and observed[0].remaining < 1e-9
    assert all("Newton" in f.message for f in diagnosis.fits)
