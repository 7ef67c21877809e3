"""``fitaas combine``: several workspaces as one, for a combined fit or scan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fitaas.inputs.combine import JOINS

__all__ = ["combine"]


def _renames(values: tuple[str, ...], count: int, option: str) -> list[dict[str, str]]:
    """``[N:]OLD=NEW`` items as one ``{old: new}`` per input (no ``N``: every input)."""
    from fitaas.errors import InputError

    out: list[dict[str, str]] = [{} for _ in range(count)]
    for item in values:
        where, colon, rest = item.partition(":")
        if not colon or not where.isdigit():
            where, rest = "", item
        old, sep, new = rest.partition("=")
        if not sep or not old or not new:
            raise InputError(f"{option}: expected [N:]OLD=NEW, got '{item}'")
        if where and not 1 <= int(where) <= count:
            raise InputError(f"{option} {item}: no workspace {where} (there are {count})")
        for index in [int(where) - 1] if where else range(count):
            out[index][old] = new
    return out


@click.command()
@click.argument("workspaces", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the combined workspace (JSON).",
)
@click.option(
    "--join",
    type=click.Choice(JOINS),
    default="none",
    show_default=True,
    help="What to do with what the inputs have in common: none refuses it; the outer "
    "joins keep one copy.",
)
@click.option("--merge-channels", is_flag=True, help="With an outer join, merge channels.")
@click.option(
    "--rename-param",
    multiple=True,
    metavar="[N:]OLD=NEW",
    help="Rename a parameter (modifier) in input N, or in every input (repeatable).",
)
@click.option("--rename-channel", multiple=True, metavar="[N:]OLD=NEW", help="Rename a channel.")
@click.option("--rename-sample", multiple=True, metavar="[N:]OLD=NEW", help="Rename a sample.")
@click.option(
    "--rename-measurement", multiple=True, metavar="[N:]OLD=NEW", help="Rename a measurement."
)
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="PREFIX",
    help="Put PREFIX before every channel name of an input: once per input, in order "
    "('' for none).",
)
@click.option("--region", help="Region folder of inputs that are directories or archives.")
def combine(workspaces: tuple[str, ...], output: Path, **params: Any) -> None:
    """Combine WORKSPACES (files, folders or archives: their background-only workspaces)
    into one, on pyhf's Workspace.combine."""
    from fitaas.errors import InputError
    from fitaas.inputs.combine import Renames, combine_workspaces
    from fitaas.inputs.pallets import load_pallet

    count = len(workspaces)
    prefixes = list(params["prefixes"])
    if prefixes and len(prefixes) != count:
        raise InputError(f"--prefix: one per workspace ({count}), got {len(prefixes)}")
    kinds = {
        kind: _renames(params[f"rename_{kind}"], count, f"--rename-{kind}")
        for kind in ("param", "channel", "sample", "measurement")
    }
    specs = [load_pallet(path, region=params["region"]).workspace for path in workspaces]
    renames = [
        Renames(
            modifiers=kinds["param"][i],
            channels=kinds["channel"][i],
            samples=kinds["sample"][i],
            measurements=kinds["measurement"][i],
            prefix=prefixes[i] if prefixes else "",
        )
        for i in range(count)
    ]
    combined = combine_workspaces(
        specs,
        names=list(workspaces),
        renames=renames,
        join=params["join"],
        merge_channels=params["merge_channels"],
    )
    output.write_text(json.dumps(combined, indent=1))
    measurements = [m["name"] for m in combined.get("measurements", [])]
    click.echo(
        f"{output}: {len(combined['channels'])} channels, measurements {', '.join(measurements)}",
        err=True,
    )
