"""Toy-based scans: blocks on any engine, the same numbers everywhere, extendable, resumable."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fitaas
from conftest import run_cli
from fitaas import InferenceOptions
from fitaas.errors import InputError

pytest.importorskip("jax")

POINTS = ["demo_600_200", "demo_800_400"]


def _toys(**kwargs: Any) -> InferenceOptions:
    return InferenceOptions(**{"calctype": "toybased", "toy_block_size": 100, **kwargs})


def _numbers(result: fitaas.ScanResult) -> list[Any]:
    out = []
    for point in result:
        ht = point.hypotest
        assert ht is not None and ht.toys is not None, point.error
        sb, b = ht.toys.distributions()
        out.append(
            (
                point.patch,
                ht.cls_obs,
                ht.cls_exp,
                ht.clsb_obs,
                ht.clb_obs,
                sb.tobytes(),
                b.tobytes(),
            )
        )
    return out


def _blocks(store: Path) -> int:
    with sqlite3.connect(store) as db:
        return int(db.execute("SELECT count(*) FROM results WHERE kind = 'toys'").fetchone()[0])


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_same_seed_same_numbers_on_one_or_two_workers(demo: Path) -> None:
    options = _toys(ntoys=200, seed=5)
    one = _numbers(
        fitaas.scan(demo, patches=POINTS, options=options, compute=fitaas.Compute(workers=1))
    )
    two = _numbers(
        fitaas.scan(demo, patches=POINTS, options=options, compute=fitaas.Compute(workers=2))
    )
    assert one == two  # bit for bit
    other = _numbers(fitaas.scan(demo, patches=POINTS, options=_toys(ntoys=200, seed=6)))
    assert other[0][5] != one[0][5]  # another seed, other toys


@pytest.mark.slow
def test_same_seed_same_numbers_on_parsl(demo: Path) -> None:
    from fitaas.engines.parsl import ParslEngine

    options = _toys(ntoys=200, seed=5)
    one = _numbers(
        fitaas.scan(demo, patches=POINTS, options=options, compute=fitaas.Compute(workers=1))
    )
    with ParslEngine({"provider": "local", "workers_per_node": 2}) as engine:
        assert _numbers(fitaas.scan(demo, patches=POINTS, options=options, compute=engine)) == one


@pytest.mark.slow
def test_more_toys_extend_a_run_and_equal_a_fresh_one(demo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    first = fitaas.scan(demo, patches=POINTS, options=_toys(ntoys=150, seed=2), store=store)
    assert _blocks(store) == 2 * 2 * 2  # 150 toys: 2 blocks of 100 per ensemble and point
    assert first.points[0].hypotest.toys.ntoys_sb == 150  # type: ignore[union-attr]
    extended = fitaas.scan(demo, patches=POINTS, options=_toys(ntoys=300, seed=2), store=store)
    assert _blocks(store) == 2 * 2 * 3  # one new block per ensemble and point
    fresh = fitaas.scan(
        demo, patches=POINTS, options=_toys(ntoys=300, seed=2), store=tmp_path / "fresh.sqlite"
    )
    assert _numbers(extended) == _numbers(fresh)
    again = fitaas.scan(demo, patches=POINTS, options=_toys(ntoys=300, seed=2), store=store)
    assert again.computed == 0 and _numbers(again) == _numbers(fresh)  # resumed: nothing new


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_cls_accuracy_adds_toys_until_the_observed_cls_is_known(demo: Path) -> None:
    options = _toys(ntoys=100, seed=1, cls_accuracy=0.02, max_toys=2000)
    (point,) = fitaas.scan(demo, patches=["demo_700_200"], options=options).points
    toys = point.hypotest.toys  # type: ignore[union-attr]
    assert toys is not None
    assert toys.ntoys_sb > 100 and toys.ntoys_sb == toys.ntoys_b
    assert toys.cls_obs_error <= 0.02 or toys.ntoys_sb == 2000


def test_discovery_toys_report_p0_and_significance(demo: Path, inline: Executor) -> None:
    options = _toys(ntoys=200, seed=3, test_stat="q0")
    (point,) = fitaas.scan(demo, patches=["demo_1000_400"], options=options, compute=inline)
    ht = point.hypotest
    assert ht is not None and ht.toys is not None and ht.poi_value == 0.0
    entry = point.to_dict()
    assert entry["p0_obs"] == ht.clsb_obs and len(entry["z_exp"]) == 5
    if 0 < ht.clsb_obs < 1:
        assert entry["z_obs"] == pytest.approx(float(-np.sqrt(2) * _erfinv(2 * ht.clsb_obs - 1)))


def _erfinv(y: float) -> float:
    from scipy.special import erfinv

    return float(erfinv(y))


def test_toys_refuse_what_they_cannot_compute(demo: Path) -> None:
    with pytest.raises(InputError, match="hypothesis tests only"):
        fitaas.scan(demo, patches=POINTS, options=_toys(), kinds=("hypotest", "upper_limit"))


@pytest.mark.slow
def test_toy_scan_from_the_command_line_and_its_plot(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "toys.json"
    done = run_cli(
        "scan", str(demo), "--patch", "demo_700_200", "--calctype", "toybased", "--ntoys", "200",
        "--seed", "9", "-q", "-o", str(out), "--store", str(tmp_path / "s.sqlite"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["calctype"] == "toybased" and entry["toys"]["ntoys"] == {"sb": 200, "b": 200}
    assert entry["toys"]["errors"]["cls_obs"] > 0 and entry["toys"]["seed"] == 9
    table = run_cli("results", str(out))
    assert "±" in table.stdout, table.stdout
    csv = run_cli("scan", str(demo), "--patch", "demo_700_200", "--calctype", "toybased",
                  "--ntoys", "200", "--seed", "9", "-q", "-o", str(tmp_path / "t.csv"),
                  "--store", str(tmp_path / "s.sqlite"))  # fmt: skip
    assert csv.returncode == 0 and "cls_obs_error" in (tmp_path / "t.csv").read_text()
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    drawn = run_cli("plot", str(out), "--patch", "demo_700_200", "-o", str(plots))
    assert drawn.returncode == 0, drawn.stderr
    assert (plots / "toys_demo_700_200.png").stat().st_size > 10_000


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_plain_toys_are_the_same_toys_with_pyhf_fits(demo: Path) -> None:
    # --plain: every toy's test statistic from pyhf's own fits, on the same toys
    common = {"ntoys": 20, "seed": 12, "toy_block_size": 20}
    fast = fitaas.scan(demo, patches=["demo_700_200"], options=_toys(**common)).points[0]
    plain = fitaas.scan(demo, patches=["demo_700_200"], options=_toys(fast=False, **common)).points[
        0
    ]
    assert fast.hypotest is not None and plain.hypotest is not None
    fast_sb, fast_b = fast.hypotest.toys.distributions()  # type: ignore[union-attr]
    plain_sb, plain_b = plain.hypotest.toys.distributions()  # type: ignore[union-attr]
    assert fast_sb == pytest.approx(plain_sb, abs=1e-3)
    assert fast_b == pytest.approx(plain_b, abs=1e-3)
