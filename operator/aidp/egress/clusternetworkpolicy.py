"""The admin-tier backends of the network-policy-api: real Deny rules, evaluated before namespace
NetworkPolicies.

- `clusternetworkpolicy`: `ClusterNetworkPolicy` (policy.networking.k8s.io/v1alpha2, network-policy-api
  v0.2.0), tier `Admin`, actions `Accept`/`Deny`.
- `adminnetworkpolicy`: `AdminNetworkPolicy` (policy.networking.k8s.io/v1alpha1, v0.1.x), what
  CNIs ship today (OVN-Kubernetes, Kube-OVN, Antrea, Calico, kube-network-policies), actions
  `Allow`/`Deny`.

Per governed namespace (both are cluster-scoped, so names carry the namespace):

- `aidp-<ns>-deny` (priority P+1): every pod of the namespace; `Deny` to every provider address the
  namespace cuts (its policies' providers and endpoints, and a guardrail's providers). Nothing
  else: all other traffic passes on to the namespace's own NetworkPolicies, untouched.
- `aidp-<ns>-<policy>` (priority P, so before the Deny): the policy's approved pods (under `deny`
  those with the operator's approval label, as for the other backends); `Accept`/`Allow` TCP to its
  endpoints' addresses on their ports.

This expresses contract section 4 exactly: no other traffic is touched (no baseline of allows),
aidp never loosens a namespace, and a namespace admin's NetworkPolicy cannot re-open the provider
(the admin tier decides first), which closes the networkpolicy backend's `egress-bypass` hole.

Limits: ownerReferences from cluster-scoped objects to namespaced AIDataPolicies are not allowed,
so these objects carry none: the operator deletes them when no longer needed. Addresses are
resolved like the networkpolicy backend's (`networks`: CIDRs, at most 25 per peer and 25 rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from aidp.config import MANAGED_BY
from aidp.egress.model import (
    POLICY_LABEL,
    ROLE_LABEL,
    EgressContext,
    active,
    namespace_cut_hosts,
    policy_label_value,
    selector,
)
from aidp.model import Policy

GROUP = "policy.networking.k8s.io"
NAMESPACE_LABEL = "aidp.io/namespace"
PRIORITY = 20  # approved Accept rules; the namespace's Deny at PRIORITY + 1 (lower is first)
MAX_PEERS = 25  # the CRDs' maxItems for networks per peer and for rules


def _short(name: str) -> str:
    if len(name) <= 253:
        return name
    return f"{name[:230].rstrip('.-')}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def deny_name(namespace: str) -> str:
    return _short(f"aidp-{namespace}-deny")


def policy_name(namespace: str, policy: Policy) -> str:
    return _short(f"aidp-{namespace}-{policy.name}")


def _chunks(items: Sequence[str], size: int = MAX_PEERS) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class _AdminTier:
    """What the two API versions share; subclasses say how each spells the object."""

    name: str = ""
    version: str = ""
    kind: str = ""
    plural: str = ""
    accept: str = ""
    ip_based: bool = True
    cluster_scoped: bool = True

    @property
    def kinds(self) -> tuple[tuple[str, str, str], ...]:
        return ((GROUP, self.version, self.plural),)

    def render(self, namespace: str, policies: Sequence[Policy], ctx: EgressContext) -> list[dict[str, Any]]:
        v4, v6 = ctx.addresses.split(namespace_cut_hosts(namespace, policies, ctx))
        cut = [*v4, *v6]
        in_namespace = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        objects: list[dict[str, Any]] = []
        for policy in sorted(active(policies, ctx.today), key=lambda p: p.name):
            rules = []
            for endpoint in policy.endpoints:
                a4, a6 = ctx.addresses.split([endpoint.host])
                for chunk in _chunks([*a4, *a6]):
                    rules.append(
                        self._rule(f"{endpoint.host}:{endpoint.port}", self.accept, chunk, endpoint.port)
                    )
            if not rules:
                continue  # no address known: nothing to accept (the Deny still cuts what is known)
            objects.append(
                self._object(
                    policy_name(namespace, policy),
                    namespace,
                    "approved",
                    PRIORITY,
                    {"pods": {"namespaceSelector": in_namespace, "podSelector": selector(policy)}},
                    rules[:MAX_PEERS],
                    policy.name,
                )
            )
        deny = [self._rule(f"providers-{i}", "Deny", chunk, None) for i, chunk in enumerate(_chunks(cut))]
        objects.append(
            self._object(
                deny_name(namespace),
                namespace,
                "baseline",
                PRIORITY + 1,
                {"namespaces": in_namespace},
                deny[:MAX_PEERS],
            )
        )
        return [o for o in objects if o["spec"]["egress"]]

    def _object(
        self,
        name: str,
        namespace: str,
        role: str,
        priority: int,
        subject: dict[str, Any],
        rules: list[dict[str, Any]],
        policy: str | None = None,
    ) -> dict[str, Any]:
        labels = {**MANAGED_BY, ROLE_LABEL: role, NAMESPACE_LABEL: namespace}
        if policy:
            labels[POLICY_LABEL] = policy_label_value(policy)
        spec: dict[str, Any] = {"priority": priority, "subject": subject, "egress": rules}
        return {
            "apiVersion": f"{GROUP}/{self.version}",
            "kind": self.kind,
            "metadata": {"name": name, "labels": labels},
            "spec": self._spec(spec),
        }

    def _spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return spec

    def _rule(self, name: str, action: str, networks: list[str], port: int | None) -> dict[str, Any]:
        raise NotImplementedError


class ClusterNetworkPolicyBackend(_AdminTier):
    name = "clusternetworkpolicy"
    version = "v1alpha2"
    kind = "ClusterNetworkPolicy"
    plural = "clusternetworkpolicies"
    accept = "Accept"

    def _spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"tier": "Admin", **spec}

    def _rule(self, name: str, action: str, networks: list[str], port: int | None) -> dict[str, Any]:
        rule: dict[str, Any] = {"name": _rule_name(name), "action": action, "to": [{"networks": networks}]}
        if port is not None:
            rule["protocols"] = [{"tcp": {"destinationPort": {"number": port}}}]
        return rule


class AdminNetworkPolicyBackend(_AdminTier):
    name = "adminnetworkpolicy"
    version = "v1alpha1"
    kind = "AdminNetworkPolicy"
    plural = "adminnetworkpolicies"
    accept = "Allow"

    def _rule(self, name: str, action: str, networks: list[str], port: int | None) -> dict[str, Any]:
        rule: dict[str, Any] = {"name": _rule_name(name), "action": action, "to": [{"networks": networks}]}
        if port is not None:
            rule["ports"] = [{"portNumber": {"protocol": "TCP", "port": port}}]
        return rule


def _rule_name(name: str) -> str:
    return name if len(name) <= 100 else f"{name[:89]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
