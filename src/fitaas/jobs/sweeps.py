"""Sweeps: several pallets (analyses, regions) as one job on one engine, workers shared.

Each pallet is scanned in turn on the same engine: a local pool starts once, its workers
keep every workspace they loaded and their compiled structures, and each pallet's results go
to the store as for a single scan (so a sweep resumes like one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitaas.engines.compute import Compute, ComputeLike
from fitaas.errors import InputError
from fitaas.inputs.downloads import is_address
from fitaas.inputs.pallets import ARCHIVE_SUFFIXES, Pallet, load_pallet, regions
from fitaas.jobs.scanning import scan
from fitaas.output.results import ScanResult

__all__ = ["SweepSource", "expand_pallets", "sweep", "sweep_sources"]


def _name(source: str) -> str:
    """A pallet's name from where it came from: the folder or archive, without suffixes."""
    base = Path(source.rstrip("/")).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".json.gz", ".json"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


@dataclass(frozen=True)
class SweepSource:
    """One pallet of a sweep, named, before it is read.

    Attributes:
        name: Unique within the sweep (``folder/region`` for a region).
        workspace: A workspace file, directory, archive or address.
        patchset: The patchset file of a ``BkgOnly.json:patchset.json`` pair.
        region: The region folder to read.
    """

    name: str
    workspace: str
    patchset: str | None = None
    region: str | None = None


def sweep_sources(
    sources: Sequence[str | Path], *, all_regions: bool = False, region: str | None = None
) -> list[SweepSource]:
    """Name every pallet of a sweep, reading no likelihood (only archives' member lists).

    Args:
        sources: Folders, archives, addresses or files; a workspace and its patchset as one
            ``BkgOnly.json:patchset.json`` pair.
        all_regions: Every region of a folder or archive that holds several (named
            ``folder/region``); otherwise ``region``, or the one region there is.
        region: The region to take where there are several.

    Returns:
        The pallets in order; names are unique (``-2``, ``-3`` added where needed).

    Raises:
        InputError: No input, or a folder or archive whose regions cannot be listed.
    """
    if not sources:
        raise InputError("a sweep needs pallets")
    found: list[SweepSource] = []
    for source in map(str, sources):
        workspace, colon, patchset = source.partition(":")
        if colon and not is_address(source) and not Path(source).exists():
            name = _name(str(Path(workspace).parent)) or _name(workspace)
            found.append(SweepSource(name, workspace, patchset))
        elif all_regions and (Path(source).is_dir() or source.endswith(ARCHIVE_SUFFIXES)):
            for each in regions(source):
                one = None if each == "." else each
                label = _name(source) if one is None else f"{_name(source)}/{one}"
                found.append(SweepSource(label, source, None, one))
        else:
            found.append(SweepSource(_name(source), source, None, region))
    named: list[SweepSource] = []
    seen: dict[str, int] = {}
    for entry in found:
        seen[entry.name] = seen.get(entry.name, 0) + 1
        if seen[entry.name] > 1:
            entry = dataclasses.replace(entry, name=f"{entry.name}-{seen[entry.name]}")
        named.append(entry)
    return named


def expand_pallets(
    sources: Sequence[str | Path],
    *,
    all_regions: bool = False,
    region: str | None = None,
    verify: bool = True,
) -> list[tuple[str, Pallet]]:
    """Load every pallet of a sweep, named (see :func:`sweep_sources`).

    Args:
        sources: See :func:`sweep_sources`.
        all_regions: See :func:`sweep_sources`.
        region: See :func:`sweep_sources`.
        verify: Check each patchset's digest against its workspace.

    Returns:
        ``(name, pallet)`` in order.

    Raises:
        InputError: An input that cannot be loaded (named), or no input.
    """
    return [
        (
            entry.name,
            load_pallet(entry.workspace, entry.patchset, region=entry.region, verify=verify),
        )
        for entry in sweep_sources(sources, all_regions=all_regions, region=region)
    ]


def sweep(
    sources: Sequence[str | Path] | Sequence[tuple[str, Pallet]],
    *,
    all_regions: bool = False,
    region: str | None = None,
    compute: ComputeLike = None,
    **scan_options: Any,
) -> dict[str, ScanResult]:
    """Scan several pallets as one job on one engine.

    Args:
        sources: As for :func:`expand_pallets`, or its ``(name, pallet)`` pairs.
        all_regions: See :func:`expand_pallets`.
        region: See :func:`expand_pallets`.
        compute: Where tasks run (see :func:`fitaas.scan`): an engine started here is
            started once for all pallets; a started engine is the caller's (not stopped).
        **scan_options: The keyword arguments of :func:`fitaas.scan` (``options``,
            ``kinds``, ``patches``, ``store``, ``force``, ``progress``, ...).

    Returns:
        Each pallet's results by its name, in order.
    """
    entries: list[tuple[str, Pallet]] = (
        list(sources)  # type: ignore[arg-type]
        if sources and isinstance(sources[0], tuple)
        else expand_pallets(sources, all_regions=all_regions, region=region)  # type: ignore[arg-type]
    )
    results: dict[str, ScanResult] = {}
    with Compute.of(compute).in_use() as used:
        for name, pallet in entries:
            results[name] = scan(pallet, compute=used, **scan_options)
    return results
