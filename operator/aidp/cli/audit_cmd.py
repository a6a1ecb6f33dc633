"""`aidp audit`: audit a live cluster, print or write the report, exit non-zero for CI gates."""

from __future__ import annotations

import difflib
import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from aidp.cli import catalog_option
from aidp.cli.catalog_option import ProviderCatalog, ProviderCatalogConfigMap

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
    pdf = "pdf"
    records_csv = "records-csv"


class FailOn(enum.StrEnum):
    violation = "violation"
    warning = "warning"
    never = "never"


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


FORMAT_NAMES = tuple(f.value for f in Format)


def resolve_output(
    outputs: list[str] | None, output_format: Format | None, output_file: Path | None
) -> tuple[Format, Path | None, list[str]]:
    """The report's format and destination from -o/--output, the deprecated --output-format and
    --output-file, with a deprecation warning for each old spelling.

    -o/--output is the format. For one release, a value of --output that is not a format name but
    looks like a file name (it has a "." or a "/") keeps its old meaning, the destination, with a
    warning; --output-format FORMAT keeps working likewise.
    """
    warnings: list[str] = []
    formats: list[str] = []
    files: list[str] = []
    for value in outputs or []:
        if value in FORMAT_NAMES:
            formats.append(value)
        elif "." in value or "/" in value:
            files.append(value)
            warnings.append(
                f"--output {value}: a file name for --output is deprecated and will be refused in the "
                f"next release; use --output-file {value} (-o/--output is the format: "
                f"{', '.join(FORMAT_NAMES)})"
            )
        else:
            close = difflib.get_close_matches(value, FORMAT_NAMES, n=1)
            mean = f"; did you mean {close[0]}?" if close else ""
            raise typer.BadParameter(
                f"{value!r} is not a format: {', '.join(FORMAT_NAMES)}{mean} (a file goes to --output-file)",
                param_hint="-o/--output",
            )
    if output_format is not None:
        formats.append(output_format.value)
        warnings.append(f"--output-format is deprecated; use -o/--output {output_format.value}")
    if len(set(formats)) > 1:
        raise typer.BadParameter(f"more than one format: {', '.join(formats)}", param_hint="-o/--output")
    if output_file is not None:
        files.append(str(output_file))
    if len(set(files)) > 1:
        raise typer.BadParameter(f"more than one output file: {', '.join(files)}", param_hint="--output-file")
    return Format(formats[0]) if formats else Format.json, Path(files[0]) if files else None, warnings


def audit(
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", envvar="KUBECONFIG")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Audit one namespace.")] = None,
    output: Annotated[
        list[str] | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FORMAT",
            help="Report format: json (default), markdown, html, csv (the findings), pdf (the HTML "
            "report printed by headless Chromium; needs --output-file) or records-csv (the records of "
            "processing). "
            "(Deprecated for one release: a file name here, e.g. report.html, is the destination.)",
        ),
    ] = None,
    output_file: Annotated[
        Path | None, typer.Option("--output-file", help="Write the report to this file (default: stdout).")
    ] = None,
    output_format: Annotated[
        Format | None,
        typer.Option("--output-format", hidden=True, help="Deprecated: use -o/--output."),
    ] = None,
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
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            help="A previous JSON report (-o json) of this audit: the report says what changed since "
            "(workloads added/removed, findings new/resolved, policies changed).",
        ),
    ] = None,
    provider_catalog: ProviderCatalog = None,
    provider_catalog_configmap: ProviderCatalogConfigMap = None,
) -> None:
    """Audit a live cluster: every workload that talks to AI, whether it complies, and the evidence.

    Verdicts come from aidp's admission Rego evaluated by OPA: a private local OPA server (the opa
    binary from $AIDP_OPA_BIN, .testbin or PATH) unless --opa-url names one. Exit codes: 0 clean,
    1 findings at or above --fail-on, 2 error. The provider catalog (whose detection lists find
    shadow AI) is the built-in one, --provider-catalog FILE's or --provider-catalog-configmap's
    (the one the operator reads); stderr says which.
    """
    output_format, output_path, deprecations = resolve_output(output, output_format, output_file)
    for warning in deprecations:
        typer.echo(f"aidp audit: warning: {warning}", err=True)
    if output_format is Format.pdf and output_path is None:
        raise typer.BadParameter("a PDF is written to a file: add --output-file FILE", param_hint="-o pdf")

    from aidp import kube
    from aidp.audit import changes, collect, evaluate, formats, pdf, records
    from aidp.check import OpaError, find_opa

    before: changes.Summary | None = None
    if previous is not None:
        try:
            before = changes.from_report_json(previous.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise typer.BadParameter(f"{previous}: {err}", param_hint="--previous") from err
    if output_format is Format.pdf:
        try:
            pdf.find_chromium()  # before the audit: a missing browser is not worth a whole audit
        except pdf.PdfError as err:
            typer.echo(f"aidp audit: {err}", err=True)
            raise typer.Exit(2) from err

    # the ConfigMap is read before the audit starts: a catalog that cannot be used is not worth one
    catalog_option.use_configmap(provider_catalog_configmap, kubeconfig)
    typer.echo(f"aidp audit: using {catalog_option.describe()}", err=True)
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
        records.finalise(report, policy_objs, records.detect_admission_engine(client))
        changes.compare(report, policy_objs, before)
        data: str | bytes | None = None  # None: json, written as it is made (formats.write_json)
        if output_format is Format.pdf:
            data = pdf.html_to_pdf(formats.render(report, "html"))
        elif output_format is not Format.json:
            data = formats.render(report, output_format.value)
    except (OpaError, evaluate.AuditEvaluationError, pdf.PdfError, OSError, ValueError) as err:
        typer.echo(f"aidp audit: {err}", err=True)
        raise typer.Exit(2) from err
    except Exception as err:
        typer.echo(f"aidp audit: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(2) from err
    if output_path:
        try:
            if data is None:
                with output_path.open("wb") as out:
                    formats.write_json(report, out)
            elif isinstance(data, bytes):
                output_path.write_bytes(data)
            else:
                output_path.write_text(data)
        except OSError as err:
            typer.echo(f"aidp audit: cannot write the report: {err}", err=True)
            raise typer.Exit(2) from err
        typer.echo(f"aidp audit: {len(report.findings)} findings, report written to {output_path}", err=True)
    elif data is None:
        sys.stdout.flush()
        formats.write_json(report, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        assert isinstance(data, str)
        typer.echo(data, nl=False)
    gate = SEVERITY_GATES[fail_on.value]
    if any(f.severity in gate for f in report.findings):
        raise typer.Exit(1)
