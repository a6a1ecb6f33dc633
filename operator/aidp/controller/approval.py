"""Egress follows the verdict (contract section 4): the operator judges running pods with the
admission Rego and keeps the approval label on the compliant ones. It also keeps the isolation
label on the pods that user NetworkPolicies isolate for egress, which aidp's baseline leaves out
(aidp never loosens a namespace's own egress isolation).

The egress object of an `enforcement: deny` policy selects its workloads *and* the label
`aidp.io/approved=true` (aidp.egress.model.selector). Only the operator may set or remove that label:
admission refuses it from anyone else. So a pod that existed before its policy, a pod newly selected
by a broadened selector, and a pod admitted while the webhook was absent or failing open reach the
provider only once the operator judged them compliant under the policies in force.

The judgement is the webhook's own: each pod is evaluated as a CREATE by an OPA replica that holds
the current bundle (`data.aidp.audit.decisions`). A pod is approved when the decision admits it and
a `deny` policy selects it (under warn and dryrun selection suffices, and the label is not read).

Work is bounded: a sync judges only the namespaces whose policies changed (and all governed ones on a
full resync); pod events queue single pods, judged in batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp.check import admission_review
from aidp.config import APPROVAL_LABEL, ISOLATED_LABEL
from aidp.controller.resources import CiliumNetworkPolicy, list_all, to_dict
from aidp.egress.isolation import Isolator, isolated, isolators
from aidp.kube import KUBE_ERRORS, error_code, error_text
from aidp.model import CHECKED_KINDS, ENFORCEMENT_DENY, Policy

log = logging.getLogger("aidp.approval")

POD_KIND = CHECKED_KINDS[0]
Evaluate = Callable[[Sequence[Mapping[str, Any]]], Awaitable[list[dict[str, Any]]]]


# ---- pure ---------------------------------------------------------------------------------------


def judged(pod: Mapping[str, Any]) -> bool:
    """Pods worth judging: not being deleted and not finished (their label no longer matters)."""
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return not meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def labels_of(pod: Mapping[str, Any]) -> dict[str, str]:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def selected_by_deny(pod: Mapping[str, Any], policies: Iterable[Policy]) -> bool:
    labels = labels_of(pod)
    return any(
        p.spec.enforcement == ENFORCEMENT_DENY and p.spec.workload_selector.matches(labels) for p in policies
    )


def review_for(pod: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The AdmissionReview of creating this pod as it is now, without the operator's labels (the
    verdict does not read them; a CREATE carrying them would be refused as tampering)."""
    body = {k: v for k, v in pod.items() if k != "status"}
    meta = dict(body.get("metadata") or {})
    meta["labels"] = {k: v for k, v in labels_of(pod).items() if k not in (APPROVAL_LABEL, ISOLATED_LABEL)}
    body["metadata"] = meta
    body.setdefault("apiVersion", "v1")
    body.setdefault("kind", "Pod")
    return admission_review(body, POD_KIND, f"aidp-approval-{index}")


def wanted(pod: Mapping[str, Any], decision: Mapping[str, Any] | None, policies: Sequence[Policy]) -> bool:
    """Whether the pod should carry the approval label: the verdict admits it and a deny policy
    selects it. No decision (OPA could not say) means no approval: fail closed."""
    return bool(decision and decision.get("allowed") is True) and selected_by_deny(pod, policies)


def has_label(pod: Mapping[str, Any], label: str = APPROVAL_LABEL) -> bool:
    return labels_of(pod).get(label) == "true"


@dataclass
class Outcome:
    """What one judgement pass did."""

    judged: int = 0
    approved: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)  # pods whose isolation label changed
    errors: dict[str, str] = field(default_factory=dict)


# ---- the work -----------------------------------------------------------------------------------


class Approver:
    """Judges pods and patches their approval label. `evaluate` is None while no OPA replica
    holds the current bundle: then nothing is approved and nothing is revoked until one does."""

    def __init__(self, client: AsyncClient, *, cilium: bool = False) -> None:
        self.client = client
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.cilium = cilium  # read user CiliumNetworkPolicies too (the cilium backend)
        self._cilium_missing_logged = False
        self.netpols: dict[str, list[Isolator]] = {}  # namespace -> what isolates its pods for egress
        self._wake = asyncio.Event()

    async def judge_namespace(
        self, namespace: str, policies: Sequence[Policy], evaluate: Evaluate, *, governed: bool = True
    ) -> Outcome:
        """Every pod of the namespace: with deny policies, judged; without, labels removed. In a
        governed namespace the isolation label follows the user NetworkPolicies."""
        pods = [to_dict(p) async for p in list_all(self.client, Pod, namespace=namespace)]
        netpols = await self.user_netpols(namespace) if governed else []
        return await self.judge(pods, policies, evaluate, netpols)

    async def user_netpols(self, namespace: str) -> list[Isolator]:
        """What isolates the namespace's pods for egress: its user NetworkPolicies (and, with the
        cilium backend, CiliumNetworkPolicies); aidp's own are left out."""
        objects = [to_dict(item) async for item in list_all(self.client, NetworkPolicy, namespace=namespace)]
        if self.cilium:
            try:
                async for item in list_all(self.client, CiliumNetworkPolicy, namespace=namespace):
                    objects.append({"kind": "CiliumNetworkPolicy", **to_dict(item)})
            except KUBE_ERRORS as err:
                if error_code(err) != 404:
                    raise
                # Cilium's CRD is not installed: no CiliumNetworkPolicy can isolate anything (the
                # egress status reports the missing CRD)
                if not self._cilium_missing_logged:
                    log.warning("listing CiliumNetworkPolicies: %s", error_text(err))
                    self._cilium_missing_logged = True
        out = isolators(objects)
        self.netpols[namespace] = out
        return out

    async def judge(
        self,
        pods: Sequence[Mapping[str, Any]],
        policies: Sequence[Policy],
        evaluate: Evaluate,
        netpols: Sequence[Isolator] = (),
    ) -> Outcome:
        out = Outcome()
        pods = [p for p in pods if judged(p)]
        candidates = [p for p in pods if selected_by_deny(p, policies)]
        decisions: list[dict[str, Any]] = []
        if candidates:
            decisions = await evaluate([review_for(p, i) for i, p in enumerate(candidates)])
        verdict = {id(p): d for p, d in zip(candidates, decisions, strict=True)}
        for pod in pods:
            want = {
                APPROVAL_LABEL: wanted(pod, verdict.get(id(pod)), policies),
                ISOLATED_LABEL: isolated(pod, netpols),
            }
            changes = {k: v for k, v in want.items() if v != has_label(pod, k)}
            if changes:
                await self._set(pod, changes, out)
        out.judged = len(candidates)
        return out

    async def _set(self, pod: Mapping[str, Any], changes: Mapping[str, bool], out: Outcome) -> None:
        meta = pod.get("metadata") or {}
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        patch = {"metadata": {"labels": {k: "true" if v else None for k, v in changes.items()}}}
        try:
            await self.client.patch(
                Pod,
                str(meta.get("name")),
                patch,
                namespace=str(meta.get("namespace")),
                patch_type=PatchType.MERGE,
            )
        except ApiError as err:
            if err.status.code == 404:
                return  # gone meanwhile
            out.errors[ref] = str(err.status.message or err)
            log.warning("labels %s on %s not written: %s", dict(changes), ref, out.errors[ref])
            return
        if APPROVAL_LABEL in changes:
            approve = changes[APPROVAL_LABEL]
            (out.approved if approve else out.revoked).append(ref)
            log.info("pod %s %s for egress", ref, "approved" if approve else "no longer approved")
        if ISOLATED_LABEL in changes:
            out.isolation.append(ref)

    # ---- pod events -------------------------------------------------------------------------------
    def enqueue(self, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self.pending[(str(meta.get("namespace")), str(meta.get("name")))] = dict(pod)
        self._wake.set()

    async def run(
        self,
        policies_of: Callable[[str], Sequence[Policy]],
        evaluator: Callable[[], Evaluate | None],
        governed: Callable[[str], bool],
        retry_seconds: float = 1.0,
    ) -> None:
        """Judge queued pods in batches, per namespace, as soon as an evaluator is available."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            evaluate = evaluator()
            if evaluate is None:
                await asyncio.sleep(retry_seconds)  # no replica with the current bundle yet
                self._wake.set()
                continue
            batch, self.pending = self.pending, {}
            by_ns: dict[str, list[dict[str, Any]]] = {}
            for (ns, _), pod in batch.items():
                by_ns.setdefault(ns, []).append(pod)
            for ns, pods in by_ns.items():
                try:
                    netpols = await self.user_netpols(ns) if governed(ns) else []
                    await self.judge(pods, policies_of(ns), evaluate, netpols)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("judging %d pods in %s failed; retrying", len(pods), ns)
                    for pod in pods:
                        self.enqueue(pod)
                    await asyncio.sleep(retry_seconds)
