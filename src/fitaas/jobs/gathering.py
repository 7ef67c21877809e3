"""Gathering a scan's work: tasks submitted to an engine, every outcome stored as it arrives,
lost tasks sent again; toy blocks planned, merged and topped up; a point's outcomes as a
result. Shared by the scan of a pallet (:mod:`fitaas.jobs.scanning`) and the stream of theory
models (:mod:`fitaas.jobs.streaming`).
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyhf

from fitaas.engines.base import Engine, EngineError
from fitaas.engines.compute import Compute
from fitaas.fast.device import requested_device
from fitaas.inference import KINDS, InferenceOptions, build_model
from fitaas.inference.core import check_options
from fitaas.inference.kinds import RESULT_TYPES
from fitaas.inference.models import check_measurement
from fitaas.inputs.pallets import Pallet, Point
from fitaas.jobs.dispatch import Dispatcher, JobShape, Sending, Stopped
from fitaas.jobs.outcomes import Outcome
from fitaas.jobs.toy_blocks import Block, blocks_for, merge_blocks, more_toys
from fitaas.output.results import PointResult, ScanResult
from fitaas.store import Record, ResultStore, open_store, result_key
from fitaas.worker.tasks import WorkspaceRef, failed_block, run_points, run_toy_blocks

__all__ = [
    "FINAL",
    "Gather",
    "ScanProgress",
    "ScanStopped",
    "Task",
    "ToyGather",
    "check_scan_options",
    "opened_store",
    "options_on",
    "pallet_result",
    "point_result",
]

# Statuses that are final answers, reused from the store (failed points are tried again).
FINAL = ("ok", "suspect")
# Points looked up in the store together when results are read back.
STORE_CHUNK = 1000
# A scan's ``stop`` event was set: it stopped; finished results are in the store.
ScanStopped = Stopped


@dataclass(frozen=True)
class ScanProgress:
    """Where a scan stands, passed to the progress callback after every point.

    Attributes:
        total: Points in the scan.
        done: Points finished (computed now or found in the store).
        failed: Points among ``done`` where something failed.
        reused: Points found complete in the store.
        latest: The point that just finished (``None`` for the first report).
        toys_done: Toys computed so far (toy-based tests; both ensembles, whole blocks).
        toys_total: Toys planned so far (grows when ``cls_accuracy`` asks for more).
    """

    total: int
    done: int
    failed: int
    reused: int
    latest: PointResult | None = None
    toys_done: int = 0
    toys_total: int = 0


@contextmanager
def opened_store(store: str | Path | ResultStore | None) -> Iterator[ResultStore]:
    if store is not None and not isinstance(store, str | Path):
        yield store  # an open store (SQLite or SQL database): the caller owns it
        return
    with open_store(":memory:" if store is None else store) as opened:
        yield opened


def point_result(
    point: Point, labels: tuple[str, ...], kinds: Sequence[str], outcomes: Mapping[str, Outcome]
) -> PointResult:
    results: dict[str, Any] = dict.fromkeys(KINDS)
    errors, reasons, seconds = [], [], 0.0
    statuses = set()
    for kind in kinds:
        outcome = outcomes[kind]
        seconds += outcome.seconds
        statuses.add(outcome.status)
        if outcome.result is not None:
            results[kind] = RESULT_TYPES[kind].from_dict(outcome.result)
        if outcome.status == "failed":
            errors.append(outcome.error or "failed")
        if outcome.reason:
            reasons.append(outcome.reason)
    status = "failed" if "failed" in statuses else "suspect" if "suspect" in statuses else "ok"
    diagnostics = outcomes["hypotest"].diagnostics if "hypotest" in kinds else None
    return PointResult(
        patch=point.name,
        values=point.values,
        labels=labels,
        hypotest=results["hypotest"],
        upper_limit=results["upper_limit"],
        fit=results["fit"],
        status=status,
        error="; ".join(dict.fromkeys(errors)) if errors else None,
        seconds=round(seconds, 6),
        reason="; ".join(dict.fromkeys(reasons)) if reasons else None,
        diagnostics=diagnostics,
    )


def options_on(compute: Compute, options: InferenceOptions) -> InferenceOptions:
    """The options as a job on ``compute`` uses them: on a GPU (asked for, or this
    process's workers' device) the fast path fits points in lockstep, which leaves its
    numbers as they are (the lockstep fits are checked equal to one-at-a-time ones)."""
    on_gpu = requested_device() == "gpu" or compute.on_gpu
    if on_gpu and options.fast and not options.lockstep:
        return dataclasses.replace(options, lockstep=True)
    return options


def check_scan_options(
    pallet: Pallet, points: Sequence[Point], options: InferenceOptions, kinds: Sequence[str]
) -> None:
    """Options that name parameters or move the POI, checked on the first point's model
    once (one line, before anything runs) rather than failing every point; and the
    measurement, by name."""
    check_measurement(pallet.workspace, options.measurement)
    default = InferenceOptions()
    if not points or (
        not (options.init_pars or options.fixed_params or options.par_bounds)
        and options.poi_value == default.poi_value
    ):
        return
    try:
        model, _ = build_model(
            pyhf.Workspace(pallet.workspace, validate=False), points[0].operations, options
        )
    except Exception:  # a point that cannot be built fails with its own reason
        return
    check_options(model, options, kinds)


def pallet_result(
    pallet: Pallet,
    options: InferenceOptions,
    points: Sequence[PointResult],
    kinds: Sequence[str] = (),
    computed: Mapping[str, int] | None = None,
) -> ScanResult:
    """A scan result of a pallet's points, with how many results of each kind this run
    computed (``computed``; the others were taken from the store)."""
    done = {kind: (computed or {}).get(kind, 0) for kind in kinds}
    return ScanResult(
        workspace_digest=pallet.workspace_digest,
        options=options,
        pyhf_version=str(pyhf.__version__),
        labels=pallet.labels,
        points=tuple(points),
        computed=sum(done.values()),
        reused=len(kinds) * len(points) - sum(done.values()),
        source=pallet.source,
        kinds={kind: {"computed": n, "reused": len(points) - n} for kind, n in done.items()},
        units=pallet.units,
    )


@dataclass
class Task:
    kinds: tuple[str, ...]
    points: list[Point]
    blocks: tuple[Block, ...] = ()  # toy blocks (of the one point), for toy tasks
    sending: Sending = field(default_factory=Sending)


class Gather:
    """Submit the missing work, store every outcome as it arrives, resend lost tasks."""

    def __init__(
        self,
        pallet: Pallet,
        options: InferenceOptions,
        version: str,
        per_kind: dict[str, dict[str, Any]],
        results_store: ResultStore,
        outcomes: dict[tuple[str, str], Outcome],
        keys: dict[tuple[str, str], str],
        finish: Callable[[Point], None],
        stop: threading.Event | None = None,
        report_toys: Callable[[int, int], None] | None = None,
    ) -> None:
        self.pallet = pallet
        self.option_dict = options.to_dict()
        self.lockstep = bool(options.fast) and options.lockstep
        self.version = version
        self.per_kind = per_kind
        self.store = results_store
        self.outcomes = outcomes
        self.keys = keys
        self.finish = finish
        self.computed_kinds: collections.Counter[str] = collections.Counter()
        self.stop = stop
        self.report_toys = report_toys
        # sends a task while the work runs (more toys for a point), once :meth:`drive` runs
        self.submit: Callable[[Task], None] = lambda task: None

    @property
    def computed(self) -> int:
        """(point, kind) results computed by this run."""
        return sum(self.computed_kinds.values())

    def _put(
        self, key: str, point: Point, kind: str, options: Mapping[str, Any], outcome: Any
    ) -> None:
        """Store one outcome of a point (an :class:`Outcome`, or a block of toys' mapping)."""
        data = outcome.to_dict() if isinstance(outcome, Outcome) else outcome
        record = Record(
            key,
            self.pallet.workspace_digest,
            point.name,
            point.digest,
            kind,
            options,
            self.version,
            data,
        )
        self.store.put(record)

    def _tasks(
        self, engine: Engine, todo: list[tuple[Point, tuple[str, ...]]], ref: WorkspaceRef
    ) -> list[Task]:
        size = engine.batch_size_for(len(todo), self.lockstep)
        by_kinds: dict[tuple[str, ...], list[Point]] = {}
        for point, kinds in todo:
            by_kinds.setdefault(kinds, []).append(point)
        tasks = [
            Task(kinds, points[start : start + size])
            for kinds, points in by_kinds.items()
            for start in range(0, len(points), size)
        ]
        return self._fit_limit(engine, tasks, ref) if engine.max_submission_bytes else tasks

    def _fit_limit(self, engine: Engine, tasks: list[Task], ref: WorkspaceRef) -> list[Task]:
        """Split tasks so that each submission stays under the engine's size limit."""
        limit, workspace = self._submission_limit(engine, ref)
        out = []
        for task in tasks:
            sizes = [len(pickle.dumps(list(p.operations))) for p in task.points]
            if workspace + max(sizes) > limit:
                raise EngineError(
                    f"patch '{task.points[sizes.index(max(sizes))].name}' is "
                    f"{max(sizes) / 1e6:.1f} MB: too large for the {engine.name} engine's "
                    f"{limit / 1e6:.0f} MB per submission"
                )
            batch: list[Point] = []
            used = workspace
            for point, size in zip(task.points, sizes, strict=True):
                if batch and used + size > limit:
                    out.append(Task(task.kinds, batch))
                    batch, used = [], workspace
                batch.append(point)
                used += size
            out.append(Task(task.kinds, batch))
        return out

    def _submission_limit(self, engine: Engine, ref: WorkspaceRef) -> tuple[int, int]:
        """The engine's limit per submission and the workspace's share of it (pickled sizes,
        with room for what the engine's serialization adds).

        Raises:
            EngineError: The workspace alone is too large to travel with tasks.
        """
        limit = int((engine.max_submission_bytes or 0) / engine.serialization_overhead)
        workspace = 0
        if not ref.path:  # the workspace travels with the tasks
            workspace = len(engine.payload(self.pallet.workspace_digest, self.pallet.workspace))
        if workspace > limit // 2:
            raise EngineError(
                f"the workspace is {workspace / 1e6:.1f} MB compressed, too large to send with "
                f"tasks to the {engine.name} engine (limit {limit / 1e6:.0f} MB per submission): "
                "set shared_path in the endpoint file to a folder the workers can read"
            )
        return limit, workspace

    def run(self, engine: Engine, todo: list[tuple[Point, tuple[str, ...]]]) -> None:
        ref = engine.install(self.pallet.workspace_digest, self.pallet.workspace)
        tasks = self._tasks(engine, todo, ref)
        if 0 < len(tasks) <= engine.inline_tasks:  # (a pool's start would cost more)
            engine.run_here()
        self.drive(engine, ref, iter(tasks))

    def drive(
        self, engine: Engine, ref: WorkspaceRef, tasks: Iterator[Task], window: int = 0
    ) -> None:
        """Submit ``tasks`` and record their outcomes as they arrive.

        Args:
            engine: The engine.
            ref: How tasks name the workspace (:meth:`Engine.install`).
            tasks: The tasks, taken as the window allows.
            window: The most tasks in flight (0: every task at once); a stream of
                models is read only as far as this.
        """
        shape = JobShape(
            lambda task, payload: self._call(engine, ref, task, payload),
            self._record,
            self._lost,
            lambda: engine.payload(self.pallet.workspace_digest, self.pallet.workspace),
        )
        dispatcher = Dispatcher(engine, shape, self.stop)
        self.submit = dispatcher.submit
        dispatcher.run(tasks, window)

    def _call(
        self, engine: Engine, ref: WorkspaceRef, task: Task, payload: bytes | None
    ) -> Future[list[dict[str, Any]]]:
        points = [p.task_data() for p in task.points]
        return engine.executor.submit(
            run_points, ref, points, task.kinds, self.option_dict, payload
        )

    def _lost(self, task: Task, error: str) -> list[dict[str, Any]]:
        outcome = Outcome.failed(error).to_dict()
        return [
            {"name": p.name, "outcomes": dict.fromkeys(task.kinds, outcome)} for p in task.points
        ]

    def _record(self, task: Task, returned: list[dict[str, Any]]) -> None:
        for point, item in zip(task.points, returned, strict=True):
            for kind, returned_outcome in item["outcomes"].items():
                outcome = Outcome.from_dict(returned_outcome)
                self._put(self.keys[point.digest, kind], point, kind, self.per_kind[kind], outcome)
                self.outcomes[point.digest, kind] = outcome
                self.computed_kinds[kind] += 1
            self.finish(point)


class ToyGather(Gather):
    """Toy-based hypothesis tests: blocks of toys as tasks, stored one by one, merged.

    A point is finished when all its blocks are in (stored before or computed now); with
    ``cls_accuracy`` its result may ask for more blocks first. The merged result is stored
    under the point's hypothesis-test key, like an asymptotic one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = InferenceOptions.from_dict(self.option_dict)
        self.totals: dict[str, int] = {}  # toys each point needs now
        self.blocks: dict[str, dict[Block, dict[str, Any]]] = {}  # each point's blocks in
        self.block_tasks: list[Task] = []  # planned, not yet handed over
        self.toys_done = self.toys_total = 0

    def run(self, engine: Engine, todo: list[tuple[Point, tuple[str, ...]]]) -> None:
        for point, _ in todo:
            if self.stop is not None and self.stop.is_set():  # (a cancel while planning)
                raise ScanStopped("the work was stopped; finished results are in the store")
            self.blocks[point.digest] = {}
            self._plan(point, self.options.ntoys)
        super().run(engine, todo)

    def _block_key(self, point: Point, block: Block) -> str:
        return result_key(
            self.pallet.workspace_digest,
            point.digest,
            "toys",
            self.options.for_toy_block(*block),
            self.version,
        )

    def _plan(self, point: Point, total: int) -> None:
        """Take the stored blocks ``total`` toys need; queue tasks for the others."""
        self.totals[point.digest] = total
        have = self.blocks[point.digest]
        wanted = [b for b in blocks_for(self.options, total) if b not in have]
        keys = {self._block_key(point, b): b for b in wanted}
        for key, found in self.store.get(keys).items():
            if found.status == "ok":
                have[keys[key]] = found.outcome
        missing = tuple(b for b in wanted if b not in have)
        for block in missing:
            self.block_tasks.append(Task(("hypotest",), [point], blocks=(block,)))
        self.toys_total += len(missing) * self.options.toy_block_size
        self._report()

    def _report(self) -> None:
        if self.report_toys is not None:
            self.report_toys(self.toys_done, self.toys_total)

    def _tasks(
        self, engine: Engine, todo: list[tuple[Point, tuple[str, ...]]], ref: WorkspaceRef
    ) -> list[Task]:
        if engine.max_submission_bytes:  # a toy task is small; the workspace may not be
            self._submission_limit(engine, ref)
        waiting = {task.points[0].digest for task in self.block_tasks}
        ready = [point for point, _ in todo if point.digest not in waiting]
        tasks, self.block_tasks = self.block_tasks, []
        for point in ready:  # every block stored already
            self._complete(point)
        return tasks

    def _call(
        self, engine: Engine, ref: WorkspaceRef, task: Task, payload: bytes | None
    ) -> Future[list[dict[str, Any]]]:
        point = task.points[0]
        data = point.task_data()
        return engine.executor.submit(
            run_toy_blocks, ref, data, list(task.blocks), self.option_dict, payload
        )

    def _lost(self, task: Task, error: str) -> list[dict[str, Any]]:
        return [failed_block(e, i, error) for e, i in task.blocks]

    def _record(self, task: Task, returned: list[dict[str, Any]]) -> None:
        point = task.points[0]
        for outcome in returned:
            block = (str(outcome["ensemble"]), int(outcome["index"]))
            if outcome["status"] == "ok":
                key = self._block_key(point, block)
                self._put(key, point, "toys", self.options.for_toy_block(*block), outcome)
            self.blocks[point.digest][block] = outcome
            self.toys_done += self.options.toy_block_size
        self._report()
        needed = blocks_for(self.options, self.totals[point.digest])
        if all(b in self.blocks[point.digest] for b in needed):
            self._complete(point)

    def _complete(self, point: Point) -> None:
        total = self.totals[point.digest]
        outcome = merge_blocks(self.options, self.blocks[point.digest], total)
        more = more_toys(self.options, outcome, total)
        if more is not None:
            self._plan(point, more)
            tasks, self.block_tasks = self.block_tasks, []
            if tasks:
                for task in tasks:
                    self.submit(task)
                return
            self._complete(point)
            return
        key = self.keys[point.digest, "hypotest"]
        self._put(key, point, "hypotest", self.per_kind["hypotest"], outcome)
        self.outcomes[point.digest, "hypotest"] = outcome
        self.computed_kinds["hypotest"] += 1
        self.finish(point)
