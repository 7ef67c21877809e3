"""What a command computes on: its PALLETS arguments (files, folders, archives, addresses,
stdin), the options that make a sweep, a combination or a theory scan of them, and the
pallet they load.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fitaas.choices import (
    MATCHES,
)
from fitaas.cli.options import F, stack
from fitaas.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - pyhf is imported only when a command runs
    from fitaas.inputs.pallets import Pallet

__all__ = [
    "labels_from_cli",
    "pallet_arguments",
    "pallet_from_cli",
    "pallets_mode",
    "pallets_options",
]


def pallet_arguments(func: F) -> F:
    """WORKSPACE [PATCHSET] arguments (WORKSPACE ``-``: read it from standard input) with
    --region and --no-verify."""
    return stack(
        click.argument("workspace", type=click.Path(path_type=str)),
        click.argument("patchset", required=False, type=click.Path(path_type=str)),
        click.option(
            "--region",
            metavar="NAME",
            help="Region folder to use when a directory or archive holds several likelihoods.",
        ),
        click.option(
            "--no-verify",
            is_flag=True,
            help="Apply a patchset even when its digest does not match the workspace.",
        ),
    )(func)


# Two arguments where the second is one of these files are WORKSPACE PATCHSET, not a sweep.
_PATCHSET_SUFFIXES = (".json", ".json.gz")


def pallets_options(func: F) -> F:
    """PALLETS... arguments with the options of sweeps, combinations and theory scans
    (``--region``, ``--all-regions``, ``--combine``, ``--join``, ``--match``, ``--models``,
    ``--labels``); see :func:`pallets_mode`."""
    from fitaas.inputs.combine import JOINS

    return stack(
        click.argument("pallets", nargs=-1, required=True),
        click.option(
            "--region",
            metavar="NAME",
            help="Region folder to use when a directory or archive holds several likelihoods.",
        ),
        click.option(
            "--all-regions",
            is_flag=True,
            help="Every region of a directory or archive that holds several, as a sweep.",
        ),
        click.option(
            "--combine",
            is_flag=True,
            help="Scan the combination of the PALLETS: their background-only workspaces "
            "combined, each point's patches applied together (points matched by --match).",
        ),
        click.option(
            "--join",
            type=click.Choice(JOINS),
            default="none",
            show_default=True,
            help="With --combine: how the workspaces are combined (see 'fitaas combine').",
        ),
        click.option(
            "--match",
            type=click.Choice(MATCHES),
            default="names",
            show_default=True,
            help="With --combine: points of the analyses are one model when their patch "
            "names (or label values) are equal.",
        ),
        click.option(
            "--models",
            type=click.Path(exists=True, path_type=Path),
            help='Theory models instead of a patchset: a JSON Lines file (one {"name", '
            '"values", "patch"} per line) or a folder of patch files, read as a stream '
            "('fitaas scan' streams the results to -o, default results.jsonl).",
        ),
        click.option(
            "--labels",
            metavar="NAMES",
            help="Comma-separated names of the models' values, e.g. m1,m2 (with --models).",
        ),
    )(func)


def pallets_mode(sources: Sequence[str], params: dict[str, Any]) -> str:
    """What PALLETS... and their options ask for: ``"combination"``, ``"models"``,
    ``"sweep"`` or ``"single"`` (WORKSPACE [PATCHSET]).

    Raises:
        InputError: Options that do not go together.
    """
    if params["combine"]:
        if len(sources) < 2 or params["models"] is not None:
            raise InputError("--combine needs two pallets or more (and no --models)")
        return "combination"
    if params["models"] is not None:
        if len(sources) != 1 or params["all_regions"]:
            raise InputError(
                "--models scans one background-only workspace: give WORKSPACE alone (no "
                "patchset, no --all-regions)"
            )
        return "models"
    if params["labels"]:
        raise InputError("--labels names the values of --models")
    second_is_patchset = (
        len(sources) == 2
        and sources[1].endswith(_PATCHSET_SUFFIXES)
        and ":" not in sources[1].split("://")[-1]
    )
    if len(sources) > 2 or params["all_regions"] or (len(sources) == 2 and not second_is_patchset):
        return "sweep"
    return "single"


def labels_from_cli(params: dict[str, Any]) -> tuple[str, ...]:
    """``--labels m1,m2`` as names."""
    text = params.get("labels") or ""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _stdin_workspace() -> dict[str, Any]:
    text = sys.stdin.read()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"stdin: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(spec, dict):
        raise InputError("stdin: not a workspace (a JSON object)")
    return spec


def pallet_from_cli(params: dict[str, Any]) -> Pallet:
    """Load the pallet named by the :func:`pallet_arguments` of a command (WORKSPACE ``-``:
    the workspace's JSON from standard input)."""
    from fitaas.inputs.pallets import load_pallet

    workspace = params["workspace"]
    return load_pallet(
        _stdin_workspace() if workspace == "-" else workspace,
        params["patchset"],
        region=params["region"],
        verify=not params["no_verify"],
    )
