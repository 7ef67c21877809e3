"""Theory models as a stream: signal points that are not one in-memory patchset.

A theory scan (a pMSSM scan reinterpreting a published likelihood, say) has thousands to
hundreds of thousands of signal models, each a JSON patch of the background-only
workspace. They come as

- a JSON Lines file (``.jsonl``, or ``.jsonl.gz``): one ``{"name": ..., "values": [...],
  "patch": [JSON-patch operations]}`` per line;
- a folder of patch files (``*.json``, in name order): each such an object, or a bare list
  of operations named after its file;
- any iterable of such mappings (or of :class:`~fitaas.inputs.pallets.Point`) in Python.

Each model becomes a :class:`~fitaas.inputs.pallets.Point` when the scan reaches it: nothing is
read ahead of what the scan asks for.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fitaas.errors import InputError
from fitaas.inputs.pallets import Point, digest

__all__ = [
    "ModelSource",
    "check_models",
    "model_line",
    "model_source",
    "models_from_lines",
    "read_models",
]

ModelSource = str | Path | Iterable[Mapping[str, Any] | Point]


def _point(item: Any, where: str, fallback_name: str | None = None) -> Point:
    """One model as a point, with a one-line error naming ``where`` it came from."""
    if isinstance(item, Point):
        return item
    if isinstance(item, list) and fallback_name is not None:
        item = {"name": fallback_name, "patch": item}
    if not isinstance(item, Mapping):
        raise InputError(
            f"{where}: a model is an object with 'name', 'values' and 'patch', "
            f"got {type(item).__name__}"
        )
    name = item.get("name", fallback_name)
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: the model has no 'name' (a non-empty string)")
    patch = item.get("patch")
    if not isinstance(patch, list) or not all(
        isinstance(op, Mapping) and isinstance(op.get("op"), str) and "path" in op for op in patch
    ):
        raise InputError(
            f"{where}: model '{name}' needs 'patch', a list of JSON-patch operations "
            '(each with "op" and "path")'
        )
    values = item.get("values", [])
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise InputError(f"{where}: model '{name}' has 'values' that are not a list of numbers")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{where}: model '{name}' has 'values' that are not finite: {values}")
    operations = tuple(dict(op) for op in patch)
    return Point(name=name, values=tuple(values), operations=operations, digest=digest(patch))


def _lines(path: Path) -> Iterator[str]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as text:
            yield from text
    else:
        with path.open(encoding="utf-8") as text:
            yield from text


def models_from_lines(lines: Iterable[str | bytes], where: str) -> Iterator[Point]:
    """The models of JSON Lines text, one at a time (blank lines skipped; names unique).

    Args:
        lines: The lines (a file, an upload split at newlines).
        where: How to name the text in an error (``"models.jsonl"``: ``"models.jsonl,
            line 7: ..."``).

    Raises:
        InputError: When a malformed line is reached, naming it.
    """
    return _unique(_from_lines(lines, where))


def _from_lines(lines: Iterable[str | bytes], where: str) -> Iterator[Point]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}, line {number}: not JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise InputError(f"{where}, line {number}: not UTF-8 text") from None
        except ValueError:  # an integer beyond Python's limit of digits
            raise InputError(
                f"{where}, line {number}: a number of more than "
                f"{sys.get_int_max_str_digits()} digits"
            ) from None
        yield _point(item, f"{where}, line {number}")


def _from_folder(path: Path) -> Iterator[Point]:
    for file in sorted(path.glob("*.json")):
        try:
            item = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}: not JSON ({exc.msg}, line {exc.lineno})") from None
        yield _point(item, str(file), fallback_name=file.stem)


def _from_iterable(models: Iterable[Any]) -> Iterator[Point]:
    for index, item in enumerate(models):
        yield _point(item, f"model #{index}")


def _unique(points: Iterator[Point]) -> Iterator[Point]:
    """The points, refusing a name given twice (results are found by name)."""
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            raise InputError(f"two models are named '{point.name}': names must be unique")
        seen.add(str(point.name))
        yield point


def model_source(models: ModelSource) -> Iterator[Point]:
    """The models as points, read one at a time.

    Args:
        models: A ``.jsonl``/``.jsonl.gz`` file, a folder of patch files, or an iterable
            of ``{"name", "values", "patch"}`` mappings or points.

    Returns:
        An iterator of points; a malformed model raises :class:`InputError` when reached,
        naming its line or file.

    Raises:
        InputError: A path that is neither a JSON Lines file nor a folder.
    """
    if isinstance(models, str | Path):
        path = Path(models)
        if path.is_dir():
            return _unique(_from_folder(path))
        if not path.is_file():
            raise InputError(f"{path}: no such models file or folder")
        if not path.name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            raise InputError(
                f"{path}: models come as JSON Lines (.jsonl, one model per line) or a "
                "folder of patch files"
            )
        return models_from_lines(_lines(path), str(path))
    return _unique(_from_iterable(models))


def model_line(point: Point) -> str:
    """A model as its canonical JSON Lines line (sorted keys, no newline): what the service
    keeps of an upload, and digests."""
    return json.dumps(
        {"name": point.name, "values": list(point.values), "patch": list(point.operations)},
        sort_keys=True,
    )


def read_models(models: ModelSource) -> list[Point]:
    """Every model as a point, in memory (for small sets; scans read them as a stream)."""
    return list(model_source(models))


def check_models(models: ModelSource) -> int | None:
    """Read a file's or folder's models through once as a scan will, keeping none, and
    count them (``None`` for an iterable, checked as it is reached): a malformed model is
    refused before any work, not after the ones before it.

    Raises:
        InputError: The first malformed model, named by its line or file.
    """
    if not isinstance(models, str | Path):
        return len(models) if isinstance(models, list | tuple) else None
    return sum(1 for _ in model_source(models))
