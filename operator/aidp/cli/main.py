"""Entry point of the `aidp` command."""

from __future__ import annotations

from typing import Annotated

import typer

from aidp import __version__
from aidp.cli import audit_cmd, dev, operator_cmds, policy

app = typer.Typer(
    name="aidp",
    help="aidp governs which Kubernetes workloads may send data to AI APIs, and under what privacy terms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the aidp version and exit."
        ),
    ] = False,
) -> None:
    del version  # handled by its callback


app.add_typer(dev.app, name="dev")
policy.register(app)
operator_cmds.register(app)
audit_cmd.register(app)


@app.command()
def version() -> None:
    """Print the aidp version."""
    typer.echo(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()
