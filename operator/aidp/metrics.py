"""Prometheus metrics of the operator (served by `aidp run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

AUDIT_DURATION = Histogram(
    "aidp_audit_duration_seconds",
    "Wall time of one cluster audit",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
AUDIT_LAST_RUN = Gauge("aidp_audit_last_run_timestamp_seconds", "When the last audit finished (Unix time)")
AUDIT_WORKLOADS = Gauge("aidp_audit_workloads", "Workloads seen by the last audit", ["state"])
AUDIT_FINDINGS = Gauge("aidp_audit_findings", "Findings of the last audit", ["type", "severity"])
AUDIT_ERRORS = Counter("aidp_audit_errors_total", "Audits that failed")
AUDIT_PEAK_RSS = Gauge("aidp_audit_peak_rss_bytes", "Peak resident memory of the last audit's process")
RECONCILE_DURATION = Histogram("aidp_reconcile_duration_seconds", "Wall time of one policy sync")
RECONCILE_ERRORS = Counter("aidp_reconcile_errors_total", "Policy syncs that failed")
OPA_LOAD_ERRORS = Counter("aidp_opa_load_errors_total", "Bundle loads refused by or failed on an OPA replica")
POLICIES = Gauge("aidp_policies", "AIDataPolicies by phase", ["phase"])

APPROVAL_CHANGES = Counter(
    "aidp_pod_approval_changes_total",
    "Approval labels set (approved) or removed (revoked) on running pods after judging them",
    ["change"],
)

CATALOG_RELOADS = Counter(
    "aidp_provider_catalog_reloads_total",
    "Changes of the provider catalog ConfigMap (--provider-catalog-configmap) applied or rejected",
    ["result"],
)
CATALOG_REJECTED = Gauge(
    "aidp_provider_catalog_rejected",
    "1 while the provider catalog ConfigMap holds a catalog that was rejected (the last good one is in use)",
)
