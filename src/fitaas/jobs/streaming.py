"""Theory scans: models as a stream, results as they finish, memory flat in the models.

A scan of a patchset holds its points, and their results, in memory. A theory scan of
10^5 models does not: models are read (:mod:`fitaas.inputs.theory_models`) only as far as the
workers need, a chunk at a time is looked up in the store (a model computed before is not
computed again: resume and reuse as for patchsets), and every result goes to the store and
to the sink (a JSON Lines file, a callback) the moment it arrives, then is forgotten.

The JSON Lines file (:class:`JsonlWriter`) has a header line (``workspace``, ``options``,
``labels``...), one line per model (the point entries of the results JSON), and a
``summary`` line when the scan ends; :func:`fitaas.read_results` reads it back.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyhf

from fitaas.engines.base import Engine
from fitaas.engines.compute import Compute, ComputeLike
from fitaas.engines.local import refuse_unguarded_main
from fitaas.errors import InputError
from fitaas.inference import KINDS, InferenceOptions
from fitaas.inference.backend import checking_backend
from fitaas.inference.results import strict_json
from fitaas.inputs.pallets import Pallet, Point, load_pallet
from fitaas.inputs.theory_models import ModelSource, model_source
from fitaas.jobs.gathering import (
    FINAL,
    Gather,
    ScanProgress,
    Task,
    check_scan_options,
    opened_store,
    options_on,
    pallet_result,
    point_result,
)
from fitaas.jobs.outcomes import Outcome
from fitaas.output.results import PointResult, ScanResult
from fitaas.store import ResultStore, result_key

__all__ = ["JsonlWriter", "StreamSummary", "collected_scan", "stream_scan"]

# Models looked up in the store at once.
READ_CHUNK = 256
# Tasks in flight per worker: enough that no worker waits for the next model.
TASKS_PER_WORKER = 2


@dataclass(frozen=True)
class StreamSummary:
    """What a streamed scan did.

    Attributes:
        models: Models scanned (computed now or found in the store).
        counts: Models per status (``ok``, ``suspect``, ``failed``).
        computed: (model, kind) results computed by this run.
        reused: (model, kind) results found in the store.
        kinds: Per task kind, how many results were computed and reused.
        output: The JSON Lines file written, if any.
    """

    models: int
    counts: dict[str, int]
    computed: int
    reused: int
    kinds: dict[str, dict[str, int]]
    output: str | None = None


class JsonlWriter:
    """Results as JSON Lines: a header, one line per model as it finishes, a summary.

    Args:
        path: The file (its folder is created); written afresh, each line flushed.
        header: The first line (workspace, options, labels).
    """

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self._line(header)

    def _line(self, item: dict[str, Any]) -> None:
        self._file.write(json.dumps(strict_json(item), allow_nan=False) + "\n")
        self._file.flush()

    def __call__(self, point: PointResult) -> None:
        self._line(point.to_dict())

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Write the summary line (when given) and close the file."""
        if summary is not None:
            self._line({"summary": summary})
        self._file.close()


def _header(pallet: Pallet, options: InferenceOptions, kinds: Sequence[str]) -> dict[str, Any]:
    header = pallet_result(pallet, options, ()).jsonl_header()
    return {**header, "kinds": list(kinds), "stream": True}


class _StreamGather(Gather):
    """A :class:`Gather` fed chunk by chunk: a model's keys and outcomes are kept only
    while it is in flight; models with the same patch as one in flight wait for it."""

    def __init__(
        self,
        pallet: Pallet,
        options: InferenceOptions,
        kinds: tuple[str, ...],
        store: ResultStore,
        emit: Callable[[PointResult, bool], None],
        force: bool,
        stop: threading.Event | None = None,
    ) -> None:
        self.kinds = kinds
        self.emit = emit
        self.force = force
        self.followers: dict[str, list[Point]] = {}
        version = str(pyhf.__version__)
        per_kind = {kind: options.for_kind(kind) for kind in kinds}
        super().__init__(pallet, options, version, per_kind, store, {}, {}, self._finish, stop)

    def _key(self, point: Point, kind: str) -> str:
        return result_key(
            self.pallet.workspace_digest, point.digest, kind, self.per_kind[kind], self.version
        )

    def _finish(self, point: Point) -> None:
        outcomes = {k: self.outcomes.pop((point.digest, k)) for k in self.kinds}
        for k in self.kinds:
            self.keys.pop((point.digest, k), None)
        for each in self.followers.pop(point.digest, [point]):
            self.emit(point_result(each, self.pallet.labels, self.kinds, outcomes), False)

    def tasks(self, engine: Engine, points: Iterator[Point], ref: Any) -> Iterator[Task]:
        """Tasks for the models the store lacks, a chunk of models at a time; the others
        are emitted from the store as they are reached."""
        while True:
            chunk, malformed = _read_chunk(points, READ_CHUNK)
            if not chunk and malformed is None:
                return
            keys = {(p.digest, k): self._key(p, k) for p in chunk for k in self.kinds}
            stored = {} if self.force else self.store.get(keys.values())
            todo: list[tuple[Point, tuple[str, ...]]] = []
            for point in chunk:
                if point.digest in self.followers:  # the same patch is in flight
                    self.followers[point.digest].append(point)
                    continue
                found = {k: stored.get(keys[point.digest, k]) for k in self.kinds}
                missing = tuple(k for k, v in found.items() if v is None or v.status not in FINAL)
                if not missing:
                    outcomes = {k: Outcome.from_dict(v.outcome) for k, v in found.items() if v}
                    result = point_result(point, self.pallet.labels, self.kinds, outcomes)
                    self.emit(result, True)
                    continue
                self.followers[point.digest] = [point]
                for kind in self.kinds:
                    self.keys[point.digest, kind] = keys[point.digest, kind]
                    if kind not in missing:
                        kept = found[kind]
                        assert kept is not None  # (a kind not missing is stored)
                        self.outcomes[point.digest, kind] = Outcome.from_dict(kept.outcome)
                todo.append((point, missing))
            yield from self._tasks(engine, todo, ref)
            if malformed is not None:  # (the models before it are computed and stored)
                raise malformed


def _read_chunk(points: Iterator[Point], size: int) -> tuple[list[Point], InputError | None]:
    """Up to ``size`` models, and the error of a malformed one reached (the models read
    before it are returned with it)."""
    chunk: list[Point] = []
    try:
        chunk.extend(itertools.islice(points, size))
    except InputError as exc:
        return chunk, exc
    return chunk, None


def stream_scan(
    workspace: str | Path | dict[str, Any] | Pallet,
    models: ModelSource,
    *,
    labels: Sequence[str] = (),
    options: InferenceOptions | None = None,
    kinds: Sequence[str] = ("hypotest",),
    compute: ComputeLike = None,
    store: str | Path | ResultStore | None = None,
    output: str | Path | None = None,
    on_result: Callable[[PointResult], None] | None = None,
    force: bool = False,
    total: int | None = None,
    progress: Callable[[ScanProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> StreamSummary:
    """Hypothesis tests (and optionally limits, fits) of a stream of theory models.

    Args:
        workspace: The background-only workspace (file, folder, decoded spec or pallet).
        models: The models: a JSON Lines file, a folder of patch files, or an iterable of
            ``{"name", "values", "patch"}`` mappings (see :mod:`fitaas.inputs.theory_models`).
        labels: Names of the models' values (e.g. ``("m1", "m2")``).
        options: Inference options (asymptotic tests; toys are for patchset scans).
        kinds: What to compute per model, among ``"hypotest"``, ``"upper_limit"``, ``"fit"``.
        compute: Where tasks run (see :func:`fitaas.scan`); a batch size is models per
            task (0: one).
        store: Results store (SQLite path or open store); ``None``: in memory only.
        output: A JSON Lines file for the results, written as they arrive.
        on_result: Called with every model's result as it arrives (in finishing order).
        force: Recompute results even when the store has them.
        total: How many models there are, for progress (when known).
        progress: Called with a :class:`ScanProgress` after every model.
        stop: Set it to stop the scan (see :func:`fitaas.scan`).

    Returns:
        What the scan did; the results are in the store, ``output`` and ``on_result``.

    Raises:
        InputError: Unusable inputs or options, or a malformed model (named by its line or
            file; models before it are stored).
        EngineError: The engine cannot start or cannot take these tasks.
        ScanStopped: ``stop`` was set.
    """
    refuse_unguarded_main()
    where = Compute.of(compute)
    options = options_on(where, options or InferenceOptions())
    kinds = tuple(dict.fromkeys(kinds))
    if not kinds or any(k not in KINDS for k in kinds):
        raise InputError(f"unknown task kind(s) in {list(kinds)}; choose among {KINDS}")
    if options.toybased:
        raise InputError("theory scans use the asymptotic calculator; toys need a patchset")
    pallet = workspace if isinstance(workspace, Pallet) else load_pallet(workspace)
    pallet = dataclasses.replace(pallet, labels=tuple(labels))
    points = model_source(models)
    first = next(points, None)
    if first is None:
        raise InputError("no models to scan")
    with checking_backend(options):
        check_scan_options(pallet, [first], options, kinds)
    points = itertools.chain([first], points)
    writer = JsonlWriter(output, _header(pallet, options, kinds)) if output else None
    emitter = _Emitter(writer, on_result, progress, total or 0)
    summary: dict[str, Any] | None = None
    try:
        with opened_store(store) as results_store:
            gather = _StreamGather(pallet, options, kinds, results_store, emitter.emit, force, stop)
            with where.in_use() as used:
                ref = used.install(pallet.workspace_digest, pallet.workspace)
                window = max(4, TASKS_PER_WORKER * used.workers)
                gather.drive(used, ref, gather.tasks(used, points, ref), window=window)
        summary = emitter.summary(gather, kinds)
    finally:
        if writer is not None:
            writer.close(summary)
    return StreamSummary(
        models=summary["points"],
        counts={k: v for k, v in emitter.counts.items() if v},
        computed=summary["computed"],
        reused=summary["reused"],
        kinds=summary["kinds"],
        output=str(output) if output else None,
    )


class _Emitter:
    """Each model's result to the output file, the callback and the progress, counted."""

    def __init__(
        self,
        writer: JsonlWriter | None,
        on_result: Callable[[PointResult], None] | None,
        progress: Callable[[ScanProgress], None] | None,
        total: int,
    ) -> None:
        self.writer, self.on_result, self.progress, self.total = writer, on_result, progress, total
        self.counts = {"ok": 0, "suspect": 0, "failed": 0}
        self.models = self.reused = 0

    def emit(self, result: PointResult, reused: bool) -> None:
        self.models += 1
        self.reused += reused
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if self.writer is not None:
            self.writer(result)
        if self.on_result is not None:
            self.on_result(result)
        if self.progress is not None:
            failed = self.counts["failed"]
            self.progress(ScanProgress(self.total, self.models, failed, self.reused, result))

    def summary(self, gather: Gather, kinds: Sequence[str]) -> dict[str, Any]:
        """The JSON Lines file's summary line: models, statuses, computed and reused."""
        per_kind = {
            kind: {
                "computed": gather.computed_kinds[kind],
                "reused": self.models - gather.computed_kinds[kind],
            }
            for kind in kinds
        }
        return {
            "points": self.models,
            **self.counts,
            "computed": gather.computed,
            "reused": self.models * len(kinds) - gather.computed,
            "kinds": per_kind,
        }


def collected_scan(
    workspace: str | Path | dict[str, Any] | Pallet,
    models: ModelSource,
    *,
    labels: Sequence[str] = (),
    options: InferenceOptions | None = None,
    kinds: Sequence[str] = ("hypotest",),
    **stream_options: Any,
) -> ScanResult:
    """A streamed scan whose results are also kept, in finishing order: what
    ``fitaas.scan(workspace, models=...)`` returns (for scans whose results fit in memory;
    :func:`stream_scan` with ``output`` for the others).
    """
    points: list[PointResult] = []
    pallet = workspace if isinstance(workspace, Pallet) else load_pallet(workspace)
    pallet = dataclasses.replace(pallet, labels=tuple(labels))
    options = options or InferenceOptions()
    summary = stream_scan(
        pallet,
        models,
        labels=labels,
        options=options,
        kinds=kinds,
        on_result=points.append,
        **stream_options,
    )
    computed = {kind: counts["computed"] for kind, counts in summary.kinds.items()}
    return pallet_result(pallet, options, points, tuple(summary.kinds), computed)
