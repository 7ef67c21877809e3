"""The real console script: the README's main job, outputs and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import run_cli


def test_example_scan_results(tmp_path: Path) -> None:
    made = run_cli("example", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    scanned = run_cli("scan", "demo/BkgOnly.json", "demo/patchset.json", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    assert "20 points: 20 ok, 0 suspect, 0 failed (20 computed, 0 reused" in scanned.stderr
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
    table = run_cli("results", "results.json", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert (
        "20 points: 20 ok, 0 suspect, 0 failed; excluded at 95% CL: 8 observed"
        in table.stdout.replace("\n", " ")
    )
    # rerun: nothing computed; CSV output from the same store
    again = run_cli("scan", "demo", "-o", "out.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 20 and float(rows[0]["cls_obs"]) == first["cls_obs"]
    assert "(0 computed, 20 reused" in again.stderr


def test_single_commands(tmp_path: Path) -> None:
    run_cli("example", "demo", cwd=tmp_path)
    ht = run_cli("hypotest", "demo", "--patch", "demo_700_0", cwd=tmp_path)
    assert ht.returncode == 0, ht.stderr
    result = json.loads(ht.stdout)
    assert result["patch"] == "demo_700_0" and result["cls_obs"] < 0.05
    fit = run_cli("fit", "demo", "--patch", "demo_700_0", "-o", "fit.json", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    fitted = json.loads((tmp_path / "fit.json").read_text())
    assert "mu_SIG" in fitted["parameters"] and len(fitted["uncertainties"]) == len(
        fitted["bestfit"]
    )
    many = run_cli("hypotest", "demo", cwd=tmp_path)
    assert many.returncode == 2 and "choose one with --patch" in many.stderr


BAD_INPUT = [
    (("scan", "bad.json"), "bad.json: malformed JSON at line 1, column 15"),
    (("scan", "demo", "--patch", "demo_7000_0"), "no patch named 'demo_7000_0'"),
    (("scan", "missing.json"), "missing.json: no such file"),
    (("scan", "demo", "--interpcode", "normsys"), "--interpcode: expected NAME=VALUE"),
    (("scan", "demo", "--ul-scan", "0,5"), "--ul-scan: expected START,STOP,POINTS"),
]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _bad_input(tmp_path, BAD_INPUT[:2])
    debug = run_cli("--debug", "scan", "bad.json", cwd=tmp_path)
    assert "Traceback" in debug.stderr


@pytest.mark.slow
def test_more_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _bad_input(tmp_path, BAD_INPUT[2:])


def _bad_input(tmp_path: Path, cases: list[tuple[tuple[str, ...], str]]) -> None:
    run_cli("example", "demo", cwd=tmp_path)
    (tmp_path / "bad.json").write_text('{"channels": [}')
    for args, message in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_failed_points_give_nonzero_exit(tmp_path: Path) -> None:
    run_cli("example", "demo", cwd=tmp_path)
    proc = run_cli(
        "scan", "demo", "--patch", "demo_700_0", "--maxiter", "2", "--retry-strategy", "none",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "1 failed" in proc.stderr and "Iteration limit reached" in proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["results"][0]["status"] == "failed"


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
