"""Policy reconciliation: every AIDataPolicy -> OPA (all replicas + durable copy), labels, status.

One asyncio task runs `Reconciler.run`. Kopf handlers only call `trigger()`; bursts of changes are
coalesced into one sync. Each sync reads the full, current list of policies (paginated), so the
result never depends on which events arrived: a restarted operator converges to the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import ConfigMap

from aidp import bundle as bundle_mod
from aidp import kube, metrics, render
from aidp.audit.evaluate import replica_evaluator
from aidp.config import OperatorConfig
from aidp.controller import governance
from aidp.controller import namespaces as namespace_labels
from aidp.controller import vap as vap_engine
from aidp.controller.approval import Approver, Evaluate
from aidp.controller.egress import EgressApplier
from aidp.controller.egressview import EgressView
from aidp.controller.resources import AIDataPolicy, list_all, to_dict
from aidp.controller.statuses import StatusWriter, SyncResult
from aidp.egress import backends
from aidp.egress.model import (
    EgressContext,
    EgressSettings,
    catalog_hosts,
    cut_hosts,
)
from aidp.egress.resolver import Resolver
from aidp.model import Policy, PolicyError
from aidp.opa_loader import Replica, load_all, revisions

log = logging.getLogger("aidp.reconciler")

ReplicaSource = Callable[[], Awaitable[list[Replica]]]


def make_bundle(modules: dict[str, str], data: dict[str, Any]) -> bundle_mod.Bundle:
    """The bundle whose revision covers both the data and the Rego modules."""
    digest = hashlib.sha256()
    for module_id, source in sorted(modules.items()):
        digest.update(module_id.encode() + b"\0" + source.encode() + b"\0")
    digest.update(str(data.get("revision", "")).encode())
    return bundle_mod.Bundle(modules=modules, data={**data, "revision": digest.hexdigest()[:16]})


class Reconciler:
    def __init__(self, config: OperatorConfig, client: AsyncClient, replicas: ReplicaSource) -> None:
        self.config = config
        self.client = client
        self.replicas = replicas
        self.modules = render.policy_modules()
        self.modules_digest = hashlib.sha256(json.dumps(self.modules, sort_keys=True).encode()).hexdigest()
        self.modules_of: dict[str, str] = {}  # bundle revision -> digest of the modules it was built with
        self._wake = asyncio.Event()
        self._full = True
        self._drift = False
        self.bundle: bundle_mod.Bundle | None = None
        self.durable_revision: str | None = None
        self.confirmed: dict[str, str] = {}  # replica URL -> revision it holds
        self.last: SyncResult | None = None
        self.governed: set[str] = set()
        self.operator_users: tuple[str, ...] | None = None
        self.guardrails = governance.Guardrails()
        self.statuses = StatusWriter(config, client)
        self.approver = Approver(client, cilium=config.egress_backend == "cilium")
        self.policies_by_ns: dict[str, list[Policy]] = {}
        self.egress_namespaces: set[str] = set()  # namespaces with aidp egress objects (or soon)
        self.judged: dict[str, str] = {}  # namespace -> digest of the policies its pods were judged under
        self.live_replicas: list[Replica] = []
        self.syncs = 0
        self.resolver = Resolver(config.egress_addresses_file, config.egress_refresh_seconds)
        self.egress_backend = None if config.egress_backend == "none" else backends.get(config.egress_backend)
        self.egress = EgressApplier(client, self.egress_backend) if self.egress_backend else None
        self.egress_settings = EgressSettings(
            egress_mode=config.egress_mode,
            cilium_mode=config.cilium_mode,
            cilium_sni=config.cilium_sni,
            extra_cidrs=config.cilium_extra_cidrs,
        )

    def _retry_soon(self, seconds: float = 2.0) -> None:
        asyncio.get_running_loop().call_later(seconds, self.trigger)

    # ---- triggers -------------------------------------------------------------------------
    def trigger(self, *, full: bool = False, drift: bool = False) -> None:
        """Sync soon; `drift`: a managed object changed, so compare the live objects too."""
        self._full = self._full or full
        self._drift = self._drift or drift
        self._wake.set()

    async def run(self) -> None:
        """Sync on triggers, check replicas every opa_check_interval, resync fully every
        resync_seconds and right after each UTC midnight (review dates expire by the calendar,
        without any change to the objects)."""
        next_full = 0.0
        day = dt.datetime.now(dt.UTC).date()
        while True:
            today = dt.datetime.now(dt.UTC).date()
            if today != day:
                day, next_full = today, 0.0
            timeout = max(0.0, min(self.config.opa_check_interval, next_full - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            woke = self._wake.is_set()
            self._wake.clear()
            full = self._full or time.monotonic() >= next_full
            try:
                if woke or full:
                    self._full = False
                    await self.sync(full=full)
                    if full:
                        next_full = time.monotonic() + self.config.resync_seconds
                else:
                    await self.check_replicas()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.RECONCILE_ERRORS.inc()
                log.exception("reconcile failed; retrying in 1s")
                await asyncio.sleep(1.0)
                self.trigger()

    # ---- one sync -------------------------------------------------------------------------
    async def sync(self, *, full: bool = False) -> SyncResult:
        with metrics.RECONCILE_DURATION.time():
            return await self._sync(full=full)

    async def _sync(self, *, full: bool) -> SyncResult:
        objs = [to_dict(o) async for o in list_all(self.client, AIDataPolicy)]
        parsed: dict[tuple[str, str], Policy | PolicyError] = {}
        for obj in objs:
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            try:
                parsed[key] = Policy.from_object(obj)
            except PolicyError as err:
                parsed[key] = err
        policies = [p for p in parsed.values() if isinstance(p, Policy)]
        users = await self._operator_users()
        excluded = set(self.config.all_excluded_namespaces)
        try:
            guardrails = await governance.read_guardrails(self.client)
        except kube.KUBE_ERRORS as err:
            if not kube.transient(err):
                raise
            # the API server cannot serve them just now: keep what the last sync read, and sync
            # again soon, so that a policy change is not held up by the guardrails' CRD
            log.warning(
                "ClusterAIDataPolicies not readable now (%s); using the last ones", kube.error_text(err)
            )
            guardrails = self.guardrails
            self._retry_soon()
        if guardrails.valid:
            namespaces = await governance.read_namespaces(self.client)
            guardrails.of = governance.select(guardrails.valid, namespaces, excluded)
        self.guardrails = guardrails
        await vap_engine.sync(  # hook: vap engine
            self.client,
            self.config,
            users,
            guardrails.documents(),
            policies=policies,
            guardrails_of=guardrails.of,
            full=full,
        )
        data = render.render_data(
            policies,
            self.config.all_excluded_namespaces,
            users,
            guardrails.documents(),
            guardrails.of,
            with_detector=True,
        )
        new = make_bundle(self.modules, data)
        changed = self.bundle is None or new.revision != self.bundle.revision
        self.bundle = new
        reps = await self.replicas()
        self.live_replicas = reps
        targets = [r for r in reps if full or changed or self.confirmed.get(r.url) != new.revision]
        save = (
            self._save_durable(new) if (changed or full or self.durable_revision != new.revision) else _noop()
        )
        # replicas that confirmed a revision built from these very modules need the data only
        same_modules = frozenset(
            url for url, rev in self.confirmed.items() if self.modules_of.get(rev) == self.modules_digest
        )
        load_results, _ = await asyncio.gather(load_all(targets, new, same_modules), save)
        self.modules_of = {new.revision: self.modules_digest}
        for url, problem in load_results.items():
            if problem is None:
                self.confirmed[url] = new.revision
            else:
                self.confirmed.pop(url, None)
                metrics.OPA_LOAD_ERRORS.inc()
                log.warning("OPA load failed: %s", problem)
        errors = {r.url: "not loaded" for r in reps if self.confirmed.get(r.url) != new.revision}
        errors.update({u: e for u, e in load_results.items() if e})
        result = SyncResult(new.revision, len(reps), errors)
        self.last = result
        self.syncs += 1
        # any AIDataPolicy governs its namespace, valid or not (an invalid one fails closed), and so
        # does every ClusterAIDataPolicy selecting it
        governed = ({ns for ns, _ in parsed} | guardrails.namespaces) - excluded
        extra_cut = {
            ns: governance.governed_hosts(guardrails.valid, names) for ns, names in guardrails.of.items()
        }
        for ns in governed - {p.namespace for p in policies} - guardrails.namespaces:
            extra_cut[ns] = tuple(catalog_hosts())  # only invalid policies: every provider is cut
        await namespace_labels.label(self.client, governed, guardrails.namespaces)
        self.governed = governed
        await self._judge_pods(policies, data, set(extra_cut), full=full)
        egress = await self._egress(policies, extra_cut, full=full)
        bounds = await self._bounds(objs, guardrails)
        await self.statuses.policies(objs, parsed, result, egress, bounds, guardrails.namespaces)
        await self.statuses.guardrails(guardrails, objs, bounds)
        log.info(
            "synced %d policies, revision %s, %d/%d OPA replicas",
            len(policies),
            new.revision,
            len(reps) - len(errors),
            len(reps),
        )
        return result

    async def check_replicas(self) -> None:
        """Reload replicas that lost or hold a stale bundle (a restarted OPA, for example)."""
        if self.bundle is None:
            return
        reps = await self.replicas()
        held = await revisions(reps)
        stale = [r for r in reps if held[r.url] != self.bundle.revision]
        for r in reps:
            if held[r.url] == self.bundle.revision:
                self.confirmed[r.url] = self.bundle.revision
            else:
                self.confirmed.pop(r.url, None)
        if stale:
            log.info("OPA replicas without revision %s: %s", self.bundle.revision, [r.url for r in stale])
            await self.sync()
        elif self.last and self.last.errors:
            await self.sync()  # every replica is fine again: statuses say so

    # ---- cluster guardrails ------------------------------------------------------------------------
    async def _bounds(
        self, objs: list[dict[str, Any]], guardrails: governance.Guardrails
    ) -> dict[tuple[str, str], str]:
        """(namespace, name) -> the out-of-bounds message of every policy in a guardrailed
        namespace that is looser than a guardrail now (the Rego's answer, as at admission)."""
        scope = guardrails.namespaces
        in_scope = [o for o in objs if o["metadata"]["namespace"] in scope]
        evaluate = self.evaluator()
        if not in_scope or evaluate is None:
            return {}
        reviews = [governance.policy_review(o, i) for i, o in enumerate(in_scope)]
        decisions = await evaluate(reviews)
        out = {}
        for obj, decision in zip(in_scope, decisions, strict=True):
            problem = governance.bounds_problem(decision)
            if problem:
                out[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = problem
        return out

    # ---- egress follows the verdict ----------------------------------------------------------------
    def evaluator(self) -> Evaluate | None:
        """Decisions from a replica that holds the current bundle; None while there is none."""
        if self.bundle is None:
            return None
        current = self.bundle.revision
        replica = next((r for r in self.live_replicas if self.confirmed.get(r.url) == current), None)
        if replica is None:
            return None
        evaluate = replica_evaluator(replica)

        async def run(reviews: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
            return list(await asyncio.to_thread(evaluate, reviews))

        return run

    def has_egress(self, namespace: str) -> bool:
        """The namespace has (or is about to have) aidp egress objects."""
        return namespace in self.egress_namespaces

    def policies_of(self, namespace: str) -> list[Policy]:
        return self.policies_by_ns.get(namespace, [])

    def rejudge(self, namespace: str) -> None:
        """Judge every pod of the namespace again at the next sync (its user NetworkPolicies changed)."""
        self.judged.pop(namespace, None)
        self.trigger()

    async def _judge_pods(
        self, policies: list[Policy], data: Mapping[str, Any], more: set[str], *, full: bool
    ) -> None:
        """Re-judge the pods of every namespace whose policies changed (all of them on a full
        resync, and after each UTC midnight, when reviews expire): before the egress objects are
        applied, so a tightened policy's pods lose their approval first. `more`: namespaces with a
        baseline but no valid policy (guardrails, invalid policies), for the isolation label."""
        by_ns: dict[str, list[Policy]] = {}
        for p in policies:
            by_ns.setdefault(p.namespace, []).append(p)
        self.policies_by_ns = by_ns
        self.egress_namespaces = set(by_ns) | more
        evaluate = self.evaluator()
        if evaluate is None:
            return  # no replica holds the bundle: judged once one does (nothing is approved meanwhile)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        rendered = data.get("policies") or {}
        for ns in sorted(set(by_ns) | more | set(self.judged)):
            digest = hashlib.sha256(
                json.dumps([today, rendered.get(ns)], sort_keys=True, default=str).encode()
            ).hexdigest()
            if not full and self.judged.get(ns) == digest:
                continue
            outcome = await self.approver.judge_namespace(ns, by_ns.get(ns, []), evaluate)
            metrics.APPROVAL_CHANGES.labels("approved").inc(len(outcome.approved))
            metrics.APPROVAL_CHANGES.labels("revoked").inc(len(outcome.revoked))
            if outcome.errors:
                continue  # judged again next sync
            if ns in by_ns or ns in more:
                self.judged[ns] = digest
            else:
                self.judged.pop(ns, None)

    async def _operator_users(self) -> tuple[str, ...]:
        """Who this operator is to the API server (a SelfSubjectReview, asked once): the only user
        admission lets set the approval label on pods and the governed label on namespaces."""
        if self.operator_users is None:
            review = await self.client.create(SelfSubjectReview())
            info = review.status.userInfo if review.status else None
            if info is None or not info.username:
                raise RuntimeError("the API server did not say who the operator is (SelfSubjectReview)")
            self.operator_users = (info.username,)
            log.info("operator user: %s", info.username)
        return self.operator_users

    # ---- egress -------------------------------------------------------------------------------
    async def _egress(
        self, policies: list[Policy], extra_cut: Mapping[str, tuple[str, ...]], *, full: bool
    ) -> EgressView | None:
        if self.egress is None or self.egress_backend is None:
            return None
        hosts = set(cut_hosts(policies))  # the endpoints and the other hosts of their providers
        for more in extra_cut.values():
            hosts.update(more)  # the guardrails' providers; every provider where all policies are invalid
        snapshot = await self.resolver.snapshot(hosts, force=False)
        today = dt.datetime.now(dt.UTC).date()
        verify, self._drift = full or self._drift, False
        ctx = EgressContext(snapshot.book, today, self.egress_settings, extra_cut)
        applied = await self.egress.reconcile(policies, ctx, verify_live=verify)
        by_ns: dict[str, list[Policy]] = {}
        for p in policies:
            by_ns.setdefault(p.namespace, []).append(p)
        observed = frozenset(backends.observed(by_ns, ctx))
        return EgressView(self.egress_backend, snapshot, applied, today, observed)

    # ---- durable copy ---------------------------------------------------------------------
    async def _save_durable(self, b: bundle_mod.Bundle) -> None:
        cm = ConfigMap.from_dict(bundle_mod.configmap(self.config.bundle_configmap, self.config.namespace, b))
        if not isinstance(cm, ConfigMap):
            raise TypeError(f"the durable copy is not a ConfigMap: {type(cm).__name__}")
        await self.client.apply(cm, field_manager="aidp", force=True)
        self.durable_revision = b.revision

    # ---- namespaces ------------------------------------------------------------------------


async def _noop() -> None:
    return None
