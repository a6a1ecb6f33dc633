"""The audit: workloads as they exist, judged by the admission Rego (evaluated by OPA), plus the
findings only a cluster-wide view can give (shadow AI, egress bypass, credential exposure).

`Auditor` is fed pages of objects (at most 500 at a time) and keeps only what the report needs,
so memory follows the page size, not the cluster size.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aidp.audit import netpol
from aidp.audit.rbac import RbacIndex
from aidp.audit.report import AuditReport, Finding, NamespaceTally, ProcessingRecord
from aidp.check import admission_review
from aidp.model import Policy, checked_kind
from aidp.workloads import PodTemplate, is_top_level, pod_template

# decisions for a batch of AdmissionReviews, in order (OPA evaluates data.aidp.audit.decisions)
Evaluate = Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]

AI_ENV = re.compile(r"^(OPENAI_|AZURE_OPENAI_)[A-Z0-9_]*$")
AI_CREDENTIAL_ENV = re.compile(r"^(OPENAI_API_KEY|OPENAI_KEY|AZURE_OPENAI_(API_)?KEY)$")
PROVIDER_HOST = re.compile(
    r"(?<![a-z0-9.-])((?:[a-z0-9-]+\.)?api\.openai\.com|[a-z0-9-]+\.openai\.azure\.com)(?![a-z0-9-])"
)
EXPIRING_DAYS = 30

ALLOWED: Mapping[str, Any] = {"allowed": True, "message": "", "violations": [], "warnings": []}


MEMO_SIZE = 10_000


@dataclass(frozen=True)
class _Seen:
    ns: str
    name: str
    kind: str
    tpl: PodTemplate | None
    selecting: list[Policy]


@dataclass
class _Group:
    """Workloads judged by one AdmissionReview (they agree on everything the verdict depends on)."""

    key: tuple[Any, ...]
    seen: list[_Seen]
    review: dict[str, Any]


def _verdict_key(obj: Mapping[str, Any], tpl: PodTemplate | None) -> tuple[Any, ...]:
    """Everything the admission decision's violations depend on, for a CREATE of `obj`
    (pod_template gives labels and annotations as str -> str, so the key is hashable)."""
    meta = obj.get("metadata") or {}
    return (
        obj.get("apiVersion"),
        obj.get("kind"),
        meta.get("namespace") or "default",
        tuple(sorted(tpl.labels.items())) if tpl else (),
        tuple(sorted(tpl.annotations.items())) if tpl else (),
        tpl.service_account if tpl else "default",
    )


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


VIOLATION_SEVERITY = {"deny": "high", "warn": "medium", "dryrun": "low"}


def _days(value: str) -> int | None:
    """The declared retention as admission reads it (ASCII digits, leading zeros allowed), or None.
    int() alone would accept other Unicode digits, fail on some ("²"), and refuse strings of more
    than 4300 digits, which a workload can declare ("000...07" is 7 days): the audit must not crash."""
    if not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else None


def ai_references(spec: Mapping[str, Any]) -> list[str]:
    """Why a pod spec looks like it talks to an AI provider: env names and values naming one."""
    found: list[str] = []
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            name = str(env.get("name") or "")
            if AI_ENV.match(name):
                found.append(f"env {name}")
            value = env.get("value")
            if isinstance(value, str) and (m := PROVIDER_HOST.search(value.lower())):
                found.append(f"env {name} names {m.group(1)}")
        for arg in [*(container.get("args") or []), *(container.get("command") or [])]:
            if isinstance(arg, str) and (m := PROVIDER_HOST.search(arg.lower())):
                found.append(f"argument names {m.group(1)}")
    return sorted(set(found))


def credential_secrets(spec: Mapping[str, Any]) -> set[str]:
    """Secrets the pod takes AI credentials from (names only; values are never read)."""
    out: set[str] = set()
    talks_ai = bool(ai_references(spec))
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if ref and AI_CREDENTIAL_ENV.match(str(env.get("name") or "")):
                out.add(str(ref))
        if talks_ai:
            for src in container.get("envFrom") or []:
                ref = (src.get("secretRef") or {}).get("name")
                if ref:
                    out.add(str(ref))
    return out


@dataclass
class Auditor:
    evaluate: Evaluate
    policies: Sequence[Policy]
    today: dt.date
    network_policies: Sequence[Mapping[str, Any]] | None = ()  # None: unknown, egress-bypass not analysed
    rbac: RbacIndex | None = None
    addresses: Mapping[tuple[str, str], Sequence[str]] = field(default_factory=dict)  # (ns, host) -> CIDRs
    scope: str = "cluster"
    report: AuditReport = field(init=False)
    per_policy: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._memo: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.report = AuditReport(generated_at=now, scope=self.scope)
        self._by_ns: dict[str, list[Policy]] = {}
        self._endpoints: dict[tuple[str, str], list[str]] = {}
        # per namespace: (policy, host, port, CIDRs in force) for egress-bypass, addresses known only
        self._egress_targets: dict[str, list[tuple[str, str, int, Sequence[str]]]] = {}
        for p in self.policies:
            self._by_ns.setdefault(p.namespace, []).append(p)
            self.per_policy[(p.namespace, p.name)] = {"matched": 0, "violating": 0}
            self._endpoints[(p.namespace, p.name)] = [f"{e.host}:{e.port}" for e in p.endpoints]
            for e in p.endpoints:
                if cidrs := self.addresses.get((p.namespace, e.host)):
                    self._egress_targets.setdefault(p.namespace, []).append((p.name, e.host, e.port, cidrs))

    # ---- workloads ----------------------------------------------------------------------------
    def add(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Audit one page of workloads of any checked kinds (see `prepare`)."""
        batch = self.prepare(objects)
        if batch:
            self.apply(batch, self.evaluate([g.review for g in batch]))

    def prepare(self, objects: Iterable[Mapping[str, Any]]) -> list[_Group]:
        """The AdmissionReviews OPA must judge for this page; other workloads are handled at once.

        - Workloads no policy of their namespace selects are "allowed, no violation" by
          construction (no policy, no rule): OPA is not asked.
        - The violations depend only on the kind, the namespace, the pod template's labels and
          annotations and its service account, so workloads that agree on those are judged once
          (memoised for the whole audit, bounded by MEMO_SIZE).
        - The AdmissionReview carries the object without `status` and `managedFields`.
        """
        groups: dict[tuple[Any, ...], _Group] = {}
        for obj in objects:
            kind = checked_kind(obj.get("apiVersion"), obj.get("kind"))
            if kind is None or not is_top_level(obj):
                continue
            seen = self._seen(obj)
            if not seen.selecting:
                self._workload(seen, ALLOWED)
                continue
            key = _verdict_key(obj, seen.tpl)
            if key in self._memo:
                self._workload(seen, self._memo[key])
            elif key in groups:
                groups[key].seen.append(seen)
            else:
                groups[key] = _Group(key, [seen], admission_review(_slim(obj), kind, str(uuid.uuid4())))
        return list(groups.values())

    def apply(self, batch: Sequence[_Group], decisions: Sequence[Mapping[str, Any]]) -> None:
        for group, decision in zip(batch, decisions, strict=True):
            if len(self._memo) < MEMO_SIZE:
                self._memo[group.key] = decision
            for one in group.seen:
                self._workload(one, decision)

    def _seen(self, obj: Mapping[str, Any]) -> _Seen:
        """What the audit needs of one workload, computed once."""
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        tpl = pod_template(obj)
        labels = tpl.labels if tpl else {}
        selecting = [p for p in self._by_ns.get(ns, ()) if p.spec.workload_selector.matches(labels)]
        return _Seen(ns, str(meta.get("name") or ""), str(obj["kind"]), tpl, selecting)

    def _workload(self, seen: _Seen, decision: Mapping[str, Any]) -> None:
        ns, name, kind, tpl, selecting = seen.ns, seen.name, seen.kind, seen.tpl, seen.selecting
        labels = tpl.labels if tpl else {}
        spec = tpl.spec if tpl else {}
        tally = self.report.namespaces.setdefault(ns, NamespaceTally())
        tally.workloads += 1
        self.report.workloads += 1
        active = [p for p in selecting if not p.expired(self.today)]
        violations = list(decision.get("violations") or [])
        for p in selecting:
            self.per_policy[(p.namespace, p.name)]["matched"] += 1
        for v in violations:
            self.report.findings.append(
                Finding(
                    "policy-violation",
                    VIOLATION_SEVERITY.get(str(v.get("enforcement")), "high"),
                    ns,
                    kind,
                    name,
                    str(v.get("message")),
                    str(v.get("policy")),
                    str(v.get("rule")),
                )
            )
        for pol in {str(v.get("policy")) for v in violations}:
            if (ns, pol) in self.per_policy:
                self.per_policy[(ns, pol)]["violating"] += 1
        if violations:
            tally.violating += 1
            self.report.violating += 1
        refs = ai_references(spec)
        if refs and not active:
            self.report.findings.append(
                Finding(
                    "shadow-ai",
                    "high",
                    ns,
                    kind,
                    name,
                    f"pod spec references an AI provider ({', '.join(refs)}) "
                    "but no active AIDataPolicy selects it",
                )
            )
        approved = bool(active) and not violations
        if approved:
            tally.approved += 1
            self.report.approved += 1
            for p in active:
                self.report.records.append(self._record(ns, kind, name, p, tpl.annotations if tpl else {}))
            self._credentials(ns, kind, name, spec, active)
        if not active and ns in self._by_ns:
            # not approved for egress (contract section 4: selected by a non-expired policy, compliant or not)
            self._egress_bypass(ns, kind, name, labels)

    def _record(self, ns: str, kind: str, name: str, p: Policy, ann: Mapping[str, str]) -> ProcessingRecord:
        days = ann.get("aidp.io/retention-days", "").strip()
        return ProcessingRecord(
            namespace=ns,
            kind=kind,
            name=name,
            policy=p.name,
            purpose=ann.get("aidp.io/purpose", "").strip() or p.spec.purpose,
            endpoints=list(self._endpoints[(p.namespace, p.name)]),
            consentBasis=(ann.get("aidp.io/consent-basis", "").strip().lower() or None),
            retentionDays=_days(days),
            dataCategories=sorted(
                {c.strip().lower() for c in ann.get("aidp.io/data-categories", "").split(",") if c.strip()}
            ),
            dataResidency=p.spec.data_residency,
            approvedBy=p.spec.review.approved_by,
            expires=p.spec.review.expires.isoformat() if p.spec.review.expires else None,
        )

    def _credentials(
        self, ns: str, kind: str, name: str, spec: Mapping[str, Any], active: list[Policy]
    ) -> None:
        if self.rbac is None:
            return
        allowed_sas = {sa for p in active for sa in p.spec.service_account_names}
        for secret in sorted(credential_secrets(spec)):
            for subject in sorted(self.rbac.readers(ns, secret)):
                if subject.builtin:
                    continue
                if (
                    subject.kind == "ServiceAccount"
                    and subject.namespace == ns
                    and subject.name in allowed_sas
                ):
                    continue
                self.report.findings.append(
                    Finding(
                        "credential-exposure",
                        "high" if subject.kind != "ServiceAccount" else "medium",
                        ns,
                        kind,
                        name,
                        f"{subject} can read Secret {ns}/{secret}, from which this approved workload takes "
                        "its AI credentials",
                    )
                )

    def _egress_bypass(self, ns: str, kind: str, name: str, labels: Mapping[str, str]) -> None:
        if self.network_policies is None:
            return
        for policy, host, port, cidrs in self._egress_targets.get(ns, ()):
            for cidr in cidrs:
                if netpol.egress_allowed(self.network_policies, ns, labels, cidr, port):
                    self.report.findings.append(
                        Finding(
                            "egress-bypass",
                            "high",
                            ns,
                            kind,
                            name,
                            f"not approved, yet the NetworkPolicies in force let it reach {host} "
                            f"({cidr.split('/')[0]}:{port})",
                            policy,
                        )
                    )
                    return

    # ---- policies -----------------------------------------------------------------------------
    def finish(self) -> AuditReport:
        for p in self.policies:
            expires = p.spec.review.expires
            if expires is None:
                continue
            if expires < self.today:
                self.report.findings.append(
                    Finding(
                        "review-expired",
                        "high",
                        p.namespace,
                        "AIDataPolicy",
                        p.name,
                        f"review expired on {expires.isoformat()}: "
                        "its workloads are denied and get no egress",
                        p.name,
                    )
                )
            elif (expires - self.today).days <= EXPIRING_DAYS:
                self.report.findings.append(
                    Finding(
                        "review-expiring",
                        "low",
                        p.namespace,
                        "AIDataPolicy",
                        p.name,
                        f"review expires on {expires.isoformat()} ({(expires - self.today).days} days)",
                        p.name,
                    )
                )
        return self.report
