"""The ``fitaas`` command line: thin commands over the library."""

from __future__ import annotations

import sys
from typing import Any

import click

from fitaas._version import __version__
from fitaas.cli.admin import admin
from fitaas.cli.combine import combine
from fitaas.cli.endpoint import endpoint
from fitaas.cli.example import example
from fitaas.cli.fits import nll_scan, ranking
from fitaas.cli.jobs import job, jobs, submit
from fitaas.cli.plot import plot, report
from fitaas.cli.results import results
from fitaas.cli.scan import scan
from fitaas.cli.service import serve
from fitaas.cli.single import fit, hypotest, upper_limit
from fitaas.errors import FitaasError

__all__ = ["cli", "main"]

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

# The flag that sets each library option an error names (InputError.option).
FLAGS = {
    "par_bounds": "--bounds",
    "poi": "--poi",
    "measurement": "--measurement",
    "patch": "--patch",
    "region": "--region",
    "verify": "--no-verify",
    "slices": "--slice",
    "upper_limit": "--upper-limit",
    "calctype": "--calctype",
    "match": "--match",
    "force": "--force",
    "renames": "fitaas combine's --rename-param, --rename-channel, --prefix or --join",
}


def _error_line(exc: FitaasError) -> str:
    """The error, with the flag that fixes it when it names an option."""
    option = getattr(exc, "option", None)
    if option not in FLAGS:
        return str(exc)
    value = getattr(exc, "value", None)
    return f"{exc} ({FLAGS[option]}{' ' + value if value else ''})"


class _Group(click.Group):
    """A group that turns fitaas errors into one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FitaasError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"Error: {_error_line(exc)}", fg="red", err=True)
            sys.exit(EXIT_INPUT)
        except KeyboardInterrupt:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(
                "Interrupted. Every result finished so far is in the store: "
                "run the same command again to continue.",
                fg="yellow",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fitaas")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fitting as a Service: pyhf inference for every point of a published likelihood."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _command in (
    scan,
    hypotest,
    fit,
    upper_limit,
    ranking,
    nll_scan,
    results,
    combine,
    plot,
    report,
    example,
    endpoint,
    serve,
    admin,
    submit,
    jobs,
    job,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="fitaas")
    except KeyboardInterrupt:  # before a command started: nothing to keep
        sys.exit(EXIT_INTERRUPTED)
