"""What changed since the previous report: workloads added and removed, findings new and resolved,
policies added, removed and changed (metadata.generation).

The previous report is a `Summary`: its time, workloads, findings and policy generations. `aidp audit
--previous FILE` reads it from a JSON report (`from_report_json`); the operator keeps it on its
in-cluster report objects, one namespace each, as a compressed annotation (`encode` / `decode`).

A finding is the same finding when its type, object, policy, rule and message are the same, except
review-expiring, whose message counts the days left: there the message is not compared.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aidp.audit.report import AuditReport, Changes, Finding, PolicyChange, workload_ref

# an in-cluster report's annotations hold at most 256 KiB in all; the summary stays well under,
MAX_ENCODED = 128 * 1024  # with at most 1,000 results (~600 KB) the object stays under 1 MB
_TIME_DEPENDENT = frozenset({"review-expiring"})


@dataclass
class Summary:
    generated_at: str | None = None
    scope: str | None = None
    workloads: set[str] | None = field(default_factory=set)  # namespace/Kind/name; None: not known
    findings: list[Finding] | None = field(default_factory=list)  # None: not known
    policies: dict[str, int] | None = field(default_factory=dict)  # namespace/name -> generation

    def to_dict(self) -> dict[str, Any]:
        return {
            "generatedAt": self.generated_at,
            "scope": self.scope,
            "workloads": sorted(self.workloads) if self.workloads is not None else None,
            "findings": [f.to_dict() for f in self.findings] if self.findings is not None else None,
            "policies": dict(sorted(self.policies.items())) if self.policies is not None else None,
        }


def finding_key(f: Finding) -> tuple[str, ...]:
    message = "" if f.type in _TIME_DEPENDENT else f.message
    return (f.type, f.namespace, f.kind, f.name, f.policy or "", f.rule or "", message)


def _finding(d: Mapping[str, Any]) -> Finding:
    def opt(key: str) -> str | None:
        value = d.get(key)
        return str(value) if value is not None else None

    return Finding(
        type=str(d.get("type") or ""),
        severity=str(d.get("severity") or ""),
        namespace=str(d.get("namespace") or ""),
        kind=str(d.get("kind") or ""),
        name=str(d.get("name") or ""),
        message=str(d.get("message") or ""),
        policy=opt("policy"),
        rule=opt("rule"),
    )


def policy_generations(policy_objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    out = {}
    for obj in policy_objects:
        meta = obj.get("metadata") or {}
        gen = meta.get("generation")
        out[(str(meta.get("namespace")), str(meta.get("name")))] = gen if isinstance(gen, int) else 0
    return out


def of_report(report: AuditReport) -> Summary:
    """The summary the next report compares with."""
    return Summary(
        generated_at=report.generated_at,
        scope=report.scope,
        workloads={workload_ref(*k) for k in report.workload_keys},
        findings=list(report.findings),
        policies={f"{ns}/{name}": g for (ns, name), g in report.policy_generations.items()},
    )


def from_dict(doc: Mapping[str, Any]) -> Summary:
    """A Summary from `Summary.to_dict()` or from a JSON report (`aidp audit -o json`)."""
    if not isinstance(doc, Mapping):
        raise ValueError("a previous report must be a JSON object")
    inventory = doc.get("inventory")
    if doc.get("kind") == "AuditReport":
        if not isinstance(doc.get("findings"), list):
            raise ValueError("not an aidp audit report: no findings list")
        workloads = inventory.get("workloads") if isinstance(inventory, Mapping) else None
        policies = inventory.get("policies") if isinstance(inventory, Mapping) else None
    else:
        workloads, policies = doc.get("workloads"), doc.get("policies")
    findings = doc.get("findings")
    return Summary(
        generated_at=str(doc["generatedAt"]) if doc.get("generatedAt") else None,
        scope=str(doc["scope"]) if doc.get("scope") else None,
        workloads={str(w) for w in workloads} if isinstance(workloads, list) else None,
        findings=[_finding(f) for f in findings if isinstance(f, Mapping)]
        if isinstance(findings, list)
        else None,
        policies={str(k): int(v) for k, v in policies.items() if isinstance(v, int)}
        if isinstance(policies, Mapping)
        else None,
    )


def from_report_json(text: str) -> Summary:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"the previous report is not JSON: {err}") from err
    return from_dict(doc)


def diff(previous: Summary | None, report: AuditReport) -> Changes:
    """The changes from `previous` to `report` (whose workload_keys and policy_generations are set)."""
    if previous is None:
        return Changes(notes=["no previous report to compare with"])
    now = of_report(report)
    notes = []
    if previous.scope and previous.scope != report.scope:
        notes.append(f"the previous report's scope was {previous.scope}, this one's is {report.scope}")
    added: list[str] = []
    removed: list[str] = []
    if previous.workloads is None:
        notes.append("the previous report lists no workloads (no inventory): workloads not compared")
    else:
        added = sorted((now.workloads or set()) - previous.workloads)
        removed = sorted(previous.workloads - (now.workloads or set()))
    new: list[Finding] = []
    resolved: list[Finding] = []
    if previous.findings is None:
        notes.append("the previous report's findings are not known: findings not compared")
    else:
        before = {finding_key(f): f for f in previous.findings}
        after = {finding_key(f): f for f in report.findings}
        new = sorted((f for k, f in after.items() if k not in before), key=lambda f: f.sort_key)
        resolved = sorted((f for k, f in before.items() if k not in after), key=lambda f: f.sort_key)
    p_added: list[str] = []
    p_removed: list[str] = []
    p_changed: list[PolicyChange] = []
    if previous.policies is None:
        notes.append("the previous report lists no policies (no inventory): policies not compared")
    else:
        cur = now.policies or {}
        p_added = sorted(set(cur) - set(previous.policies))
        p_removed = sorted(set(previous.policies) - set(cur))
        p_changed = [
            PolicyChange(ref, cur[ref], previous.policies[ref])
            for ref in sorted(set(cur) & set(previous.policies))
            if cur[ref] != previous.policies[ref]
        ]
    return Changes(
        since=previous.generated_at,
        workloads_added=added,
        workloads_removed=removed,
        findings_new=new,
        findings_resolved=resolved,
        policies_added=p_added,
        policies_removed=p_removed,
        policies_changed=p_changed,
        notes=notes,
    )


def compare(
    report: AuditReport, policy_objects: Iterable[Mapping[str, Any]], previous: Summary | None
) -> Changes:
    """Record the policies' generations on the report, then set and return its changes."""
    report.policy_generations = policy_generations(policy_objects)
    report.changes = diff(previous, report)
    return report.changes


# --- in-cluster: one summary per namespace, on that namespace's report object ---------------------


def by_namespace(summary: Summary) -> dict[str, Summary]:
    """`summary` split by namespace (workloads, findings and policies of each)."""
    workloads: dict[str, set[str]] = {}
    findings: dict[str, list[Finding]] = {}
    policies: dict[str, dict[str, int]] = {}
    for ref in summary.workloads or ():
        workloads.setdefault(ref.split("/", 1)[0], set()).add(ref)
    for f in summary.findings or ():
        findings.setdefault(f.namespace, []).append(f)
    for ref, gen in (summary.policies or {}).items():
        policies.setdefault(ref.split("/", 1)[0], {})[ref] = gen
    return {
        ns: Summary(
            generated_at=summary.generated_at,
            scope=summary.scope,
            workloads=workloads.get(ns, set()),
            findings=findings.get(ns, []),
            policies=policies.get(ns, {}),
        )
        for ns in sorted({*workloads, *findings, *policies})
    }


def merge(parts: Iterable[Summary]) -> Summary | None:
    """One summary from the per-namespace ones (None when there are none). The oldest time is the
    previous report's; a part that does not know its workloads or findings makes them unknown."""
    parts = list(parts)
    if not parts:
        return None
    merged = Summary(generated_at=min((p.generated_at for p in parts if p.generated_at), default=None))
    for p in parts:
        if merged.workloads is not None:
            merged.workloads = merged.workloads | p.workloads if p.workloads is not None else None
        if merged.findings is not None:
            merged.findings = [*merged.findings, *p.findings] if p.findings is not None else None
        if merged.policies is not None:
            merged.policies = {**merged.policies, **p.policies} if p.policies is not None else None
    merged.scope = next((p.scope for p in parts if p.scope), None)
    return merged


def encode(summary: Summary) -> str:
    """gzip + base64 of the summary's JSON; past MAX_ENCODED, without the findings (then unknown)."""
    for doc in (summary.to_dict(), {**summary.to_dict(), "findings": None}):
        raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        text = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
        if len(text) <= MAX_ENCODED:
            return text
    doc = {**summary.to_dict(), "findings": None, "workloads": None}
    return base64.b64encode(gzip.compress(json.dumps(doc).encode(), mtime=0)).decode()


def decode(text: str) -> Summary:
    try:
        doc = json.loads(gzip.decompress(base64.b64decode(text, validate=True)))
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"unreadable audit summary: {err}") from err
    return from_dict(doc)


def for_namespace(c: Changes, namespace: str) -> Changes:
    """The part of `c` about one namespace."""
    prefix = f"{namespace}/"
    return Changes(
        since=c.since,
        workloads_added=[w for w in c.workloads_added if w.startswith(prefix)],
        workloads_removed=[w for w in c.workloads_removed if w.startswith(prefix)],
        findings_new=[f for f in c.findings_new if f.namespace == namespace],
        findings_resolved=[f for f in c.findings_resolved if f.namespace == namespace],
        policies_added=[p for p in c.policies_added if p.startswith(prefix)],
        policies_removed=[p for p in c.policies_removed if p.startswith(prefix)],
        policies_changed=[p for p in c.policies_changed if p.policy.startswith(prefix)],
        notes=list(c.notes),
    )


def annotation(c: Changes, limit: int = 20) -> str:
    """`c` as a compact JSON annotation: the counts, and at most `limit` names of each kind."""
    doc: dict[str, Any] = {"since": c.since, "counts": c.counts()}
    lists = {
        "workloadsAdded": c.workloads_added,
        "workloadsRemoved": c.workloads_removed,
        "findingsNew": [
            f"{f.severity} {f.type} {workload_ref(f.namespace, f.kind, f.name)}" for f in c.findings_new
        ],
        "findingsResolved": [
            f"{f.severity} {f.type} {workload_ref(f.namespace, f.kind, f.name)}" for f in c.findings_resolved
        ],
        "policiesAdded": c.policies_added,
        "policiesRemoved": c.policies_removed,
        "policiesChanged": [
            f"{p.policy} {p.previous_generation}->{p.generation}" for p in c.policies_changed
        ],
    }
    doc.update({k: v[:limit] for k, v in lists.items() if v})
    if c.notes:
        doc["notes"] = c.notes
    return json.dumps(doc, separators=(",", ":"))
