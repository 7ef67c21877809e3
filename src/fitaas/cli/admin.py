"""``fitaas admin``: users, tokens, groups and endpoints of a service, on its database
directly (no running service needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fitaas.choices import ENGINES
from fitaas.cli.service import database_option, service_imports
from fitaas.errors import FitaasError

__all__ = [
    "admin",
    "endpoint",
    "endpoint_add",
    "endpoint_list",
    "group",
    "group_add",
    "token",
    "token_rotate",
    "user",
    "user_add",
    "user_list",
    "user_remove",
]


@click.group()
@database_option
@click.pass_context
def admin(ctx: click.Context, database: str) -> None:
    """Manage users, groups and endpoints (works on the database directly)."""
    db = service_imports()
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
    type=click.Choice(ENGINES),
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
