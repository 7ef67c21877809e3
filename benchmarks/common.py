"""What the benchmark scripts share: where the published pallets are."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pallet_folder"]

# The checkout's neighbour ../shared/workspaces, unless FITAAS_WORKSPACES names another folder.
DEFAULT_WORKSPACES = Path(__file__).resolve().parents[2] / "shared" / "workspaces"


def pallet_folder(name: str) -> Path:
    """A pallet given as a path, or as a folder under ``FITAAS_WORKSPACES``.

    Raises:
        SystemExit: Neither exists (the message says where it looked).
    """
    if Path(name).exists():
        return Path(name)
    root = Path(os.environ.get("FITAAS_WORKSPACES") or DEFAULT_WORKSPACES)
    found = root / name
    if not found.exists():
        raise SystemExit(
            f"no pallet '{name}': not a path, nor a folder under {root} "
            "(give a path, or set FITAAS_WORKSPACES to the folder holding the pallets)"
        )
    return found
