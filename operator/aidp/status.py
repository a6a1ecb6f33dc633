"""AIDataPolicy status: phase and conditions from what the operator observed (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def is_expired(expires: str | None, today: dt.date) -> bool:
    """A review date is valid through its own day (UTC); the policy is Expired the day after."""
    if not expires:
        return False
    try:
        return dt.date.fromisoformat(expires) < today
    except ValueError:
        return False


@dataclass(frozen=True)
class Observation:
    """What the operator knows about one policy after a sync."""

    generation: int
    revision: str
    invalid: str | None = None  # the parse error when the spec could not be used
    excluded: bool = False  # the policy's namespace is excluded from admission (never checked)
    replicas: int = 0
    load_errors: tuple[str, ...] = ()
    expired: bool = False
    expires: str | None = None
    matched_workloads: int | None = None
    endpoints: tuple[Mapping[str, Any], ...] = ()
    egress: tuple[str, str, str] = ("Unknown", "NoEgressBackend", "egress rules are disabled")
    # ClusterAIDataPolicies selecting the namespace: None when none does (no WithinBounds condition),
    # "" when within their bounds, else the out-of-bounds message (fields named)
    bounds: str | None = None


def _cond(type_: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def desired(obs: Observation) -> dict[str, Any]:
    """The status (without timestamps) the policy should show."""
    gen = obs.generation
    if obs.invalid:
        admission = _cond("AdmissionEnforced", "False", "InvalidSpec", obs.invalid, gen)
    elif obs.excluded:
        msg = (
            "the namespace is excluded from admission (system, operator or --exclude-namespace): "
            "its workloads are never checked; egress rules still apply"
        )
        admission = _cond("AdmissionEnforced", "False", "NamespaceExcluded", msg, gen)
    elif obs.load_errors:
        loaded = obs.replicas - len(obs.load_errors)
        msg = f"loaded into {loaded}/{obs.replicas} OPA replicas: {'; '.join(obs.load_errors)}"
        admission = _cond("AdmissionEnforced", "False", "OPALoadFailed", msg, gen)
    elif obs.replicas == 0:
        admission = _cond("AdmissionEnforced", "False", "NoOPAReplicas", "no OPA replica is reachable", gen)
    else:
        admission = _cond(
            "AdmissionEnforced",
            "True",
            "Loaded",
            f"loaded into {obs.replicas}/{obs.replicas} OPA replicas at revision {obs.revision}",
            gen,
        )
    egress = _cond("EgressEnforced", *obs.egress, gen)
    if obs.expired:
        phase = "Expired"
        ready = _cond(
            "Ready",
            "False",
            "Expired",
            f"review expired on {obs.expires}: selected workloads are denied until it is renewed",
            gen,
        )
    elif admission["status"] != "True":
        phase = "Degraded"
        ready = _cond("Ready", "False", admission["reason"], admission["message"], gen)
    elif egress["status"] == "False":
        phase = "Degraded"
        ready = _cond("Ready", "False", egress["reason"], egress["message"], gen)
    else:
        phase = "Active"
        ready = _cond("Ready", "True", "Enforced", "admission rules are enforced", gen)
    conditions = [ready, admission, egress]
    if obs.bounds is not None:
        # out of bounds: still enforced, with the guardrails' rules on top (contract section 6)
        conditions.append(
            _cond("WithinBounds", "False", "OutOfBounds", obs.bounds, gen)
            if obs.bounds
            else _cond(
                "WithinBounds",
                "True",
                "WithinBounds",
                "within the bounds of every ClusterAIDataPolicy selecting the namespace",
                gen,
            )
        )
    out: dict[str, Any] = {
        "observedGeneration": gen,
        "phase": phase,
        "revision": obs.revision,
        "conditions": conditions,
    }
    if obs.endpoints:
        out["endpoints"] = [dict(e) for e in obs.endpoints]
    if obs.matched_workloads is not None:
        out["matchedWorkloads"] = obs.matched_workloads
    return out


def patch(
    current: Mapping[str, Any] | None, want: Mapping[str, Any], now: dt.datetime
) -> dict[str, Any] | None:
    """The status patch that turns `current` into `want`, keeping transition times; None if equal."""
    current = current or {}
    old_conds = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, Mapping)}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conds = []
    for cond in want["conditions"]:
        old = old_conds.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        conds.append(
            {**cond, "lastTransitionTime": old.get("lastTransitionTime", stamp) if same and old else stamp}
        )
    new = {**want, "conditions": conds}
    changed = (
        any(current.get(k) != v for k, v in new.items() if k != "conditions")
        or [dict(c) if isinstance(c, Mapping) else c for c in current.get("conditions") or []] != conds
    )
    return new if changed else None
