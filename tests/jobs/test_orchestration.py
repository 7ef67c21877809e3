"""The scan's orchestration on a fake engine: canned outcomes, no pyhf fits, milliseconds.

The fake workers answer the task every engine runs (``run_points``) with outcomes made from
the point's name, and can lose a task (a dead worker), fail a point, or set the scan's stop
event after some tasks: what is stored, reused, resent, resumed and reported is the scan's
own doing. Real fits on real engines are tested elsewhere (``test_scan``, ``test_engines``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import fitaas
from fake_engine import FakeWorkers, canned_block, canned_cls
from fitaas import InferenceOptions
from fitaas.jobs.dispatch import Stopped
from fitaas.jobs.toy_blocks import merge_blocks


def _scan(demo: Path, store: Path, workers: FakeWorkers, retries: int = 2, **kwargs: Any) -> Any:
    compute = fitaas.Compute(executor=workers, workers=2, retries=retries, batch_size=1)
    return fitaas.scan(demo, compute=compute, store=store, **kwargs)


def test_every_point_gets_its_own_outcome_and_a_rerun_computes_nothing(
    demo: Path, tmp_path: Path
) -> None:
    workers = FakeWorkers()
    first = _scan(demo, tmp_path / "store.sqlite", workers)
    names = [point.patch for point in first.points]
    assert len(names) == 20 and len(set(names)) == 20
    for point in first.points:
        assert point.status == "ok"
        assert point.hypotest is not None
        assert point.hypotest.cls_obs == canned_cls(point.patch)
    assert set(workers.calls) == set(names)
    again = FakeWorkers()
    second = _scan(demo, tmp_path / "store.sqlite", again)
    assert not again.calls  # every outcome from the store
    assert [p.hypotest.cls_obs for p in second.points] == [p.hypotest.cls_obs for p in first.points]
    forced = FakeWorkers()
    _scan(demo, tmp_path / "store.sqlite", forced, force=True)
    assert set(forced.calls) == set(names)


def test_the_workspace_is_sent_only_to_a_worker_that_asks(demo: Path, tmp_path: Path) -> None:
    workers = FakeWorkers(has_workspace=False)
    result = _scan(demo, tmp_path / "store.sqlite", workers)
    assert all(point.status == "ok" for point in result.points)
    # a task that came back asking for the workspace was sent again with it, once
    assert workers.has_workspace
    assert max(workers.calls.values()) == 2
    assert [p.hypotest.cls_obs for p in result.points] == [
        canned_cls(p.patch) for p in result.points
    ]


def test_a_lost_task_is_resent_and_one_lost_too_often_fails_alone(
    demo: Path, tmp_path: Path
) -> None:
    names = [p.patch for p in _scan(demo, tmp_path / "names.sqlite", FakeWorkers()).points]
    unlucky, doomed = names[3], names[7]
    workers = FakeWorkers(lose={unlucky: 1, doomed: 10})
    result = _scan(demo, tmp_path / "store.sqlite", workers, retries=2)
    by_name = {p.patch: p for p in result.points}
    assert by_name[unlucky].status == "ok"
    assert by_name[unlucky].hypotest.cls_obs == canned_cls(unlucky)
    assert by_name[doomed].status == "failed"
    assert f"worker died running {doomed}" in (by_name[doomed].error or "")
    assert workers.calls[doomed] == 3  # the first try and two retries
    assert sum(p.status == "ok" for p in result.points) == 19
    # a failed point is computed again next time; the others are not
    rerun = FakeWorkers()
    again = _scan(demo, tmp_path / "store.sqlite", rerun)
    assert set(rerun.calls) == {doomed}
    assert all(p.status == "ok" for p in again.points)


def test_a_failed_fit_is_recorded_and_the_scan_goes_on(demo: Path, tmp_path: Path) -> None:
    names = [p.patch for p in _scan(demo, tmp_path / "names.sqlite", FakeWorkers()).points]
    workers = FakeWorkers(fail=frozenset(names[:2]))
    result = _scan(demo, tmp_path / "store.sqlite", workers)
    statuses = Counter(p.status for p in result.points)
    assert statuses == {"ok": 18, "failed": 2}
    assert {p.patch for p in result.points if p.status == "failed"} == set(names[:2])
    assert all("canned" in (p.error or "") for p in result.points if p.status == "failed")


def test_a_stopped_scan_keeps_what_finished_and_resumes_with_the_rest(
    demo: Path, tmp_path: Path
) -> None:
    stop = threading.Event()
    workers = FakeWorkers(stop=stop, stop_after=5)
    seen: list[Any] = []
    with pytest.raises(Stopped):
        _scan(demo, tmp_path / "store.sqlite", workers, stop=stop, progress=seen.append)
    assert seen, "no progress was reported"
    answered = workers.answered_names
    assert len(answered) >= 5
    rest = FakeWorkers()
    result = _scan(demo, tmp_path / "store.sqlite", rest)
    assert all(p.status == "ok" for p in result.points)
    # every task answered before the stop was kept (it was thrown away when the stop came
    # while finished tasks waited to be recorded); only the others are computed now
    assert set(rest.calls) == {p.patch for p in result.points} - answered


def test_toys_are_blocks_computed_once_merged_and_extended(demo: Path, tmp_path: Path) -> None:
    options = InferenceOptions(calctype="toybased", ntoys=250, toy_block_size=100)
    store = tmp_path / "store.sqlite"
    names = [p.patch for p in _scan(demo, tmp_path / "names.sqlite", FakeWorkers()).points]
    workers = FakeWorkers(lose={names[2]: 1})  # (its first task dies: sent again)
    result = _scan(demo, store, workers, options=options, patches=names[:3])
    assert [p.patch for p in result.points] == names[:3]
    for point in result.points:
        assert point.status == "ok"
        blocks = {
            (e, i): canned_block(point.patch, e, i, 100) for e in ("sb", "b") for i in range(3)
        }
        merged = merge_blocks(options, blocks, 250)
        assert merged.result is not None and point.hypotest is not None
        assert point.hypotest.cls_obs == pytest.approx(merged.result["cls_obs"], abs=0)
        assert point.hypotest.toys is not None
        for ensemble in ("sb", "b"):
            assert all(workers.calls[f"{point.patch}/{ensemble}/{i}"] >= 1 for i in range(3))
            assert workers.calls[f"{point.patch}/{ensemble}/3"] == 0
    # the same toys again: nothing computed; 350 toys: only the fourth block of each
    again = FakeWorkers()
    _scan(demo, store, again, options=options, patches=names[:3])
    assert not again.calls
    more = FakeWorkers()
    _scan(demo, store, more, options=dataclasses.replace(options, ntoys=350), patches=names[:3])
    assert set(more.calls) == {f"{n}/{e}/3" for n in names[:3] for e in ("sb", "b")}
