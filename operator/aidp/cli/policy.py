"""`aidp render` and `aidp check` (offline commands)."""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from aidp import check as checking
from aidp import kube, lint
from aidp import render as rendering
from aidp.cli import catalog_option
from aidp.cli.catalog_option import CONFIGMAP_FLAG, ProviderCatalog, ProviderCatalogConfigMap
from aidp.config import DEFAULT_NAMESPACE as DEFAULT_AIDP_NAMESPACE
from aidp.egress import backends as egress_backends
from aidp.egress.model import AddressBook, EgressContext, EgressSettings
from aidp.egress.resolver import load_overrides
from aidp.guardrail import ClusterPolicy, is_cluster_policy_object
from aidp.model import DEFAULT_EXCLUDED_NAMESPACES, Policy, PolicyError

EXIT_DENIED = 1
EXIT_BAD_INPUT = 2

Filenames = Annotated[
    list[str],
    typer.Option(
        "--filename",
        "-f",
        help="Manifest file, or directory of .yaml/.yml/.json files; `-` reads stdin. Repeatable.",
    ),
]


class RenderFormat(enum.StrEnum):
    yaml = "yaml"
    json = "json"


class CheckFormat(enum.StrEnum):
    text = "text"
    json = "json"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the Rego sources) as literal blocks."""

    def analyze_scalar(self, scalar: str) -> Any:
        # PyYAML refuses block style for strings with tabs (which `opa fmt` indents with), though
        # YAML allows tabs in block scalar content; analyse as if they were spaces.
        if "\n" not in scalar:
            return super().analyze_scalar(scalar)
        analysis = super().analyze_scalar(scalar.replace("\t", " "))
        analysis.scalar = scalar
        return analysis


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def render(
    filename: Filenames,
    backend: Annotated[
        str, typer.Option("--backend", help="Egress backend whose objects to render.")
    ] = rendering.DEFAULT_BACKEND,
    output: Annotated[
        RenderFormat, typer.Option("--output", "-o", help="Output format.")
    ] = RenderFormat.yaml,
    addresses_file: Annotated[
        Path | None,
        typer.Option(
            "--addresses-file", help="YAML of provider addresses (as `aidp run --egress-addresses-file`)."
        ),
    ] = None,
    cilium_mode: Annotated[str, typer.Option(help="cilium backend: strict or preserve.")] = "strict",
    cilium_sni: Annotated[bool, typer.Option(help="cilium backend: match TLS SNI.")] = True,
    egress_mode: Annotated[
        str, typer.Option(help="networkpolicy backend: preserve or strict (see aidp run --help).")
    ] = "preserve",
    provider_catalog: ProviderCatalog = None,
) -> None:
    """Print every object generated for the AIDataPolicies in the files.

    OPA modules, the OPA data document (with the files' ClusterAIDataPolicies and the namespaces
    each governs, from the files' Namespace objects) and egress objects. No cluster and no DNS needed:
    IP-based backends take the provider addresses from --addresses-file. Deterministic.
    """
    for flag, value in (("--cilium-mode", cilium_mode), ("--egress-mode", egress_mode)):
        if value not in ("strict", "preserve"):
            typer.echo(f"aidp render: {flag} {value!r}: must be strict or preserve", err=True)
            raise typer.Exit(2)
    if backend != rendering.NO_BACKEND and backend not in egress_backends.BACKENDS:
        choices = ", ".join([*egress_backends.BACKENDS, rendering.NO_BACKEND])
        typer.echo(f"aidp render: --backend {backend!r}: must be one of {choices}", err=True)
        raise typer.Exit(2)
    if backend == "networkpolicy" and egress_mode == "preserve":
        typer.echo(
            "aidp render: egress mode preserve: a deliberate workload can still reach the provider "
            "through another address of its CDN (any other edge, with the provider's SNI) or an outside "
            "proxy; --egress-mode strict closes both (docs/egress.md)",
            err=True,
        )
    try:
        manifests = rendering.load_manifests(filename)
        policies = rendering.policies_from_manifests(manifests)
        static, extra = load_overrides(addresses_file)
        if addresses_file is not None and not addresses_file.is_file():
            raise OSError(f"{addresses_file}: no such file")
        book = AddressBook(
            {h: tuple(sorted(set(static.get(h, ())) | set(extra.get(h, ())))) for h in {*static, *extra}}
        )
        ctx = EgressContext(
            book,
            dt.datetime.now(dt.UTC).date(),
            EgressSettings(cilium_mode=cilium_mode, cilium_sni=cilium_sni, egress_mode=egress_mode),
        )
        objects = rendering.render_objects(policies, backend=backend, egress=ctx)
        if backend != rendering.NO_BACKEND and egress_backends.get(backend).ip_based:
            missing = rendering.unknown_address_hosts(policies, ctx)
            if missing:
                typer.echo(
                    f"aidp render: no addresses for {', '.join(missing)}: the {backend} rules block "
                    "nothing for these hosts (give --addresses-file, as the operator resolves them by DNS)",
                    err=True,
                )
        _with_guardrails(objects, policies, manifests)
    except (rendering.ManifestError, PolicyError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    if output is RenderFormat.json:
        typer.echo(json.dumps(objects, indent=2, ensure_ascii=False))
    else:
        typer.echo(dump_yaml(objects), nl=False)


def _with_guardrails(
    objects: list[dict[str, Any]], policies: list[Policy], manifests: list[dict[str, Any]]
) -> None:
    """With ClusterAIDataPolicies in the files, the OPA data document holds them (data.aidp.cluster)
    and the namespaces each governs (data.aidp.guardrailsOf, from the Namespace objects' labels of
    the files; excluded namespaces never); raises PolicyError on an invalid one."""
    rails = [ClusterPolicy.from_object(m) for m in manifests if is_cluster_policy_object(m)]
    if not rails:
        return
    seen: set[str] = set()
    for rail in rails:
        if rail.name in seen:
            raise PolicyError(rail.ref, "", "defined more than once")
        seen.add(rail.name)
    labels: dict[str, dict[str, str]] = {}
    for m in manifests:
        meta = m.get("metadata")
        if m.get("apiVersion") == "v1" and m.get("kind") == "Namespace" and isinstance(meta, dict):
            name, own = meta.get("name"), meta.get("labels") or {}
            if isinstance(name, str) and name and isinstance(own, dict):
                labels[name] = {str(k): str(v) for k, v in own.items()}
    data = checking.guardrail_data(policies, rails, labels, DEFAULT_EXCLUDED_NAMESPACES)
    for obj in objects:
        if obj.get("kind") == "OPAData" and obj.get("path") == rendering.DATA_PATH:
            obj["data"] = data


def check(
    filename: Filenames,
    output: Annotated[CheckFormat, typer.Option("--output", "-o", help="Output format.")] = CheckFormat.text,
    provider_catalog: ProviderCatalog = None,
    provider_catalog_configmap: ProviderCatalogConfigMap = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Also evaluate against the AIDataPolicies and ClusterAIDataPolicies live in this "
            "cluster (read-only: lists them, gets the files' namespaces and the operator's bundle "
            "ConfigMap); an object in the files replaces the cluster's of the same name.",
        ),
    ] = None,
    aidp_namespace: Annotated[
        str,
        typer.Option(
            "--aidp-namespace",
            help="With --kubeconfig: the operator's namespace, whose bundle ConfigMap gives the excluded "
            "namespaces in force (the defaults when it cannot be read).",
        ),
    ] = DEFAULT_AIDP_NAMESPACE,
) -> None:
    """Lint the files, then evaluate their workloads against the AIDataPolicies in the files.

    With ClusterAIDataPolicies in the files, each AIDataPolicy is admitted as its CREATE would be
    (a policy looser than a guardrail selecting its namespace is DENIED, naming the guardrail and
    the fields), and workloads get the guardrails' rules; a namespace's labels come from its
    Namespace object in the files. Every AIDataPolicy is validated as the API server would (the
    CRD's schema with strict field validation, then its CEL rules); every error of every file is
    reported at once, with file:line.
    Workloads are evaluated with the same Rego as the admission webhook; each verdict says why.
    With --kubeconfig, --provider-catalog-configmap reads the provider catalog from that cluster
    (the operator's), and stderr says which catalog is used.
    Exit 0 when all are admitted, 1 when any is denied, 2 on bad input.
    """
    if kubeconfig is None and provider_catalog_configmap is not None:
        raise typer.BadParameter(
            "needs --kubeconfig: the ConfigMap is read from that cluster", param_hint=CONFIGMAP_FLAG
        )
    if kubeconfig is not None:
        catalog_option.use_configmap(provider_catalog_configmap, kubeconfig)
        typer.echo(f"aidp check: using {catalog_option.describe()}", err=True)
    try:
        manifests = lint.load_files(filename)
        live = None
        rails: list[ClusterPolicy] = []
        labels: dict[str, dict[str, str]] = {}
        excluded: list[str] | tuple[str, ...] = DEFAULT_EXCLUDED_NAMESPACES
        if kubeconfig is not None:
            live = _cluster_policies(kubeconfig, manifests)
            rails, labels = _cluster_guardrails(kubeconfig, manifests)
            excluded = _cluster_excluded(kubeconfig, aidp_namespace)
        report = checking.run_check(
            manifests,
            cluster_policies=live,
            excluded_namespaces=excluded,
            cluster_guardrails=rails,
            cluster_namespaces=labels,
        )
    except (rendering.ManifestError, checking.CheckError) as err:
        lines = err.lines() if isinstance(err, checking.CheckError) else [str(err)]
        for line in lines:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if output is CheckFormat.json:
        typer.echo(checking.format_json(report.results), nl=False)
    else:
        typer.echo(checking.format_text(report.results, report.policies, report.others), nl=False)
    if not report.allowed:
        raise typer.Exit(EXIT_DENIED)


def _cluster_excluded(kubeconfig: Path, aidp_namespace: str) -> list[str] | tuple[str, ...]:
    try:
        excluded, why = checking.cluster_excluded_namespaces(kubeconfig, aidp_namespace)
    except Exception as err:  # the cluster was readable a moment ago: say why, keep the defaults
        excluded, why = None, f"{type(err).__name__}: {err}"
    if excluded is None:
        typer.echo(f"aidp check: {why}; using the default excluded namespaces", err=True)
        return DEFAULT_EXCLUDED_NAMESPACES
    return excluded


def _namespaces(manifests: list[lint.Manifest]) -> set[str]:
    return {
        str((m.obj.get("metadata") or {}).get("namespace") or checking.DEFAULT_NAMESPACE)
        for m in manifests
        if isinstance(m.obj.get("metadata"), dict)
    }


def _cluster_guardrails(
    kubeconfig: Path, manifests: list[lint.Manifest]
) -> tuple[list[ClusterPolicy], dict[str, dict[str, str]]]:
    try:
        rails, labels, warnings = kube.with_retries(
            lambda: checking.cluster_guardrails(kubeconfig, _namespaces(manifests))
        )
    except Exception as err:  # lightkube and httpx raise many kinds; all mean "cannot read"
        raise checking.CheckError(
            f"cannot read the ClusterAIDataPolicies of the cluster ({kubeconfig}): "
            f"{type(err).__name__}: {err}"
        ) from None
    for warning in warnings:
        typer.echo(f"aidp check: {warning}", err=True)
    if rails:
        typer.echo(f"aidp check: {len(rails)} ClusterAIDataPolicies read from the cluster", err=True)
    return rails, labels


def _cluster_policies(kubeconfig: Path, manifests: list[lint.Manifest]) -> list[Policy]:
    namespaces = _namespaces(manifests)
    try:
        policies, warnings = kube.with_retries(lambda: checking.cluster_policies(kubeconfig, namespaces))
    except Exception as err:  # lightkube and httpx raise many kinds; all mean "cannot read"
        raise checking.CheckError(
            f"cannot list the AIDataPolicies of the cluster ({kubeconfig}): {type(err).__name__}: {err}"
        ) from None
    for warning in warnings:
        typer.echo(f"aidp check: {warning}", err=True)
    typer.echo(f"aidp check: {len(policies)} AIDataPolicies read from the cluster", err=True)
    return policies


def register(app: typer.Typer) -> None:
    """Add the offline policy commands to the `aidp` application."""
    app.command("render")(render)
    app.command("check")(check)
