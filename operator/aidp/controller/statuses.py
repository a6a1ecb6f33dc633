"""Writing what a sync observed: AIDataPolicy and ClusterAIDataPolicy status, and the Events on
their transitions. What a status should say is aidp.status's and governance.status_of's (pure);
this module compares, patches (only what changed) and posts Events."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from aidp import metrics, status
from aidp.config import OperatorConfig
from aidp.controller import events, governance
from aidp.controller.egressview import EgressView, egress_condition, plain_endpoints
from aidp.controller.held import HeldPolicy
from aidp.controller.resources import AIDataPolicy, to_dict
from aidp.model import Policy, PolicyError

_MERGE = PatchType.MERGE
PARALLEL_WRITES = 16


@dataclass
class SyncResult:
    """What loading the bundle into the OPA replicas gave."""

    revision: str
    replicas: int
    errors: dict[str, str] = field(default_factory=dict)


def revision_for(current: Mapping[str, Any], generation: int, result: SyncResult) -> str:
    """The bundle revision that first enforced this generation of the policy.

    A change to one policy makes a new bundle revision, but the other policies' statuses stay as
    they are: 1,000 policies do not mean 1,000 status writes for every change.
    """
    previous = current.get("revision")
    enforced = any(
        c.get("type") == "AdmissionEnforced" and c.get("status") == "True"
        for c in current.get("conditions") or []
    )
    if previous and enforced and current.get("observedGeneration") == generation and not result.errors:
        return str(previous)
    return result.revision


def transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The Events (type, reason, message) a status change deserves: Ready changed, or the policy
    fell out of (or back within) a guardrail's bounds."""

    def cond(s: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
        return next((c for c in s.get("conditions") or [] if c.get("type") == type_), None)

    out = []
    for type_ in ("Ready", "WithinBounds"):
        before, after = cond(old, type_), cond(new, type_)
        if after is None:
            continue
        if before is not None and (before.get("status"), before.get("reason")) == (
            after.get("status"),
            after.get("reason"),
        ):
            continue
        if type_ == "WithinBounds" and before is None and after.get("status") == "True":
            continue  # newly in a guardrail's scope and within bounds: nothing to say
        kind = "Normal" if after.get("status") == "True" else "Warning"
        out.append((kind, str(after.get("reason")), str(after.get("message"))))
    return out


class StatusWriter:
    def __init__(self, config: OperatorConfig, client: AsyncClient) -> None:
        self.config = config
        self.client = client
        self.phase_of: dict[tuple[str, str], str] = {}  # the phase each policy's status shows

    async def policies(
        self,
        objs: list[HeldPolicy],
        parsed: Mapping[tuple[str, str], Policy | PolicyError],
        result: SyncResult,
        egress: EgressView | None,
        bounds: Mapping[tuple[str, str], str],
        guardrailed: set[str],
        *,
        only: set[str] | None = None,
    ) -> None:
        """Every AIDataPolicy's status (with `only`, those in these namespaces: nothing else that
        a status depends on changed); only the ones that changed are written."""
        now = dt.datetime.now(dt.UTC)
        patches = []
        phase_of = self.phase_of
        if only is None:
            phase_of.clear()
        for held in objs:
            key = held.key
            if only is not None and key[0] not in only and key in phase_of:
                continue
            p = parsed[key]
            review_date = p.spec.review.expires if isinstance(p, Policy) else None
            expires = review_date.isoformat() if review_date else None
            obj = held.object()
            current = obj.get("status") or {}
            generation = held.generation
            obs = status.Observation(
                generation=generation,
                revision=revision_for(current, generation, result),
                invalid=str(p) if isinstance(p, PolicyError) else None,
                excluded=held.namespace in self.config.all_excluded_namespaces,
                replicas=result.replicas,
                load_errors=tuple(f"{u}: {e}" for u, e in sorted(result.errors.items())),
                expired=isinstance(p, Policy) and status.is_expired(expires, now.date()),
                expires=expires,
                endpoints=egress.endpoints(p) if egress and isinstance(p, Policy) else plain_endpoints(p),
                egress=egress_condition(p, egress),
                bounds=bounds.get(key, "") if held.namespace in guardrailed else None,
            )
            want = status.desired(obs)
            phase_of[key] = want["phase"]
            new = status.patch(current, want, now)
            if new is not None:
                patches.append((held, obj, current, new))
        if len(phase_of) != len(objs):
            present = {o.key for o in objs}
            for key in [k for k in phase_of if k not in present]:
                del phase_of[key]
        phases: dict[str, int] = {}
        for phase in phase_of.values():
            phases[phase] = phases.get(phase, 0) + 1
        for phase in ("Active", "Expired", "Degraded"):
            metrics.POLICIES.labels(phase).set(phases.get(phase, 0))
        limit = asyncio.Semaphore(PARALLEL_WRITES)

        async def apply(
            held: HeldPolicy, obj: dict[str, Any], current: Mapping[str, Any], new: dict[str, Any]
        ) -> None:
            async with limit:
                try:
                    got = await self.client.patch(
                        AIDataPolicy.Status,
                        held.name,
                        {"status": new},
                        namespace=held.namespace,
                        patch_type=_MERGE,
                    )
                except ApiError as err:
                    if err.status.code == 404:
                        return
                    raise
                # the reconciler's copy of the object (`held`) now shows what was written
                written = to_dict(got)
                obj["status"] = written.get("status") or new
                obj["metadata"]["resourceVersion"] = (written.get("metadata") or {}).get("resourceVersion")
                held.written(obj)
                for kind, reason, message in transitions(current, new):
                    await events.post(self.client, obj, kind, reason, message)

        await asyncio.gather(*(apply(*args) for args in patches))

    async def guardrails(
        self,
        guardrails: governance.Guardrails,
        objs: list[HeldPolicy],
        bounds: Mapping[tuple[str, str], str],
    ) -> None:
        """Every ClusterAIDataPolicy's status (governed namespaces, policies in scope, out of bounds)
        and an Event when a policy newly falls out of its bounds."""
        now = dt.datetime.now(dt.UTC)
        for g in guardrails.valid:
            namespaces = {ns for ns, names in guardrails.of.items() if g.name in names}
            in_scope = sorted(f"{o.namespace}/{o.name}" for o in objs if o.namespace in namespaces)
            out_of_bounds = sorted(
                f"{ns}/{name}"
                for (ns, name), msg in bounds.items()
                if ns in namespaces and f"/{g.name} (" in msg
            )
            want = governance.status_of(g, len(namespaces), len(in_scope), out_of_bounds)
            ready = want.pop("ready")
            condition = {
                "type": "Ready",
                "status": ready[0],
                "reason": ready[1],
                "message": ready[2],
                "observedGeneration": g.generation,
            }
            current = (guardrails.objects.get(g.name) or {}).get("status") or {}
            new = status.patch(current, {**want, "conditions": [condition]}, now)
            if new is None:
                continue
            try:
                await self.client.patch(
                    governance.ClusterAIDataPolicy.Status, g.name, {"status": new}, patch_type=_MERGE
                )
            except ApiError as err:
                if err.status.code != 404:
                    raise
            newly = sorted(set(out_of_bounds) - set(current.get("outOfBounds") or []))
            if newly:
                obj = guardrails.objects.get(g.name) or {}
                await events.post(
                    self.client,
                    obj,
                    "Warning",
                    "OutOfBounds",
                    f"AIDataPolicies out of bounds: {', '.join(newly)}",
                )
