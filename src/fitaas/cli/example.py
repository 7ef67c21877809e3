"""``fitaas example``: write the generated demo pallet."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["example"]


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace existing files.")
def example(directory: Path, force: bool) -> None:
    """Write a small demo pallet (BkgOnly.json + patchset.json) into DIRECTORY.

    20 signal points on an (m1, m2) grid; observed CLs = 0.05 exactly on the line
    m1 = 750 - 0.6 m2, so you can check what fitaas finds.
    """
    from fitaas.inputs.example import write_example

    workspace, patchset = write_example(directory, overwrite=force)
    click.echo(f"Wrote {workspace} and {patchset}. Try:\n  fitaas scan {workspace} {patchset}")
