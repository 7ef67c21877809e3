"""Endpoint settings as tables checked against a schema, and written back as TOML.

Each engine declares its table (key -> accepted types, default, help) next to its code
(:attr:`fitaas.engines.base.Engine.section`); :mod:`fitaas.engines.endpoint` reads files
with these helpers.
"""

from __future__ import annotations

import inspect
from typing import Any

from fitaas.errors import InputError

__all__ = ["Schema", "check_signature", "check_table", "schema_lines", "toml_value"]

# key: (accepted types, default, help)
Schema = dict[str, tuple[tuple[type, ...], Any, str]]


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(
        {
            int: "integer",
            float: "number",
            str: "string",
            list: "list",
            dict: "table",
            bool: "true/false",
        }[t]
        for t in types
    )


def check_table(where: str, table: dict[str, Any], schema: Schema) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key not in schema:
            raise InputError(f"{where}: unknown key '{key}' (known: {', '.join(schema)})")
        types = schema[key][0]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise InputError(
                f"{where}: '{key}' must be {_type_names(types)}, "
                f"got {type(value).__name__} {value!r}"
            )
        out[key] = value
    return out


def check_signature(where: str, options: dict[str, Any], accepted: dict[str, Any]) -> None:
    for key, value in options.items():
        if key not in accepted:
            raise InputError(
                f"{where}: unknown key '{key}' (accepted: {', '.join(sorted(accepted))})"
            )
        default = accepted[key]
        if default is inspect.Parameter.empty or default is None:
            continue
        expected = type(default)
        if (
            expected in (int, float)
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            continue
        if not isinstance(value, expected):
            raise InputError(
                f"{where}: '{key}' must be {expected.__name__} like its default {default!r}, "
                f"got {type(value).__name__} {value!r}"
            )


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def schema_lines(schema: Schema, values: dict[str, Any]) -> list[str]:
    out = []
    for key, (_, default, text) in schema.items():
        if isinstance(default, dict):
            continue
        out.append(f"# {text}")
        out.append(f"{key} = {toml_value(values.get(key, default))}")
    return out
