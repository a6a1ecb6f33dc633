"""Which pods a user's own policies isolate for egress (aidp never loosens a namespace).

The one place for these semantics; the operator's approver keeps the `aidp.io/egress-isolated`
label from them, and every backend's baseline leaves labelled pods out.

- A Kubernetes NetworkPolicy isolates the pods its `podSelector` selects for egress when its
  `policyTypes` names `Egress`, or (no `policyTypes`) it has egress rules — as the API server
  defaults it.
- A CiliumNetworkPolicy (`spec` and/or `specs`, each a rule) puts the endpoints a rule's
  `endpointSelector` selects into egress default-deny when the rule has an `egress` or `egressDeny`
  section, unless the rule sets `enableDefaultDeny.egress: false` (Cilium 1.15 and later). Its
  selector keys carry a source prefix (`k8s:`, `any:`); Cilium also gives each pod the labels
  `io.kubernetes.pod.namespace` and `io.cilium.k8s.policy.serviceaccount`, which selectors may use.
  Host policies (`nodeSelector`) select no pod. CiliumClusterwideNetworkPolicies are not read
  (docs/egress.md says so).

Objects aidp wrote (labelled managed-by aidp) never count. Everything is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aidp.config import APPROVAL_LABEL, ISOLATED_LABEL, MANAGED_BY
from aidp.selector import selects

CILIUM_PREFIXES = ("k8s:", "any:")
CILIUM_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
CILIUM_SA_LABEL = "io.cilium.k8s.policy.serviceaccount"


@dataclass(frozen=True)
class Isolator:
    """One user object's egress isolation: the selector of the pods it isolates (Kubernetes
    reading: empty selects all) and whether Cilium's pod identity labels apply to it."""

    source: str  # "NetworkPolicy/<name>" or "CiliumNetworkPolicy/<name>"
    selector: Mapping[str, Any]
    cilium: bool = False


def _managed_by_aidp(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and all(labels.get(k) == v for k, v in MANAGED_BY.items())


def isolates_egress(netpol: Mapping[str, Any]) -> bool:
    """A user's NetworkPolicy (not aidp's) that isolates its pods for egress."""
    if _managed_by_aidp(netpol):
        return False
    spec = netpol.get("spec") or {}
    types = spec.get("policyTypes")
    if isinstance(types, list):
        return "Egress" in types
    return bool(spec.get("egress"))


def _strip(key: Any) -> str:
    text = str(key)
    for prefix in CILIUM_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _cilium_selector(selector: Mapping[str, Any]) -> dict[str, Any]:
    labels = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    return {
        "matchLabels": {_strip(k): v for k, v in labels.items()} if isinstance(labels, Mapping) else {},
        "matchExpressions": [{**e, "key": _strip(e.get("key"))} for e in exprs if isinstance(e, Mapping)]
        if isinstance(exprs, list)
        else [],
    }


def _rule_isolates(rule: Mapping[str, Any]) -> bool:
    default_deny = rule.get("enableDefaultDeny")
    if isinstance(default_deny, Mapping) and default_deny.get("egress") is False:
        return False
    return rule.get("egress") is not None or rule.get("egressDeny") is not None


def isolators(objects: Sequence[Mapping[str, Any]]) -> list[Isolator]:
    """The isolating parts of a namespace's user NetworkPolicies and CiliumNetworkPolicies."""
    out: list[Isolator] = []
    for obj in objects:
        if _managed_by_aidp(obj):
            continue
        name = str((obj.get("metadata") or {}).get("name", ""))
        if obj.get("kind") == "CiliumNetworkPolicy":
            rules = [obj.get("spec"), *(obj.get("specs") or [])]
            for rule in rules:
                if not isinstance(rule, Mapping) or "endpointSelector" not in rule:
                    continue  # absent, or a host policy (nodeSelector): selects no pod
                if _rule_isolates(rule):
                    selector = rule.get("endpointSelector")
                    out.append(
                        Isolator(
                            f"CiliumNetworkPolicy/{name}",
                            _cilium_selector(selector if isinstance(selector, Mapping) else {}),
                            cilium=True,
                        )
                    )
        elif isolates_egress(obj):
            out.append(Isolator(f"NetworkPolicy/{name}", (obj.get("spec") or {}).get("podSelector") or {}))
    return out


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    """The pod's own labels, without the operator's (they must not decide their own value)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items() if k not in (APPROVAL_LABEL, ISOLATED_LABEL)}


def isolated(pod: Mapping[str, Any], found: Sequence[Isolator]) -> bool:
    """True when a user policy of the pod's namespace isolates it for egress."""
    labels = pod_labels(pod)
    cilium_labels: dict[str, str] | None = None
    for iso in found:
        if iso.cilium:
            if cilium_labels is None:
                meta = pod.get("metadata") or {}
                spec = pod.get("spec") or {}
                cilium_labels = {
                    **labels,
                    CILIUM_NAMESPACE_LABEL: str(meta.get("namespace", "")),
                    CILIUM_SA_LABEL: str(spec.get("serviceAccountName") or "default"),
                }
            if selects(iso.selector, cilium_labels):
                return True
        elif selects(iso.selector, labels):
            return True
    return False
