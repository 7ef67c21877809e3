"""``fitaas serve``: the HTTP service (``fitaas admin`` is in :mod:`fitaas.cli.admin`, the
service's client commands in :mod:`fitaas.cli.jobs`)."""

from __future__ import annotations

from typing import Any

import click

from fitaas.errors import FitaasError

__all__ = [
    "database_option",
    "serve",
    "service_imports",
]

_DATABASE_HELP = (
    "Service database: a SQLite path or URL (default fitaas-service.sqlite here), "
    "or postgresql://user:password@host:port/name."
)


def database_option(function: Any) -> Any:
    return click.option(
        "--database",
        default="sqlite:///fitaas-service.sqlite",
        show_default=True,
        envvar="FITAAS_DATABASE",
        help=_DATABASE_HELP,
    )(function)


def service_imports() -> Any:
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
@database_option
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
    service_imports()
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
