"""What a process traced of a model structure, kept on disk for the next: the arrays its
likelihood reads and its digest (the programs themselves are kept by
:func:`fitaas.fast.exports.exported`), named by a key known before tracing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

import pyhf

from fitaas.caches import write_once
from fitaas.fast import exports

__all__ = [
    "DESCRIPTION_FORMAT",
    "LeafPath",
    "keep_description",
    "kept_description",
    "structure_key",
]


LeafPath = tuple[tuple[bool, Any], ...]

# Bump when what a structure's description holds changes (descriptions of another format
# are not read).
DESCRIPTION_FORMAT = 1


def _skeleton(obj: Any) -> Any:
    """A specification with every number replaced (lists of numbers by their length): what
    the traced program can depend on beyond the arrays it takes as arguments."""
    if isinstance(obj, dict):
        return {str(k): _skeleton(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        # (a specification's lists of numbers hold numbers only: its bins, its data)
        if obj and isinstance(obj[0], int | float) and not isinstance(obj[0], bool):
            return ["#", len(obj)]
        return [_skeleton(v) for v in obj]
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return "#"
    return obj


@cache
def _this_code() -> str:
    """A digest of the tracing module's code (:mod:`fitaas.fast.structures`): how it traces
    (the |x| at kinks, the template) is part of what a kept program computes."""
    return hashlib.sha256(Path(__file__).with_name("structures.py").read_bytes()).hexdigest()[:16]


def structure_key(model: Any, modifier_settings: dict[str, Any] | None) -> str:
    """A name for a model's structure known before tracing it: its specification without
    numbers, its POI, the interpolation codes, the versions of pyhf and jax, the platform
    and this module's code. (A model whose kept program is not its likelihood would be
    caught by the guard, and fitted the plain way.)"""
    import jax

    payload = [
        _skeleton(model.spec),
        model.config.poi_name,
        sorted((modifier_settings or {}).items()),
        str(pyhf.__version__),
        jax.__version__,
        jax.default_backend(),
        DESCRIPTION_FORMAT,
        _this_code(),
    ]
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _description_path(key: str) -> Path | None:
    folder = exports.exports_folder()
    return folder / f"structure-{key}.json" if folder is not None else None


def kept_description(key: str) -> dict[str, Any] | None:
    """What an earlier process traced of the structure ``key`` (``None``: nothing, or a
    file that cannot be read)."""
    path = _description_path(key)
    if path is None:
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("format") != DESCRIPTION_FORMAT:
        return None
    return found


def keep_description(
    key: str, paths: Sequence[LeafPath], arrays: Sequence[Any], digest: str
) -> None:
    """Keep what was traced of a structure (the arrays its likelihood reads, its digest),
    so that later processes build it without tracing."""
    path = _description_path(key)
    if path is None:
        return
    described = {
        "format": DESCRIPTION_FORMAT,
        "paths": [[list(step) for step in p] for p in paths],
        "shapes": [[list(a.shape), str(a.dtype)] for a in arrays],
        "digest": digest,
    }
    with suppress(OSError):
        write_once(path, json.dumps(described).encode())
