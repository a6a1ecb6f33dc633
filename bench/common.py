"""Shared pieces of `make bench`: percentiles, results file, the performance table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
TABLE = ROOT / "docs" / "performance.md"

# figure -> (target, direction, description); direction "max" means lower is better
TARGETS: dict[str, tuple[float, str, str]] = {
    "admission_overhead_p99_ratio_c1": (
        1.3,
        "max",
        "Deployment create p99 with/without the webhook, 1 client",
    ),
    "admission_overhead_p99_ratio_c50": (
        1.3,
        "max",
        "Deployment create p99 with/without the webhook, 50 clients",
    ),
    "admission_opa_vs_noop_p99_ratio_c50": (
        1.15,
        "max",
        "Deployment create p99 through aidp's OPA webhook / through the no-op OPA webhook, 50 clients",
    ),
    "admission_opa_vs_gatekeeper_p99_ratio_c50": (
        0.8,
        "max",
        "Deployment create p99, aidp's opa engine / Gatekeeper's webhook with the rules ported "
        "(bench/gatekeeper/), 50 clients",
    ),
    "admission_vap_vs_gatekeeper_p99_ratio_c50": (
        0.8,
        "max",
        "Deployment create p99, aidp's vap engine / Gatekeeper's webhook with the rules ported, 50 clients",
    ),
    "admission_vap_overhead_p99_ratio_c1": (
        1.1,
        "max",
        "Deployment create p99 with the vap engine (CEL in kube-apiserver) / without admission, 1 client",
    ),
    "admission_vap_overhead_p99_ratio_c50": (
        1.1,
        "max",
        "Deployment create p99 with the vap engine (CEL in kube-apiserver) / without admission, 50 clients",
    ),
    "webhook_calls_per_deployment_create": (
        2.0,
        "max",
        "calls to aidp's validate.aidp.io webhook per Deployment create with 1 replica (the Deployment's "
        "and the Pod's CREATE; 4 before matchConditions skipped the deployment controller's ReplicaSet "
        "and the operator's approval label), kube-apiserver's apiserver_admission_webhook_request_total",
    ),
    "reconcile_p99_seconds_1000_policies": (1.0, "max", "policy change -> next violating create denied, p99"),
    "reconcile_p99_seconds_1000_policies_100_guardrailed_namespaces": (
        1.0,
        "max",
        "the same with 100 namespaces a ClusterAIDataPolicy governs (no AIDataPolicy in them)",
    ),
    "reconcile_p99_seconds_10000_policies": (
        0.5,
        "max",
        "policy change -> next violating create denied, p99, 10,000 policies in 1,000 namespaces",
    ),
    "reconcile_p50_ratio_10000_vs_100_policies": (
        2.0,
        "max",
        "reconcile p50 with 10,000 policies / with 100 (a change costs the same whatever the total)",
    ),
    "durable_copy_bytes_10000_policies": (
        16.0 * 1024 * 1024,
        "max",
        "bytes of the durable copy (head + 16 shard ConfigMaps, each <= 1 MiB) with 10,000 policies",
    ),
    "durable_copy_largest_configmap_bytes_10000_policies": (
        1024.0 * 1024,
        "max",
        "the largest ConfigMap of the durable copy with 10,000 policies (the API's object limit: 1 MiB)",
    ),
    "operator_rss_mb_1000_policies": (
        120.0,
        "max",
        "operator VmRSS (MB) after a quiescent reconcile, 1,000 policies",
    ),
    "operator_rss_mb_10000_policies": (
        200.0,
        "max",
        "operator VmRSS (MB) after a quiescent reconcile, 10,000 policies",
    ),
    "audit_vs_list_ratio_10k_pods": (2.0, "max", "aidp audit wall time / bare paginated LISTs, 10k pods"),
    "audit_vs_list_ratio_100k_pods": (1.5, "max", "aidp audit wall time / bare paginated LISTs, 100k pods"),
    "audit_peak_rss_mb_100k_pods": (256.0, "max", "aidp audit peak RSS (MB), 100k pods in 1,100 namespaces"),
    "audit_peak_rss_mb_10k_pods": (256.0, "max", "aidp audit peak RSS (MB), 10k pods in 200 namespaces"),
    "audit_peak_rss_mb_1k_pods": (256.0, "max", "aidp audit peak RSS (MB), 1k pods (memory stays flat)"),
    "opa_recovery_seconds": (10.0, "max", "OPA SIGKILLed, operator down: restart -> enforcing again"),
    "operator_takeover_seconds": (30.0, "max", "leader SIGKILLed -> a new policy enforced by the follower"),
    "egress_convergence_p99_seconds": (
        2.0,
        "max",
        "on a real node: policy revoked or approved -> a pod's packets to the provider follow, p99 of 20",
    ),
}


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "n": float(len(values)),
    }


def save(figures: dict[str, Any]) -> dict[str, Any]:
    """Merge `figures` into bench/results.json (other benchmarks keep theirs) and redo the table."""
    current: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    current.update(figures)
    RESULTS.write_text(json.dumps(dict(sorted(current.items())), indent=2) + "\n")
    write_table(current)
    return current


def write_table(results: dict[str, Any]) -> None:
    lines = [
        "# Performance",
        "",
        "Generated by `make bench` from `bench/results.json` (all figures of one run on the local",
        "control plane: real etcd, kube-apiserver, OPA and operator processes on this machine).",
        "Latencies in seconds.",
        "",
        "## Targets",
        "",
        "| figure | value | target | met | what |",
        "|---|---|---|---|---|",
    ]
    for name, (target, direction, what) in TARGETS.items():
        value = results.get(name)
        if value is None:
            lines.append(f"| `{name}` | not measured | <= {target} | - | {what} |")
            continue
        met = value <= target if direction == "max" else value >= target
        lines.append(f"| `{name}` | {value:.3f} | <= {target} | {'yes' if met else 'NO'} | {what} |")
    lines += _missed(results)
    lines += [
        "",
        "The admission figures come with a control measured in the same interleaved rounds:",
        "`*_noop_webhook` is the same Deployment create through a no-op webhook, a second OPA server",
        "started like aidp's (TLS, token, authorization policy) whose decision allows everything",
        "without looking. It is the cost of any OPA webhook on this machine, before aidp's Rego.",
        "The peer runs in the same rounds: `*_gatekeeper_*` is OPA Gatekeeper's webhook with aidp's",
        "rules ported to a ConstraintTemplate, `*_gatekeeper_vap_*` the ValidatingAdmissionPolicy",
        "Gatekeeper generates from aidp's CEL (one constraint per AIDataPolicy); both first agree with",
        "`aidp check` on the examples (bench/gatekeeper/README.md in the repository).",
        "Each concurrency level uses one HTTP/2 client, warmed up, so no sample includes a connection",
        "or TLS handshake. At concurrency 1 the namespaces take turns create by create, so a passing",
        "stall lands on all of them alike; at 50 each batch is one namespace's creates, so the load",
        "its admission puts on the machine is part of its figure.",
        "",
        "## All figures",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for name, value in sorted(results.items()):
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| `{name}` | {shown} |")
    TABLE.write_text("\n".join(lines) + "\n")


# a target's control, measured in the same run: (figure, what it is). When the control itself is
# over the target, nothing of aidp's can meet it on this machine; the table says so.
CONTROLS: dict[str, tuple[str, str]] = {
    "admission_opa_vs_gatekeeper_p99_ratio_c50": (
        "admission_noop_webhook_vs_gatekeeper_p99_ratio_c50",
        "a webhook that does nothing (the no-op OPA) against Gatekeeper's webhook",
    ),
    "admission_vap_vs_gatekeeper_p99_ratio_c50": (
        "admission_no_admission_vs_gatekeeper_p99_ratio_c50",
        "no admission at all against Gatekeeper's webhook",
    ),
    "admission_overhead_p99_ratio_c1": (
        "admission_overhead_p99_ratio_c1_noop_webhook",
        "the no-op webhook against no admission",
    ),
    "admission_overhead_p99_ratio_c50": (
        "admission_overhead_p99_ratio_c50_noop_webhook",
        "the no-op webhook against no admission",
    ),
    "admission_vap_overhead_p99_ratio_c1": (
        "admission_gatekeeper_vap_overhead_p99_ratio_c1",
        "the peer's ValidatingAdmissionPolicies (Gatekeeper's, the same CEL) against no admission",
    ),
    "admission_vap_overhead_p99_ratio_c50": (
        "admission_gatekeeper_vap_overhead_p99_ratio_c50",
        "the peer's ValidatingAdmissionPolicies (Gatekeeper's, the same CEL) against no admission",
    ),
}

# why a target that has no control in the run is missed, as measured apart (the figures that
# say so are in the documents linked)
REASONS: dict[str, str] = {
    "admission_vap_overhead_p99_ratio_c50": (
        "the CEL runs on kube-apiserver's CPU, which 50 clients saturate on 2 cores (no "
        "admission's own p50 at c50 against c1, below); "
        "what each policy costs and what was cut: "
        "[admission-engines.md](admission-engines.md#what-each-policy-costs)"
    ),
    "admission_vap_overhead_p99_ratio_c1": (
        "see [admission-engines.md](admission-engines.md#what-each-policy-costs)"
    ),
    "reconcile_p50_ratio_10000_vs_100_policies": (
        "the median of each step of the operator's syncs during the samples is in the bench's log "
        "(bench/last-run.log, `incremental syncs meanwhile`); only `read and render` and `OPA` come "
        "before enforcement: [operations.md](operations.md#scale)"
    ),
    "operator_rss_mb_1000_policies": (
        "most of it is the interpreter and its modules (Kopf, aiohttp, lightkube, cryptography, "
        "requests for opa-python-client, prometheus_client) before any policy: "
        "[operations.md](operations.md#scale)"
    ),
    "operator_rss_mb_10000_policies": (
        "measured where it is (deep sizes from `gc` in the running operator; the largest share is "
        "what the allocator keeps after the first sync's peak), and what was tried: "
        "[operations.md](operations.md#scale)"
    ),
    "audit_vs_list_ratio_100k_pods": (
        "no single hot spot in its profile (every step is per object), and it varies around 1.5 "
        "between runs: [reports.md](reports.md#scale)"
    ),
}


def _missed(results: dict[str, Any]) -> list[str]:
    """A section naming each missed target with its control from the same rounds, if it has one."""
    rows = []
    for name, (target, direction, _) in TARGETS.items():
        value = results.get(name)
        if value is None or (value <= target if direction == "max" else value >= target):
            continue
        control = CONTROLS.get(name)
        reason = REASONS.get(name)
        if control is not None and results.get(control[0]) is not None:
            c = float(results[control[0]])
            beaten = c > target if direction == "max" else c < target
            verdict = (
                "the control alone is over the target: nothing of its kind meets it on this machine"
                if beaten
                else f"the control meets it: aidp's own cost is {value - c:+.3f} over the control"
            )
            if reason and not beaten:
                verdict += f"; {reason}"
            rows.append(f"| `{name}` | {value:.3f} | {control[1]}: {c:.3f} | {verdict} |")
        elif reason:
            rows.append(f"| `{name}` | {value:.3f} | none | {reason} |")
    if not rows:
        return []
    return [
        "",
        "## Missed targets and their controls",
        "",
        "| figure | value | control in the same rounds | reading |",
        "|---|---|---|---|",
        *rows,
    ]
