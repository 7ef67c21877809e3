"""Impacts rankings and likelihood scans spread over workers: cabinetry's and pyhf's numbers."""

from __future__ import annotations

import json
import math
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
import pytest

import fitaas
from conftest import excess_workspace, load, run_cli
from fitaas import InputError
from fitaas.inference import FitResult, InferenceOptions, build_model, fit, pyhf_backend
from fitaas.inference.held_fits import HeldFitResult
from fitaas.inference.ranking import (
    VARIATIONS,
    assemble_ranking,
    nominal_fit,
    plan_ranking,
    poi_index,
    ranking,
)


def _model(spec: dict[str, Any]) -> tuple[Any, Any]:
    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    return model, workspace.data(model)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_ranking_over_workers_equals_cabinetry_and_one_process() -> None:
    cabinetry = pytest.importorskip("cabinetry")
    spec = excess_workspace()
    spread = fitaas.ranking(spec, compute=fitaas.Compute(workers=2))
    model, data = _model(spec)
    pyhf.set_backend("numpy")
    theirs = cabinetry.fit.ranking(model, data, tolerance=1e-4)
    ours = {impact.parameter: impact for impact in spread.impacts}
    assert set(ours) == set(theirs.labels) and spread.poi == "mu"
    assert 0.3 < spread.poi_value < 3 and not spread.failed
    worst = 0.0
    for k, label in enumerate(theirs.labels):
        for name in ("prefit_up", "prefit_down", "postfit_up", "postfit_down"):
            worst = max(worst, abs(getattr(ours[label], name) - getattr(theirs, name)[k]))
    assert worst < 1e-3 * spread.poi_error  # the tolerance
    assert ours["k_other"].prefit_up == 0.0 and ours["k_other"].pull is None  # unconstrained
    assert ours["k_other"].postfit_up != 0.0
    sizes = np.abs(theirs.postfit_up) + np.abs(theirs.postfit_down)
    top = [theirs.labels[k] for k in np.argsort(sizes)[::-1][:4]]
    assert [impact.parameter for impact in spread.impacts[:4]] == top
    # the same fits in one process give the same numbers (within the fits' tolerance: the
    # fast path starts a fit from the best earlier minimum of its process, if any)
    options = InferenceOptions()
    with pyhf_backend(options):
        model, data = build_model(pyhf.Workspace(spec), None, options)
        local = ranking(model, data, options)
    assert [i.parameter for i in local.impacts] == [i.parameter for i in spread.impacts]
    numbers = [[getattr(i, name) for name in VARIATIONS] for i in local.impacts]
    spread_numbers = [[getattr(i, n) for n in VARIATIONS] for i in spread.impacts]
    assert np.allclose(numbers, spread_numbers, rtol=0, atol=1e-3 * spread.poi_error)
    assert type(spread).from_dict(json.loads(json.dumps(spread.to_dict()))) == spread


def test_missing_or_failed_fits_are_named_not_hidden() -> None:
    options = InferenceOptions()
    with pyhf_backend(options):
        model, data = build_model(pyhf.Workspace(excess_workspace()), None, options)
        index = poi_index(model, None)
        nominal = nominal_fit(model, data, options)
        plan = plan_ranking(model, nominal, options, index)
        fitted = {(par, variation): HeldFitResult((0.0,) * model.config.npars, 1.0, True)
                  for par, variation, _ in plan[2:]}  # fmt: skip
        fitted[plan[2][0], plan[2][1]] = HeldFitResult.failed("fit did not converge: x")
        result = assemble_ranking(model, nominal, options, index, fitted)
    named = {(parameter, variation): reason for parameter, variation, reason in result.failed}
    labels = model.config.par_names
    assert named[labels[plan[0][0]], plan[0][1]] == "not computed"
    assert named[labels[plan[2][0]], plan[2][1]] == "fit did not converge: x"
    impact = next(i for i in result.impacts if i.parameter == labels[plan[2][0]])
    assert math.isnan(getattr(impact, plan[2][1]))
    assert result.fits == len(plan)
    narrow = InferenceOptions(par_bounds={"k_other": [0.5, 2.0]})  # k_other's ±1σ beyond
    with pyhf_backend(narrow):
        nominal = nominal_fit(model, data, narrow)
        held = [fit for _, _, fit in plan_ranking(model, nominal, narrow, index)]
    k_other = model.config.par_slice("k_other").start
    wide = [fit for _, _, fit in plan if fit.index == k_other]
    assert any(fit.value < 0.5 for fit in wide)  # (its -1σ lies below 0.5)
    narrowed = [fit for fit in held if fit.index == k_other]
    assert narrowed and all(0.5 <= fit.value <= 2.0 for fit in narrowed)


def test_background_only_ranking_asks_for_a_poi(demo: Path) -> None:
    options = InferenceOptions()
    with pyhf_backend(options):
        spec = json.loads((demo / "BkgOnly.json").read_text())
        model, _ = build_model(pyhf.Workspace(spec), None, options, without_poi=True)
        with pytest.raises(InputError, match="no parameter of interest: name one"):
            poi_index(model, None)
        with pytest.raises(InputError, match="did you mean JES"):
            poi_index(model, "JESS")
        with pytest.raises(InputError, match="components: name one"):
            poi_index(model, "staterror_SR_low")
        assert model.config.par_names[poi_index(model, "staterror_SR_low[1]")] == (
            "staterror_SR_low[1]"
        )


@pytest.mark.parametrize(
    ("parameter", "options"),
    [
        (None, InferenceOptions()),
        pytest.param(
            "shape",
            InferenceOptions(fixed_params={"lumi": 1.01}, par_bounds={"mu": [0, 8]}),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_likelihood_scan_equals_plain_pyhf_fits(
    parameter: str | None, options: InferenceOptions
) -> None:
    spec = excess_workspace()
    grid = (0.0, 6.0, 9) if parameter is None else (-2.0, 2.0, 9)
    scan = fitaas.likelihood_scan(
        spec, parameter=parameter, grid=grid, options=options, compute=fitaas.Compute(workers=2)
    )
    model, data = _model(spec)
    pyhf.set_backend("numpy", "scipy")
    init = model.config.suggested_init()
    bounds = model.config.suggested_bounds()
    fixed = model.config.suggested_fixed()
    lumi = model.config.par_slice("lumi").start
    mu = model.config.poi_index
    if options.fixed_params:
        init[lumi], fixed[lumi] = 1.01, True
        bounds[mu] = (0, 8)
    free = float(pyhf.infer.mle.fit(data, model, init, bounds, fixed, return_fitted_val=True)[1])
    index = model.config.par_names.index(parameter or "mu")
    plain = []
    for value in np.linspace(*grid[:2], grid[2]):
        held_init, held_fixed = list(init), list(fixed)
        held_init[index], held_fixed[index] = value, True
        twice_nll = pyhf.infer.mle.fit(
            data, model, held_init, bounds, held_fixed, return_fitted_val=True
        )[1]
        plain.append(float(twice_nll) - min(free, scan.twice_nll_min))
    assert scan.parameter == (parameter or "mu") and all(scan.converged)
    assert np.allclose(scan.delta, plain, atol=2e-4)
    low, high = scan.interval_1sigma
    assert high is not None and high > scan.bestfit
    assert np.interp(high, scan.values, plain) == pytest.approx(1.0, abs=1e-3)
    assert low is None if parameter is None else low is not None and low < scan.bestfit


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_cli_ranking_and_its_plot(demo: Path, tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text(json.dumps(excess_workspace()))
    made = run_cli("ranking", "ws.json", "-o", "ranking.json", "--workers", "2", "-q",
                   cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "impacts on mu" in made.stdout and "k_other" in made.stdout
    stored = json.loads((tmp_path / "ranking.json").read_text())
    assert stored["poi"] == "mu" and len(stored["impacts"]) == 13
    _drawn(tmp_path, ("ranking.json", ["ranking.png"]))
    no_poi = run_cli("ranking", str(demo / "BkgOnly.json"), "-q", cwd=tmp_path)
    assert no_poi.returncode == 2 and "no parameter of interest" in no_poi.stderr
    assert "(--poi)" in no_poi.stderr  # the command line names its flag


def _drawn(folder: Path, *expected: tuple[str, list[str]]) -> None:
    for name, pictures in expected:
        drawn = run_cli("plot", name, "-o", "plots", "--format", "png", cwd=folder)
        assert drawn.returncode == 0, drawn.stderr
        assert [Path(line).name for line in drawn.stdout.split()] == pictures


@pytest.mark.slow
def test_cli_nll_scan_and_upper_limit(tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text(json.dumps(excess_workspace()))
    scanned = run_cli("nll-scan", "ws.json", "--range", "0,3,7", "-o", "nll.json", "-q",
                      cwd=tmp_path)  # fmt: skip
    assert scanned.returncode == 0, scanned.stderr
    assert "1σ interval: [" in scanned.stdout
    outside = run_cli("nll-scan", "ws.json", "--range", "-1,3,7", cwd=tmp_path)
    assert outside.returncode == 2 and "leaves the bounds [0, 10] of 'mu'" in outside.stderr
    assert "(--bounds mu=LOW,HIGH)" in outside.stderr
    limit = run_cli("upper-limit", "ws.json", "--bounds", "mu=0,40", "--workers", "2", "-q",
                    "-o", "ul.json", cwd=tmp_path)  # fmt: skip
    assert limit.returncode == 0, limit.stderr
    found = json.loads((tmp_path / "ul.json").read_text())
    assert found["method"] == "toms748" and 0 < found["exp"][0] < found["obs"] < 40
    fitted = run_cli("fit", "ws.json", "-o", "fit.json", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    pictures = ["pulls.png", "correlations.png"]
    _drawn(tmp_path, ("nll.json", ["nll_scan.png"]), ("fit.json", pictures))


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize(
    "options",
    [
        pytest.param(  # (the +2σ limit lies above 10)
            InferenceOptions(par_bounds={"mu": [0, 40]}), marks=pytest.mark.slow
        ),
        InferenceOptions(test_stat="q", ul_scan=(0.5, 8.0, 8), level=0.1),
    ],
)
def test_upper_limit_over_workers_equals_pyhf(options: InferenceOptions) -> None:
    spec = excess_workspace()
    spread = fitaas.upper_limit(spec, options=options, compute=fitaas.Compute(workers=2))
    model, data = _model(spec)
    pyhf.set_backend("numpy", "scipy")
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = options.par_bounds.get("mu", bounds[model.config.poi_index])
    kwargs: dict[str, Any] = {
        "level": options.level,
        "test_stat": options.test_stat,
        "par_bounds": bounds,
    }
    if options.ul_scan is None:
        low, high = bounds[model.config.poi_index]
        obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(data, model, low, high, **kwargs)
        tolerance = 5e-4  # two root findings, each within pyhf's rtol 1e-4
        assert spread.method == "toms748"
    else:
        grid = np.linspace(*options.ul_scan[:2], options.ul_scan[2])
        obs, exp = pyhf.infer.intervals.upper_limits.linear_grid_scan(data, model, grid, **kwargs)
        tolerance = 1e-4  # the same grid; CLs from fits within their tolerance
        assert spread.method == "grid" and [p.poi_value for p in spread.scan] == list(grid)
    assert spread.obs == pytest.approx(float(obs), rel=tolerance)
    assert spread.exp == pytest.approx([float(e) for e in exp], rel=tolerance)
    assert spread.level == options.level


def test_fit_plots_draw_pulls_and_the_most_correlated_parameters() -> None:
    from fitaas.output.fit_plots import correlation_figure, pulls_figure

    names = tuple(f"p{i}" for i in range(40))
    matrix = np.eye(40)
    matrix[3, 7] = matrix[7, 3] = 0.9
    fit_result = FitResult(
        parameters=names,
        bestfit=(0.1,) * 40,
        uncertainties=(0.5,) * 40,
        twice_nll=1.0,
        converged=True,
        nfev=1,
        message="",
        correlations=tuple(map(tuple, matrix)),
    )
    figure = correlation_figure(fit_result, most=10)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert len(labels) == 10 and {"p3", "p7"} <= set(labels)
    pulls = pulls_figure(names[:3], [0.5, None, -1.0], [0.9, None, 1.0])
    assert [t.get_text() for t in pulls.axes[0].get_yticklabels()] == ["p0", "p2"]
    # 121 parameters: columns side by side (one column was 975 x 5181 pixels)
    many = [f"theta_{i}" for i in range(121)]
    tall = pulls_figure(many, [0.1] * 121, [0.9] * 121)
    assert len(tall.axes) == 3 and tall.get_figheight() < 15
    shown = [t.get_text() for axes in tall.axes for t in axes.get_yticklabels()]
    assert sorted(shown) == sorted(many)


def test_minos_intervals_equal_pyhf_minuit() -> None:
    spec = excess_workspace()
    options = InferenceOptions()
    with pyhf_backend(options):
        model, data = build_model(pyhf.Workspace(spec), None, options)
        result = fit(model, data, options, minos=["mu", "shape"])
        with pytest.raises(InputError, match="MINOS asked for unknown parameter"):
            fit(model, data, options, minos=["nope"])
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6))
    minuit = pyhf.infer.mle.fit(data, model, return_result_obj=True)[1].minuit
    minuit.minos("mu", "shape")
    assert result.minos is not None and set(result.minos) == {"mu", "shape"}
    for name in ("mu", "shape"):
        expected = (minuit.merrors[name].lower, minuit.merrors[name].upper)
        assert result.minos[name] == pytest.approx(expected, abs=1e-3)
    assert FitResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.slow
def test_ranking_of_a_published_point_equals_plain_pyhf_fits(workspaces: Path) -> None:
    folder = workspaces / "sbottom" / "RegionA"
    spread = fitaas.ranking(folder, patch="sbottom_1000_205_60", compute=fitaas.Compute(workers=2))
    pallet = fitaas.load_pallet(folder)
    workspace = pyhf.Workspace(pallet.workspace)
    model = workspace.model(
        patches=[pyhf.PatchSet(load(folder / "patchset.json.gz"))["sbottom_1000_205_60"]]
    )
    data = workspace.data(model)
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    try:
        bounds = model.config.suggested_bounds()
        poi = model.config.poi_index
        labels = model.config.par_names
        for impact in spread.impacts[:3]:  # the three largest, fitted the plain way
            index = labels.index(impact.parameter)
            for variation, held in (
                ("postfit_up", impact.value + impact.error),
                ("postfit_down", impact.value - impact.error),
            ):
                init, fixed = model.config.suggested_init(), model.config.suggested_fixed()
                init[index], fixed[index] = held, True
                pars = pyhf.infer.mle.fit(data, model, init, bounds, fixed)
                plain = float(pars[poi]) - spread.poi_value
                assert getattr(impact, variation) == pytest.approx(
                    plain, abs=1e-3 * spread.poi_error
                )
    finally:
        pyhf.set_backend("numpy", "scipy")
    assert spread.fits > 200 and not spread.failed


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_an_nll_scan_whose_best_fit_is_on_a_bound_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a deficit: mu's best fit is its bound 0 ("best fit 2.22e-16", "[below the range, 0.442]")
    from click.testing import CliRunner

    from conftest import workspace_with_every_modifier
    from fitaas.cli import cli

    spec = workspace_with_every_modifier([6.0, 9.0], [50.0, 40.0], [41.0, 33.0], channels=2)
    (tmp_path / "ws.json").write_text(json.dumps(spec))
    monkeypatch.chdir(tmp_path)
    args = ["nll-scan", "ws.json", "--range", "0,3,7", "--workers", "1", "-o", "nll.json", "-q"]
    shown = CliRunner().invoke(cli, args, prog_name="fitaas")
    assert shown.exit_code == 0, shown.stderr
    best = json.loads((tmp_path / "nll.json").read_text())["bestfit"]
    assert abs(best) < 1e-6  # (on its bound)
    assert "likelihood scan of mu: best fit 0\n" in shown.stdout
    assert "1σ interval: [0 (the best fit, at the scan's edge), " in shown.stdout
    assert "below the range" not in shown.stdout


def test_a_held_fit_where_minus_two_lnl_is_not_finite_fails_at_once(
    demo: Path, inline: Executor
) -> None:
    # mu = -1 makes the demo's expected counts negative: SLSQP went on to its iteration limit
    # on NaN values (four minutes for this one fit) before saying "Iteration limit reached"
    options = InferenceOptions(par_bounds={"mu_SIG": [-2.0, 10.0]})
    scan = fitaas.likelihood_scan(
        demo, patch="demo_700_0", grid=(-1.0, 0.0, 2), options=options, compute=inline
    )
    assert [value for value, _ in scan.failed] == [-1.0]
    assert "-2lnL is not finite at 50 points in a row" in scan.failed[0][1]
    assert math.isfinite(scan.delta[1])
