"""Statistical combinations: several workspaces as one, on pyhf's ``Workspace.combine``.

Each input may first be renamed (parameters, channels, samples, measurements) and have its
channels prefixed, so that what only shares a name is told apart and what is the same
quantity (a luminosity, a shared systematic) is named alike; then the inputs are combined
left to right. A clash pyhf refuses (a channel, a measurement or a parameter's settings in
common under ``join="none"``) is one :class:`~fitaas.errors.InputError` naming the inputs
and what clashes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fitaas.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pyhf

__all__ = ["JOINS", "Renames", "combine_workspaces"]

# pyhf's join operations: "none" refuses anything in common; the outer joins keep one copy
# of what both have (the left's or the right's where they differ).
JOINS = ("none", "inner", "outer", "left outer", "right outer")


@dataclass(frozen=True)
class Renames:
    """What to rename in one input before combining: ``{old: new}`` per kind of name.

    Attributes:
        modifiers: Modifier (parameter) names.
        channels: Channel names.
        samples: Sample names.
        measurements: Measurement names.
        prefix: Put before every channel name (after ``channels``).
    """

    modifiers: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    samples: Mapping[str, str] = field(default_factory=dict)
    measurements: Mapping[str, str] = field(default_factory=dict)
    prefix: str = ""


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _parameters(workspace: pyhf.Workspace) -> set[str]:
    """Every parameter name: the modifiers', the measurements' POIs and settings."""
    names = {name for name, _ in workspace.modifiers}
    for measurement in workspace.get("measurements", []):
        config = measurement.get("config", {})
        names.add(config.get("poi", ""))
        names.update(p.get("name", "") for p in config.get("parameters", []))
    return names - {""}


def _renamed(workspace: pyhf.Workspace, renames: Renames, name: str) -> pyhf.Workspace:
    import pyhf

    for kind, mapping in (
        ("modifier", renames.modifiers),
        ("channel", renames.channels),
        ("sample", renames.samples),
        ("measurement", renames.measurements),
    ):
        known = {
            "modifier": _parameters(workspace),
            "channel": set(workspace.channels),
            "sample": set(workspace.samples),
            "measurement": set(workspace.measurement_names),
        }[kind]
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise InputError(f"{name}: no {kind} named {', '.join(map(repr, unknown))} to rename")
    channels = dict(renames.channels)
    if renames.prefix:
        channels = {c: renames.prefix + channels.get(c, c) for c in workspace.channels}
    try:
        return workspace.rename(
            modifiers=dict(renames.modifiers),
            samples=dict(renames.samples),
            channels=channels,
            measurements=dict(renames.measurements),
        )
    except pyhf.exceptions.InvalidWorkspaceOperation as exc:
        raise InputError(f"{name}: cannot rename: {_one_line(exc)}") from None


def combine_workspaces(
    specs: Sequence[Mapping[str, Any]],
    *,
    names: Sequence[str] | None = None,
    renames: Sequence[Renames | None] | None = None,
    join: str = "none",
    merge_channels: bool = False,
) -> dict[str, Any]:
    """Combine workspaces into one, left to right.

    Args:
        specs: The workspaces (decoded JSON), at least two.
        names: How to name each in errors (default: ``workspace 1``, ...).
        renames: Per input, what to rename first (``None``: nothing).
        join: How to treat what the inputs have in common (:data:`JOINS`).
        merge_channels: With an outer join, channels of the same name are merged sample by
            sample instead of kept from one side.

    Returns:
        The combined workspace (JSON), valid for pyhf's schema.

    Raises:
        InputError: Fewer than two inputs, an unknown join, a rename of a name the input
            lacks, or a clash pyhf refuses (named).
    """
    import pyhf

    if len(specs) < 2:
        raise InputError(f"a combination needs two workspaces at least, got {len(specs)}")
    if join not in JOINS:
        raise InputError(f"unknown join '{join}'; choose among {', '.join(JOINS)}")
    labels = list(names or [f"workspace {i + 1}" for i in range(len(specs))])
    changes = list(renames or [None] * len(specs))
    if len(labels) != len(specs) or len(changes) != len(specs):
        raise InputError("one name and one set of renames per workspace")
    workspaces = []
    for spec, label, change in zip(specs, labels, changes, strict=True):
        workspace = pyhf.Workspace(dict(spec), validate=False)
        workspaces.append(_renamed(workspace, change, label) if change else workspace)
    combined, so_far = workspaces[0], labels[0]
    for workspace, label in zip(workspaces[1:], labels[1:], strict=True):
        try:
            combined = pyhf.Workspace.combine(
                combined, workspace, join=join, merge_channels=merge_channels
            )
        except pyhf.exceptions.InvalidWorkspaceOperation as exc:
            clash = join == "none"
            hint = " (rename what differs, or choose another join)" if clash else ""
            raise InputError(
                f"cannot combine {so_far} with {label}: {_one_line(exc)}{hint}",
                option="renames" if clash else None,
            ) from None
        so_far = f"{so_far} + {label}"
    return dict(combined)
