"""The audit report (`aidp audit -o json`, contract section 5 (docs/policy-contract.md)) as typed values."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import msgspec

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
    "record-incomplete",
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
    "record-incomplete": "Complete the AIDataPolicy's record items (spec.controller with name and contact, "
    "spec.dataSubjects, spec.transfers.safeguard when the endpoints imply a third country) and the "
    "workload's declarations (aidp.io/data-categories, aidp.io/retention-days): the message names each "
    "missing GDPR Art. 30(1) item.",
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
            name: list(v) if isinstance(v, tuple) else v
            for name in FINDING_FIELDS
            if (v := getattr(self, name)) is not None
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
class RecordController:
    """The controller (GDPR Art. 30(1)(a)), from the policy's spec.controller."""

    name: str | None = None
    contact: str | None = None


@dataclass(frozen=True)
class Recipient:
    """The provider as recipient, from the provider catalog (each fact's public source in `sources`)."""

    provider: str | None = None
    name: str | None = None
    legalEntity: str | None = None
    processorTerms: str | None = None
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferInfo:
    """Transfers to third countries (outside the EEA) that the endpoints imply, and the safeguard."""

    thirdCountries: list[str] = field(default_factory=list)
    safeguard: str | None = None
    basis: list[str] = field(default_factory=list)  # per endpoint: the country and how it was found
    undetermined: list[str] = field(default_factory=list)  # hosts whose country the audit cannot tell


@dataclass(frozen=True)
class ProviderRetention:
    """What the provider keeps, from the catalog and the workload's aidp.io/zero-data-retention."""

    retention: str | None = None
    days: int | None = None
    zeroDataRetention: bool = False  # declared by the workload
    zeroDataRetentionOffer: str | None = None  # the catalog's availability of zero data retention
    trainsOnApiData: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class SecurityMeasures:
    tls: list[str] = field(default_factory=list)
    egressRules: list[str] | None = None  # NetworkPolicies selecting the pods for egress; None: unread
    admission: str | None = None


@dataclass(frozen=True)
class RecordEvidence:
    """From the policy's status when the audit ran."""

    bundleRevision: str | None = None
    egressRulesVerifiedAt: str | None = None
    egressStatus: str | None = None
    admissionStatus: str | None = None
    policyGeneration: int | None = None
    observedGeneration: int | None = None
    lastAuditTime: str | None = None


@dataclass(frozen=True)
class ProcessingRecord:
    """GDPR Art. 30-style record of processing for one approved workload (contract sections 5, 9)."""

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
    # contract section 9
    controller: RecordController = field(default_factory=RecordController)
    dataSubjects: list[str] = field(default_factory=list)
    recipient: Recipient = field(default_factory=Recipient)
    transfers: TransferInfo = field(default_factory=TransferInfo)
    providerRetention: ProviderRetention = field(default_factory=ProviderRetention)
    securityMeasures: SecurityMeasures = field(default_factory=SecurityMeasures)
    evidence: RecordEvidence = field(default_factory=RecordEvidence)

    def to_dict(self) -> dict[str, Any]:
        """Every field in declaration order (lists copied, nested parts as dicts), converted in C by
        msgspec (a large audit has 10,000 records: a Python walk took a second for them)."""
        plain: dict[str, Any] = msgspec.to_builtins(self)
        return plain


FINDING_FIELDS = tuple(f.name for f in fields(Finding))
# what a workload's findings and records say of it; the rest is what workloads of one template share
WORKLOAD_FIELDS = ("namespace", "kind", "name")
FINDING_SHARED = tuple(f for f in FINDING_FIELDS if f not in WORKLOAD_FIELDS)
RECORD_SHARED = tuple(f.name for f in fields(ProcessingRecord) if f.name not in WORKLOAD_FIELDS)


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
class PolicyChange:
    policy: str  # namespace/name
    generation: int
    previous_generation: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "generation": self.generation,
            "previousGeneration": self.previous_generation,
        }


@dataclass(frozen=True)
class Changes:
    """What changed since the previous report (aidp.audit.changes computes it)."""

    since: str | None = None  # the previous report's generatedAt; None: there is none
    workloads_added: list[str] = field(default_factory=list)  # namespace/Kind/name
    workloads_removed: list[str] = field(default_factory=list)
    findings_new: list[Finding] = field(default_factory=list)
    findings_resolved: list[Finding] = field(default_factory=list)
    policies_added: list[str] = field(default_factory=list)  # namespace/name
    policies_removed: list[str] = field(default_factory=list)
    policies_changed: list[PolicyChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be compared, and why

    @property
    def empty(self) -> bool:
        return not (
            self.workloads_added
            or self.workloads_removed
            or self.findings_new
            or self.findings_resolved
            or self.policies_added
            or self.policies_removed
            or self.policies_changed
        )

    def counts(self) -> dict[str, int]:
        return {
            "workloadsAdded": len(self.workloads_added),
            "workloadsRemoved": len(self.workloads_removed),
            "findingsNew": len(self.findings_new),
            "findingsResolved": len(self.findings_resolved),
            "policiesAdded": len(self.policies_added),
            "policiesRemoved": len(self.policies_removed),
            "policiesChanged": len(self.policies_changed),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "counts": self.counts(),
            "workloads": {"added": list(self.workloads_added), "removed": list(self.workloads_removed)},
            "findings": {
                "new": [f.to_dict() for f in sorted(self.findings_new, key=lambda f: f.sort_key)],
                "resolved": [f.to_dict() for f in sorted(self.findings_resolved, key=lambda f: f.sort_key)],
            },
            "policies": {
                "added": list(self.policies_added),
                "removed": list(self.policies_removed),
                "changed": [c.to_dict() for c in self.policies_changed],
            },
            "notes": list(self.notes),
        }


NO_PREVIOUS = "no previous report to compare with"


def workload_ref(namespace: str, kind: str, name: str) -> str:
    return f"{namespace}/{kind}/{name}"


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
    # every workload audited (namespace, kind, name) and every valid policy's generation
    # ((namespace, name) -> metadata.generation): what the next report compares with
    workload_keys: set[tuple[str, str, str]] = field(default_factory=set)
    policy_generations: dict[tuple[str, str], int] = field(default_factory=dict)
    changes: Changes | None = None  # since the previous report, when one was given

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

    def namespace_summaries(self) -> dict[str, dict[str, Any]]:
        """Per namespace (with workloads or findings): workloads, approved, violating, and the
        findings in total and by severity."""
        by_ns: dict[str, Counter[str]] = {}
        for f in self.findings:
            by_ns.setdefault(f.namespace, Counter())[f.severity] += 1
        out = {}
        for ns in sorted(set(self.namespaces) | set(by_ns)):
            tally = self.namespaces.get(ns) or NamespaceTally()
            sev = by_ns.get(ns) or Counter()
            out[ns] = {
                "workloads": tally.workloads,
                "approved": tally.approved,
                "violating": tally.violating,
                "findings": sum(sev.values()),
                "severities": {s: sev.get(s, 0) for s in SEVERITIES},
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON document, plus the extensions: `scope`, `severities`, `namespaces`, `skipped`,
        `leftOut`, `changes` (since the previous report) and `inventory` (what the next one compares with)."""
        doc: dict[str, Any] = materialised(self.document())
        return doc

    def document(self) -> dict[str, Any]:
        """`to_dict()` with its long lists (the findings, the records of processing, the inventory's
        workloads) as `Items`, made one at a time as a writer takes them (formats.write_json): a
        large audit's document held whole took more memory than the audit itself."""
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
            "findings": Items(self.sorted_findings, Finding.to_dict, WORKLOAD_FIELDS, FINDING_SHARED),
            "processingRecords": Items(
                lambda: sorted(self.records, key=lambda r: (r.namespace, r.kind, r.name, r.policy)),
                ProcessingRecord.to_dict,
                WORKLOAD_FIELDS,
                RECORD_SHARED,
            ),
            "namespaces": self.namespace_summaries(),
            "skipped": [s.to_dict() for s in self.skipped],
            "leftOut": self.left_out_groups(),
            **({"guardrails": [g.to_dict() for g in self.guardrails]} if self.guardrails else {}),
            "changes": (self.changes or Changes(notes=[NO_PREVIOUS])).to_dict(),
            "inventory": self._inventory(),
        }

    def inventory(self) -> dict[str, Any]:
        inventory: dict[str, Any] = materialised(self._inventory())
        return inventory

    def _inventory(self) -> dict[str, Any]:
        return {
            "workloads": Items(lambda: sorted(workload_ref(*k) for k in self.workload_keys)),
            "policies": {f"{ns}/{name}": g for (ns, name), g in sorted(self.policy_generations.items())},
        }


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Items:
    """A JSON array of a document (AuditReport.document) whose items are made when iterated: `make`
    gives the objects, `plain` the JSON value of each (a dict for objects with `vary`).

    `vary` and `shared` are attributes of the objects: many objects (the findings and records of
    the workloads of one template) hold the very same values in `shared` and differ only in `vary`
    (strings, keys of the plain value in this order, and the plain value is those attributes' and
    `shared`'s values): a writer can format such objects' common text once (formats.write_json)."""

    make: Callable[[], Iterable[Any]]
    plain: Callable[[Any], Any] = _same
    vary: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        return map(self.plain, self.make())

    def objects(self) -> Iterator[Any]:
        return iter(self.make())


def materialised(value: Any) -> Any:
    """`value` with every `Items` in it (in dicts, at any depth) made a list."""
    if isinstance(value, Items):
        return list(value)
    if isinstance(value, dict):
        return {k: materialised(v) for k, v in value.items()}
    return value
