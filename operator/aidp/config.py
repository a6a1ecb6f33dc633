"""Operator configuration: flags and environment of `aidp run`, shared by every component."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GOVERNED_LABEL = "aidp.io/governed"
# set by the operator alone on pods it judged compliant (egress follows the verdict, contract section 4)
APPROVAL_LABEL = "aidp.io/approved"
# set by the operator alone on pods that user NetworkPolicies isolate for egress: aidp's baseline
# leaves them out, so it never loosens a namespace's own egress isolation (contract section 4)
ISOLATED_LABEL = "aidp.io/egress-isolated"
# set by the operator on namespaces a ClusterAIDataPolicy selects: AIDataPolicy writes there are
# checked against the guardrails' bounds at admission
GUARDRAILED_LABEL = "aidp.io/guardrailed"
MANAGED_BY = {"app.kubernetes.io/managed-by": "aidp"}
DEFAULT_NAMESPACE = "aidp-system"
ALWAYS_EXCLUDED = ("kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class OperatorConfig:
    """Everything `aidp run` can be told; defaults are the in-cluster (Helm) values."""

    namespace: str = DEFAULT_NAMESPACE
    kubeconfig: Path | None = None
    # OPA replicas: explicit URLs (local control plane) or the pods behind a Service (cluster)
    opa_urls: tuple[str, ...] = ()
    opa_service: str = "aidp-opa"
    opa_port: int = 8181
    opa_token_file: Path | None = None
    opa_check_interval: float = 2.0
    # admission webhook
    webhook_name: str = "aidp-validating-webhook"
    webhook_url: str | None = None  # set for the local control plane; else the Service is used
    webhook_ip_sans: tuple[str, ...] = ()
    webhook_failure_policy: str = "Fail"
    webhook_timeout_seconds: int = 3
    external_webhook_tls: bool = False  # cert-manager mode: the Secret is issued by someone else
    webhook_tls_secret: str = "aidp-webhook-tls"  # noqa: S105 - a Secret's name, not a secret
    # durable copy of everything loaded into OPA
    bundle_configmap: str = "aidp-opa-bundle"
    excluded_namespaces: tuple[str, ...] = ()
    resync_seconds: float = 30.0
    cert_check_seconds: float = 300.0
    cert_step_seconds: float = 60.0  # least time between two steps of a certificate rotation
    cert_serving_lifetime_seconds: float = 90 * 86400.0
    cert_ca_lifetime_seconds: float = 2 * 365 * 86400.0
    # egress
    egress_backend: str = "networkpolicy"  # networkpolicy | cilium | none
    egress_addresses_file: Path | None = None
    egress_refresh_seconds: float = 300.0
    egress_mode: str = "preserve"  # networkpolicy backend: preserve | strict
    cilium_mode: str = "strict"
    cilium_sni: bool = True
    cilium_extra_cidrs: tuple[str, ...] = ()
    # audit
    report_kind: str = "openreports"  # openreports | policyreport
    audit_interval_seconds: float = 300.0
    audit_first_delay_seconds: float = 5.0
    audit_min_gap_seconds: float = 30.0
    # the audit process is killed when it runs longer (0: ten audit intervals, at least 10 minutes)
    audit_timeout_seconds: float = 0.0
    metrics_port: int = 0  # 0: no metrics endpoint
    leader_election: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    # the webhook CA and its key: a Secret of its own that only the operator reads (the agent and
    # OPA read webhook_tls_secret, which holds the serving certificate and public CA certificates)
    webhook_ca_secret: str = "aidp-webhook-ca-key"  # noqa: S105 - a Secret's name, not a secret
    # `--allow-insecure-opa`: accept http:// OPA URLs (the management token then travels in clear)
    allow_insecure_opa: bool = False
    # `--admission-engine`: opa (the webhook), vap (ValidatingAdmissionPolicy objects, no webhook) or
    # both (contract section 7, docs/admission-engines.md)
    admission_engine: str = "opa"
    # `--provider-catalog-configmap NS/NAME[:KEY]`: the catalog read at start and watched (None: the
    # catalog of --provider-catalog or the built-in one, fixed for the process's life)
    provider_catalog_configmap: str | None = None

    @property
    def all_excluded_namespaces(self) -> tuple[str, ...]:
        """Never governed: the system namespaces, the operator's own, and the configured ones."""
        seen: dict[str, None] = dict.fromkeys((*ALWAYS_EXCLUDED, self.namespace, *self.excluded_namespaces))
        return tuple(seen)

    def token(self) -> str:
        if self.opa_token_file is None:
            raise ValueError("no OPA token file configured (--opa-token-file or AIDP_OPA_TOKEN_FILE)")
        return self.opa_token_file.read_text().strip()
