"""Worker entry points, in a real spawned worker: outcomes returned, never raised; the
workspace asked for by digest and kept."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from conftest import load
from fitaas.inference import InferenceOptions
from fitaas.inputs.pallets import digest
from fitaas.worker.payloads import WorkspaceNotOnWorker, WorkspaceRef, compress_workspace
from fitaas.worker.tasks import run_held_fits, run_hypotests, run_points


def test_tasks_ask_for_the_workspace_once_and_report_failures(demo: Path) -> None:
    spec = load(demo / "BkgOnly.json")
    patch = load(demo / "patchset.json")["patches"][5]
    ref = WorkspaceRef(digest(spec))
    good = {"name": "good", "digest": digest(patch["patch"]), "operations": patch["patch"]}
    bad = {"name": "bad", "operations": [{"op": "remove", "path": "/channels/9"}]}
    options = InferenceOptions().to_dict()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        with pytest.raises(WorkspaceNotOnWorker):
            pool.submit(run_points, ref, [good], ("fit",), options).result()
        payload = compress_workspace(spec)
        fitted = pool.submit(run_points, ref, [good, bad], ("fit",), options, payload).result()
        assert fitted[0]["outcomes"]["fit"]["status"] == "ok"
        failed = fitted[1]["outcomes"]["fit"]
        assert failed["status"] == "failed"
        assert failed["error"].startswith("cannot build the model of patch 'bad'")
        # the workspace is kept: no payload from now on
        held = pool.submit(run_held_fits, ref, good, [(1, 1.05)], options).result()
        assert held[0]["error"] is None and held[0]["bestfit"][1] == 1.05
        tests = pool.submit(run_hypotests, ref, good, [1.0, 3.0], options).result()
        assert [t["status"] for t in tests] == ["ok", "ok"]
        assert tests[1]["result"]["cls_obs"] < tests[0]["result"]["cls_obs"] <= 1
        outside = pool.submit(run_held_fits, ref, good, [(1, 0.25)], options).result()
        assert "outside of its bounds" in outside[0]["error"]  # reported, not raised
        lost = pool.submit(run_held_fits, ref, bad, [(1, 0.25)], options).result()
        assert lost[0]["error"].startswith("cannot build the model of 'bad'")


def test_a_long_lived_worker_keeps_the_most_recent_workspaces(demo: Path, tmp_path: Path) -> None:
    from fitaas.worker.cache import WORKSPACES_KEPT, WorkerCache

    base = load(demo / "BkgOnly.json")
    cache = WorkerCache()
    refs = []
    for index in range(WORKSPACES_KEPT + 2):
        spec = {**base, "version": f"1.0.{index}"}  # another digest each
        path = tmp_path / f"ws{index}.json.gz"
        path.write_bytes(compress_workspace(spec))
        refs.append(WorkspaceRef(digest(spec), str(path)))
        cache.workspace(refs[-1])
        cache.workspace(refs[0])  # the first stays in use
    assert refs[0].digest in cache and refs[-1].digest in cache
    dropped = [r for r in refs if r.digest not in cache]
    assert len(dropped) == 2 and refs[1] in dropped  # the least recently used
    cache.workspace(dropped[0])  # read again from its file when asked
    assert (
        dropped[0].digest in cache
        and len([r for r in refs if r.digest in cache]) == WORKSPACES_KEPT
    )
    gone = next(r for r in refs if r.digest not in cache)
    with pytest.raises(WorkspaceNotOnWorker):  # no file, no payload: the task asks for it
        cache.workspace(WorkspaceRef(gone.digest))
