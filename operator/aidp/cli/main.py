"""Entry point of the `aidp` command."""

from __future__ import annotations

import typer

from aidp import __version__
from aidp.cli import audit_cmd, dev, operator_cmds, policy

app = typer.Typer(
    name="aidp",
    help="aidp governs which Kubernetes workloads may send data to AI APIs, and under what privacy terms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
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
