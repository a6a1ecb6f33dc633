"""Would the NetworkPolicies in force let a pod open TCP to ip:port? (pure, Kubernetes semantics)

Egress from a pod is allowed when no NetworkPolicy with policyType Egress selects the pod, or when
at least one that does has a rule whose peers and ports both match. Only ipBlock peers can match an
address outside the cluster; pod/namespace selectors match pods only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from aidp.selector import selects as _selects  # Kubernetes semantics: {} selects every pod


def _egress_types(np: Mapping[str, Any]) -> list[str]:
    spec = np.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return list(types)
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _ip_matches(peer: Mapping[str, Any], ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    block = peer.get("ipBlock")
    if not block:
        return False
    try:
        if ip not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(ip in ipaddress.ip_network(c, strict=False) for c in block.get("except") or [])
    except (ValueError, KeyError, TypeError):
        return False


def _port_matches(ports: list[Mapping[str, Any]] | None, port: int) -> bool:
    if not ports:
        return True
    for p in ports:
        if (p.get("protocol") or "TCP") != "TCP":
            continue
        want = p.get("port")
        end = p.get("endPort")
        if want is None:
            return True
        if isinstance(want, int) and (want == port or (end is not None and want <= port <= int(end))):
            return True
        # named ports refer to container ports of the destination pod: never an external address
    return False


def egress_allowed(
    policies: Iterable[Mapping[str, Any]], namespace: str, labels: Mapping[str, str], address: str, port: int
) -> bool:
    ip = ipaddress.ip_address(address.split("/")[0])
    selecting = [
        np
        for np in policies
        if (np.get("metadata") or {}).get("namespace") == namespace
        and "Egress" in _egress_types(np)
        and _selects((np.get("spec") or {}).get("podSelector"), labels)
    ]
    if not selecting:
        return True
    for np in selecting:
        for rule in (np.get("spec") or {}).get("egress") or []:
            peers = rule.get("to")
            if (not peers or any(_ip_matches(p, ip) for p in peers)) and _port_matches(
                rule.get("ports"), port
            ):
                return True
    return False
