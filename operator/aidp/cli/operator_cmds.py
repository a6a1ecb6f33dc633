"""`aidp run` (the operator) and `aidp opa-agent` (beside each OPA)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from aidp.cli import catalog_option
from aidp.cli.catalog_option import ProviderCatalog, ProviderCatalogConfigMap
from aidp.config import DEFAULT_NAMESPACE, OperatorConfig

Kubeconfig = Annotated[
    Path | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig; in-cluster when unset.")
]
Namespace = Annotated[
    str, typer.Option("--namespace", envvar="AIDP_NAMESPACE", help="The operator's own namespace.")
]
OpaToken = Annotated[
    Path | None,
    typer.Option(
        "--opa-token-file", envvar="AIDP_OPA_TOKEN_FILE", help="File holding OPA's management token."
    ),
]

RequiredOpaToken = Annotated[
    Path,
    typer.Option(
        "--opa-token-file",
        envvar="AIDP_OPA_TOKEN_FILE",
        help="File holding OPA's management token. Required: without it no policy reaches OPA.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("opa-agent")(opa_agent)


def run(
    kubeconfig: Kubeconfig = None,
    namespace: Namespace = DEFAULT_NAMESPACE,
    opa_url: Annotated[
        list[str] | None,
        typer.Option("--opa-url", envvar="AIDP_OPA_URLS", help="An OPA replica (repeat for each)."),
    ] = None,
    opa_token_file: RequiredOpaToken = ...,  # type: ignore[assignment]  # typer: ... is required
    webhook_url: Annotated[
        str | None, typer.Option(help="Webhook URL (local control plane); default: the OPA Service.")
    ] = None,
    webhook_ip: Annotated[
        list[str] | None, typer.Option(help="Extra IP SAN for OPA's serving certificate.")
    ] = None,
    failure_policy: Annotated[
        str, typer.Option(envvar="AIDP_FAILURE_POLICY", help="Fail or Ignore.")
    ] = "Fail",
    webhook_timeout: Annotated[int, typer.Option(min=1, max=3, help="Webhook timeoutSeconds.")] = 3,
    exclude_namespace: Annotated[
        list[str] | None, typer.Option(envvar="AIDP_EXCLUDED_NAMESPACES", help="Never governed (repeat).")
    ] = None,
    resync_seconds: Annotated[float, typer.Option(min=1.0)] = 30.0,
    opa_check_seconds: Annotated[float, typer.Option(min=0.2)] = 2.0,
    egress_backend: Annotated[
        str, typer.Option(envvar="AIDP_EGRESS_BACKEND", help="networkpolicy, cilium or none.")
    ] = "networkpolicy",
    egress_addresses_file: Annotated[
        Path | None,
        typer.Option(
            envvar="AIDP_EGRESS_ADDRESSES_FILE", help="YAML: static host addresses and extra CIDRs."
        ),
    ] = None,
    egress_refresh_seconds: Annotated[
        float, typer.Option(min=1.0, help="DNS refresh of provider hosts.")
    ] = 300.0,
    egress_mode: Annotated[
        str,
        typer.Option(
            help="networkpolicy backend: preserve (other traffic kept; another CDN edge of the provider "
            "or an outside proxy stays reachable) or strict (outside the cluster only approved endpoints "
            "and --egress-extra-cidr). See docs/egress.md."
        ),
    ] = "preserve",
    admission_engine: Annotated[
        str,
        typer.Option(
            envvar="AIDP_ADMISSION_ENGINE",
            help="opa (OPA as the validating webhook), vap (ValidatingAdmissionPolicy objects evaluated "
            "inside kube-apiserver, no webhook) or both. See docs/admission-engines.md.",
        ),
    ] = "opa",
    cilium_mode: Annotated[str, typer.Option(help="strict or preserve (see docs/egress.md).")] = "strict",
    cilium_sni: Annotated[bool, typer.Option(help="Match TLS SNI (serverNames) on provider ports.")] = True,
    cilium_extra_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--egress-extra-cidr",
            "--cilium-extra-cidr",
            help="strict modes: external CIDR governed pods may still reach.",
        ),
    ] = None,
    cert_step_seconds: Annotated[
        float, typer.Option(min=0.0, help="Least time between rotation steps.")
    ] = 60.0,
    external_webhook_tls: Annotated[
        bool,
        typer.Option(
            envvar="AIDP_EXTERNAL_WEBHOOK_TLS",
            help="cert-manager mode: do not issue the webhook certificate; trust the Secret's ca.crt.",
        ),
    ] = False,
    cert_check_seconds: Annotated[
        float, typer.Option(min=0.5, help="How often the webhook TLS is checked.")
    ] = 300.0,
    cert_serving_lifetime: Annotated[
        float, typer.Option(min=10.0, help="Lifetime (s) of OPA's serving certificate; renewed at 2/3.")
    ] = 90 * 86400.0,
    cert_ca_lifetime: Annotated[
        float, typer.Option(min=30.0, help="Lifetime (s) of the webhook CA; rotated at 2/3 with overlap.")
    ] = 2 * 365 * 86400.0,
    audit_interval: Annotated[
        float,
        typer.Option(envvar="AIDP_AUDIT_INTERVAL", help="Seconds between in-cluster audits; 0 disables."),
    ] = 300.0,
    audit_min_gap: Annotated[float, typer.Option(min=0.0, help="Least seconds between two audits.")] = 30.0,
    audit_timeout: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds before an audit process is killed; 0 = 10 intervals, >= 600."),
    ] = 0.0,
    report_kind: Annotated[
        str,
        typer.Option(envvar="AIDP_REPORT_KIND", help="openreports (Report) or policyreport (PolicyReport)."),
    ] = "openreports",
    metrics_port: Annotated[
        int, typer.Option(envvar="AIDP_METRICS_PORT", help="Prometheus port; 0 = off.")
    ] = 0,
    leader_election: Annotated[
        bool,
        typer.Option(
            envvar="AIDP_LEADER_ELECTION", help="Run several replicas: a Lease picks the one that works."
        ),
    ] = False,
    opa_service: Annotated[
        str,
        typer.Option(
            envvar="AIDP_OPA_SERVICE", help="Without --opa-url: the OPA Service whose endpoints to load."
        ),
    ] = "aidp-opa",
    opa_port: Annotated[int, typer.Option(envvar="AIDP_OPA_PORT", help="OPA's port on its pods.")] = 8181,
    log_level: Annotated[str, typer.Option(envvar="AIDP_LOG_LEVEL")] = "INFO",
    log_format: Annotated[str, typer.Option(envvar="AIDP_LOG_FORMAT", help="plain or json")] = "plain",
    liveness: Annotated[str | None, typer.Option(help="e.g. http://0.0.0.0:8080/healthz")] = None,
    provider_catalog: ProviderCatalog = None,
    provider_catalog_configmap: ProviderCatalogConfigMap = None,
    allow_insecure_opa: Annotated[
        bool, typer.Option(help="Accept http:// --opa-url (the management token then travels in clear).")
    ] = False,
) -> None:
    """Run the operator (in a cluster, or against a kubeconfig)."""
    import kopf

    from aidp import opa_loader

    for url in opa_url or ():
        try:
            opa_loader.check_url(url, allow_insecure=allow_insecure_opa)
        except opa_loader.InsecureOpaUrl as err:
            raise typer.BadParameter(str(err), param_hint="--opa-url") from None
    opa_loader.permit_insecure_http(allow_insecure_opa)

    if failure_policy not in ("Fail", "Ignore"):
        raise typer.BadParameter("must be Fail or Ignore", param_hint="--failure-policy")
    from aidp.egress.backends import BACKENDS

    if egress_backend not in (*BACKENDS, "none"):
        raise typer.BadParameter(
            f"must be one of {', '.join([*BACKENDS, 'none'])}", param_hint="--egress-backend"
        )
    if report_kind not in ("openreports", "policyreport"):
        raise typer.BadParameter("must be openreports or policyreport", param_hint="--report-kind")
    if cilium_mode not in ("strict", "preserve"):
        raise typer.BadParameter("must be strict or preserve", param_hint="--cilium-mode")
    if egress_mode not in ("strict", "preserve"):
        raise typer.BadParameter("must be preserve or strict", param_hint="--egress-mode")
    if admission_engine not in ("opa", "vap", "both"):
        raise typer.BadParameter("must be opa, vap or both", param_hint="--admission-engine")
    if kubeconfig:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    catalog_data = catalog_option.use_configmap(provider_catalog_configmap, kubeconfig)
    config = OperatorConfig(
        namespace=namespace,
        kubeconfig=kubeconfig,
        opa_urls=tuple(opa_url or ()),
        opa_token_file=opa_token_file,
        opa_check_interval=opa_check_seconds,
        webhook_url=webhook_url,
        webhook_ip_sans=tuple(webhook_ip or ()),
        webhook_failure_policy=failure_policy,
        webhook_timeout_seconds=webhook_timeout,
        excluded_namespaces=tuple(exclude_namespace or ()),
        resync_seconds=resync_seconds,
        egress_backend=egress_backend,
        egress_addresses_file=egress_addresses_file,
        egress_refresh_seconds=egress_refresh_seconds,
        egress_mode=egress_mode,
        cilium_mode=cilium_mode,
        cilium_sni=cilium_sni,
        cilium_extra_cidrs=tuple(cilium_extra_cidr or ()),
        cert_step_seconds=cert_step_seconds,
        cert_check_seconds=cert_check_seconds,
        external_webhook_tls=external_webhook_tls,
        cert_serving_lifetime_seconds=cert_serving_lifetime,
        cert_ca_lifetime_seconds=cert_ca_lifetime,
        audit_interval_seconds=audit_interval,
        audit_min_gap_seconds=audit_min_gap,
        audit_timeout_seconds=audit_timeout,
        report_kind=report_kind,
        metrics_port=metrics_port,
        leader_election=leader_election,
        opa_service=opa_service,
        opa_port=opa_port,
        allow_insecure_opa=allow_insecure_opa,
        admission_engine=admission_engine,
        provider_catalog_configmap=provider_catalog_configmap,
    )
    debug = log_level.upper() == "DEBUG"
    kopf.configure(
        debug=debug,
        verbose=debug,  # Kopf's per-event handler logs only when debugging
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(log_level.upper())
    for noisy in ("httpx", "httpx2", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    from aidp.controller import handlers

    if metrics_port:
        import prometheus_client

        prometheus_client.start_http_server(metrics_port)

    memo = kopf.Memo(runtime=handlers.Runtime(config, catalog_data))
    asyncio.run(kopf.operator(standalone=True, clusterwide=True, memo=memo, liveness_endpoint=liveness))


def opa_agent(
    opa_url: Annotated[str, typer.Option("--opa-url", help="The OPA server beside this agent.")],
    kubeconfig: Kubeconfig = None,
    namespace: Namespace = DEFAULT_NAMESPACE,
    opa_token_file: OpaToken = None,
    configmap: Annotated[str, typer.Option(help="The durable bundle ConfigMap.")] = "aidp-opa-bundle",
    tls_secret: Annotated[str, typer.Option(help="The webhook TLS Secret.")] = "aidp-webhook-tls",  # noqa: S107 - a Secret's name
    tls_dir: Annotated[Path | None, typer.Option(help="Write OPA's serving certificate here.")] = None,
    interval: Annotated[float, typer.Option(min=0.1)] = 0.5,
    opa_ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle to verify OPA with (default: the one from --tls-dir).")
    ] = None,
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    health_port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Serve /readyz and /healthz on this port (0: off); see docs/operations.md."
        ),
    ] = 0,
    health_host: Annotated[str, typer.Option(help="Address of the health endpoint.")] = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod's address
    allow_insecure_opa: Annotated[
        bool, typer.Option(help="Accept an http:// --opa-url (the management token then travels in clear).")
    ] = False,
    bundle_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Serve the durable bundle to OPA's bundle plugin on 127.0.0.1:PORT (0: off).",
        ),
    ] = 0,
) -> None:
    """Restore an OPA that lost its policies from the durable bundle (works while the operator is down)."""
    from aidp import kube, opa_loader
    from aidp.agent import Agent, BundleServer

    if opa_token_file is None:
        raise typer.BadParameter("required", param_hint="--opa-token-file")
    try:
        opa_loader.check_url(opa_url, allow_insecure=allow_insecure_opa)
    except opa_loader.InsecureOpaUrl as err:
        raise typer.BadParameter(str(err), param_hint="--opa-url") from None
    opa_loader.permit_insecure_http(allow_insecure_opa)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    agent = Agent(
        kube.client(kubeconfig),
        namespace,
        configmap,
        tls_secret,
        opa_url,
        opa_token_file,
        tls_dir,
        interval,
        opa_ca_file,
    )
    if bundle_port:
        agent.bundles = BundleServer("127.0.0.1", bundle_port)
    agent.run(once=once, health=(health_host, health_port) if health_port else None)
