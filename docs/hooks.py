"""MkDocs hooks: the HTTP API page from the service's OpenAPI document.

The page ``reference/http.md`` holds ``<!-- openapi -->``; at build time it is replaced by
one section per route (method, path, summary, the request body's schema, the answers),
made from ``create_app(...).openapi()``: the same document the running service serves.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

MARKER = "<!-- openapi -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Fill the marker of the HTTP API page."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _routes(_document()))


def _document() -> dict[str, Any]:
    from fitaas.service import ServiceSettings, create_app

    with tempfile.TemporaryDirectory() as folder:
        database = f"sqlite:///{Path(folder) / 'docs.sqlite'}"
        app = create_app(ServiceSettings(database=database))
        document: dict[str, Any] = app.openapi()
        app.state.database.dispose()
    return document


def _schema_name(content: dict[str, Any]) -> str:
    for media, body in content.items():
        schema = body.get("schema", {})
        ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
        name = ref.rsplit("/", 1)[-1] if ref else schema.get("type", "")
        return f"`{media}`" + (f": `{name}`" if name else "")
    return ""


def _routes(document: dict[str, Any]) -> str:
    lines: list[str] = []
    for path, methods in document.get("paths", {}).items():
        for method, route in methods.items():
            lines.append(f"## `{method.upper()} {path}`\n")
            summary = route.get("summary") or ""
            description = (route.get("description") or "").strip()
            lines.append(f"**{summary}.** {description}\n" if description else f"**{summary}.**\n")
            parameters = route.get("parameters", [])
            if parameters:
                lines.append("| parameter | in | required |\n|---|---|---|")
                for parameter in parameters:
                    required = "yes" if parameter.get("required") else "no"
                    lines.append(f"| `{parameter['name']}` | {parameter['in']} | {required} |")
                lines.append("")
            body = route.get("requestBody")
            if body:
                lines.append(f"Request body: {_schema_name(body.get('content', {}))}\n")
            lines.append("| status | answer |\n|---|---|")
            for status, answer in route.get("responses", {}).items():
                what = answer.get("description", "").replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {status} | {what} |")
            lines.append("")
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines.append("## Schemas\n")
        for name, schema in sorted(schemas.items()):
            properties = schema.get("properties", {})
            if not properties:
                continue
            lines.append(f"### `{name}`\n")
            lines.append("| field | type | required |\n|---|---|---|")
            required = set(schema.get("required", []))
            for field, spec in properties.items():
                kind = spec.get("type") or ", ".join(
                    str(a.get("type") or a.get("$ref", "").rsplit("/", 1)[-1])
                    for a in spec.get("anyOf", [])
                )
                lines.append(
                    f"| `{field}` | {kind or 'object'} | {'yes' if field in required else 'no'} |"
                )
            lines.append("")
    return "\n".join(lines)
