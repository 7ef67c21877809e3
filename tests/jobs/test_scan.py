"""Scan orchestration: the store, resume after a real SIGKILL, failures recorded."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import fitaas
from conftest import FITAAS, load
from fitaas import InferenceOptions
from fitaas.inputs.example import true_boundary
from fitaas.store import open_store


def _stored(path: Path) -> dict[str, float]:
    with sqlite3.connect(path) as db:
        try:
            return dict(db.execute("SELECT key, created FROM results WHERE status = 'ok'"))
        except sqlite3.OperationalError:  # the file exists, its table not yet
            return {}


@pytest.mark.slow  # (also covered: the streamed scan's resume, the SIGKILL resume)
def test_rerun_computes_nothing_and_force_recomputes(demo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    names = ["demo_600_0", "demo_700_200", "demo_900_400"]
    first = fitaas.scan(demo, patches=names, store=store, compute=fitaas.Compute(workers=2))
    assert (first.computed, first.reused) == (3, 0)
    again = fitaas.scan(demo, patches=names, store=store, compute=fitaas.Compute(workers=2))
    assert (again.computed, again.reused) == (0, 3)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in first]
    # adding upper limits reuses the hypothesis tests and computes only the limits
    more = fitaas.scan(demo, patches=names, store=store, kinds=("hypotest", "upper_limit"))
    assert (more.computed, more.reused) == (3, 3)
    assert all(p.upper_limit is not None for p in more)
    forced = fitaas.scan(demo, patches=names, store=store, force=True)
    assert forced.computed == 3
    # other options are other results
    other = fitaas.scan(demo, patches=names, store=store, options=InferenceOptions(poi_value=0.5))
    assert other.computed == 3
    with open_store(store) as opened:
        assert opened.count("ok") == 9


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_demo_exclusion_is_where_it_was_built(demo: Path) -> None:
    result = fitaas.scan(demo, compute=fitaas.Compute(workers=2))
    assert len(result) == 20 and not result.failed
    for point in result:
        m1, m2 = point.values
        assert (point.cls_obs < 0.05) == (m1 < true_boundary(m2)), point.patch


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_failed_points_are_recorded_and_the_scan_goes_on(demo: Path, tmp_path: Path) -> None:
    patchset = json.loads((demo / "patchset.json").read_text())
    broken = json.loads(json.dumps(patchset["patches"][1]))
    broken["metadata"]["name"] = "broken_patch"
    broken["metadata"]["values"] = [1, 1]
    broken["patch"][0]["path"] = "/channels/7/samples/-"  # no channel 7
    patchset["patches"].append(broken)
    store = tmp_path / "store.sqlite"
    result = fitaas.scan(
        demo / "BkgOnly.json", patchset, store=store, compute=fitaas.Compute(workers=2)
    )
    assert result.counts() == {"ok": 20, "failed": 1}
    failed = result["broken_patch"]
    assert failed.hypotest is None
    assert "cannot build the model of patch 'broken_patch'" in (failed.error or "")
    # a non-converging fit (iteration limit) is failed with the optimizer's message
    capped = fitaas.scan(
        demo, patches=["demo_700_200"], options=InferenceOptions(maxiter=2), store=store
    )
    assert capped.points[0].status == "failed"
    assert "fit did not converge: Iteration limit reached" in (capped.points[0].error or "")
    # failures are retried on the next run; the good results are not
    rerun = fitaas.scan(
        demo / "BkgOnly.json", patchset, store=store, compute=fitaas.Compute(workers=1)
    )
    assert rerun.computed == 1 and rerun.reused == 20


def test_resume_after_sigkill(demo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    out = tmp_path / "results.json"
    names = [p["metadata"]["name"] for p in load(demo / "patchset.json")["patches"]][:10]
    command = [
        str(FITAAS),
        "scan",
        str(demo),
        "--workers",
        "1",
        "--plain",  # pyhf's own fits: the default fast path may finish before the kill
        "--store",
        str(store),
        "-o",
        str(out),
        "-q",
        *(f"--patch={name}" for name in names),  # (ten points: the kill comes after four)
    ]
    proc = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if store.exists() and len(_stored(store)) >= 4:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the scan stored nothing within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the scan and its workers, no goodbye
        proc.wait()
    before = _stored(store)
    assert 4 <= len(before) < len(names), "kill the scan midway"
    assert not out.exists()

    rerun = subprocess.run(  # (on two workers: the worker count is not part of a key)
        [*command[:4], "2", *command[5:]], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    after = _stored(store)
    assert len(after) == len(names)
    # the points finished before the kill were not computed again
    assert {k: after[k] for k in before} == before
    resumed = json.loads(out.read_text())
    assert resumed["summary"]["computed"] == len(names) - len(before)
    assert resumed["summary"]["reused"] == len(before)

    plain = fitaas.InferenceOptions(fast=False)
    uninterrupted = fitaas.scan(
        demo, patches=names, compute=fitaas.Compute(workers=2), options=plain
    )
    assert [p["cls_obs"] for p in resumed["results"]] == [p.cls_obs for p in uninterrupted]
    assert [p["cls_exp"] for p in resumed["results"]] == [
        list(p.hypotest.cls_exp) for p in uninterrupted
    ]


def test_external_executor_gets_the_workspace_by_payload(demo: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = ["demo_600_200", "demo_800_0"]
    with ThreadPoolExecutor(2) as pool:
        threaded = fitaas.scan(
            demo, patches=names, compute=fitaas.Compute(executor=pool, batch_size=2)
        )
    pooled = fitaas.scan(demo, patches=names, compute=fitaas.Compute(workers=1))
    assert [p.cls_obs for p in threaded] == pytest.approx([p.cls_obs for p in pooled], rel=1e-6)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_thread_executor_keeps_each_points_fits_apart(demo: Path) -> None:
    # pyhf's optimizer is process-global: with 4 threads and one point per task, 59 of 60
    # points came back with another point's fit records (issue 14), and the checks that
    # decide ok/suspect read those records.
    from concurrent.futures import ThreadPoolExecutor

    names = ["demo_600_200", "demo_700_0", "demo_800_400", "demo_1000_0", "demo_900_200"]
    names += ["demo_700_200", "demo_800_0", "demo_1000_400"]
    with ThreadPoolExecutor(4) as pool:
        threaded = fitaas.scan(
            demo, patches=names, compute=fitaas.Compute(executor=pool, batch_size=1)
        )
    pooled = fitaas.scan(demo, patches=names, compute=fitaas.Compute(workers=2, batch_size=1))
    for mine, reference in zip(threaded, pooled, strict=True):
        assert mine.patch == reference.patch
        assert mine.diagnostics is not None and reference.diagnostics is not None
        fits = [(f["conditional"], f["twice_nll"]) for f in mine.diagnostics["fits"]]
        expected = [(f["conditional"], f["twice_nll"]) for f in reference.diagnostics["fits"]]
        assert len(fits) == len(expected), mine.patch
        assert [c for c, _ in fits] == [c for c, _ in expected]
        assert [n for _, n in fits] == pytest.approx([n for _, n in expected], rel=1e-9)
        assert mine.status == reference.status
        assert mine.cls_obs == pytest.approx(reference.cls_obs, rel=1e-9)


def test_a_script_without_the_main_guard_gets_one_clear_error(demo: Path, tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(f"import fitaas\nfitaas.scan({str(demo)!r}, patches=['demo_700_0'])\n")
    python = Path(FITAAS).parent / "python"
    ran = subprocess.run(
        [str(python), str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode != 0
    last = ran.stderr.strip().splitlines()[-1]
    assert str(script) in last and 'if __name__ == "__main__":' in last, ran.stderr
    assert "BrokenProcessPool" not in last
