"""Sweeps: several pallets (analyses, regions) as one job on one engine, workers shared.

Each pallet is scanned in turn on the same engine: a local pool starts once, its workers
keep every workspace they loaded and their compiled structures, and each pallet's results go
to the store as for a single scan (so a sweep resumes like one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fitaas.downloads import is_address
from fitaas.engines.base import Engine
from fitaas.engines.local import LocalEngine
from fitaas.errors import InputError
from fitaas.pallets import ARCHIVE_SUFFIXES, Pallet, load_pallet, regions
from fitaas.results import ScanResult
from fitaas.scanning import scan

__all__ = ["expand_pallets", "sweep"]


def _name(source: str) -> str:
    """A pallet's name from where it came from: the folder or archive, without suffixes."""
    base = Path(source.rstrip("/")).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".json.gz", ".json"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def expand_pallets(
    sources: Sequence[str | Path],
    *,
    all_regions: bool = False,
    region: str | None = None,
    verify: bool = True,
) -> list[tuple[str, Pallet]]:
    """Load every pallet of a sweep, named.

    Args:
        sources: Folders, archives, addresses or files; a workspace and its patchset as one
            ``BkgOnly.json:patchset.json`` pair.
        all_regions: Every region of a folder or archive that holds several (named
            ``folder/region``); otherwise ``region``, or the one region there is.
        region: The region to take where there are several.
        verify: Check each patchset's digest against its workspace.

    Returns:
        ``(name, pallet)`` in order; names are unique (``-2``, ``-3`` added where needed).

    Raises:
        InputError: An input that cannot be loaded (named), or no input.
    """
    if not sources:
        raise InputError("a sweep needs pallets")
    found: list[tuple[str, Pallet]] = []
    for source in map(str, sources):
        workspace, colon, patchset = source.partition(":")
        if colon and not is_address(source) and not Path(source).exists():
            found.append(
                (
                    _name(str(Path(workspace).parent)) or _name(workspace),
                    load_pallet(workspace, patchset, verify=verify),
                )
            )
        elif all_regions and (Path(source).is_dir() or source.endswith(ARCHIVE_SUFFIXES)):
            for name in regions(source):
                one = None if name == "." else name
                label = _name(source) if one is None else f"{_name(source)}/{one}"
                found.append((label, load_pallet(source, region=one, verify=verify)))
        else:
            found.append((_name(source), load_pallet(source, region=region, verify=verify)))
    named: list[tuple[str, Pallet]] = []
    seen: dict[str, int] = {}
    for name, pallet in found:
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}-{seen[name]}", pallet))
    return named


def sweep(
    sources: Sequence[str | Path] | Sequence[tuple[str, Pallet]],
    *,
    all_regions: bool = False,
    region: str | None = None,
    engine: Engine | None = None,
    workers: int | None = None,
    **scan_options: Any,
) -> dict[str, ScanResult]:
    """Scan several pallets as one job on one engine.

    Args:
        sources: As for :func:`expand_pallets`, or its ``(name, pallet)`` pairs.
        all_regions: See :func:`expand_pallets`.
        region: See :func:`expand_pallets`.
        engine: The engine (the caller's: not stopped here); default a local pool of
            ``workers``, started once for all pallets.
        workers: Worker processes of the local pool started here.
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
    used = engine if engine is not None else LocalEngine(workers)
    results: dict[str, ScanResult] = {}
    with used if engine is None else contextlib.nullcontext(used):
        for name, pallet in entries:
            results[name] = scan(pallet, engine=used, **scan_options)
    return results
