"""The `cilium` backend: CiliumNetworkPolicy with toFQDNs (DNS names, TLS SNI where supported).

Every FQDN mechanism is allow-only (Cilium's egressDeny takes no toFQDNs), so this backend makes
egress of the governed namespace's pods an allow-list:

- `aidp-egress-baseline` selects every pod: DNS to kube-dns through Cilium's DNS proxy (needed for
  toFQDNs), the cluster (`toEntities: [cluster]`), and then by mode:
  - `strict` (default): nothing else but the configured extra CIDRs. Pods of governed namespaces
    lose other external egress; the safe choice when provider addresses are shared or unknown.
  - `preserve`: the world minus the provider addresses (`toCIDRSet` with `except`), like the
    networkpolicy backend, with the same shared-address caveat.
- `aidp-egress-<policy>` selects the policy's workloads: its endpoints by name (`toFQDNs`
  matchName) on their ports, with `serverNames` (SNI) when enabled. Expired policies get none.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from aidp.egress.model import (
    BASELINE_NAME,
    BASELINE_SELECTOR,
    EgressContext,
    active,
    metadata,
    namespace_cut_hosts,
    policy_object_name,
    selector,
)
from aidp.model import Policy

API_VERSION = "cilium.io/v2"


def _dns_rule(ctx: EgressContext) -> dict[str, Any]:
    s = ctx.settings
    selector = {
        "k8s:io.kubernetes.pod.namespace": s.dns_namespace,
        **{f"k8s:{k}": v for k, v in s.dns_labels.items()},
    }
    return {
        "toEndpoints": [{"matchLabels": selector}],
        "toPorts": [
            {"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}
        ],
    }


def _cidr_set(cidr: str, cut: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"cidr": cidr}
    if cut:
        entry["except"] = cut
    return entry


class CiliumBackend:
    name: str = "cilium"
    ip_based: bool = False
    kinds: tuple[tuple[str, str, str], ...] = (("cilium.io", "v2", "ciliumnetworkpolicies"),)
    cluster_scoped: bool = False

    def render(self, namespace: str, policies: Sequence[Policy], ctx: EgressContext) -> list[dict[str, Any]]:
        s = ctx.settings
        rules: list[dict[str, Any]] = [_dns_rule(ctx), {"toEntities": ["cluster"]}]
        if s.cilium_mode == "preserve":
            v4, v6 = ctx.addresses.split(namespace_cut_hosts(namespace, policies, ctx))
            rules.append({"toCIDRSet": [_cidr_set("0.0.0.0/0", v4), _cidr_set("::/0", v6)]})
        elif s.extra_cidrs:
            rules.append({"toCIDRSet": [{"cidr": c} for c in s.extra_cidrs]})
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": API_VERSION,
                "kind": "CiliumNetworkPolicy",
                "metadata": metadata(BASELINE_NAME, namespace, policies, "baseline"),
                "spec": {"endpointSelector": copy.deepcopy(BASELINE_SELECTOR), "egress": rules},
            }
        ]
        for policy in sorted(active(policies, ctx.today), key=lambda p: p.name):
            egress = []
            for endpoint in policy.endpoints:
                port_rule: dict[str, Any] = {"ports": [{"port": str(endpoint.port), "protocol": "TCP"}]}
                if s.cilium_sni:
                    port_rule["serverNames"] = [endpoint.host]
                egress.append({"toFQDNs": [{"matchName": endpoint.host}], "toPorts": [port_rule]})
            objects.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": "CiliumNetworkPolicy",
                    "metadata": metadata(
                        policy_object_name(policy), namespace, [policy], "approved", policy.name
                    ),
                    "spec": {
                        "endpointSelector": selector(policy),
                        "egress": [_dns_rule(ctx), *egress],
                    },
                }
            )
        return objects
