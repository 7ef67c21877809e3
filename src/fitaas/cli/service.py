"""``fitaas serve``, ``fitaas admin`` (on the database directly), and the service's client
commands ``fitaas submit``, ``fitaas jobs``, ``fitaas job``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fitaas.cli.options import (
    inference_options,
    labels_from_cli,
    options_from_cli,
    pallets_mode,
    pallets_options,
)
from fitaas.errors import FitaasError

__all__ = ["admin", "job", "jobs", "serve", "submit"]

_DATABASE_HELP = (
    "Service database: a SQLite path or URL (default fitaas-service.sqlite here), "
    "or postgresql://user:password@host:port/name."
)


def _database_option(function: Any) -> Any:
    return click.option(
        "--database",
        default="sqlite:///fitaas-service.sqlite",
        show_default=True,
        envvar="FITAAS_DATABASE",
        help=_DATABASE_HELP,
    )(function)


def _service_imports() -> Any:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise FitaasError(
            f"the service needs the 'service' extra ({exc.name} is missing): "
            "pip install 'fitaas[service]'"
        ) from None
    from fitaas.service import db

    return db


@click.command()
@_database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--max-upload-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Largest request body and largest decompressed upload.",
)
@click.option("--workers", type=click.IntRange(min=1), help="Processes of the local endpoint.")
@click.option(
    "--keep-workers",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long an endpoint's workers wait for the next job (0: stopped after each job).",
)
@click.option(
    "--auth-failures-per-minute",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Failed authentications a client may make in a minute before it gets 429.",
)
@click.option(
    "--site",
    type=click.Path(exists=True, dir_okay=False),
    help="Site file (TOML) whose [limits] table sets what one job may ask for.",
)
@click.option(
    "--limit",
    "limit_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="One limit of what a job may ask for (repeatable; over the site file): points, "
    "pallets, labels, toys, total_toys, toy_blocks, grid, ul_scan, running_jobs.",
)
@click.option(
    "--forwarded-allow-ips",
    default="",
    show_default=True,
    help="Proxies whose X-Forwarded-For/-Proto headers are believed (comma-separated "
    "addresses, * for any); by default none: a client is its peer address.",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections and requests in progress at once; more get 503.",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="A client must send a request's headers whole within this time; else it is let go.",
)
def serve(
    database: str,
    host: str,
    port: int,
    max_upload_mb: float,
    workers: int | None,
    keep_workers: float,
    auth_failures_per_minute: int,
    site: str | None,
    limit_values: tuple[str, ...],
    forwarded_allow_ips: str,
    max_connections: int,
    header_timeout: float,
) -> None:
    """Run the fitaas service (HTTP API under /api/v1, web page at /).

    Several servers may share one database (PostgreSQL, or SQLite on one host): each job
    runs on one of them at a time, and a job of a server that stops or dies is taken over.
    """
    _service_imports()
    from fitaas.service.job_limits import JobLimits, load_site_limits

    limits = load_site_limits(site) if site else JobLimits()
    limits = limits.with_values(_limit_values(limit_values), "--limit")
    import faulthandler

    import uvicorn

    # a fatal signal (SIGBUS from storage that vanished under a mapped file, SIGSEGV) leaves
    # the Python stacks in the log instead of nothing
    faulthandler.enable()

    from fitaas.service import ServiceSettings, create_app
    from fitaas.service.slow_clients import header_deadline_protocol

    settings = ServiceSettings(
        database=database,
        max_upload_bytes=int(max_upload_mb * 1e6),
        workers=workers,
        auth_failures_per_minute=auth_failures_per_minute,
        keep_workers=keep_workers,
        limits=limits,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    app = create_app(settings)
    click.echo(f"fitaas service on http://{host}:{port}/ (database {database})", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=10,
        # (uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a client on the
        # host could then be anyone, and escape the limit on wrong tokens)
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
        limit_concurrency=max_connections,
        http=header_deadline_protocol(header_timeout),
    )


def _limit_values(values: tuple[str, ...]) -> dict[str, int]:
    """``NAME=VALUE`` pairs of ``--limit`` as integers by name."""
    out: dict[str, int] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise click.BadParameter(
                f"'{item}': expected NAME=VALUE with a positive integer value",
                param_hint="--limit",
            )
        out[name.strip()] = int(value)
    return out


@click.group()
@_database_option
@click.pass_context
def admin(ctx: click.Context, database: str) -> None:
    """Manage users, groups and endpoints (works on the database directly)."""
    db = _service_imports()
    ctx.obj["engine"] = db.connect(database)


@admin.group()
def user() -> None:
    """Users and their tokens."""


@user.command("add")
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="A group to join (repeatable).")
@click.pass_context
def user_add(ctx: click.Context, name: str, groups: tuple[str, ...]) -> None:
    """Add a user; prints their token once (only a hash is stored)."""
    from fitaas.service.accounts import add_user

    token = add_user(ctx.obj["engine"], name, groups)
    click.echo(f"user {name} added; token (shown once):", err=True)
    click.echo(token)


@user.command("remove")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Remove a user (their token stops working)."""
    from fitaas.service.accounts import remove_user

    remove_user(ctx.obj["engine"], name)
    click.echo(f"user {name} removed", err=True)


@user.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """List users and their groups."""
    from fitaas.service.accounts import list_users

    for u in list_users(ctx.obj["engine"]):
        click.echo(f"{u.name}\t{','.join(u.groups)}")


@admin.group()
def token() -> None:
    """Tokens."""


@token.command("rotate")
@click.argument("name")
@click.pass_context
def token_rotate(ctx: click.Context, name: str) -> None:
    """Give a user a new token; the old one stops working."""
    from fitaas.service.accounts import rotate_token

    new = rotate_token(ctx.obj["engine"], name)
    click.echo(f"new token for {name} (shown once):", err=True)
    click.echo(new)


@admin.group()
def group() -> None:
    """Groups."""


@group.command("add")
@click.argument("name")
@click.pass_context
def group_add(ctx: click.Context, name: str) -> None:
    """Add a group."""
    from fitaas.service.accounts import add_group

    add_group(ctx.obj["engine"], name)
    click.echo(f"group {name} added", err=True)


@admin.group()
def endpoint() -> None:
    """Endpoints and who may use them."""


@endpoint.command("add")
@click.argument("name")
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["local", "parsl", "dask", "globus"]),
    required=True,
    help="The engine that runs this endpoint's tasks.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An endpoint file (fitaas endpoint init) with the engine's settings.",
)
@click.option("--group", "groups", multiple=True, help="A group that may use it (repeatable).")
@click.option("--open", "open_to_all", is_flag=True, help="Let every user use it.")
@click.pass_context
def endpoint_add(
    ctx: click.Context,
    name: str,
    engine_name: str,
    config: Path | None,
    groups: tuple[str, ...],
    open_to_all: bool,
) -> None:
    """Add (or replace) an endpoint."""
    from fitaas.engines.endpoint import load_endpoint
    from fitaas.service.accounts import add_endpoint

    settings: dict[str, Any] = {"engine": engine_name}
    if config is not None:
        settings = load_endpoint(config)
        if settings["engine"] != engine_name:
            raise FitaasError(
                f"{config} describes the {settings['engine']} engine, not {engine_name}"
            )
    if not groups and not open_to_all:
        raise FitaasError("say who may use it: --group G (repeatable) or --open")
    add_endpoint(ctx.obj["engine"], name, settings, groups, open_to_all)
    click.echo(f"endpoint {name} ({engine_name}) added", err=True)


@endpoint.command("list")
@click.pass_context
def endpoint_list(ctx: click.Context) -> None:
    """List endpoints and the groups that may use them."""
    from fitaas.service.accounts import list_endpoints

    for e in list_endpoints(ctx.obj["engine"]):
        who = "everyone" if e.open_to_all else ",".join(e.groups) or "nobody"
        click.echo(f"{e.name}\t{e.engine}\t{who}")


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
