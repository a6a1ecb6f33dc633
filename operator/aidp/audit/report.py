"""The audit report (`aidp audit -o json`, contract section 5 (docs/policy-contract.md)) as typed values."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from aidp.audit.rbac import LEFT_OUT, LeftOut

FINDING_TYPES = (
    "policy-violation",
    "shadow-ai",
    "review-expired",
    "review-expiring",
    "egress-bypass",
    "credential-exposure",
    "egress-would-block",
    "out-of-bounds",
)
SEVERITIES = ("critical", "high", "medium", "low", "info")

# what to do about each finding type (shown in the HTML and Markdown reports)
FIXES = {
    "out-of-bounds": "Tighten the AIDataPolicy to the ClusterAIDataPolicy's bounds (the message names each "
    "field), or have the privacy team widen the guardrail; until then workloads must pass both rule sets.",
    "policy-violation": "Declare compliant annotations on the pod template (aidp.io/consent-basis, "
    "aidp.io/retention-days, aidp.io/data-categories, aidp.io/zero-data-retention) or stop sending data "
    "to the provider; the message names each failed rule.",
    "shadow-ai": "Write an AIDataPolicy that selects this workload (and have it reviewed), or remove the "
    "AI credentials and endpoints from its pod spec.",
    "review-expired": "Review the policy again and move spec.review.expires forward; until then its "
    "workloads are denied and lose egress to the provider.",
    "review-expiring": "Schedule the periodic review before spec.review.expires.",
    "egress-bypass": "Remove or narrow the NetworkPolicy that lets this pod reach the provider, or make "
    "the pod an approved workload of an AIDataPolicy.",
    "egress-would-block": "Before a policy of this observed namespace enforces (warn or deny), select the "
    "workload with a policy and make it compliant, or accept that aidp's egress rules cut it from the "
    "provider.",
    "credential-exposure": "Narrow the Role/ClusterRole bindings so that only the approved service "
    "accounts can read the Secret holding the AI credentials, and that no one else can create pods or "
    "workloads (they can mount any Secret of the namespace) or exec into the approved pods.",
}


@dataclass(frozen=True)
class Finding:
    type: str
    severity: str
    namespace: str
    kind: str
    name: str
    message: str
    policy: str | None = None
    rule: str | None = None
    # out-of-bounds: the ClusterAIDataPolicy and the fields of the policy outside its bounds
    guardrail: str | None = None
    fields: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields in declaration order, without the absent (None) ones. (Built by hand:
        dataclasses.asdict deep-copies every value, a tenth of a large audit's time.)"""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(self)
            if (v := getattr(self, f.name)) is not None
        }

    @property
    def sort_key(self) -> tuple[int, str, str, str, str, str, str]:
        return (
            SEVERITIES.index(self.severity),
            self.type,
            self.namespace,
            self.kind,
            self.name,
            self.policy or "",
            self.rule or "",
        )


@dataclass(frozen=True)
class ProcessingRecord:
    """GDPR Art. 30-style record of processing for one approved workload."""

    namespace: str
    kind: str
    name: str
    policy: str
    purpose: str
    endpoints: list[str]
    consentBasis: str | None
    retentionDays: int | None
    dataCategories: list[str]
    dataResidency: str | None
    approvedBy: str | None
    expires: str | None

    def to_dict(self) -> dict[str, Any]:
        """Every field in declaration order (lists copied, as asdict would, but without its
        recursive deep copy)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), list) else v for f in fields(self)}


@dataclass
class NamespaceTally:
    workloads: int = 0
    approved: int = 0
    violating: int = 0


@dataclass(frozen=True)
class Skipped:
    """An analysis (or a kind of workload) the audit could not do, and why: the caller may not read
    what it needs. The rest of the report stands; this part is missing, not clean."""

    analysis: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": self.analysis, "reason": self.reason}


@dataclass(frozen=True)
class GuardrailSummary:
    """One ClusterAIDataPolicy as the audit found it (aidp.audit.guardrails): the namespaces it
    governs (in the audit's scope), the AIDataPolicies there and those out of its bounds; an invalid
    one governs nothing and carries its `problem`."""

    name: str
    namespaces: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)  # namespace/name
    out_of_bounds: list[str] = field(default_factory=list)  # namespace/name
    unapproved_ai: str | None = None
    providers: list[str] = field(default_factory=list)  # empty: every provider of the catalog
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "namespaces": list(self.namespaces),
            "policies": list(self.policies),
            "outOfBounds": list(self.out_of_bounds),
        }
        if self.problem is not None:
            out["problem"] = self.problem
        else:
            out["unapprovedAI"] = self.unapproved_ai
            out["providers"] = list(self.providers)
        return out


@dataclass
class AuditReport:
    generated_at: str
    workloads: int = 0
    approved: int = 0
    violating: int = 0
    findings: list[Finding] = field(default_factory=list)
    records: list[ProcessingRecord] = field(default_factory=list)
    namespaces: dict[str, NamespaceTally] = field(default_factory=dict)
    scope: str = "cluster"
    skipped: list[Skipped] = field(default_factory=list)
    # subjects that could get at an approved workload's credentials but are left out by design
    left_out: set[LeftOut] = field(default_factory=set)
    guardrails: list[GuardrailSummary] = field(default_factory=list)  # ClusterAIDataPolicies read

    def left_out_groups(self) -> list[dict[str, Any]]:
        """`left_out` by reason: [{"analysis", "reason", "subjects"}], in LEFT_OUT's order."""
        by_reason: dict[str, list[str]] = {}
        for item in sorted(self.left_out):
            by_reason.setdefault(item.reason, []).append(str(item.subject))
        return [
            {"analysis": "credential-exposure", "reason": LEFT_OUT[r], "subjects": by_reason[r]}
            for r in LEFT_OUT
            if r in by_reason
        ]

    def counts(self) -> dict[str, int]:
        counted = Counter(f.type for f in self.findings)
        return {t: counted.get(t, 0) for t in FINDING_TYPES}

    def by_severity(self) -> dict[str, int]:
        counted = Counter(f.severity for f in self.findings)
        return {s: counted.get(s, 0) for s in SEVERITIES}

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: f.sort_key)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON document (plus `namespaces`, an extension for charts)."""
        return {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "AuditReport",
            "generatedAt": self.generated_at,
            "scope": self.scope,
            "summary": {
                "workloads": self.workloads,
                "approved": self.approved,
                "violations": self.violating,
                "findings": self.counts(),
                "severities": self.by_severity(),
            },
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "processingRecords": [
                r.to_dict()
                for r in sorted(self.records, key=lambda r: (r.namespace, r.kind, r.name, r.policy))
            ],
            "namespaces": {
                ns: {"workloads": t.workloads, "approved": t.approved, "violating": t.violating}
                for ns, t in sorted(self.namespaces.items())
            },
            "skipped": [s.to_dict() for s in self.skipped],
            "leftOut": self.left_out_groups(),
            **({"guardrails": [g.to_dict() for g in self.guardrails]} if self.guardrails else {}),
        }
