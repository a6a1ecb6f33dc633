"""What one sync did about egress, as each AIDataPolicy's status shows it (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aidp.controller.egress import EgressResult
from aidp.egress import clusternetworkpolicy as cnp
from aidp.egress.model import BASELINE_NAME, Backend, policy_label_value, policy_object_name
from aidp.egress.resolver import Snapshot
from aidp.model import Policy, PolicyError

NO_EGRESS = ("Unknown", "NoEgressBackend", "egress rules are disabled (--egress-backend none)")
INVALID_EGRESS = (
    "False",
    "InvalidSpec",
    "the spec cannot be used: it approves no workload, and its namespace stays governed "
    "(the baseline cuts every catalog provider while no valid policy says otherwise)",
)


def egress_condition(p: Policy | PolicyError, egress: EgressView | None) -> tuple[str, str, str]:
    if isinstance(p, PolicyError):
        return INVALID_EGRESS if egress else NO_EGRESS
    return egress.condition(p) if egress else NO_EGRESS


def plain_endpoints(p: Policy | PolicyError) -> tuple[dict[str, Any], ...]:
    return tuple(e.to_dict() for e in p.endpoints) if isinstance(p, Policy) else ()


@dataclass(frozen=True)
class EgressView:
    """What one sync did about egress, as each policy's status shows it."""

    backend: Backend
    snapshot: Snapshot
    applied: EgressResult
    today: dt.date
    observed: frozenset[str] = frozenset()  # namespaces with dryrun policies only: no egress objects

    def endpoints(self, p: Policy) -> tuple[dict[str, Any], ...]:
        out = []
        for e in p.endpoints:
            entry = e.to_dict()
            if self.backend.ip_based:
                entry["addresses"] = list(self.snapshot.book.cidrs(e.host))
            out.append(entry)
        return tuple(out)

    def condition(self, p: Policy) -> tuple[str, str, str]:
        if p.namespace in self.observed:
            return (
                "Unknown",
                "Observed",
                "every policy of the namespace is dryrun: no egress rules yet; the audit reports what "
                "they would cut (egress-would-block)",
            )
        if p.expired(self.today):
            return ("False", "Expired", "the review expired: its workloads get no egress to the AI endpoints")
        names = self.applied.by_policy.get((p.namespace, policy_label_value(p.name)), [])
        # the policy's own objects and its namespace's baseline (not another policy's objects)
        if self.backend.cluster_scoped:
            own = {f"/{cnp.deny_name(p.namespace)}", f"/{cnp.policy_name(p.namespace, p)}"}
        else:
            own = {f"{p.namespace}/{name}" for name in (BASELINE_NAME, policy_object_name(p))}
        failed = [f"{k}: {v}" for k, v in self.applied.errors.items() if k in own or k in self._kinds]
        if failed:
            return ("False", "ApplyFailed", "; ".join(failed)[:1000])
        where = f"{self.backend.name} {', '.join(names)}"
        if self.backend.ip_based:
            problems = self.snapshot.problems([e.host for e in p.endpoints])
            if any(m.startswith("no addresses") for m in problems):
                return ("False", "AddressesUnknown", "; ".join(problems))
            if problems:
                return ("True", "LastKnownAddresses", f"{where}; " + "; ".join(problems))
        targets = ", ".join(f"{e.host}:{e.port}" for e in p.endpoints)
        return ("True", "Applied", f"{where} allows egress to {targets}")

    def fingerprint(self) -> tuple[Any, ...]:
        """What the conditions and endpoints of every policy depend on beside the policy itself
        (equal fingerprints: a policy that did not change keeps its egress condition)."""
        hosts = tuple(
            sorted(
                (h, tuple(st.cidrs), st.error, str(st.resolved_at) if st.error else None)
                for h, st in self.snapshot.hosts.items()
            )
        )
        return (
            self.backend.name,
            hosts,
            tuple(sorted(self.applied.errors.items())),
            self.today,
            self.observed,
        )

    @property
    def _kinds(self) -> tuple[str, ...]:
        return ("NetworkPolicy", "CiliumNetworkPolicy", "ClusterNetworkPolicy", "AdminNetworkPolicy")
