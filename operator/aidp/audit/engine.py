"""The audit: workloads as they exist, judged by the admission Rego (evaluated by OPA), plus the
findings only a cluster-wide view can give (shadow AI, egress bypass, credential exposure).

Shadow AI is the Rego detector's answer (`aiReferences` in each decision of
data.aidp.audit.decisions, policies/aidp/guardrails.rego): the one detector admission's
`unapproved-ai` rule uses too, so every workload in scope is judged by OPA (workloads that agree on
everything the decision and the detector read are judged once).

`Auditor` is fed pages of objects (at most 500 at a time) and keeps only what the report needs,
so memory follows the page size, not the cluster size.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aidp import catalog
from aidp.audit import declared, netpol, records
from aidp.audit.guardrails import guardrail_hosts
from aidp.audit.owners import OwnerLookup, audited_through_owner, controller_ref, dedupe_labels
from aidp.audit.rbac import RbacIndex
from aidp.audit.report import AuditReport, Finding, NamespaceTally, ProcessingRecord
from aidp.check import admission_review
from aidp.config import APPROVAL_LABEL
from aidp.egress.model import BASELINE_NAME, ROLE_LABEL, cut_hosts
from aidp.guardrail import ClusterPolicy
from aidp.model import CHECKED_KINDS, ENFORCEMENT_DENY, ENFORCEMENT_DRYRUN, CheckedKind, Policy, checked_kind
from aidp.workloads import PodTemplate

# decisions for a batch of AdmissionReviews, in order (OPA evaluates data.aidp.audit.decisions)
Evaluate = Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]

# the env names that hold a provider's credentials (aidp/catalog/providers.yaml): credential-exposure
# follows the Secrets they come from (detecting AI use is the Rego detector's business)
AI_CREDENTIAL_ENV = catalog.DETECT_CREDENTIAL_ENV
EXPIRING_DAYS = 30

ALLOWED: Mapping[str, Any] = {
    "allowed": True,
    "message": "",
    "violations": [],
    "warnings": [],
    "aiReferences": [],
}


MEMO_SIZE = 10_000
# labels the operator alone sets on pods (contract section 4): the approval for a deny policy's
# egress, and the mark of pods that user NetworkPolicies isolate
OPERATOR_LABELS = frozenset({APPROVAL_LABEL, "aidp.io/egress-isolated"})


@dataclass(frozen=True, slots=True)
class _Seen:
    ns: str
    name: str
    kind: str  # the top-level owner's (an unknown controller's, when aidp could read it)
    tpl: PodTemplate | None
    selecting: list[Policy]
    annotations: Mapping[str, Any]  # the pod template's, as listed (not made strings)
    labels_key: tuple[tuple[str, str], ...] = ()  # the pod template's labels, sorted
    annotations_key: tuple[tuple[str, Any], ...] = ()  # _frozen(annotations)
    active: list[Policy] = field(default_factory=list)  # the selecting policies not Expired


@dataclass(frozen=True, slots=True)
class _TemplateMeta:
    """What follows from a pod template's labels and annotations alone (Auditor._template)."""

    labels: Mapping[str, str]  # as pod_template makes them (strings)
    annotations: Mapping[str, str]
    listed_annotations: Mapping[str, Any]  # as listed
    labels_key: tuple[tuple[str, str], ...]
    annotations_key: tuple[tuple[str, Any], ...]


def _string_map(value: Any) -> dict[str, str]:
    """As aidp.workloads.pod_template reads a template's labels or annotations."""
    value = value or {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


_STR = frozenset({str})


def _meta_key(*maps: Any) -> tuple[Any, ...] | None:
    """A key for listed labels and annotations (dicts of strings, or absent) that tells any two
    apart that read differently; None for anything else (other values: no key, made each time)."""
    key: list[Any] = []
    for value in maps:
        if value is None:
            key.append(None)
        elif type(value) is dict and {*map(type, value), *map(type, value.values())} <= _STR:
            key.append(tuple(value.items()))
        else:
            return None
    return tuple(key)


def _template_meta(meta: Mapping[str, Any]) -> _TemplateMeta:
    labels = _string_map(meta.get("labels"))
    listed = meta.get("annotations")
    listed = listed if isinstance(listed, Mapping) else {}
    return _TemplateMeta(
        labels, _string_map(meta.get("annotations")), listed, tuple(sorted(labels.items())), _frozen(listed)
    )


# the checked kind of each kind name, as pod_template finds it (the first of CHECKED_KINDS)
_CHECKED_BY_KIND: dict[str, CheckedKind] = {}
for _c in CHECKED_KINDS:
    _CHECKED_BY_KIND.setdefault(_c.kind, _c)


@dataclass
class _Group:
    """Workloads judged by one AdmissionReview (they agree on everything the verdict depends on)."""

    key: tuple[Any, ...]
    seen: list[_Seen]
    review: dict[str, Any]


def _frozen(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """`values` as a hashable key that tells a string from any other value of the same text
    (the Rego reads an annotation 7 as absent, "7" as seven days)."""
    return tuple(
        sorted(
            (str(k), v if isinstance(v, str) else ("", json.dumps(v, sort_keys=True, default=str)))
            for k, v in values.items()
        )
    )


def _verdict_key(
    obj: Mapping[str, Any],
    tpl: PodTemplate | None,
    annotations: Mapping[str, Any],
    labels_key: tuple[tuple[str, str], ...] | None = None,
    annotations_key: tuple[tuple[str, Any], ...] | None = None,
) -> tuple[Any, ...]:
    """Everything the admission decision's violations depend on, for a CREATE of `obj` (the
    template's sorted labels and `_frozen(annotations)` when the caller has them already)."""
    meta = obj.get("metadata") or {}
    if labels_key is None:
        labels_key = tuple(sorted(tpl.labels.items())) if tpl else ()
    return (
        obj.get("apiVersion"),
        obj.get("kind"),
        meta.get("namespace") or "default",
        tuple(kv for kv in labels_key if kv[0] not in OPERATOR_LABELS),
        _frozen(annotations) if annotations_key is None else annotations_key,
        tpl.service_account if tpl else "default",
        bool(tpl and tpl.spec.get("hostNetwork") is True),  # rule host-network
    )


def _detector_key(spec: Mapping[str, Any]) -> bytes:
    """What the Rego detector reads of a pod spec (every container's env, args and command), as a
    hashable key."""
    read = [
        [c.get("env"), c.get("args"), c.get("command")]
        for name in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(name) or ()
        if isinstance(c, Mapping)
    ]
    try:
        return msgspec.json.encode(read)
    except (TypeError, ValueError):  # not JSON (a test's odd value): its text, still one key per spec
        return repr(read).encode()


def _template_annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod template's annotations as listed (pod_template makes every value a string)."""
    checked = next((c for c in CHECKED_KINDS if c.kind == obj.get("kind")), None)
    node: Any = obj
    for key in checked.template_path if checked else ():
        node = node.get(key) if isinstance(node, Mapping) else None
    meta = node.get("metadata") if isinstance(node, Mapping) else None
    ann = meta.get("annotations") if isinstance(meta, Mapping) else None
    return ann if isinstance(ann, Mapping) else {}


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object for its AdmissionReview: without status and managedFields and, on a Pod, without
    the labels only the operator sets (OPERATOR_LABELS): the verdict does not read them, and a
    CREATE carrying them would be refused as tampering (the operator judges pods the same way)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    labels = meta.get("labels")
    if obj.get("kind") == "Pod" and isinstance(labels, Mapping) and any(k in labels for k in OPERATOR_LABELS):
        meta["labels"] = {k: v for k, v in labels.items() if k not in OPERATOR_LABELS}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def governed_namespaces(policies: Iterable[Policy], policy_objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """The namespaces whose egress aidp cuts (CONTRACT 4): those with a valid `deny` or `warn`
    policy, and those whose AIDataPolicies are all invalid (they fail closed). A namespace whose
    valid policies are all `dryrun` is observed, not governed: it has no egress rules to bypass."""
    valid = list(policies)
    enforcing = {p.namespace for p in valid if p.spec.enforcement != ENFORCEMENT_DRYRUN}
    with_valid = {p.namespace for p in valid}
    invalid_only = {str((o.get("metadata") or {}).get("namespace")) for o in policy_objects} - with_valid
    return enforcing | invalid_only


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _baseline_cuts(nps: Iterable[Mapping[str, Any]]) -> list[str]:
    """The provider addresses aidp's egress baseline cuts out of the namespace's egress (the
    `except` CIDRs of aidp-egress-baseline: every host of the providers, see egress.model.cut_hosts)."""
    out: dict[str, None] = {}
    for np in nps:
        meta = np.get("metadata") or {}
        if meta.get("name") != BASELINE_NAME or (meta.get("labels") or {}).get(ROLE_LABEL) != "baseline":
            continue
        for rule in (np.get("spec") or {}).get("egress") or []:
            for peer in rule.get("to") or []:
                for cut in (peer.get("ipBlock") or {}).get("except") or []:
                    out[_cidr(str(cut))] = None
    return list(out)


VIOLATION_SEVERITY = {"deny": "high", "warn": "medium", "dryrun": "low"}


def credential_secrets(spec: Mapping[str, Any], *, talks_ai: bool) -> set[str]:
    """Secrets the pod takes AI credentials from (names only; values are never read): those of its
    credential env names, and, when the detector found AI references (`talks_ai`), every Secret
    its containers take all keys from (envFrom)."""
    out: set[str] = set()
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
    owners: OwnerLookup | None = None  # reads unknown controllers; None: report the object itself
    # namespaces whose egress aidp cuts (see `governed_namespaces`, and those a guardrail
    # selects); None: those of `policies` and `guardrails_of`
    governed: Collection[str] | None = None
    # ClusterAIDataPolicies (contract 6) and, per namespace, the names of those that select it: the
    # decisions apply their rules (the evaluator's data must hold the same), their namespaces are
    # governed, and the egress baseline there cuts their providers' hosts
    guardrails: Sequence[ClusterPolicy] = ()
    guardrails_of: Mapping[str, Sequence[str]] = field(default_factory=dict)
    report: AuditReport = field(init=False)
    per_policy: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._memo: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        # per (namespace, sorted labels): the policies selecting them; per (policy, annotations,
        # labels): what its records share (`_record`); one string per namespace
        self._selecting: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[list[Policy], list[Policy]]] = {}
        self._templates: dict[tuple[Any, ...], _TemplateMeta] = {}
        self._kinds: dict[tuple[Any, Any], CheckedKind | None] = {}
        # per decision (by identity, with the decision kept): the one for workloads nothing judges
        self._unjudged: dict[int, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        self._record_parts: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._strings: dict[str, str] = {}
        self._owned_seen: set[tuple[Any, ...]] = set()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.report = AuditReport(generated_at=now, scope=self.scope)
        self._by_ns: dict[str, list[Policy]] = {}
        self._endpoints: dict[tuple[str, str], list[str]] = {}
        # per namespace, for egress-bypass: (policy, host, port, CIDR) of every endpoint address in
        # the policies' status, then every other address the namespace's egress baseline cuts
        # (the other hosts of the providers), on port 443 and the endpoints' ports
        self._egress_targets: dict[str, list[tuple[str | None, str | None, int, str]]] = {}
        self._reach_memo: dict[tuple[Any, ...], tuple[str | None, str | None, int, str] | None] = {}
        for p in self.policies:
            self._by_ns.setdefault(p.namespace, []).append(p)
            self.per_policy[(p.namespace, p.name)] = {"matched": 0, "violating": 0}
            self._endpoints[(p.namespace, p.name)] = [f"{e.host}:{e.port}" for e in p.endpoints]
            for e in p.endpoints:
                for cidr in self.addresses.get((p.namespace, e.host), ()):
                    self._egress_targets.setdefault(p.namespace, []).append(
                        (p.name, e.host, e.port, _cidr(cidr))
                    )
        guarded = {ns for ns, names in self.guardrails_of.items() if names}
        self._governed = (
            set(self.governed)
            if self.governed is not None
            else governed_namespaces(self.policies, []) | guarded
        )
        # observed (CONTRACT 4): valid policies, all dryrun, and nothing else governs the namespace
        self._observed = {
            ns
            for ns, pols in self._by_ns.items()
            if ns not in self._governed and all(p.spec.enforcement == ENFORCEMENT_DRYRUN for p in pols)
        }
        self._netpols_by_ns: dict[str, list[Mapping[str, Any]]] = {}
        for np in self.network_policies or ():
            self._netpols_by_ns.setdefault(str((np.get("metadata") or {}).get("namespace")), []).append(np)
        # the other hosts the baseline cuts (egress.model.cut_hosts), by the addresses some policy's
        # status gives for them; then whatever else the baseline's `except` lists hold
        by_host: dict[str, set[str]] = {}
        for (_, host), cidrs in self.addresses.items():
            by_host.setdefault(host, set()).update(_cidr(c) for c in cidrs)
        host_of = {cidr: host for host, cidrs in sorted(by_host.items()) for cidr in cidrs}
        for ns in sorted(set(self._by_ns) | set(self._netpols_by_ns) | guarded):
            targets = self._egress_targets.setdefault(ns, [])
            known = {t[3] for t in targets}
            ports = sorted({443} | {e.port for p in self._by_ns.get(ns, ()) for e in p.endpoints})
            hosts = dict.fromkeys(cut_hosts(self._by_ns.get(ns, [])))
            hosts.update(dict.fromkeys(guardrail_hosts(self.guardrails, self.guardrails_of.get(ns, ()))))
            cut: list[tuple[str | None, str]] = [(h, c) for h in hosts for c in sorted(by_host.get(h, ()))]
            cut += [(host_of.get(c), c) for c in _baseline_cuts(self._netpols_by_ns.get(ns, ()))]
            for cut_host, cidr in cut:
                if cidr not in known:
                    known.add(cidr)
                    targets.extend((None, cut_host, port, cidr) for port in ports)

    # ---- workloads ----------------------------------------------------------------------------
    def add(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Audit one page of workloads of any checked kinds (see `prepare`)."""
        batch = self.prepare(objects)
        if batch:
            self.apply(batch, self.evaluate([g.review for g in batch]))

    def prepare(self, objects: Iterable[Mapping[str, Any]]) -> list[_Group]:
        """The AdmissionReviews OPA must judge for this page; other workloads are handled at once.

        - Every workload is judged: the decision carries the detector's `aiReferences`.
        - The violations depend only on the kind, the namespace, the pod template's labels and
          annotations, its service account and hostNetwork, the references only on what the
          detector reads (`_detector_key`), so workloads that agree on those are judged once
          (memoised for the whole audit, bounded by MEMO_SIZE).
        - Workloads that neither a policy nor a guardrail of their namespace judges are "allowed,
          no violation" by construction (no policy, no rule): only their references count, and
          they do not depend on the namespace either.
        - The AdmissionReview carries the object without `status` and `managedFields`.
        """
        groups: dict[tuple[Any, ...], _Group] = {}
        kinds = self._kinds
        for obj in objects:
            api_kind = (obj.get("apiVersion"), obj.get("kind"))
            try:
                kind = kinds[api_kind]
            except KeyError:
                kind = kinds[api_kind] = checked_kind(*api_kind)
            except TypeError:  # not strings: no checked kind
                kind = None
            if kind is None:
                continue
            meta = obj.get("metadata")
            owned = bool(meta.get("ownerReferences")) if isinstance(meta, dict) else True
            if owned and audited_through_owner(obj):
                continue
            seen = self._seen(obj, owned=owned)
            if seen is None:
                continue
            refs_key = _detector_key(seen.tpl.spec if seen.tpl else {})
            if seen.selecting or self.guardrails_of.get(seen.ns):
                key: tuple[Any, ...] = (
                    *_verdict_key(obj, seen.tpl, seen.annotations, seen.labels_key, seen.annotations_key),
                    refs_key,
                )
            else:
                key = ("unjudged", obj.get("apiVersion"), obj.get("kind"), refs_key)
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

    def _decision(self, seen: _Seen, decision: Mapping[str, Any]) -> Mapping[str, Any]:
        """The decision for this workload: as OPA gave it, or, when neither a policy nor a guardrail
        judges it, "allowed" with the detector's references."""
        if seen.selecting or self.guardrails_of.get(seen.ns):
            return decision
        hit = self._unjudged.get(id(decision))
        if hit is None or hit[0] is not decision:
            unjudged = {**ALLOWED, "aiReferences": list(decision.get("aiReferences") or [])}
            if len(self._unjudged) >= MEMO_SIZE:
                self._unjudged.clear()
            hit = self._unjudged[id(decision)] = (decision, unjudged)
        return hit[1]

    def _template(
        self, obj: Mapping[str, Any]
    ) -> tuple[
        PodTemplate | None, Mapping[str, Any], tuple[tuple[str, str], ...], tuple[tuple[str, Any], ...]
    ]:
        """`pod_template(obj)`, the template's annotations as listed (`_template_annotations`), its
        sorted labels and `_frozen` annotations. Workloads of one template list the same labels and
        annotations: what follows from them alone is made once (`_TemplateMeta`)."""
        checked = _CHECKED_BY_KIND.get(obj.get("kind"))  # type: ignore[arg-type]
        if checked is None:
            return None, _template_annotations(obj), (), _frozen(_template_annotations(obj))
        node: Any = obj
        for step in checked.template_path:
            node = node.get(step) if isinstance(node, Mapping) else None
        meta = node.get("metadata") if isinstance(node, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        spec = node.get("spec") if isinstance(node, Mapping) else None
        spec = spec if isinstance(spec, Mapping) else {}
        key = _meta_key(meta.get("labels"), meta.get("annotations"))
        facts = self._templates.get(key) if key is not None else None
        if facts is None:
            facts = _template_meta(meta)
            if key is not None and len(self._templates) < MEMO_SIZE:
                self._templates[key] = facts
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        tpl = PodTemplate(facts.labels, facts.annotations, str(sa), spec)
        return tpl, facts.listed_annotations, facts.labels_key, facts.annotations_key

    def _seen(self, obj: Mapping[str, Any], *, owned: bool = True) -> _Seen | None:
        """What the audit needs of one workload, computed once; None for another object of an
        unknown controller's workload already audited (the same labels, annotations and service
        account as one seen before). `owned`: False when the object has no ownerReferences."""
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        ns = self._strings.setdefault(ns, ns)  # one string per namespace, however many workloads
        tpl, annotations, labels_key, annotations_key = self._template(obj)
        labels = tpl.labels if tpl else {}
        kind, name = str(obj["kind"]), str(meta.get("name") or "")
        ref = controller_ref(obj) if owned else None
        if ref is not None:  # a controller aidp does not list: report the highest owner it can read
            top = self.owners(ns, ref) if self.owners is not None else None
            if top is not None:
                kind, name = top
            same = (
                ns,
                kind,
                name,
                dedupe_labels(labels),
                annotations_key,
                tpl.service_account if tpl else "",
            )
            if same in self._owned_seen:
                return None
            if len(self._owned_seen) < MEMO_SIZE * 10:
                self._owned_seen.add(same)
        chosen = self._selecting.get((ns, labels_key))
        if chosen is None:
            selecting = [p for p in self._by_ns.get(ns, ()) if p.spec.workload_selector.matches(labels)]
            chosen = (selecting, [p for p in selecting if not p.expired(self.today)])
            if len(self._selecting) < MEMO_SIZE:
                self._selecting[(ns, labels_key)] = chosen
        return _Seen(ns, name, kind, tpl, chosen[0], annotations, labels_key, annotations_key, chosen[1])

    def _workload(self, seen: _Seen, decision: Mapping[str, Any]) -> None:
        decision = self._decision(seen, decision)
        ns, name, kind, tpl, selecting = seen.ns, seen.name, seen.kind, seen.tpl, seen.selecting
        labels = tpl.labels if tpl else {}
        spec = tpl.spec if tpl else {}
        tally = self.report.namespaces.get(ns)
        if tally is None:
            tally = self.report.namespaces[ns] = NamespaceTally()
        tally.workloads += 1
        self.report.workloads += 1
        self.report.workload_keys.add((ns, kind, name))
        active = seen.active
        violations = decision.get("violations") or ()
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
        if violations:
            for pol in {str(v.get("policy")) for v in violations}:
                if (ns, pol) in self.per_policy:
                    self.per_policy[(ns, pol)]["violating"] += 1
            tally.violating += 1
            self.report.violating += 1
        refs = [str(r) for r in decision.get("aiReferences") or []]
        if refs and not active:
            self.report.findings.append(
                Finding(
                    "shadow-ai",
                    "high",
                    ns,
                    kind,
                    name,
                    f"pod spec references an AI provider ({', '.join(refs)}) "
                    f"but no active AIDataPolicy selects it{self._governed_by(ns)}",
                )
            )
        approved = bool(active) and not violations
        if approved:
            tally.approved += 1
            self.report.approved += 1
            for p in active:
                self.report.records.append(self._record(ns, kind, name, p, seen, labels))
        if active:
            # every workload an active policy selects holds the provider key: compliant ones, those
            # admitted with violations under warn or dryrun, and those created before the policy
            self._credentials(ns, kind, name, tpl, active, talks_ai=bool(refs))
        if ns in self._observed and (refs or active):
            self._would_block(ns, kind, name, active, violations)
        if ns in self._governed:
            # CONTRACT 4: a workload is approved for a policy's endpoints when the policy selects it,
            # is not Expired, and (under deny) the verdict admits it; warn and dryrun: selection
            egress_ok = [
                p for p in active if p.spec.enforcement != ENFORCEMENT_DENY or decision.get("allowed") is True
            ]
            self._egress_bypass(
                ns, kind, name, labels, spec, egress_ok, selected=bool(active), key=seen.labels_key
            )

    def _record(
        self, ns: str, kind: str, name: str, p: Policy, seen: _Seen, labels: Mapping[str, str]
    ) -> ProcessingRecord:
        """The record of processing, with the declarations read as admission reads them (the
        contract section 9 fields from aidp.audit.records). Everything but the workload's kind and
        name follows from the policy, the annotations and the labels: the workloads that agree on
        those share one set of values (lists included: records are never changed in place)."""
        key = (p.namespace, p.name, seen.annotations_key, seen.labels_key)
        parts = self._record_parts.get(key)
        if parts is None:
            parts = self._record_values(ns, p, seen.annotations, labels)
            if len(self._record_parts) < MEMO_SIZE:
                self._record_parts[key] = parts
        return ProcessingRecord(namespace=ns, kind=kind, name=name, **parts)

    def _record_values(
        self, ns: str, p: Policy, ann: Mapping[str, Any], labels: Mapping[str, str]
    ) -> dict[str, Any]:
        netpols = self._netpols_by_ns.get(ns, []) if self.network_policies is not None else None
        return {
            "policy": p.name,
            "purpose": declared.purpose(ann) or p.spec.purpose,
            "endpoints": list(self._endpoints[(p.namespace, p.name)]),
            "consentBasis": declared.consent_basis(ann),
            "retentionDays": declared.retention_days(ann),
            "dataCategories": declared.data_categories(ann),
            "dataResidency": p.spec.data_residency,
            "approvedBy": p.spec.review.approved_by,
            "expires": p.spec.review.expires.isoformat() if p.spec.review.expires else None,
            **records.details(p, ann, labels, netpols),
        }

    def _governed_by(self, ns: str) -> str:
        """For a shadow-ai message: the guardrails selecting the namespace and what they do."""
        names = self.guardrails_of.get(ns) or ()
        if not names:
            return ""
        mode = {g.name: g.unapproved_ai for g in self.guardrails}
        said = ", ".join(f"ClusterAIDataPolicy/{n} (unapprovedAI: {mode.get(n, 'audit')})" for n in names)
        return f"; the namespace is governed by {said}, so aidp's egress rules cut it from the provider"

    def _credentials(
        self, ns: str, kind: str, name: str, tpl: PodTemplate | None, active: list[Policy], *, talks_ai: bool
    ) -> None:
        if self.rbac is None or tpl is None:
            return
        secrets = credential_secrets(tpl.spec, talks_ai=talks_ai)
        if not secrets:
            return
        allowed_sas = {sa for p in active for sa in p.spec.service_account_names} | {tpl.service_account}
        exposures, left_out = self.rbac.exposures(ns, secrets, name, kind)
        self.report.left_out.update(left_out)
        for exp in exposures:
            subject = exp.subject
            if subject.kind == "ServiceAccount" and subject.namespace == ns and subject.name in allowed_sas:
                continue
            self.report.findings.append(
                Finding(
                    "credential-exposure",
                    exp.severity,
                    ns,
                    kind,
                    name,
                    f"{exp.describe(ns)}; this workload takes its AI credentials from "
                    f"{', '.join(f'Secret {ns}/{s}' for s in sorted(secrets))}",
                )
            )

    def _would_block(
        self, ns: str, kind: str, name: str, active: Sequence[Policy], violations: Sequence[Any]
    ) -> None:
        """In an observed namespace (its policies are all dryrun: no egress rules yet), an AI-using
        workload that the rules would cut from the provider once a policy enforces."""
        if active and not violations:
            return  # approved under any enforcement
        if active:
            why = (
                "under deny it fails the verdict (see its policy violations); under warn it keeps its egress"
            )
        else:
            why = "no active policy selects it"
        self.report.findings.append(
            Finding(
                "egress-would-block",
                "info",
                ns,
                kind,
                name,
                "observed namespace (its policies are all dryrun, no egress rules yet): once a policy "
                f"here enforces, aidp's egress rules would cut this workload from the provider: {why}",
            )
        )

    def _egress_bypass(
        self,
        ns: str,
        kind: str,
        name: str,
        labels: Mapping[str, str],
        spec: Mapping[str, Any],
        approved: Sequence[Policy],
        *,
        selected: bool,
        key: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        """A provider address the workload can reach but is not approved for: any, when no policy
        approves it (a deny policy's workload that fails the verdict included), else the addresses
        of other hosts (other regions, other providers' hosts the baseline cuts)."""
        if spec.get("hostNetwork") is True:
            if not selected:  # a selected one is a policy violation (rule host-network)
                self.report.findings.append(
                    Finding(
                        "egress-bypass",
                        "high",
                        ns,
                        kind,
                        name,
                        "not approved, yet it runs in the node's network namespace (hostNetwork): no "
                        "NetworkPolicy applies to it, so it can reach every provider address",
                    )
                )
            return
        if self.network_policies is None:
            return
        names = tuple(sorted(p.name for p in approved))
        memo_key = (ns, tuple(sorted(labels.items())) if key is None else key, names)
        if memo_key in self._reach_memo:
            hit = self._reach_memo[memo_key]
        else:
            own = {t[3] for t in self._egress_targets.get(ns, ()) if t[0] in names}
            hit = self._reachable(ns, labels, own)
            if len(self._reach_memo) < MEMO_SIZE:
                self._reach_memo[memo_key] = hit
        if hit is None:
            return
        policy, host, port, cidr = hit
        address = f"{cidr.split('/')[0]}:{port}"
        if policy:
            where = f"{host} ({address})"
        elif host:
            where = f"{host} ({address}), a provider host the egress baseline cuts"
        else:
            where = f"{address}, a provider address the egress baseline cuts"
        if approved:
            endpoints = sorted({e for p in approved for e in self._endpoints[(p.namespace, p.name)]})
            why = f"approved only for {', '.join(endpoints)}, yet the NetworkPolicies in force let it reach"
        elif selected:
            why = (
                "not approved (a deny policy selects it and the verdict refuses it), yet the "
                "NetworkPolicies in force let it reach"
            )
        else:
            why = "not approved, yet the NetworkPolicies in force let it reach"
        self.report.findings.append(
            Finding("egress-bypass", "high", ns, kind, name, f"{why} {where}", policy)
        )

    def _reachable(
        self, ns: str, labels: Mapping[str, str], own: Collection[str]
    ) -> tuple[str | None, str | None, int, str] | None:
        """The first provider address (a policy endpoint's, else one the baseline cuts), other than
        the workload's own approved ones (`own`), that the NetworkPolicies of `ns` let a pod with
        `labels` reach, or None."""
        nps = self._netpols_by_ns.get(ns, ())
        for target in self._egress_targets.get(ns, ()):
            if target[3] not in own and netpol.egress_allowed(nps, ns, labels, target[3], target[2]):
                return target
        return None

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
