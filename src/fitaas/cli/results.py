"""``fitaas results``: a readable table of a results file."""

from __future__ import annotations

from pathlib import Path

import click

from fitaas.errors import InputError

__all__ = ["results"]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _cls(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--failed", "only_failed", is_flag=True, help="Only the points that failed.")
@click.option(
    "--cl", type=float, default=0.95, show_default=True, help="Confidence level for 'excluded'."
)
def results(path: Path, only_failed: bool, cl: float) -> None:
    """Show the results of a scan (RESULTS.json) as a table."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from fitaas.output.results import read_results, status_line

    scan = read_results(path)
    if not len(scan):  # (a stream that stopped before its first result wrote its header)
        raise InputError(f"{path}: no results in it (a scan that stopped before any finished?)")
    level = 1.0 - cl
    table = Table(title=f"{path} ({scan.source or scan.workspace_digest[:12]})")
    table.add_column("patch", no_wrap=True, overflow="ellipsis", max_width=32)
    for label in scan.labels:
        table.add_column(label, justify="right", no_wrap=True, min_width=4)

    def number(header: str, width: int = 7) -> None:
        table.add_column(header, justify="right", no_wrap=True, min_width=width)

    number("CLs obs")
    number("CLs exp")
    number("exp ±1σ")
    table.add_column("excl. obs/exp", justify="center", no_wrap=True, min_width=7)
    with_ul = any(p.upper_limit for p in scan)
    if with_ul:
        number("μ UL obs", 5)
        number("μ UL exp", 5)
    table.add_column("status", min_width=6)
    shown = [p for p in scan if not only_failed or not p.ok]
    excluded_obs = excluded_exp = 0
    for point in shown:
        ht = point.hypotest
        cells = [str(point.patch), *(str(v) for v in point.values)]
        if ht:
            band = f"{_cls(ht.cls_exp[1])}–{_cls(ht.cls_exp[3])}"
            obs_x, exp_x = ht.cls_obs < level, ht.cls_exp[2] < level
            excluded_obs += obs_x
            excluded_exp += exp_x
            verdict = f"{'yes' if obs_x else 'no'}/{'yes' if exp_x else 'no'}"
            observed = _cls(ht.cls_obs)
            if ht.toys is not None:  # toys: with the Monte-Carlo uncertainty ("<0.0001 ± 0.0076")
                observed = f"{ht.cls_obs:.4f} ± {ht.toys.cls_obs_error:.2g}"
            cells += [observed, _cls(ht.cls_exp[2]), band, verdict]
        else:
            cells += ["—", "—", "—", "—"]
        if with_ul:
            ul = point.upper_limit
            cells += [_fmt(ul.obs if ul else None), _fmt(ul.exp[2] if ul else None)]
        colour = {"ok": "green", "suspect": "yellow"}.get(point.status, "red")
        why = "" if point.ok else f": {point.error or point.reason}"
        notes = (point.diagnostics or {}).get("notes") or []
        if point.ok and notes:  # (every fit at its lowest minimum; another one matters)
            why = f" ({notes[0]})"
        # (reasons name their strategies in square brackets: not rich markup)
        status = f"[{colour}]{point.status}[/{colour}]{escape(why)}"
        table.add_row(*cells, status)
    console = Console()
    if not console.is_terminal:  # a file or a pipe: don't cut the table at 80 columns
        console = Console(width=160)
    console.print(table)
    counts = scan.counts()
    console.print(
        f"{status_line(len(scan), 'point', counts)}; "
        f"excluded at {cl:.0%} CL: {excluded_obs} observed, {excluded_exp} expected "
        f"(pyhf {scan.pyhf_version}, {scan.options.backend}/{scan.options.optimizer}, "
        f"{scan.options.test_stat}, mu={scan.options.poi_value:g})"
    )
