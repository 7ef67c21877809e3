"""The real console script: the README's main job, outputs and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyhf
import pytest

from conftest import run_cli


def test_example_scan_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the README's first command by the console script; what follows in process
    from click.testing import CliRunner

    from fitaas.cli import cli

    def in_process(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), prog_name="fitaas")

    made = run_cli("example", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    scanned = run_cli("scan", "demo/BkgOnly.json", "demo/patchset.json", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    assert "20 points: 20 ok, 0 suspect, 0 failed (hypothesis tests: 20 computed;" in (
        scanned.stderr
    )
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) >= {"workspace", "options", "pyhf_version", "results"}
    first = data["results"][0]
    assert set(first) >= {
        "patch",
        "values",
        "labels",
        "poi_value",
        "cls_obs",
        "cls_exp",
        "clsb_obs",
        "clb_obs",
        "upper_limit",
        "status",
        "error",
        "seconds",
    }
    assert len(first["cls_exp"]) == 5 and first["labels"] == ["m1", "m2"]
    assert (tmp_path / "fitaas-store.sqlite").exists()
    monkeypatch.chdir(tmp_path)
    table = in_process("results", "results.json")
    assert table.exit_code == 0, table.stderr
    assert (
        "20 points: 20 ok, 0 suspect, 0 failed; excluded at 95% CL: 8 observed"
        in table.stdout.replace("\n", " ")
    )
    # rerun into another folder: nothing computed, the CSV from the user's one store
    # (FITAAS_STORE here; results.sqlite in the cache folder by default)
    (tmp_path / "elsewhere").mkdir()
    again = in_process("scan", "demo", "-o", "elsewhere/out.csv")
    assert again.exit_code == 0, again.stderr
    rows = list(csv.DictReader((tmp_path / "elsewhere" / "out.csv").open()))
    assert len(rows) == 20 and float(rows[0]["cls_obs"]) == first["cls_obs"]
    assert "(hypothesis tests: 20 reused;" in again.stderr
    # the CSV is for spreadsheets: reading it back says so in one line
    refused = in_process("results", "elsewhere/out.csv")
    assert refused.exit_code == 2 and "CSV" in refused.stderr
    assert "-o results.json" in refused.stderr


def test_single_commands(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # in process (click's CliRunner): the console script itself runs in the tests above
    from click.testing import CliRunner

    from fitaas.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").symlink_to(demo)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(cli, list(args), input=stdin, prog_name="fitaas")

    ht = run("hypotest", "demo", "--patch", "demo_700_0")
    assert ht.exit_code == 0, ht.stderr
    result = json.loads(ht.stdout)
    assert result["patch"] == "demo_700_0" and result["cls_obs"] < 0.05
    fit = run("fit", "demo", "--patch", "demo_700_0", "-o", "fit.json")
    assert fit.exit_code == 0, fit.stderr
    fitted = json.loads((tmp_path / "fit.json").read_text())
    assert "mu_SIG" in fitted["parameters"] and len(fitted["uncertainties"]) == len(
        fitted["bestfit"]
    )
    # a table to read: one row per parameter, pulls of the constrained ones
    rows = {line.split()[1]: line for line in fit.stdout.splitlines() if "│" in line}
    assert set(fitted["parameters"]) <= set(rows), fit.stdout
    mu = fitted["parameters"].index("mu_SIG")
    assert fitted["pulls"][mu] is None
    assert any(p is not None for p in fitted["pulls"])
    # the first fit an analyst runs: the background-only workspace, without POI
    bkg = run("fit", "demo/BkgOnly.json", "-o", "bkg.json")
    assert bkg.exit_code == 0, bkg.stderr
    fitted = json.loads((tmp_path / "bkg.json").read_text())
    workspace = pyhf.Workspace(json.loads((tmp_path / "demo" / "BkgOnly.json").read_text()))
    model = workspace.model(poi_name=None)
    pars = pyhf.infer.mle.fit(workspace.data(model), model)
    assert "mu_SIG" not in fitted["parameters"]
    assert fitted["parameters"] == list(model.config.par_names)
    assert fitted["bestfit"] == pytest.approx(list(map(float, pars)), abs=1e-3)
    many = run("hypotest", "demo")
    assert many.exit_code == 2 and "choose one (e.g." in many.stderr
    assert "(--patch)" in many.stderr
    # pyhf's spellings: the workspace on stdin, --test-poi
    piped = run(
        "hypotest", "-", "demo/patchset.json", "-p", "demo_700_0", "--test-poi", "1",
        stdin=(tmp_path / "demo" / "BkgOnly.json").read_text(),
    )  # fmt: skip
    assert piped.exit_code == 0, piped.stderr
    assert json.loads(piped.stdout)["cls_obs"] == result["cls_obs"]
    # --help lists what each command uses
    fit_help = run("fit", "--help").stdout
    assert "--interpcode" in fit_help and "--poi-value" not in fit_help
    assert "--ul-scan" not in fit_help and "--ntoys" not in fit_help
    hypotest_help = run("hypotest", "--help").stdout
    assert "--test-poi" in hypotest_help and "--ul-scan" not in hypotest_help


def _refuse_nan(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_cls_of_zero_over_zero_is_null_in_strict_json_without_warnings(tmp_path: Path) -> None:
    # 10,000 background events expected, none observed: both CLs tails underflow to 0
    spec = {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": [100.0],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {"name": "background", "data": [10000.0], "modifiers": []},
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [0.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    (tmp_path / "ws.json").write_text(json.dumps(spec))
    tested = run_cli("hypotest", "ws.json", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert "Warning" not in tested.stderr
    result = json.loads(tested.stdout, parse_constant=_refuse_nan)
    assert result["cls_obs"] is None and result["status"] == "suspect"


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_the_demo_signal_is_excluded_exactly_on_its_line() -> None:
    from fitaas.inputs.example import EXCLUDED_EVENTS, _background_workspace, _excluded_events

    assert _excluded_events(_background_workspace()) == pytest.approx(EXCLUDED_EVENTS, rel=1e-7)


BAD_INPUT = [
    (("scan", "bad.json"), "bad.json: malformed JSON at line 1, column 15"),
    (("scan", "demo", "--poi-value", "-1"), "POI value -1 lies outside the bounds [0, 50]"),
    (("scan", "demo", "--patch", "demo_7000_0"), "no patch named 'demo_7000_0'"),
    (("scan", "demo", "--fix", "mu_SIGG=1"), "unknown parameter 'mu_SIGG'; did you mean mu_SIG?"),
    (("hypotest", "demo/BkgOnly.json"), "a background-only workspace needs its patchset"),
    (("scan", "missing.json"), "missing.json: no such file"),
    (("scan", "demo", "--interpcode", "normsys"), "--interpcode: expected NAME=VALUE"),
    (("scan", "demo", "--ul-scan", "0,5"), "--ul-scan: expected START,STOP,POINTS"),
    # a measurement the workspace lacks: named with those it has, before any work
    (
        ("scan", "demo", "--measurement", "Nope"),
        "no measurement 'Nope' in the workspace; its measurements: demo",
    ),
    (("hypotest", "demo", "-p", "demo_700_0", "--measurement", "Nope"), "its measurements: demo"),
    (("fit", "demo/BkgOnly.json", "--measurement", "NormalMeasurement"), "its measurements: demo"),
]


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _bad_input(tmp_path, BAD_INPUT[:2])
    debug = run_cli("--debug", "scan", "bad.json", cwd=tmp_path)
    assert "Traceback" in debug.stderr


@pytest.mark.slow
def test_more_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _bad_input(tmp_path, BAD_INPUT[2:])


def test_bad_input_in_process_is_one_line_and_exit_2(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every case of BAD_INPUT through click's CliRunner (the console script: above)
    from click.testing import CliRunner

    from fitaas.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").symlink_to(demo)
    (tmp_path / "bad.json").write_text('{"channels": [}')
    runner = CliRunner()
    for args, message in BAD_INPUT:
        shown = runner.invoke(cli, list(args), prog_name="fitaas")
        assert shown.exit_code == 2, (args, shown.stderr, shown.exception)
        assert message in shown.stderr, (args, shown.stderr)
        assert "Traceback" not in shown.stderr
        assert len(shown.stderr.strip().splitlines()) == 1, shown.stderr
    assert not list(tmp_path.glob("*.sqlite"))  # nothing planned, nothing stored


def _bad_input(tmp_path: Path, cases: list[tuple[tuple[str, ...], str]]) -> None:
    run_cli("example", "demo", cwd=tmp_path)
    (tmp_path / "bad.json").write_text('{"channels": [}')
    for args, message in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_failed_points_give_nonzero_exit_and_are_said_even_when_quiet(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from fitaas.cli import cli

    monkeypatch.chdir(tmp_path)
    args = ["scan", str(demo), "--patch", "demo_700_0", "--maxiter", "2", "--workers", "1"]
    args += ["--retry-strategy", "none", "--store", "store.sqlite"]
    # -q hides the progress and the summary, not the failure (it printed nothing)
    quiet = CliRunner().invoke(cli, [*args, "-q", "-o", "quiet.json"], prog_name="fitaas")
    assert quiet.exit_code == 1
    assert "1 of 1 point failed -> quiet.json" in quiet.stderr
    assert "failed demo_700_0: " in quiet.stderr and "Iteration limit" in quiet.stderr
    data = json.loads((tmp_path / "quiet.json").read_text())
    assert data["results"][0]["status"] == "failed"


@pytest.mark.slow  # (keeps the default run under 10 minutes: pytest -m slow)
def test_ctrl_c_keeps_what_is_done(tmp_path: Path) -> None:
    import signal
    import sqlite3
    import subprocess
    import time

    from conftest import FITAAS

    run_cli("example", "demo", cwd=tmp_path)
    store = tmp_path / "fitaas-store.sqlite"
    proc = subprocess.Popen(
        # pyhf's own fits: the default fast path may finish the demo before the signal
        [str(FITAAS), "scan", "demo", "--workers", "1", "--plain"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )

    def stored() -> int:
        if not store.exists():
            return 0
        try:
            with sqlite3.connect(store) as db:
                return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        except sqlite3.OperationalError:  # the file exists, its table not yet (or locked)
            return 0

    deadline = time.monotonic() + 120
    while stored() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted. Every result finished so far is in the store" in err
    assert "Traceback" not in err
    kept = stored()
    assert 2 <= kept < 20
    resumed = run_cli("scan", "demo", "-q", "--plain", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = __import__("json").loads((tmp_path / "results.json").read_text())["summary"]
    assert summary["reused"] == kept and summary["computed"] == 20 - kept


def test_the_bar_says_what_happens_before_the_first_point() -> None:
    import io

    from rich.console import Console

    from fitaas.jobs.gathering import ScanProgress
    from fitaas.output.progress import STARTING, ScanBar

    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    with ScanBar(console=console) as bar:
        bar(ScanProgress(total=3, done=0, failed=0, reused=0))
        bar._progress.refresh()
        assert STARTING[:20] in console.file.getvalue()  # type: ignore[attr-defined]


def test_every_command_spells_its_shared_options_alike() -> None:
    # `fitaas submit ... -p NAME` was "No such option '-p'" while `scan` took it
    import click

    from fitaas.cli import cli

    def commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += commands(command, f"{prefix}{name} ")
            else:
                found.append((prefix + name, command))
        return found

    spellings: dict[str, set[str]] = {}
    for name, command in commands(cli, ""):
        for param in command.params:
            if isinstance(param, click.Option):
                for long in (o for o in param.opts if o.startswith("--")):
                    short = tuple(o for o in param.opts if not o.startswith("--"))
                    spellings.setdefault(long, set()).add(short)
                    if long == "--patch":
                        assert short == ("-p",), name
    assert spellings["--patch"] == {("-p",)}
    assert len(spellings["--output"]) == 1, spellings["--output"]


def test_a_toy_cls_below_the_tables_precision_is_shown_with_its_uncertainty(
    demo: Path, tmp_path: Path
) -> None:
    # "<0.0001 ± 0.0076": a bound and an uncertainty in one cell
    import dataclasses

    from click.testing import CliRunner

    import fitaas
    from fake_engine import FakeWorkers
    from fitaas.cli import cli

    options = fitaas.InferenceOptions(calctype="toybased", ntoys=100, toy_block_size=100)
    scanned = fitaas.scan(
        demo, patches=["demo_700_0"], options=options, compute=FakeWorkers(),
        store=tmp_path / "s.sqlite",
    )  # fmt: skip
    (point,) = scanned.points
    assert point.hypotest is not None and point.hypotest.toys is not None
    zero = dataclasses.replace(point, hypotest=dataclasses.replace(point.hypotest, cls_obs=0.0))
    (tmp_path / "r.json").write_text(dataclasses.replace(scanned, points=(zero,)).to_json())
    shown = CliRunner().invoke(cli, ["results", str(tmp_path / "r.json")], prog_name="fitaas")
    assert shown.exit_code == 0, shown.output
    error = point.hypotest.toys.cls_obs_error
    assert f"0.0000 ± {error:.2g}" in shown.stdout
    assert "<0.0001 ±" not in shown.stdout


def test_the_command_lines_choices_and_defaults_are_the_librarys() -> None:
    import dataclasses

    import click
    from click.testing import CliRunner

    import fitaas
    from fitaas.choices import DEFAULTS, ENGINES
    from fitaas.cli.options import inference_options, options_from_cli
    from fitaas.engines.endpoint import ENGINE_CLASSES

    assert tuple(ENGINE_CLASSES) == ENGINES
    default = fitaas.InferenceOptions()
    assert {k: getattr(default, k) for k in DEFAULTS} == DEFAULTS
    # a scan's options left at the command line's defaults are the library's defaults
    captured: dict[str, Any] = {}

    @click.command()
    @inference_options
    def probe(**params: Any) -> None:
        captured.update(params)

    CliRunner().invoke(probe, [], catch_exceptions=False)
    made = options_from_cli(captured)
    assert dataclasses.replace(made, fast=default.fast) == default
