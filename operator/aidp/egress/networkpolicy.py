"""The `networkpolicy` backend: plain Kubernetes NetworkPolicy, enforced by any conforming CNI.

NetworkPolicy has no DNS names and no deny rules; allow rules add up. So, per governed namespace:

- `aidp-egress-baseline` selects every pod (but those the user's own NetworkPolicies isolate for
  egress, which the operator labels `aidp.io/egress-isolated`: aidp never loosens them) and allows
  all egress except the provider addresses:
  every pod in the cluster (`namespaceSelector: {}`, so cluster DNS keeps working), and
  `0.0.0.0/0` / `::/0` with the provider addresses cut out (`except`): those of every endpoint and
  of every host of the providers (global and regional), so residency holds (`cut_hosts`).
  With `egress_mode: strict` the baseline allows the cluster (`namespaceSelector: {}`: pods, cluster
  DNS) and the extra CIDRs only: no other address outside the cluster, which also closes another
  edge address of the provider's CDN and outside proxies (preserve mode cannot).
- `aidp-egress-<policy>` selects the policy's workloads (under `enforcement: deny` only those with
  the operator's approval label) and allows TCP to each of its endpoints' addresses on the
  endpoint's port. Expired policies get none.

Limits (docs/egress.md): the addresses are resolved by the operator and can be shared with other
sites (a CDN): cutting them out of the baseline also blocks those sites for unapproved pods, and
allowing them lets approved pods reach those sites on the endpoint's port.
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


def _ip_block(cidr: str, cut: list[str]) -> dict[str, Any]:
    block: dict[str, Any] = {"cidr": cidr}
    if cut:
        block["except"] = cut
    return {"ipBlock": block}


class NetworkPolicyBackend:
    name: str = "networkpolicy"
    ip_based: bool = True
    kinds: tuple[tuple[str, str, str], ...] = (("networking.k8s.io", "v1", "networkpolicies"),)
    cluster_scoped: bool = False

    def render(self, namespace: str, policies: Sequence[Policy], ctx: EgressContext) -> list[dict[str, Any]]:
        if ctx.settings.egress_mode == "strict":
            # outside the cluster nothing but the extra CIDRs (and each policy's endpoints, below)
            peers = [{"namespaceSelector": {}}, *({"ipBlock": {"cidr": c}} for c in ctx.settings.extra_cidrs)]
        else:
            v4, v6 = ctx.addresses.split(namespace_cut_hosts(namespace, policies, ctx))
            peers = [{"namespaceSelector": {}}, _ip_block("0.0.0.0/0", v4), _ip_block("::/0", v6)]
        baseline = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(BASELINE_NAME, namespace, policies, "baseline"),
            "spec": {
                "podSelector": copy.deepcopy(BASELINE_SELECTOR),
                "policyTypes": ["Egress"],
                "egress": [{"to": peers}],
            },
        }
        objects = [baseline]
        for policy in sorted(active(policies, ctx.today), key=lambda p: p.name):
            rules = []
            for endpoint in policy.endpoints:
                v4, v6 = ctx.addresses.split([endpoint.host])
                if v4 or v6:
                    rules.append(
                        {
                            "to": [{"ipBlock": {"cidr": c}} for c in (*v4, *v6)],
                            "ports": [{"protocol": "TCP", "port": endpoint.port}],
                        }
                    )
            objects.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": metadata(
                        policy_object_name(policy), namespace, [policy], "approved", policy.name
                    ),
                    "spec": {
                        "podSelector": selector(policy),
                        "policyTypes": ["Egress"],
                        "egress": rules,
                    },
                }
            )
        return objects
