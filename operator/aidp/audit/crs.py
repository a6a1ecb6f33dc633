"""Audit results as in-cluster report objects, one per namespace (pure rendering).

`openreports` (default): openreports.io/v1alpha1 `Report`; `policyreport`: wgpolicyk8s.io/v1alpha2
`PolicyReport`. Both share the result format. A report stays under 1 MB: past MAX_RESULTS results
the rest are summarised in the last one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aidp.audit import changes
from aidp.audit.report import AuditReport, Finding, ProcessingRecord
from aidp.config import MANAGED_BY

KINDS = {
    "openreports": ("openreports.io", "v1alpha1", "Report", "reports"),
    "policyreport": ("wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports"),
}
NAME = "aidp-audit"
MAX_RESULTS = 1000  # ~600 bytes each: well under the 1 MiB object limit
FAIL_SEVERITIES = {"critical", "high"}
# the namespace's part of the report's summary, for the next audit to compare with (aidp.audit.changes:
# gzip + base64 JSON), and what changed since the previous audit (JSON: counts, some names)
SUMMARY_ANNOTATION = "aidp.io/audit-summary"
CHANGES_ANNOTATION = "aidp.io/changes"


def _result(f: Finding, ts: dict[str, int]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "source": "aidp",
        "policy": f.policy or f.type,
        "rule": f.rule or f.type,
        "category": f.type,
        "result": "fail" if f.severity in FAIL_SEVERITIES else "warn",
        "severity": f.severity,
        "message": f.message[:1024],
        "timestamp": ts,
        "resources": [{"kind": f.kind, "name": f.name, "namespace": f.namespace}],
    }
    return res


def _pass(r: ProcessingRecord, ts: dict[str, int]) -> dict[str, Any]:
    return {
        "source": "aidp",
        "policy": r.policy,
        "rule": "approved",
        "category": "processing-record",
        "result": "pass",
        "severity": "info",
        "message": f"approved: {r.purpose}"[:1024],
        "timestamp": ts,
        "resources": [{"kind": r.kind, "name": r.name, "namespace": r.namespace}],
    }


def previous_summary(objects: Iterable[Mapping[str, Any]]) -> changes.Summary | None:
    """The previous audit's summary from the report objects it wrote (None: none has one)."""
    parts = []
    for obj in objects:
        text = ((obj.get("metadata") or {}).get("annotations") or {}).get(SUMMARY_ANNOTATION)
        if isinstance(text, str):
            try:
                parts.append(changes.decode(text))
            except ValueError:
                continue  # written by someone else, or damaged: that namespace is new to the diff
    return changes.merge(parts)


def render(
    report: AuditReport, kind: str = "openreports", now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """One report object per namespace that has workloads, policies or findings, annotated with
    its part of the summary (for the next audit) and what changed since the previous one."""
    group, version, kind_name, _ = KINDS[kind]
    when = now or dt.datetime.now(dt.UTC)
    ts = {"seconds": int(when.timestamp()), "nanos": 0}
    per_ns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in report.sorted_findings():
        per_ns[f.namespace].append(_result(f, ts))
    for r in report.records:
        per_ns[r.namespace].append(_pass(r, ts))
    summaries = changes.by_namespace(changes.of_report(report))
    namespaces = sorted(set(per_ns) | set(report.namespaces) | set(summaries))
    out = []
    for ns in namespaces:
        annotations = {
            SUMMARY_ANNOTATION: changes.encode(
                summaries.get(ns) or changes.Summary(generated_at=report.generated_at, scope=report.scope)
            )
        }
        if report.changes is not None:
            annotations[CHANGES_ANNOTATION] = changes.annotation(changes.for_namespace(report.changes, ns))
        results = per_ns.get(ns, [])
        if len(results) > MAX_RESULTS:
            dropped = results[MAX_RESULTS - 1 :]
            results = results[: MAX_RESULTS - 1]
            left = Counter(r["result"] for r in dropped)
            results.append(
                {
                    "source": "aidp",
                    "policy": "aidp-audit",
                    "rule": "truncated",
                    "result": "warn",
                    "severity": "info",
                    "message": f"{len(dropped)} more results ({dict(left)}) are in `aidp audit` output",
                    "timestamp": ts,
                }
            )
        counts = Counter(r["result"] for r in results)
        out.append(
            {
                "apiVersion": f"{group}/{version}",
                "kind": kind_name,
                "metadata": {
                    "name": NAME,
                    "namespace": ns,
                    "labels": dict(MANAGED_BY),
                    "annotations": annotations,
                },
                **({"source": "aidp"} if kind == "openreports" else {}),
                "summary": {k: counts.get(k, 0) for k in ("pass", "fail", "warn", "error", "skip")},
                "results": results,
            }
        )
    return out
