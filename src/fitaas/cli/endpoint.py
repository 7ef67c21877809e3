"""``fitaas endpoint``: write and check endpoint files."""

from __future__ import annotations

from pathlib import Path

import click

from fitaas.choices import ENGINES

__all__ = ["endpoint"]


@click.group()
def endpoint() -> None:
    """Endpoint files: where 'fitaas scan --endpoint FILE' runs."""


@endpoint.command("init")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="parsl",
    show_default=True,
)
@click.option(
    "--provider",
    type=click.Choice(["local", "slurm", "condor", "pbspro", "torque", "kubernetes"]),
    default="local",
    show_default=True,
    help="Parsl provider (with --engine parsl).",
)
@click.option(
    "--cluster",
    type=click.Choice(["local", "slurm", "htcondor", "pbs"]),
    default="local",
    show_default=True,
    help="Dask cluster (with --engine dask).",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init(path: Path, engine: str, provider: str, cluster: str, force: bool) -> None:
    """Write a commented endpoint file to PATH."""
    from fitaas.engines.endpoint import endpoint_template
    from fitaas.errors import InputError

    if path.exists() and not force:
        raise InputError(f"{path} already exists (use --force to replace it)")
    path.write_text(endpoint_template(engine, provider, cluster))
    click.echo(f"Wrote {path}. Edit it, then: fitaas endpoint check {path}")


@endpoint.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path) -> None:
    """Validate an endpoint file: keys, types, choices, installed extras."""
    from fitaas.engines.endpoint import check_endpoint

    click.echo(check_endpoint(path))
