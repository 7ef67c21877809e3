"""``fitaas results``: a readable table of a results file."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["results"]


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--failed", "only_failed", is_flag=True, help="Only the points that failed.")
@click.option(
    "--cl", type=float, default=0.95, show_default=True, help="Confidence level for 'excluded'."
)
def results(path: Path, only_failed: bool, cl: float) -> None:
    """Show the results of a scan (RESULTS.json) as a table."""
    from rich.console import Console
    from rich.table import Table

    from fitaas.results import read_results

    scan = read_results(path)
    level = 1.0 - cl
    table = Table(title=f"{path} ({scan.source or scan.workspace_digest[:12]})")
    table.add_column("patch")
    for label in scan.labels:
        table.add_column(label, justify="right")
    table.add_column("CLs obs", justify="right")
    table.add_column("CLs exp (−1σ, median, +1σ)", justify="right")
    table.add_column("excluded obs/exp", justify="center")
    with_ul = any(p.upper_limit for p in scan)
    if with_ul:
        table.add_column("μ UL obs", justify="right")
        table.add_column("μ UL exp", justify="right")
    table.add_column("status")
    shown = [p for p in scan if not only_failed or not p.ok]
    excluded_obs = excluded_exp = 0
    for point in shown:
        ht = point.hypotest
        cells = [str(point.patch), *(str(v) for v in point.values)]
        if ht:
            exp = f"{_fmt(ht.cls_exp[1], 3)}, {_fmt(ht.cls_exp[2], 3)}, {_fmt(ht.cls_exp[3], 3)}"
            obs_x, exp_x = ht.cls_obs < level, ht.cls_exp[2] < level
            excluded_obs += obs_x
            excluded_exp += exp_x
            cells += [
                _fmt(ht.cls_obs),
                exp,
                f"{'yes' if obs_x else 'no'}/{'yes' if exp_x else 'no'}",
            ]
        else:
            cells += ["—", "—", "—"]
        if with_ul:
            ul = point.upper_limit
            cells += [_fmt(ul.obs if ul else None), _fmt(ul.exp[2] if ul else None)]
        status = "[green]ok[/green]" if point.ok else f"[red]failed[/red]: {point.error}"
        table.add_row(*cells, status)
    console = Console()
    console.print(table)
    counts = scan.counts()
    console.print(
        f"{len(scan)} points: {counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed; "
        f"excluded at {cl:.0%} CL: {excluded_obs} observed, {excluded_exp} expected "
        f"(pyhf {scan.pyhf_version}, {scan.options.backend}/{scan.options.optimizer}, "
        f"{scan.options.test_stat}, mu={scan.options.poi_value:g})"
    )
