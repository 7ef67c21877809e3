"""Scans over a combination: several analyses' pallets as one pallet of combined points.

The background-only workspaces are combined (:func:`fitaas.inputs.combine.combine_workspaces`);
each signal model present in every analysis becomes one point whose patch is the union of
the analyses' patches, each rewritten into the combined workspace: a patch addresses
channels by their index in its own workspace (``/channels/3/samples/-``), so the index is
mapped through the channel's name to its index in the combination. Points are matched by
patch name, or by their label values.

A channel that several patches fill (a control region the analyses share) is filled once
when they fill it identically; differently, it is an error naming the channel and the point.
Models found in only some analyses are not scanned; :class:`Combination` lists them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fitaas.choices import MATCHES
from fitaas.errors import InputError
from fitaas.inputs.combine import combine_workspaces
from fitaas.inputs.pallets import Pallet, Point, digest

__all__ = ["Combination", "combine_pallets"]


@dataclass(frozen=True)
class Combination:
    """A combined pallet and what could not be combined.

    Attributes:
        pallet: The combined workspace and its combined points.
        unmatched: Per analysis, the names of its points missing from another analysis.
    """

    pallet: Pallet
    unmatched: dict[str, tuple[str, ...]]


def _rewritten(
    operation: dict[str, Any], channels: Sequence[str], combined: dict[str, int], where: str
) -> dict[str, Any]:
    """``operation`` with its channel index mapped into the combined workspace."""
    moved = dict(operation)
    for key in ("path", "from"):
        path = operation.get(key)
        if not isinstance(path, str):
            continue
        tokens = path.split("/")
        if len(tokens) < 3 or tokens[1] != "channels" or not tokens[2].isdigit():
            raise InputError(
                f"{where}: patch operation on '{path}' does not address a channel by index: "
                "only channel patches can be combined"
            )
        index = int(tokens[2])
        if index >= len(channels):
            raise InputError(f"{where}: patch operation on '{path}': no channel {index}")
        name = channels[index]
        if name not in combined:
            raise InputError(f"{where}: channel '{name}' is not in the combination")
        moved[key] = "/".join(["", "channels", str(combined[name]), *tokens[3:]])
    return moved


def _union(
    parts: list[tuple[str, list[dict[str, Any]]]], point: str, channels: Sequence[str]
) -> list[dict[str, Any]]:
    """The analyses' rewritten operations as one patch: an operation given identically by
    several is kept once; channels filled differently by two analyses are an error."""
    merged: list[dict[str, Any]] = []
    seen: set[str] = set()
    filled: dict[str, tuple[str, str]] = {}  # combined channel path -> (analysis, content)
    for analysis, operations in parts:
        by_channel: dict[str, list[str]] = {}
        for operation in operations:
            text = json.dumps(operation, sort_keys=True)
            channel = "/".join(operation["path"].split("/")[:3])
            by_channel.setdefault(channel, []).append(text)
        for channel, texts in by_channel.items():
            content = "\n".join(sorted(texts))
            other = filled.get(channel)
            if other is not None and other[1] != content:
                raise InputError(
                    f"point '{point}': {other[0]} and {analysis} fill channel "
                    f"'{channels[int(channel.split('/')[-1])]}' differently (a shared channel "
                    "must be filled identically)"
                )
            filled.setdefault(channel, (analysis, content))
        for operation in operations:
            text = json.dumps(operation, sort_keys=True)
            if text not in seen:
                seen.add(text)
                merged.append(operation)
    return merged


def combine_pallets(
    entries: Sequence[tuple[str, Pallet]],
    *,
    join: str = "none",
    match: str = "names",
) -> Combination:
    """One pallet of combined points from several analyses' pallets.

    Args:
        entries: ``(name, pallet)`` per analysis (see :func:`fitaas.jobs.sweeps.expand_pallets`).
        join: How the background-only workspaces are combined (:data:`fitaas.inputs.combine.JOINS`).
        match: ``"names"``: points with the same patch name are one model; ``"values"``:
            points with the same label values (named after the first analysis's patch).

    Returns:
        The combined pallet (validated) and the points found in only some analyses.

    Raises:
        InputError: Workspaces that do not combine, a patch that cannot be rewritten, a
            shared channel filled differently, or no model common to all analyses.
    """
    if match not in MATCHES:
        raise InputError(f"unknown match '{match}'; choose among {', '.join(MATCHES)}")
    names = [name for name, _ in entries]
    specs = [pallet.workspace for _, pallet in entries]
    combined_spec = combine_workspaces(specs, names=names, join=join)
    combined_index = {c["name"]: i for i, c in enumerate(combined_spec["channels"])}
    base = Pallet.from_specs(combined_spec, source=" + ".join(names))

    def key(point: Point) -> Any:
        return point.name if match == "names" else tuple(point.values)

    tables = [{key(p): p for p in pallet.points if p.name is not None} for _, pallet in entries]
    if not all(tables):
        empty = [n for n, t in zip(names, tables, strict=True) if not t]
        raise InputError(f"{', '.join(empty)}: no signal points (a patchset is needed)")
    common = [k for k in tables[0] if all(k in t for t in tables[1:])]
    unmatched = {
        name: tuple(str(t[k].name) for k in t if not all(k in o for o in tables))
        for name, t in zip(names, tables, strict=True)
    }
    if not common:
        by_values = match == "names"
        raise InputError(
            f"no signal point is in every analysis (matched by {match}); "
            + ("try matching by the labels' values" if by_values else "check the labels' values"),
            option="match" if by_values else None,
            value="values" if by_values else None,
        )
    points = []
    for k in common:
        first = tables[0][k]
        parts = []
        for (name, pallet), table in zip(entries, tables, strict=True):
            channels = [c["name"] for c in pallet.workspace["channels"]]
            where = f"{name}, patch '{table[k].name}'"
            operations = [
                _rewritten(dict(op), channels, combined_index, where) for op in table[k].operations
            ]
            parts.append((name, operations))
        operations = _union(parts, str(first.name), list(combined_index))
        points.append(
            Point(
                name=first.name,
                values=first.values,
                operations=tuple(operations),
                digest=digest(operations),
            )
        )
    labels = entries[0][1].labels
    pallet = dataclasses.replace(
        base, labels=labels, points=tuple(points), units=entries[0][1].units
    )
    return Combination(pallet, {n: u for n, u in unmatched.items() if u})
