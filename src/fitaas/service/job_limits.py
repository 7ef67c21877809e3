"""What one job may ask of a service: bounded work per request, and fair shares.

Every size a request names (points, toys, grids, labels, pallets, an upper limit's scan) is
held to a limit before the job is accepted: a request above one gets 422 naming the limit,
its value and the value asked for, and nothing is planned. The defaults suit a laptop and a
site alike (a published pallet has at most a few thousand points; 10,000 toys per point is a
thorough toy study); a site sets its own with ``fitaas serve --limit NAME=VALUE`` or a site
file (``fitaas serve --site site.toml``, a ``[limits]`` table).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from fitaas.errors import InputError
from fitaas.inference import InferenceOptions

__all__ = ["JobLimits", "LimitExceeded", "load_site_limits"]


class LimitExceeded(InputError):
    """A request asks for more than a limit of the site allows."""


@dataclass(frozen=True)
class JobLimits:
    """The most one job may ask for.

    Attributes:
        points: Signal points (patches, theory models, a sweep's points in all) per job.
        pallets: Pallets of a sweep or combination.
        labels: Labels of a theory scan's values.
        toys: Pseudo-experiments per ensemble (``ntoys``, and ``max_toys`` where
            ``cls_accuracy`` asks for more as needed).
        total_toys: Pseudo-experiments per job: per point the two ensembles of the most
            toys it may draw, times its points.
        toy_blocks: Blocks of toys per job (the units it is planned, stored and resumed in:
            toys over ``toy_block_size``).
        grid: Values of a likelihood scan's grid.
        ul_scan: Values of an upper limit's scan (``ul_scan``'s points).
        running_jobs: Jobs of one user that run at once on one endpoint (the others wait,
            while other users' jobs run beside them).
    """

    points: int = 100_000
    pallets: int = 200
    labels: int = 100
    toys: int = 100_000
    total_toys: int = 20_000_000
    toy_blocks: int = 20_000
    grid: int = 2_000
    ul_scan: int = 1_000
    running_jobs: int = 1

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"limit {item.name}: must be a positive integer, got {value!r}")

    def with_values(self, values: dict[str, Any], source: str) -> JobLimits:
        """These limits with ``values`` (by name) instead.

        Raises:
            InputError: An unknown name or a value that is not a positive integer.
        """
        known = {item.name for item in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"{source}: unknown limit(s) {', '.join(unknown)}"
                f" (known: {', '.join(sorted(known))})"
            )
        return replace(self, **values)

    def _refuse(self, name: str, asked: float, what: str) -> None:
        limit = getattr(self, name)
        if asked > limit:
            raise LimitExceeded(
                f"{what}: {_count(asked)} is above this service's limit {name} = {limit:,}"
                " (a site sets it with fitaas serve --limit)"
            )

    def check_sizes(
        self, points: int, pallets: int = 0, labels: int = 0, grid: int | None = None
    ) -> None:
        """Refuse a job's sizes above the limits.

        Raises:
            LimitExceeded: Named, with the limit and the value asked for.
        """
        self._refuse("points", points, "points in the job")
        self._refuse("pallets", pallets, "pallets in the job")
        self._refuse("labels", labels, "labels of the models' values")
        if grid is not None:
            self._refuse("grid", grid, "values of the likelihood scan's grid")

    def check_options(self, options: InferenceOptions, points: int) -> None:
        """Refuse options that ask for more than the limits (toys, an upper limit's scan).

        Raises:
            LimitExceeded: Named, with the limit and the value asked for.
        """
        if options.ul_scan is not None:
            self._refuse("ul_scan", options.ul_scan[2], "option ul_scan's points")
        if not options.toybased:
            return
        self._refuse("toys", options.ntoys, "option ntoys")
        most = options.ntoys
        if options.cls_accuracy is not None:
            self._refuse("toys", options.max_toys, "option max_toys")
            most = max(most, options.max_toys)
        per_point = 2 * most  # (the signal-plus-background and background-only ensembles)
        self._refuse(
            "total_toys", per_point * points, f"toys of {points:,} points ({per_point:,} each)"
        )
        blocks = 2 * math.ceil(most / options.toy_block_size) * points
        self._refuse(
            "toy_blocks",
            blocks,
            f"blocks of toys (option toy_block_size {options.toy_block_size:,})",
        )


def _count(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def load_site_limits(path: str | Path, base: JobLimits | None = None) -> JobLimits:
    """The ``[limits]`` table of a site file (TOML) over ``base`` (default the defaults).

    Raises:
        InputError: The file cannot be read, is not TOML, or names unknown limits or bad
            values.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"site file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"site file {path}: not TOML ({exc})") from None
    table = raw.get("limits", {})
    if not isinstance(table, dict):
        raise InputError(f"site file {path}: [limits] must be a table")
    return (base or JobLimits()).with_values(table, f"site file {path}")
