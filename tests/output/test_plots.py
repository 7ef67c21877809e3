"""Plots from result objects: contour geometry against the demo's known boundary, failed
points, errors, one image comparison per kind, and the CLI/report front doors."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from concurrent.futures import Executor
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

import fitaas
from conftest import CHROMIUM, CHROMIUM_ARGS, run_cli
from fitaas import InputError
from fitaas.inputs.example import true_boundary
from fitaas.output import plots

matplotlib.use("Agg")
BASELINE = Path(__file__).parents[1] / "baseline"
GRID_STEP_M1 = 100.0  # the demo grid's spacing in m1


@pytest.fixture(scope="module")
def demo_scan(demo: Path, inline: Executor) -> fitaas.ScanResult:
    return fitaas.scan(demo, compute=inline)


@pytest.fixture(scope="module")
def demo_limits(demo: Path, inline: Executor) -> fitaas.ScanResult:
    names = ["demo_500_0", "demo_700_0", "demo_900_0"]
    return fitaas.scan(demo, patches=names, kinds=("hypotest", "upper_limit"), compute=inline)


def _artist(fig: matplotlib.figure.Figure, gid: str) -> object:
    found = [a for a in fig.axes[0].get_children() if a.get_gid() == gid]
    assert found, f"no artist '{gid}'"
    return found[0]


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
@pytest.mark.parametrize("smooth", [False, True], ids=["linear", "smooth"])
def test_observed_contour_follows_the_true_boundary(
    demo_scan: fitaas.ScanResult, smooth: bool
) -> None:
    fig = plots.exclusion(demo_scan, smooth=smooth, xlabel="mass 1")
    contour = _artist(fig, "observed")
    vertices = np.concatenate([p.vertices for p in contour.get_paths() if len(p.vertices)])
    assert len(vertices) >= (30 if smooth else 3)  # refined: many more vertices
    distance = np.abs(vertices[:, 0] - [true_boundary(m2) for m2 in vertices[:, 1]])
    assert distance.max() < GRID_STEP_M1, distance.max()
    assert fig.axes[0].get_xlabel() == "mass 1" and fig.axes[0].get_ylabel() == "m2 [GeV]"
    assert _artist(fig, "expected") is not None
    points = _artist(fig, "points")
    assert len(points.get_offsets()) == 20


def test_failed_points_are_marked_not_interpolated(demo_scan: fitaas.ScanResult) -> None:
    broken = [
        dataclasses.replace(p, status="failed", error="fit did not converge", hypotest=None)
        if p.patch == "demo_700_200"
        else p
        for p in demo_scan
    ]
    result = dataclasses.replace(demo_scan, points=tuple(broken))
    fig = plots.exclusion(result)
    failed = _artist(fig, "failed")
    assert [tuple(xy) for xy in failed.get_offsets()] == [(700.0, 200.0)]
    assert len(_artist(fig, "points").get_offsets()) == 19


def test_too_few_points_and_bad_planes_are_clear_errors(demo_scan: fitaas.ScanResult) -> None:
    one = dataclasses.replace(demo_scan, points=demo_scan.points[:1])
    with pytest.raises(InputError, match="at least 3 successful points in the plane, got 1"):
        plots.exclusion(one)
    empty = dataclasses.replace(demo_scan, points=())
    with pytest.raises(InputError, match="got 0"):
        plots.exclusion(empty)
    with pytest.raises(InputError, match="unknown label 'mass'"):
        plots.exclusion(demo_scan, x="mass")
    with pytest.raises(InputError, match="upper limits at two points at least"):
        plots.brazil(demo_scan)
    with pytest.raises(InputError, match="no scan over mu"):
        plots.cls_vs_mu(demo_scan.points[0])


def test_a_third_label_is_held_at_its_most_frequent_value_and_said(
    demo_scan: fitaas.ScanResult,
) -> None:
    # three labels (sbottom: msb, mn2, mn1) drew nothing ("fix m3 to a value"), where the
    # Brazil band held the third at its most frequent value
    third = [60 if i % 4 else 100 for i in range(len(demo_scan.points))]
    points = tuple(
        dataclasses.replace(p, values=(*p.values, m3), labels=("m1", "m2", "m3"))
        for p, m3 in zip(demo_scan, third, strict=True)
    )
    result = dataclasses.replace(demo_scan, points=points, labels=("m1", "m2", "m3"))
    fig = plots.exclusion(result)
    assert fig.get_suptitle().endswith("\nm3 = 60 (most points; m3 unset)")
    assert len(_artist(fig, "points").get_offsets()) == third.count(60)
    chosen = plots.exclusion(result, slices={"m3": 100})
    assert chosen.get_suptitle().endswith("\nm3 = 100")
    with pytest.raises(InputError, match=r"got 0 at m3 = 1 \(its values: 60, 100\)"):
        plots.exclusion(result, slices={"m3": 1})


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_brazil_band_crosses_mu_one_at_the_boundary(demo_limits: fitaas.ScanResult) -> None:
    fig = plots.brazil(demo_limits)
    line = _artist(fig, "observed")
    xs, ys = line.get_data()
    assert list(xs) == [500.0, 700.0, 900.0]
    assert list(ys) == [demo_limits[f"demo_{m}_0"].upper_limit.obs for m in (500, 700, 900)]
    # log(mu_up) is linear in m1 by construction: the crossing of mu = 1 is the boundary
    crossing = np.interp(0.0, np.log(ys), xs)
    assert math.isclose(crossing, true_boundary(0), abs_tol=1.0)


def test_cls_vs_mu(demo_limits: fitaas.ScanResult) -> None:
    point = demo_limits["demo_700_0"]
    fig = plots.cls_vs_mu(point)
    assert fig.axes[0].get_title() == "demo_700_0"


@pytest.mark.parametrize("kind", ["exclusion", "brazil", "cls_vs_mu"])
def test_images_match_the_baseline(
    kind: str, demo_scan: fitaas.ScanResult, demo_limits: fitaas.ScanResult, tmp_path: Path
) -> None:
    figure = {
        "exclusion": lambda: plots.exclusion(demo_scan, units={"m1": "GeV", "m2": "GeV"}),
        "brazil": lambda: plots.brazil(demo_limits, units={"m1": "GeV"}),
        "cls_vs_mu": lambda: plots.cls_vs_mu(demo_limits["demo_700_0"]),
    }[kind]()
    actual = tmp_path / f"{kind}.png"
    figure.savefig(actual, dpi=50)
    expected = BASELINE / f"{kind}.png"
    if not expected.exists():  # pragma: no cover - writing a new baseline is deliberate
        pytest.fail(f"no baseline {expected}: copy {actual} there after looking at it")
    assert compare_images(str(expected), str(actual), tol=12) is None


@pytest.mark.slow  # (by default: the report in test_report, the plot command in test_fit_jobs)
def test_plot_and_report_commands(demo: Path, tmp_path: Path) -> None:
    scanned = run_cli(
        "scan",
        str(demo),
        "--patch",
        "demo_500_0",
        "--patch",
        "demo_700_0",
        "--patch",
        "demo_900_0",
        "--patch",
        "demo_700_200",
        "--upper-limit",
        "-o",
        str(tmp_path / "r.json"),
    )
    assert scanned.returncode == 0, scanned.stderr
    drawn = run_cli("plot", str(tmp_path / "r.json"), "-o", str(tmp_path / "plots"))
    assert drawn.returncode == 0, drawn.stderr
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["brazil.pdf", "brazil.png", "exclusion.pdf", "exclusion.png"]
    reported = run_cli("report", str(tmp_path / "r.json"), "-o", str(tmp_path / "report.html"))
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "demo_700_200" in page and "<table>" in page
    none = run_cli("plot", str(tmp_path / "missing.json"))
    assert none.returncode == 2 and "no such file" in none.stderr
    # a line of points (m2 = 0): no contour there, the Brazil band all the same
    data = json.loads((tmp_path / "r.json").read_text())
    data["results"] = [r for r in data["results"] if r["values"][1] == 0]
    (tmp_path / "line.json").write_text(json.dumps(data))
    line = run_cli("plot", str(tmp_path / "line.json"), "-o", str(tmp_path / "line"))
    assert line.returncode == 0, line.stderr
    assert sorted(p.name for p in (tmp_path / "line").iterdir()) == ["brazil.pdf", "brazil.png"]
    assert "note: exclusion not drawn" in line.stderr
    # --cls-map beside the plain contour, not over it
    mapped = run_cli(
        "plot", str(tmp_path / "line.json"), "--cls-map", "--format", "png", "-o",
        str(tmp_path / "line"),
    )  # fmt: skip
    assert mapped.returncode == 0 and "note: exclusion_clsmap not drawn" in mapped.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_report_opens_in_a_real_browser(demo_limits: fitaas.ScanResult, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from fitaas.output.report import html_report

    page_file = tmp_path / "report.html"
    figures = {
        "brazil": plots.brazil(demo_limits),
        "cls": plots.cls_vs_mu(demo_limits["demo_700_0"]),
    }
    page_file.write_text(html_report(demo_limits, figures))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            assert "fitaas report" in page.title()
            rows = page.locator("tbody tr")
            assert rows.count() == 3
            # the embedded images decode and have a size: the page stands alone
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            assert len(widths) == 2 and min(widths) > 100
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_toy_plot_labels_neither_overlap_nor_meet_the_legend(demo: Path, tmp_path: Path) -> None:
    # the -2σ/-1σ labels overlapped, and +2σ collided with the legend (canned toys)
    from fake_engine import FakeWorkers

    options = fitaas.InferenceOptions(calctype="toybased", ntoys=300, toy_block_size=100)
    (point,) = fitaas.scan(
        demo, patches=["demo_700_0"], options=options, compute=FakeWorkers(),
        store=tmp_path / "s.sqlite",
    )  # fmt: skip
    fig = plots.toy_distributions(point)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if str(t.get_gid() or "").startswith("quantile")]
    assert 2 <= len(labels) <= 5
    xs = sorted(t.get_position()[0] for t in labels)
    low, high = ax.get_xlim()
    assert all(b - a >= 0.04 * (high - low) * 0.9 for a, b in itertools.pairwise(xs))
    assert all(t.get_position()[1] < 0.1 for t in labels)  # at the foot; the legend at the top


def test_the_nll_plot_names_its_intervals_and_the_ranking_legend_leaves_the_pulls_alone() -> None:
    from fitaas.inference.likelihood_scan import LikelihoodScan
    from fitaas.inference.ranking import Impact, RankingResult
    from fitaas.output import fit_plots

    scan = LikelihoodScan(
        parameter="mu", bestfit=0.0, twice_nll_min=10.0, values=(0.0, 0.5, 1.0, 1.5, 2.0),
        delta=(0.0, 0.3, 1.2, 2.7, 4.8), converged=(True,) * 5,
        interval_1sigma=(None, 0.9), interval_2sigma=(None, 1.85),
    )  # fmt: skip
    legend = fit_plots.likelihood_scan_figure(scan).axes[0].get_legend()
    assert legend is not None  # (the interval lines had none)
    assert [t.get_text() for t in legend.get_texts()] == [
        "1σ interval […, 0.9]",
        "2σ interval […, 1.85]",
    ]
    impacts = tuple(
        Impact(f"theta_{k}", 0.1 * k, 0.9, 0.1 * k, 0.9, 0.2 / k, -0.2 / k, 0.15 / k, -0.15 / k)
        for k in range(1, 6)
    )
    ranked = RankingResult(poi="mu", poi_value=1.0, poi_error=0.3, impacts=impacts)
    figure = fit_plots.ranking_figure(ranked)
    assert all(axes.get_legend() is None for axes in figure.axes)  # (it covered a pull)
    assert len(figure.legends) == 1 and len(figure.legends[0].get_texts()) == 4


def test_units_for_labels_a_patchset_leaves_without(demo: Path, tmp_path: Path) -> None:
    # sbottom's patchset names msb, mn2, mn1 and no units: the axes said none
    from fake_engine import FakeWorkers
    from fitaas.cli.plot import figures

    scanned = fitaas.scan(demo, compute=FakeWorkers(), store=tmp_path / "s.sqlite")
    (tmp_path / "r.json").write_text(scanned.to_json())
    made, _ = figures(tmp_path / "r.json", {"units": ("m2=TeV",)})
    axes = made["exclusion"].axes[0]
    assert axes.get_xlabel() == "m1 [GeV]" and axes.get_ylabel() == "m2 [TeV]"
    with pytest.raises(InputError, match="--unit: unknown label 'mass'"):
        figures(tmp_path / "r.json", {"units": ("mass=GeV",)})


def test_over_a_cls_map_the_band_is_its_edges(demo_scan: fitaas.ScanResult) -> None:
    # on the web page the filled ±1σ band muddied the CLs map beneath it
    gids = {a.get_gid() for a in plots.exclusion(demo_scan, cls_map=True).axes[0].get_children()}
    assert "band_edges" in gids and "band" not in gids
    plain = {a.get_gid() for a in plots.exclusion(demo_scan).axes[0].get_children()}
    assert "band" in plain
