"""``fitaas scan``: every signal point of a pallet, resumable."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fitaas.cli.engine_options import engine_from_cli, engine_options
from fitaas.cli.options import inference_options, options_from_cli
from fitaas.cli.pallet_options import (
    labels_from_cli,
    pallet_from_cli,
    pallets_mode,
    pallets_options,
)
from fitaas.errors import InputError
from fitaas.output.progress import ScanBar

if TYPE_CHECKING:  # pragma: no cover
    from fitaas.inputs.pallets import Pallet

__all__ = ["scan"]


def _output_format(output: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = output.suffix.lower()
    return {".csv": "csv", ".jsonl": "jsonl"}.get(suffix, "json")


@click.command()
@pallets_options
@click.option(
    "--no-verify",
    is_flag=True,
    help="Apply a patchset even when its digest does not match the workspace.",
)
@click.option(
    "-p",
    "--patch",
    "patches",
    multiple=True,
    metavar="NAME",
    help="Only this patch, by its name in the patchset (repeatable).",
)
@inference_options
@click.option(
    "--upper-limit", is_flag=True, help="Also compute observed and expected upper limits."
)
@click.option(
    "--fit", "with_fit", is_flag=True, help="Also run a maximum-likelihood fit per point."
)
@engine_options
@click.option(
    "--store",
    help="Results store: an SQLite file (default: your store, shared by every run: "
    "results.sqlite in the cache folder, or $FITAAS_STORE) or a database URL "
    "(postgresql://user:password@host/name; needs the 'service' extra).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("results.json"),
    show_default=True,
    help="Where to write the results.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "jsonl"]),
    help="Output format (default: from the suffix; jsonl streams results as they finish).",
)
@click.option("--force", is_flag=True, help="Recompute results even when the store has them.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def scan(**params: Any) -> None:
    """CLs hypothesis tests (and optionally upper limits) for every signal point.

    PALLETS is WORKSPACE [PATCHSET]: a workspace (.json/.json.gz, or - for stdin), a HEPData
    archive (.tar.gz), a directory with BkgOnly.json and patchset.json, or an http(s)
    address; PATCHSET the patchset when not found there. Several pallets (folders,
    archives, addresses, BkgOnly.json:patchset.json pairs), or --all-regions, make a sweep:
    one job on one engine, each pallet's results in its own JSON under the -o folder.
    Every result is stored as it arrives: rerun the same command to continue an
    interrupted scan.
    """
    sources = params.pop("pallets")
    mode = pallets_mode(sources, params)
    if mode == "combination":
        _single(params, _combination(sources, params))
        return
    if mode == "models":
        _theory(sources, params)
        return
    if mode == "sweep":
        _sweep(sources, params)
        return
    params["workspace"] = sources[0]
    params["patchset"] = sources[1] if len(sources) == 2 else None
    _single(params)


def _combination(sources: tuple[str, ...], params: dict[str, Any]) -> Pallet:
    """``--combine``: the pallets combined into one (points in only some analyses said)."""
    from fitaas.jobs.combined_scans import combine_pallets
    from fitaas.jobs.sweeps import expand_pallets

    entries = expand_pallets(
        sources,
        all_regions=params["all_regions"],
        region=params["region"],
        verify=not params["no_verify"],
    )
    combination = combine_pallets(entries, join=params["join"], match=params["match"])
    if not params["quiet"]:
        from fitaas.output.results import counted

        for name, missing in combination.unmatched.items():
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            verb = "is" if len(missing) == 1 else "are"
            click.secho(
                f"{counted(len(missing), 'point')} of {name} {verb} not in every analysis, "
                f"not scanned: {shown}",
                fg="yellow",
                err=True,
            )
    return combination.pallet


def _single(params: dict[str, Any], pallet: Pallet | None = None) -> None:
    from fitaas.jobs.scanning import scan as run_scan
    from fitaas.store import store_label

    output: Path = params["output"]
    fmt = _output_format(output, params["fmt"])
    store = _store(params)
    options = options_from_cli(params)
    pallet = pallet or pallet_from_cli(params)
    kinds = _kinds(params)
    engine = engine_from_cli(params)
    start = time.perf_counter()
    with engine, ScanBar(quiet=params["quiet"]) as bar:
        result = run_scan(
            pallet,
            patches=params["patches"] or None,
            options=options,
            kinds=kinds,
            compute=engine,
            store=store,
            force=params["force"],
            progress=bar,
        )
    wall = time.perf_counter() - start
    _write(result, output, fmt)
    counts = result.counts()
    if not params["quiet"]:
        from fitaas.output.results import counted, status_line

        rescued = [p for p in result if p.ok and (p.diagnostics or {}).get("attempts", 1) > 1]
        # (a point the store gave may have needed its retry in an earlier run)
        retried = f"; {counted(len(rescued), 'point')} ok after a retry" if rescued else ""
        click.echo(
            f"{status_line(len(result), 'point', counts)} "
            f"({result.work()}; store {store_label(store)}{retried}) in {wall:.1f} s -> {output}",
            err=True,
        )
        _say_flagged([*result.failed, *result.suspect], output)
    elif result.failed:  # (quiet hides progress and the summary, never a failure)
        _say_failed(len(result.failed), len(result), list(result.failed), output)
    if result.failed:
        sys.exit(1)


def _say_failed(count: int, total: int, failed: list[Any], output: Path) -> None:
    """What ``--quiet`` still says: how many points failed, and the first 20 with why."""
    from fitaas.output.results import counted

    click.secho(f"{count} of {counted(total, 'point')} failed -> {output}", fg="red", err=True)
    _say_flagged(failed, output, max(0, count - 20))


def _say_flagged(flagged: list[Any], output: Path, more: int | None = None) -> None:
    """The first 20 failed or suspect points with their reasons (``more``: how many
    others there are, when ``flagged`` is not all of them)."""
    for point in flagged[:20]:
        colour = "red" if point.status == "failed" else "yellow"
        why = point.error or point.reason
        click.secho(f"  {point.status} {point.patch}: {why}", fg=colour, err=True)
    others = len(flagged) - 20 if more is None else more
    if others > 0:
        click.secho(f"  ... and {others} more (see {output})", fg="red", err=True)


def _theory(sources: tuple[str, ...], params: dict[str, Any]) -> None:
    """``--models``: a theory scan streamed (:func:`fitaas.stream_scan`), results to a JSON
    Lines file as they finish (or collected into JSON/CSV at the end)."""
    from fitaas.inputs.theory_models import check_models
    from fitaas.jobs.streaming import collected_scan, stream_scan

    if params["patches"]:
        raise InputError("--models scans its models: no --patch")
    from fitaas.store import store_label

    output, fmt = _streamed_output(params)
    params.update(workspace=sources[0], patchset=None)
    store = _store(params)
    flagged: list[Any] = []

    def remember(point: Any) -> None:
        if point.status != "ok" and len(flagged) < 20:
            flagged.append(point)

    common: dict[str, Any] = {
        "labels": labels_from_cli(params),
        "options": options_from_cli(params),
        "kinds": _kinds(params),
        "store": store,
        "force": params["force"],
    }
    pallet = pallet_from_cli(params)
    total = check_models(params["models"])  # (a malformed line: refused before any work)
    engine = engine_from_cli(params)
    start = time.perf_counter()
    with engine, ScanBar(quiet=params["quiet"], label="models") as bar:
        if fmt == "jsonl":
            summary = stream_scan(
                pallet,
                params["models"],
                compute=engine,
                output=output,
                on_result=remember,
                total=total,
                progress=bar,
                **common,
            )
            models, counts, work = summary.models, summary.counts, summary.kinds
        else:
            result = collected_scan(
                pallet, params["models"], compute=engine, total=total, progress=bar, **common
            )
            _write(result, output, fmt)
            flagged = [*result.failed, *result.suspect]
            models, counts, work = len(result), result.counts(), result.kinds
    if not params["quiet"]:
        line = _work_line(models, counts, work)
        elapsed = time.perf_counter() - start
        click.echo(f"{line}; store {store_label(store)}) in {elapsed:.1f} s -> {output}", err=True)
        flagged_count = counts.get("failed", 0) + counts.get("suspect", 0)
        _say_flagged(flagged, output, max(0, flagged_count - 20))
    elif counts.get("failed"):
        failed = [p for p in flagged if p.status == "failed"]
        _say_failed(counts["failed"], models, failed, output)
    if counts.get("failed"):
        sys.exit(1)


def _streamed_output(params: dict[str, Any]) -> tuple[Path, str]:
    """A theory scan's output file (default ``results.jsonl``) and format."""
    output: Path = params["output"]
    source = click.get_current_context().get_parameter_source("output")
    if source == click.core.ParameterSource.DEFAULT:
        output = output.with_suffix(".jsonl")
    return output, _output_format(output, params["fmt"])


def _work_line(models: int, counts: dict[str, int], work: dict[str, dict[str, int]]) -> str:
    """How many models ended how, and what was computed and reused per kind (the summary
    line, up to the store)."""
    from fitaas.output.results import status_line

    done = "; ".join(
        f"{k}: {v['computed']} computed, {v['reused']} reused" for k, v in work.items()
    )
    return f"{status_line(models, 'model', counts)} ({done}"


def _kinds(params: dict[str, Any]) -> list[str]:
    """The task kinds the flags ask for."""
    return [
        "hypotest",
        *(["upper_limit"] if params["upper_limit"] else []),
        *(["fit"] if params["with_fit"] else []),
    ]


def _write(result: Any, path: Path, fmt: str) -> None:
    if fmt == "csv":
        result.to_csv(path)
    elif fmt == "jsonl":
        result.to_jsonl(path)
    else:
        result.to_json(path)


def _store(params: dict[str, Any]) -> str:
    """The --store given (a path or a database URL), or the user's store (one for every
    run, wherever its output goes)."""
    from fitaas.caches import results_store

    if params["store"]:
        return str(params["store"])
    store = results_store()
    store.parent.mkdir(parents=True, exist_ok=True)
    return str(store)


def _sweep(sources: tuple[str, ...], params: dict[str, Any]) -> None:
    """Several pallets on one engine (as :func:`fitaas.sweep`, with a bar per pallet): a
    JSON per pallet in the -o folder, a table of all."""
    from rich.console import Console
    from rich.table import Table

    from fitaas.jobs.scanning import scan as run_scan
    from fitaas.jobs.sweeps import expand_pallets

    folder = params["output"].with_suffix("") if params["output"].suffix else params["output"]
    fmt = params["fmt"] or "json"
    entries = expand_pallets(
        sources,
        all_regions=params["all_regions"],
        region=params["region"],
        verify=not params["no_verify"],
    )
    store = _store(params)
    options = options_from_cli(params)
    kinds = _kinds(params)
    table = Table(title=f"sweep of {len(entries)} pallets -> {folder}/")
    for column in ("pallet", "points", "ok", "suspect", "failed", "excluded obs/exp", "wall s"):
        table.add_column(column, justify="left" if column == "pallet" else "right")
    failed = False
    engine = engine_from_cli(params)
    folder.mkdir(parents=True, exist_ok=True)
    with engine:
        for name, pallet in entries:
            start = time.perf_counter()
            with ScanBar(quiet=params["quiet"], label=name) as bar:
                result = run_scan(
                    pallet,
                    compute=engine,
                    patches=params["patches"] or None,
                    options=options,
                    kinds=kinds,
                    store=store,
                    force=params["force"],
                    progress=bar,
                )
            target = folder / f"{name.replace('/', '__')}.{fmt}"
            _write(result, target, fmt)
            observed, expected = result.excluded(params.get("cl") or 0.95)
            table.add_row(
                name,
                *result.status_cells(),
                f"{observed}/{expected}",
                f"{time.perf_counter() - start:.1f}",
            )
            failed = failed or bool(result.failed)
            if result.failed and params["quiet"]:
                _say_failed(len(result.failed), len(result), list(result.failed), target)
    if not params["quiet"]:
        Console(stderr=True).print(table)
    if failed:
        sys.exit(1)
