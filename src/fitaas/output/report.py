"""A self-contained HTML report of a scan: summary, plots (embedded PNG) and the table."""

from __future__ import annotations

import base64
import html
from typing import Any

from fitaas.output.figures import png
from fitaas.output.results import ScanResult, status_line

__all__ = ["html_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:90%}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td.name{text-align:left} tr.failed td{background:#fde2e2}
tr.suspect td{background:#fff3cd}
img{max-width:48%;margin:.5em;border:1px solid #eee}
"""


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def html_report(
    result: ScanResult, figures: dict[str, Any], title: str | None = None, cl: float = 0.95
) -> str:
    """The report page as HTML text (images embedded, no external files).

    Args:
        result: The scan results.
        figures: Named matplotlib figures to embed.
        title: Page title.
        cl: Confidence level for counting excluded points.

    Returns:
        The HTML document.
    """
    counts = result.counts()
    excluded = result.excluded(cl)[0]
    head = html.escape(title or f"fitaas report: {result.source or result.workspace_digest[:12]}")
    rows = []
    for p in result:
        ht, ul = p.hypotest, p.upper_limit
        cells = [f'<td class="name">{html.escape(str(p.patch))}</td>']
        cells += [f"<td>{html.escape(str(v))}</td>" for v in p.values]
        cells += [f"<td>{_cell(ht.cls_obs if ht else None)}</td>"]
        cells += [f"<td>{_cell(ht.cls_exp[i] if ht else None)}</td>" for i in range(5)]
        cells += [
            f"<td>{_cell(ul.obs if ul else None)}</td>",
            f"<td>{_cell(ul.exp[2] if ul else None)}</td>",
        ]
        status = "ok" if p.ok else f"{p.status}: {html.escape(p.error or p.reason or '')}"
        cells += [f'<td class="name">{status}</td>']
        rows.append(f'<tr class="{p.status}">{"".join(cells)}</tr>')
    header = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in [
            "patch",
            *result.labels,
            "CLs obs",
            "exp −2σ",
            "exp −1σ",
            "exp",
            "exp +1σ",
            "exp +2σ",
            "μ UL obs",
            "μ UL exp",
            "status",
        ]
    )
    images = "".join(
        f'<img alt="{html.escape(name)}" src="data:image/png;base64,{_base64(png(fig, 110))}">'
        for name, fig in figures.items()
    )
    options = result.options
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{head}</title><style>{_STYLE}</style></head>
<body>
<h1>{head}</h1>
<p>{status_line(len(result), "point", counts)};
{excluded} excluded at {cl:.0%} CL (observed). pyhf {html.escape(result.pyhf_version)},
{options.backend}/{options.optimizer}, {options.test_stat}, μ = {options.poi_value:g}.
Workspace digest <code>{result.workspace_digest}</code>.</p>
<div>{images}</div>
<table><thead><tr>{header}</tr></thead><tbody>
{"".join(rows)}
</tbody></table>
</body></html>
"""
