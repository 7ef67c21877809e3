"""Rich progress bars for scans and fit jobs: done/failed/total, rate and ETA, in a terminal
or a notebook (``with fitaas.ScanBar() as bar: fitaas.scan(..., progress=bar)``)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["STARTING", "FitBar", "ScanBar"]

# What the bar says until the first point is in: the wait is the workers' start (imports)
# and each model structure's compilation, seconds on a first run.
STARTING = "starting the workers, compiling the model structures..."


class FitCounts(Protocol):
    """What a bar reads of a job's progress (``fitaas.jobs.fit_jobs.FitProgress``); stated
    here, so that output/ imports nothing of jobs/."""

    @property
    def total(self) -> int: ...

    @property
    def done(self) -> int: ...

    @property
    def failed(self) -> int: ...


class ScanCounts(FitCounts, Protocol):
    """... and of a scan's (``fitaas.jobs.gathering.ScanProgress``): its last point, toys."""

    @property
    def latest(self) -> Any: ...

    @property
    def toys_done(self) -> int: ...

    @property
    def toys_total(self) -> int: ...


class ScanBar:
    """Progress display for :func:`fitaas.scan`; use as a context manager and a callback.

    Args:
        quiet: Show nothing.
        console: Where to draw (default: standard error).
        label: What the bar is of (a sweep's pallet name).
    """

    def __init__(
        self, quiet: bool = False, console: Console | None = None, label: str = "scan"
    ) -> None:
        self._label = label
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/red]"),
            TextColumn("{task.fields[latest]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=quiet,
        )
        self._task: TaskID | None = None
        self._toys: TaskID | None = None

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, state: ScanCounts) -> None:
        if self._task is None:
            self._task = self._progress.add_task(
                self._label, total=state.total, failed=0, latest=""
            )
        if state.toys_total:
            if self._toys is None:
                self._toys = self._progress.add_task("toys", total=0, failed=0, latest="")
            self._progress.update(self._toys, completed=state.toys_done, total=state.toys_total)
        if state.latest is None and state.done:
            return
        latest = state.latest.patch or "" if state.latest else ""
        if state.latest is None and state.done < state.total:  # nothing computed yet
            latest = STARTING
        self._progress.update(self._task, completed=state.done, failed=state.failed, latest=latest)


class FitBar(ScanBar):
    """Progress display for rankings and likelihood scans: fits done/failed/total."""

    def __call__(self, state: FitCounts) -> None:
        if self._task is None:
            self._task = self._progress.add_task(
                self._label, total=state.total, failed=0, latest=""
            )
        latest = STARTING if state.done == 0 else ""
        self._progress.update(self._task, completed=state.done, failed=state.failed, latest=latest)
