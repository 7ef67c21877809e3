"""Theory scans: models as a stream (JSON Lines, folders, iterables), results as they finish."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import psutil
import pytest

import fitaas
from conftest import plain_hypotest, run_cli
from fitaas.errors import InputError
from fitaas.inputs.theory_models import check_models, read_models
from fitaas.jobs.gathering import ScanStopped
from fitaas.jobs.streaming import READ_CHUNK
from pallet_builders import jsonl, theory_models


def _scaled(model: dict[str, Any], index: int, factor: float) -> dict[str, Any]:
    """A model of the same structure with every signal yield scaled by ``factor``."""
    patch = json.loads(json.dumps(model["patch"]))
    for operation in patch:
        operation["value"]["data"] = [x * factor for x in operation["value"]["data"]]
    return {"name": f"model_{index}", "values": [factor, index], "patch": patch}


def test_malformed_models_are_named_by_line_or_file(demo: Path, tmp_path: Path) -> None:
    good = theory_models(demo)[0]
    bad_json = tmp_path / "a.jsonl"
    bad_json.write_text(json.dumps(good) + "\n" + '{"name": "x", "patch": [\n')
    with pytest.raises(InputError, match=r"a\.jsonl, line 2: not JSON"):
        read_models(bad_json)
    no_patch = jsonl(tmp_path / "b.jsonl", [good, {"name": "x", "values": [1]}])
    with pytest.raises(InputError, match=r"line 2: model 'x' needs 'patch'"):
        read_models(no_patch)
    twice = jsonl(tmp_path / "c.jsonl", [good, good])
    with pytest.raises(InputError, match="two models are named 'demo_300_0'"):
        read_models(twice)
    with pytest.raises(InputError, match="JSON Lines"):
        read_models(demo / "patchset.json")
    with pytest.raises(InputError, match=r"model #1: the model has no 'name'"):
        read_models([good, {"patch": []}])
    # a folder of patch files: objects, or bare operations named after their file
    folder = tmp_path / "patches"
    folder.mkdir()
    (folder / "b.json").write_text(json.dumps(good))
    (folder / "a_point.json").write_text(json.dumps(good["patch"]))
    points = read_models(folder)
    assert [p.name for p in points] == ["a_point", "demo_300_0"]
    assert points[0].digest == points[1].digest and points[1].values == (300, 0)
    assert check_models(folder) == 2
    with pytest.raises(InputError, match="two models are named"):
        check_models(twice)  # (read through as the scan reads: every line checked)


def test_a_bad_line_is_refused_before_any_work_and_an_empty_result_is_said(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # line 11 of 21 was reached with ten models in flight: nothing was kept, and the
    # header-only results.jsonl then read as "0 points", exit 0
    from click.testing import CliRunner

    from fitaas.cli import cli

    models = theory_models(demo)
    lines = [json.dumps(m) for m in models]
    lines.insert(10, '{"name": "broken", "values": [1, 2], "patch": [')
    (tmp_path / "models.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    args = ["scan", str(demo / "BkgOnly.json"), "--models", "models.jsonl", "--labels", "m1,m2"]
    shown = CliRunner().invoke(cli, args, prog_name="fitaas")
    assert shown.exit_code == 2, shown.stderr
    assert "models.jsonl, line 11: not JSON" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results.jsonl").exists()
    # a results file with only its header says so
    from fitaas.inputs.pallets import load_pallet
    from fitaas.jobs.gathering import pallet_result

    pallet = load_pallet(demo / "BkgOnly.json")
    header = pallet_result(pallet, fitaas.InferenceOptions(), ()).jsonl_header()
    (tmp_path / "empty.jsonl").write_text(json.dumps({**header, "stream": True}) + "\n")
    empty = CliRunner().invoke(cli, ["results", "empty.jsonl"], prog_name="fitaas")
    assert empty.exit_code == 2 and "no results in it" in empty.stderr, empty.output


def test_models_before_a_malformed_one_are_kept(
    demo: Path, tmp_path: Path, inline: Executor
) -> None:
    # an iterable is checked as it is reached: the models in flight when it is are
    # computed and stored, then the error is raised
    models = theory_models(demo)[:6]
    broken = [*models[:5], {"name": "broken", "values": [1]}, models[5]]
    store = tmp_path / "store.sqlite"
    with pytest.raises(InputError, match="model #5: model 'broken' needs 'patch'"):
        fitaas.stream_scan(demo / "BkgOnly.json", iter(broken), store=store, compute=inline)
    again = fitaas.stream_scan(demo / "BkgOnly.json", iter(models[:5]), store=store, compute=inline)
    assert again.reused == 5 and again.computed == 0


def test_a_streamed_scan_equals_pyhf_and_resumes_after_a_stop(
    demo: Path, tmp_path: Path, inline: Executor
) -> None:
    models = theory_models(demo)[:8]
    source = jsonl(tmp_path / "models.jsonl", models)
    store, output = tmp_path / "store.sqlite", tmp_path / "results.jsonl"
    stop = threading.Event()
    arrived: list[str] = []

    def stop_after_three(point: fitaas.PointResult) -> None:
        arrived.append(str(point.patch))
        if len(arrived) == 3:
            stop.set()

    with pytest.raises(ScanStopped):
        fitaas.stream_scan(
            demo / "BkgOnly.json", source, labels=["m1", "m2"], store=store, output=output,
            compute=inline, on_result=stop_after_three, stop=stop,
        )  # fmt: skip
    partial = fitaas.read_results(output)  # what finished is readable (no summary line)
    assert 3 <= len(partial) < len(models) and partial.labels == ("m1", "m2")
    summary = fitaas.stream_scan(
        demo / "BkgOnly.json", source, labels=["m1", "m2"], store=store, output=output,
        compute=inline,
    )  # fmt: skip
    assert summary.models == len(models) and summary.counts == {"ok": len(models)}
    assert summary.reused >= 3 and summary.computed == len(models) - summary.reused
    result = fitaas.read_results(output)
    assert sorted(p.patch for p in result) == sorted(m["name"] for m in models)
    assert result.computed == summary.computed  # the summary line
    by_name = {m["name"]: m for m in models}
    workspace = json.loads((demo / "BkgOnly.json").read_text())
    for point in list(result)[:3]:
        cls_obs, cls_exp, _, _ = plain_hypotest(workspace, by_name[point.patch]["patch"])
        assert point.cls_obs == pytest.approx(cls_obs, rel=1e-4, abs=1e-7)
        assert point.hypotest is not None
        assert list(point.hypotest.cls_exp) == pytest.approx(cls_exp, rel=1e-4, abs=1e-7)
        assert point.values == tuple(by_name[point.patch]["values"])
    # the same models through fitaas.scan(models=...): one ScanResult, every result reused
    again = fitaas.scan(demo / "BkgOnly.json", models=iter(models), store=store)
    assert again.computed == 0 and len(again) == len(models)
    assert {p.patch: p.cls_obs for p in again} == {p.patch: p.cls_obs for p in result}


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_stream_is_read_only_as_far_as_the_workers_need(demo: Path, tmp_path: Path) -> None:
    template = theory_models(demo)[10]
    pulled = itertools.count()
    seen: list[int] = []

    def endless() -> Iterator[dict[str, Any]]:
        for index in itertools.count():
            next(pulled)
            yield _scaled(template, index, 1.0 + (index % 50) / 10)

    stop = threading.Event()

    def first(point: fitaas.PointResult) -> None:
        seen.append(next(pulled))
        stop.set()

    with pytest.raises(ScanStopped):
        fitaas.stream_scan(
            demo / "BkgOnly.json",
            endless(),
            compute=fitaas.Compute(workers=1),
            on_result=first,
            stop=stop,
        )
    assert seen and seen[0] <= 2 * READ_CHUNK + 2  # not the endless stream


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_theory_scan_from_the_cli(demo: Path, tmp_path: Path) -> None:
    jsonl(tmp_path / "models.jsonl", [*theory_models(demo)[:3], {"name": "broken", "patch": [
        {"op": "add", "path": "/channels/7/samples/-", "value": {}}]}])  # fmt: skip
    ran = run_cli(
        "scan", str(demo / "BkgOnly.json"), "--models", "models.jsonl", "--labels", "m1,m2",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr  # one model failed: named, the others kept
    assert "4 models: 3 ok, 0 suspect, 1 failed" in ran.stderr
    assert "failed broken: cannot build the model of patch 'broken'" in ran.stderr
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["summary"]["failed"] == 1
    shown = run_cli("results", "results.jsonl", cwd=tmp_path)
    assert shown.returncode == 0 and "demo_300_0" in shown.stdout
    # a patchset scan written as JSON Lines reads back the same way
    ran = run_cli("scan", str(demo), "-p", "demo_300_0", "-o", "p.jsonl", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    again = fitaas.read_results(tmp_path / "p.jsonl")
    streamed = fitaas.read_results(tmp_path / "results.jsonl")
    assert again["demo_300_0"].cls_obs == streamed["demo_300_0"].cls_obs


@pytest.mark.slow
def test_twenty_thousand_models_in_flat_memory_interrupted_and_resumed(
    demo: Path, tmp_path: Path
) -> None:
    template = theory_models(demo)[10]
    count = 20_000
    source = tmp_path / "models.jsonl"
    with source.open("w") as out:
        for index in range(count):
            out.write(json.dumps(_scaled(template, index, 0.3 + 2.7 * index / count)) + "\n")
    store, output = tmp_path / "store.sqlite", tmp_path / "results.jsonl"
    me = psutil.Process()
    rss: dict[int, int] = {}
    stop = threading.Event()
    finished = itertools.count(1)

    def watch(point: fitaas.PointResult) -> None:
        done = next(finished)
        if done in (1000, 5000, 10000):
            rss[done] = me.memory_info().rss
        if done == 10000:
            stop.set()

    with pytest.raises(ScanStopped):
        fitaas.stream_scan(
            demo / "BkgOnly.json", source, store=store, output=output, on_result=watch, stop=stop
        )
    summary = fitaas.stream_scan(demo / "BkgOnly.json", source, store=store, output=output)
    assert summary.models == count and summary.reused >= 10000
    assert summary.computed == count - summary.reused
    assert len(fitaas.read_results(output)) == count
    # results are not kept: 9,000 more results add less than a patchset of them would
    # (20,000 in memory: 343 MB in the measurement)
    growth = rss[10000] - rss[1000]
    assert growth < 40e6, f"main process grew {growth / 1e6:.0f} MB in 9,000 models"


def test_a_worker_keeps_nothing_per_model(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyhf's per-call schema check of the measurement and its dead event subscriptions
    grew a worker by ~6 kB per model (0.6 GB over 10^5 models)."""
    import pyhf

    from fitaas.inference import InferenceOptions
    from fitaas.inputs.pallets import load_pallet
    from fitaas.worker.cache import worker_cache
    from fitaas.worker.tasks import WorkspaceRef, run_points

    pallet = load_pallet(demo)
    worker_cache().install(pallet.workspace_digest, pallet.workspace)
    ref = WorkspaceRef(pallet.workspace_digest)
    options = InferenceOptions(retry_strategy="none").to_dict()
    template = theory_models(demo)[10]
    points = [
        {"name": f"m{i}", "operations": _scaled(template, i, 1 + i / 10)["patch"]}
        for i in range(24)
    ]
    run_points(ref, points[:4], ["hypotest"], options)
    subscriptions = getattr(pyhf.events, "__events")["tensorlib_changed"]
    before = len(subscriptions._callbacks)
    checks: list[str] = []
    original = pyhf.schema.validate
    monkeypatch.setattr(
        pyhf.schema,
        "validate",
        lambda spec, name, *a, **k: checks.append(name) or original(spec, name, *a, **k),
    )
    for start in range(4, 24, 5):
        done = run_points(ref, points[start : start + 5], ["hypotest"], options)
        assert all(p["outcomes"]["hypotest"]["status"] == "ok" for p in done)
    assert len(subscriptions._callbacks) <= before
    assert checks == []  # the workspace was validated once, when loaded
