"""``fitaas submit``, ``fitaas jobs``, ``fitaas job``: the service's client commands (through
:class:`fitaas.client.Client`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fitaas.cli.options import inference_options, options_from_cli
from fitaas.cli.pallet_options import labels_from_cli, pallets_mode, pallets_options
from fitaas.errors import FitaasError

__all__ = [
    "job",
    "jobs",
    "submit",
]


def _service_options(function: Any) -> Any:
    function = click.option(
        "--token", envvar="FITAAS_TOKEN", help="Your token (or set FITAAS_TOKEN)."
    )(function)
    return click.option(
        "--service",
        envvar="FITAAS_SERVICE",
        default="http://127.0.0.1:8000",
        show_default=True,
        help="The service URL (or set FITAAS_SERVICE).",
    )(function)


def _client(service: str, token: str | None) -> Any:
    from fitaas.client import Client

    return Client(service, token)


_JOB_COLUMNS = "{:<36}  {:<9}  {:>15}  {:<11}  {:<12}  {:>8}  {}"

_JOB_HEADER = _JOB_COLUMNS.format(
    "job", "state", "done (failed)", "task", "endpoint", "elapsed", "owner"
)


def _job_line(j: Any) -> str:
    elapsed = f"{j.elapsed:.1f}s" if j.elapsed is not None else "-"
    progress = f"{j.done}/{j.total} ({j.failed})"
    return _JOB_COLUMNS.format(j.id, j.state, progress, j.task, j.endpoint, elapsed, j.owner)


@click.command()
@_service_options
@pallets_options
@click.option("-p", "--patch", "patches", multiple=True, help="Only this patch (repeatable).")
@inference_options
@click.option(
    "--upper-limit", is_flag=True, help="Upper limits on the POI instead of hypothesis tests."
)
@click.option("--fit", "with_fit", is_flag=True, help="Maximum-likelihood fits instead.")
@click.option("--endpoint", help="Where to run it (default: local).")
@click.option("--group", help="Share the job with one of your groups.")
@click.option(
    "--task",
    type=click.Choice(["hypotest", "upper_limit", "fit"]),
    hidden=True,
    help="(Old spelling of --upper-limit / --fit.)",
)
@click.option(
    "--option",
    "raw_options",
    multiple=True,
    metavar="NAME=JSON",
    hidden=True,
    help="(Old spelling: an inference option as NAME=JSON.)",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow its progress.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write results here (a sweep: a folder, one JSON per pallet).",
)
def submit(
    service: str,
    token: str | None,
    pallets: tuple[str, ...],
    patches: tuple[str, ...],
    upper_limit: bool,
    with_fit: bool,
    endpoint: str | None,
    group: str | None,
    task: str | None,
    raw_options: tuple[str, ...],
    wait: bool,
    output: Path | None,
    **params: Any,
) -> None:
    """Submit a scan to a fitaas service (PALLETS and options as for 'fitaas scan': one
    pallet, a sweep, --combine, or --models)."""
    if upper_limit and with_fit:
        raise FitaasError("--upper-limit and --fit: a job has one task, choose one")
    task = task or ("upper_limit" if upper_limit else "fit" if with_fit else "hypotest")
    mode = pallets_mode(pallets, params)
    options = _changed_options(params)
    for item in raw_options:
        name, sep, value = item.partition("=")
        if not sep:
            raise FitaasError(f"--option {item}: expected NAME=VALUE")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    common = {
        "patches": list(patches) or None,
        "task": task,
        "endpoint": endpoint,
        "group": group,
        "region": params["region"],
        **options,
    }
    with _client(service, token) as client:
        if mode in ("sweep", "combination"):
            job_ = client.submit_pallets(
                pallets,
                combine=mode == "combination",
                join=params["join"],
                match=params["match"],
                all_regions=params["all_regions"],
                **common,
            )
        elif mode == "models":
            job_ = client.submit(
                pallets[0], models=params["models"], labels=labels_from_cli(params), **common
            )
        else:
            job_ = client.submit(pallets[0], pallets[1] if len(pallets) == 2 else None, **common)
        click.echo(f"job {job_.id} submitted", err=True)
        click.echo(job_.id)
        if wait or output:
            job_ = client.wait(job_)
            click.echo(_job_line(job_), err=True)
        if output:
            _write_results(client, job_, output)
        if job_.state == "failed":
            raise FitaasError(f"job {job_.id} failed: {job_.error}")


def _changed_options(params: dict[str, Any]) -> dict[str, Any]:
    """The inference options given on the command line that differ from the defaults."""
    from fitaas.inference import InferenceOptions

    given = options_from_cli(params).to_dict()
    defaults = InferenceOptions().to_dict()
    return {name: value for name, value in given.items() if value != defaults[name]}


def _write_results(client: Any, job: Any, output: Path) -> None:
    """A job's results to ``output`` (CSV by its suffix); a sweep's, one file per pallet in
    the folder ``output`` (named as ``fitaas scan`` names them)."""
    fmt = "csv" if output.suffix == ".csv" else "json"
    if job.sweep is not None:
        folder = output.with_suffix("") if output.suffix else output
        folder.mkdir(parents=True, exist_ok=True)
        for name in job.sweep:
            target = folder / f"{name.replace('/', '__')}.{fmt}"
            _write_one(client, job.id, target, fmt, name)
        click.echo(f"results of {len(job.sweep)} pallets written to {folder}/", err=True)
        return
    _write_one(client, job.id, output, fmt)
    click.echo(f"results written to {output}", err=True)


def _write_one(client: Any, job_id: str, output: Path, fmt: str, pallet: str | None = None) -> None:
    if fmt == "csv":
        output.write_text(client.results_csv(job_id, pallet))
    else:
        output.write_text(json.dumps(client.results_json(job_id, pallet), indent=1))


@click.command()
@_service_options
def jobs(service: str, token: str | None) -> None:
    """List your jobs (and those shared with your groups)."""
    with _client(service, token) as client:
        found = client.jobs()
        if not found:
            click.echo("no jobs yet", err=True)
            return
        click.echo(_JOB_HEADER)
        for j in found:
            click.echo(_job_line(j))


@click.command()
@_service_options
@click.argument("job_id")
@click.option("--results", "want_results", is_flag=True, help="Fetch the results.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write results here.")
@click.option("--cancel", is_flag=True, help="Cancel the job (finished results stay).")
@click.option("--wait", is_flag=True, help="Follow its progress until it finishes.")
def job(
    service: str,
    token: str | None,
    job_id: str,
    want_results: bool,
    output: Path | None,
    cancel: bool,
    wait: bool,
) -> None:
    """Show one job; fetch its results or cancel it."""
    with _client(service, token) as client:
        current = client.cancel(job_id) if cancel else client.job(job_id)
        if wait:
            current = client.wait(current)
        # data on stdout, words on stderr: `fitaas job ID --results > r.json` is valid JSON
        click.echo(_job_line(current), err=want_results and not output)
        if current.error:
            click.echo(f"error: {current.error}", err=True)
        if output:
            _write_results(client, current, output)
        elif want_results:
            click.echo(json.dumps(client.results_json(current.id), indent=1))
