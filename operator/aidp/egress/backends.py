"""The egress backends by name, and rendering every governed namespace with one of them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aidp.egress.cilium import CiliumBackend
from aidp.egress.clusternetworkpolicy import AdminNetworkPolicyBackend, ClusterNetworkPolicyBackend
from aidp.egress.model import Backend, EgressContext
from aidp.egress.networkpolicy import NetworkPolicyBackend
from aidp.model import ENFORCEMENT_DRYRUN, Policy

BACKENDS: dict[str, Backend] = {
    "networkpolicy": NetworkPolicyBackend(),
    "cilium": CiliumBackend(),
    "clusternetworkpolicy": ClusterNetworkPolicyBackend(),
    "adminnetworkpolicy": AdminNetworkPolicyBackend(),
}
DEFAULT = "networkpolicy"


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown egress backend {name!r}; one of: {', '.join(sorted(BACKENDS))}") from None


def observed(by_ns: Mapping[str, Sequence[Policy]], ctx: EgressContext) -> list[str]:
    """Namespaces whose policies are all `dryrun` (and that nothing else governs): observed, not cut.
    They get no egress objects; the audit reports what the rules would cut (`egress-would-block`)."""
    return [
        ns
        for ns, policies in by_ns.items()
        if policies
        and ns not in ctx.extra_cut
        and all(p.spec.enforcement == ENFORCEMENT_DRYRUN for p in policies)
    ]


def render_all(backend: Backend, policies: Iterable[Policy], ctx: EgressContext) -> list[dict[str, Any]]:
    """Objects for every namespace with at least one valid `deny` or `warn` policy, and for those
    `ctx.extra_cut` names (governed by a ClusterAIDataPolicy, or with only invalid policies).
    Namespaces whose policies are all `dryrun` are observed: nothing (see `observed`).

    Namespaces excluded from admission (the system namespaces, the operator's own, the configured
    ones) get egress rules too: excluding a namespace from the webhook must not open the network,
    so the baseline there still cuts the provider addresses out for every unapproved pod.
    """
    by_ns: dict[str, list[Policy]] = defaultdict(list)
    for p in policies:
        by_ns[p.namespace].append(p)
    for ns in ctx.extra_cut:
        by_ns.setdefault(ns, [])  # governed without a valid policy: a baseline all the same
    out: list[dict[str, Any]] = []
    for ns in observed(by_ns, ctx):
        del by_ns[ns]
    for ns in sorted(by_ns):
        out.extend(backend.render(ns, sorted(by_ns[ns], key=lambda p: p.name), ctx))
    return out
