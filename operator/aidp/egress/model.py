"""What every egress backend renders from: policies, addresses, the date, and backend settings."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aidp.config import APPROVAL_LABEL, ISOLATED_LABEL, MANAGED_BY
from aidp.model import ENFORCEMENT_DENY, PROVIDERS, Policy

BASELINE_NAME = "aidp-egress-baseline"
POLICY_LABEL = "aidp.io/policy"
ROLE_LABEL = "aidp.io/egress-role"


def _digest(name: str, length: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


def policy_object_name(policy: Policy) -> str:
    """`aidp-egress-<policy>`; a policy name too long for that (over 241 characters) is shortened
    and made unique with a hash of the full name (a plain cut could collide, or end in `-` or `.`)."""
    name = f"aidp-egress-{policy.name}"
    if len(name) <= 253:
        return name
    return f"aidp-egress-{policy.name[:230].rstrip('.-')}-{_digest(policy.name, 10)}"


def policy_label_value(name: str) -> str:
    """The `aidp.io/policy` label value for a policy name: the name itself when it fits a label
    value (63 characters), else its first 53 characters, `-` and a hash of the full name."""
    if len(name) <= 63:
        return name
    return f"{name[:53]}-{_digest(name, 9)}"


@dataclass(frozen=True)
class AddressBook:
    """Addresses (IPv4 and IPv6, as single-address CIDRs) per endpoint host."""

    by_host: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def cidrs(self, host: str) -> tuple[str, ...]:
        return self.by_host.get(host, ())

    def split(self, hosts: Sequence[str]) -> tuple[list[str], list[str]]:
        """All CIDRs of `hosts`, IPv4 and IPv6 apart, sorted and without duplicates."""
        v4: set[str] = set()
        v6: set[str] = set()
        for host in hosts:
            for cidr in self.cidrs(host):
                (v4 if _version(cidr) == 4 else v6).add(cidr)
        return sorted(v4, key=_net_key), sorted(v6, key=_net_key)


@functools.lru_cache(maxsize=4096)
def _version(cidr: str) -> int:
    return ipaddress.ip_network(cidr, strict=False).version


@functools.lru_cache(maxsize=4096)
def _net_key(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr, strict=False)
    return int(net.network_address), net.prefixlen


def as_cidr(address: str) -> str:
    """An address or CIDR as a CIDR string (`203.0.113.7` -> `203.0.113.7/32`)."""
    return str(ipaddress.ip_network(address, strict=False))


@dataclass(frozen=True)
class EgressSettings:
    """Backend options (operator flags; `aidp render` defaults)."""

    cilium_mode: str = (
        "strict"  # strict: governed pods get cluster + DNS + extras; preserve: world minus provider IPs
    )
    cilium_sni: bool = True  # add serverNames (TLS SNI) to the provider port rules
    extra_cidrs: tuple[str, ...] = ()  # strict modes: external CIDRs every governed pod may still reach
    # networkpolicy backend: preserve (every pod keeps the world minus the provider addresses) or
    # strict (outside the cluster, only approved endpoints and extra_cidrs: closes other CDN edges
    # and outside proxies)
    egress_mode: str = "preserve"
    dns_namespace: str = "kube-system"
    dns_labels: Mapping[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})


EGRESS_MODES = ("preserve", "strict")


@dataclass(frozen=True)
class EgressContext:
    addresses: AddressBook
    today: dt.date
    settings: EgressSettings = field(default_factory=EgressSettings)
    # hosts a namespace's baseline cuts on top of its valid policies' (the providers a
    # ClusterAIDataPolicy governs there; every catalog host where all policies are invalid, so the
    # namespace fails closed). A namespace listed here gets a baseline even without valid policies.
    extra_cut: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Backend(Protocol):
    name: str
    ip_based: bool  # True when the rules hold addresses (then status.endpoints lists them)
    cluster_scoped: bool  # True when its objects are cluster-scoped (named after the namespace)

    @property
    def kinds(self) -> tuple[tuple[str, str, str], ...]:
        """(group, version, plural) of the objects it manages."""
        ...

    def render(self, namespace: str, policies: Sequence[Policy], ctx: EgressContext) -> list[dict[str, Any]]:
        """Every object this backend wants in `namespace` for its (non-empty) list of policies."""
        ...


def active(policies: Sequence[Policy], today: dt.date) -> list[Policy]:
    """Policies that grant egress: all but the Expired ones (the enforcement mode does not matter)."""
    return [p for p in policies if not p.expired(today)]


def cut_hosts(policies: Sequence[Policy]) -> list[str]:
    """The hosts no pod of the namespace may reach unless a policy approves it: every endpoint of
    the policies and every host of their providers (the global and each regional endpoint), so
    that a residency policy's pods reach only their region, whatever the other policies are."""
    hosts: dict[str, None] = {}
    providers: dict[str, None] = {}  # each provider's hosts once, however many policies name it
    for p in policies:
        if p.spec.provider not in providers:
            providers[p.spec.provider] = None
            provider = PROVIDERS.get(p.spec.provider)
            if provider is not None:
                hosts.update(dict.fromkeys(provider.all_hosts()))
        for e in p.endpoints:
            hosts[e.host] = None
    return list(hosts)


def catalog_hosts() -> list[str]:
    """Every host of every catalog provider (what a namespace with only invalid policies cuts)."""
    return list(dict.fromkeys(h for provider in PROVIDERS.values() for h in provider.all_hosts()))


def namespace_cut_hosts(namespace: str, policies: Sequence[Policy], ctx: EgressContext) -> list[str]:
    """The hosts a namespace's baseline cuts: those of its valid policies and `ctx.extra_cut`'s."""
    return list(dict.fromkeys([*cut_hosts(policies), *ctx.extra_cut.get(namespace, ())]))


# the baseline's pods: all but those user NetworkPolicies isolate for egress (the operator labels
# them), so aidp never loosens a namespace's own egress isolation (contract section 4)
BASELINE_SELECTOR: dict[str, Any] = {
    "matchExpressions": [{"key": ISOLATED_LABEL, "operator": "DoesNotExist"}]
}


def selector(policy: Policy) -> dict[str, Any]:
    """The pods that get the policy's endpoints: its workload selector (empty parts left out, as the
    API server stores it) and, under `enforcement: deny`, the approval label, which the operator
    sets only on pods it judged compliant (egress follows the verdict, contract section 4).
    Under warn and dryrun selection suffices: those modes exist to roll a policy out."""
    out = {k: v for k, v in policy.spec.workload_selector.to_dict().items() if v}
    if policy.spec.enforcement == ENFORCEMENT_DENY:
        out["matchLabels"] = {**out.get("matchLabels", {}), APPROVAL_LABEL: "true"}
    return out


def metadata(
    name: str, namespace: str, owners: Sequence[Policy], role: str, policy: str | None = None
) -> dict[str, Any]:
    labels = {**MANAGED_BY, ROLE_LABEL: role}
    if policy:
        labels[POLICY_LABEL] = policy_label_value(policy)
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    refs = [
        {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy", "name": p.name, "uid": p.uid}
        for p in sorted(owners, key=lambda p: p.name)
        if p.uid
    ]
    if refs:
        meta["ownerReferences"] = refs
    return meta
