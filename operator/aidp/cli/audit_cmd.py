"""`aidp audit`: audit a live cluster, print or write the report, exit non-zero for CI gates."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

SEVERITY_GATES = {
    "violation": {"critical", "high"},
    "warning": {"critical", "high", "medium"},
    "never": set(),
}


class Format(enum.StrEnum):
    json = "json"
    markdown = "markdown"
    html = "html"
    csv = "csv"


class FailOn(enum.StrEnum):
    violation = "violation"
    warning = "warning"
    never = "never"


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", envvar="KUBECONFIG")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Audit one namespace.")] = None,
    output_format: Annotated[
        Format, typer.Option("--output-format", "-o", help="Report format.")
    ] = Format.json,
    output: Annotated[Path | None, typer.Option("--output", help="Write the report to this file.")] = None,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            help="Exit 1 when a finding is this severe: violation = critical/high, warning = also medium."
        ),
    ] = FailOn.violation,
    opa_url: Annotated[
        str | None, typer.Option(help="Evaluate with this OPA (holding aidp's bundle).")
    ] = None,
    opa_token_file: Annotated[Path | None, typer.Option(help="Management token for --opa-url.")] = None,
    opa_ca_file: Annotated[Path | None, typer.Option(help="CA bundle for --opa-url.")] = None,
) -> None:
    """Audit a live cluster: every workload that talks to AI, whether it complies, and the evidence.

    Verdicts come from aidp's admission Rego evaluated by OPA: a private local OPA server (the opa
    binary from $AIDP_OPA_BIN, .testbin or PATH) unless --opa-url names one. Exit codes: 0 clean,
    1 findings at or above --fail-on, 2 error.
    """
    from aidp import kube
    from aidp.audit import collect, evaluate, formats
    from aidp.check import OpaError, find_opa

    try:
        client = kube.client(kubeconfig)
        policy_objs = collect.list_policies(client, namespace)
        show = sys.stderr.isatty()
        seen = 0

        def progress(kind: str, n: int) -> None:
            nonlocal seen
            seen += n
            if show:
                typer.echo(f"\raudited {seen} {kind} objects ...", err=True, nl=False)

        if opa_url:
            from aidp.opa_loader import Replica

            token = opa_token_file.read_text().strip() if opa_token_file else ""
            ev = evaluate.replica_evaluator(Replica(opa_url, token, opa_ca_file))
            report, _, _ = collect.audit_cluster(
                client, ev, namespace=namespace, progress=progress, policy_objects=policy_objs
            )
        else:
            with evaluate.local_opa(policy_objs, find_opa()) as ev:
                report, _, _ = collect.audit_cluster(
                    client, ev, namespace=namespace, progress=progress, policy_objects=policy_objs
                )
        if show:
            typer.echo("", err=True)
        for skipped in report.skipped:
            typer.echo(f"aidp audit: {skipped.analysis}: {skipped.reason}", err=True)
        text = formats.render(report, output_format.value)
    except (OpaError, evaluate.AuditEvaluationError, OSError, ValueError) as err:
        typer.echo(f"aidp audit: {err}", err=True)
        raise typer.Exit(2) from err
    except Exception as err:
        typer.echo(f"aidp audit: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(2) from err
    if output:
        output.write_text(text)
        typer.echo(f"aidp audit: {len(report.findings)} findings, report written to {output}", err=True)
    else:
        typer.echo(text, nl=False)
    gate = SEVERITY_GATES[fail_on.value]
    if any(f.severity in gate for f in report.findings):
        raise typer.Exit(1)
