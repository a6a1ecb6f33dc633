"""`aidp dev up` / `aidp dev down`: the local control plane for development and demos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# the dev environment (and what it imports) is loaded by these commands only: other commands,
# `aidp audit` above all, start faster without it

app = typer.Typer(
    help="Start and stop a local control plane with aidp (etcd, kube-apiserver, OPA, operator).",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Where the environment keeps its data, logs and kubeconfig."),
]


@app.command()
def up(
    state_dir: StateDir = None,
    node: Annotated[
        bool,
        typer.Option(
            "--node",
            help="Also a real node (root): kubelet, containerd, CNI, kube-proxy, CoreDNS, kube-router's "
            "NetworkPolicy enforcer and the provider stand-in; pods run and packets are filtered.",
        ),
    ] = False,
    admission_engine: Annotated[
        str | None,
        typer.Option(
            "--admission-engine",
            help="opa (default), vap or both: the operator's --admission-engine (docs/admission-engines.md).",
        ),
    ] = None,
) -> None:
    """Start the local control plane with the CRDs installed (idempotent); print the kubeconfig path."""
    if admission_engine is not None:
        if admission_engine not in ("opa", "vap", "both"):
            raise typer.BadParameter("must be opa, vap or both", param_hint="--admission-engine")
        import os

        os.environ["AIDP_ADMISSION_ENGINE"] = admission_engine  # the operator's `aidp run` reads it
    from lightkube.core.exceptions import ApiError

    from aidp.devcluster import ControlPlaneError
    from aidp.devcluster import dev as devenv

    target = state_dir or devenv.default_state_dir()
    try:
        st = devenv.up(target, node=node)
    except (ControlPlaneError, ApiError) as err:
        typer.echo(f"aidp dev up: {err}", err=True)
        raise typer.Exit(1) from err
    verb = "started" if st.started else "already running"
    typer.echo(f"aidp dev: {verb} in {st.state_dir}", err=True)
    typer.echo(f"  kube-apiserver {st.server}", err=True)
    typer.echo(f"  OPA            {st.opa_url} (management token in {st.opa_token_file})", err=True)
    typer.echo(
        f"  logs           {st.state_dir / 'logs'} (control plane), {st.state_dir / 'aidp' / 'logs'} (aidp)",
        err=True,
    )
    if st.node:
        typer.echo(f"  node           aidp-node (logs in {st.state_dir / 'node' / 'logs'})", err=True)
    typer.echo(f"  export KUBECONFIG={st.kubeconfig}", err=True)
    typer.echo(str(st.kubeconfig))


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop every process of the local control plane (data and logs are kept)."""
    from aidp.devcluster import dev as devenv

    target = state_dir or devenv.default_state_dir()
    stopped = devenv.down(target)
    typer.echo(f"aidp dev: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")
