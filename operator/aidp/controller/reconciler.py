"""Policy reconciliation: every AIDataPolicy -> OPA (all replicas + durable copy), labels, status.

One asyncio task runs `Reconciler.run`. Kopf handlers hand the AIDataPolicies they see to
`observe()` and call `trigger()`; bursts of changes are coalesced into one sync. A full sync (the
first, every resync_seconds, after each UTC midnight) reads the full, current list of policies
(paginated), so the result never depends on which events arrived: a restarted operator converges
to the same state. Between full syncs the policies come from the watch events, and a sync renders,
hashes and pushes only the namespaces whose policies changed (aidp.opadata: one JSON Patch per OPA
replica; the durable copy's shards of those namespaces; their statuses and pods): the cost of a
change does not grow with the number of policies in the cluster.
"""

from __future__ import annotations

import asyncio
import collections
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
from aidp import kube, metrics, opadata, render
from aidp.audit.evaluate import replica_evaluator
from aidp.config import OperatorConfig
from aidp.controller import governance
from aidp.controller import namespaces as namespace_labels
from aidp.controller import vap as vap_engine
from aidp.controller.approval import Approver, Evaluate
from aidp.controller.egress import EgressApplier
from aidp.controller.egressview import EgressView
from aidp.controller.held import HeldPolicy
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
        self._relabel = True
        self._inflight: set[str] = set()  # the namespaces the sync under way takes as changed
        # the AIDataPolicies as the watch delivered them (thread-safe appends from Kopf's handlers),
        # applied to `objects` at the start of a sync; `dirty`: namespaces whose policies changed
        self._events: collections.deque[tuple[HeldPolicy, bool]] = collections.deque()
        self.objects: dict[tuple[str, str], HeldPolicy] = {}
        self.parsed: dict[tuple[str, str], Policy | PolicyError] = {}
        self.dirty: set[str] = set()
        self.state: opadata.DataState | None = None  # what data.aidp holds at `bundle.revision`
        self.ns_docs: dict[str, bytes] = {}  # namespace -> its rendered policies (opadata.encode)
        self.ns_digests: dict[str, str] = {}
        self.durable_shards: dict[int, str] = {}  # shard index -> digest last written
        self._status_inputs: object = None  # what every status depends on, at the last sync
        self._labelled: tuple[frozenset[str], frozenset[str]] | None = None
        self.bundle: bundle_mod.Bundle | None = None
        self.durable_revision: str | None = None
        self.confirmed: dict[str, str] = {}  # replica URL -> revision it holds
        self.last: SyncResult | None = None
        self.governed: set[str] = set()
        self.operator_users: tuple[str, ...] | None = None
        self.guardrails = governance.Guardrails()
        self.selection = governance.Selection()  # which namespaces the guardrails select
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
    def trigger(self, *, full: bool = False, drift: bool = False, relabel: bool = False) -> None:
        """Sync soon; `drift`: a managed object changed, so compare the live objects too;
        `relabel`: a namespace's labels changed, so check the operator's labels on namespaces."""
        self._full = self._full or full
        self._drift = self._drift or drift
        self._relabel = self._relabel or relabel
        self._wake.set()

    def observe(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        """An AIDataPolicy as a watch event delivered it (any thread): taken into account at the
        next sync, which `trigger()` asks for."""
        self._events.append((HeldPolicy.of(obj), deleted))

    def _take_events(self) -> None:
        """Apply the observed events to `objects`; an event older than what is held (a generation
        or resourceVersion behind it) is dropped."""
        while self._events:
            obj, deleted = self._events.popleft()
            key = obj.key
            old = self.objects.get(key)
            if deleted:
                if old is not None and old.uid == obj.uid:
                    del self.objects[key]
                    self.dirty.add(key[0])
                continue
            if old is not None and obj.older_than(old):
                continue
            self.objects[key] = obj
            if old is None or (old.uid, old.generation) != (obj.uid, obj.generation):
                self.dirty.add(key[0])

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
            try:
                return await self._sync(full=full)
            except BaseException:
                self.dirty |= self._inflight  # rendered again, and their statuses looked at, next time
                raise

    async def _read_policies(self, *, full: bool) -> set[str]:
        """Bring `objects` and `parsed` up to date (a LIST on full syncs, the watch events
        otherwise); the namespaces whose policies changed."""
        if full:
            self._events.clear()  # the LIST below is newer than anything queued before it
            listed = {}
            async for o in list_all(self.client, AIDataPolicy):
                held = HeldPolicy.of(to_dict(o))
                listed[held.key] = held
            self.dirty |= {ns for ns, _ in self.objects} | {ns for ns, _ in listed}
            self.objects = listed
        self._take_events()
        dirty, self.dirty = self.dirty, set()
        self._inflight = dirty
        for key in [k for k in self.parsed if k[0] in dirty]:
            del self.parsed[key]
        for key, obj in self.objects.items():
            if key[0] in dirty:
                try:
                    self.parsed[key] = Policy.from_object(obj.object())
                except PolicyError as err:
                    self.parsed[key] = err
        return dirty

    def _render(self, dirty: set[str], top: Mapping[str, Any]) -> opadata.DataState:
        """The data state: the namespaces in `dirty` rendered again, the others as they were."""
        by_ns: dict[str, list[Policy]] = {ns: [] for ns in dirty}
        for key, p in self.parsed.items():
            if key[0] in dirty and isinstance(p, Policy):
                by_ns[key[0]].append(p)
        for ns, pols in by_ns.items():
            if pols:
                raw = opadata.encode(opadata.namespace_document(pols))
                self.ns_docs[ns], self.ns_digests[ns] = raw, opadata.digest_of(raw)
            else:
                self.ns_docs.pop(ns, None)
                self.ns_digests.pop(ns, None)
        return opadata.build(self.modules_digest, top, self.ns_docs, self.ns_digests)

    async def _sync(self, *, full: bool) -> SyncResult:
        t0 = time.perf_counter()
        dirty = await self._read_policies(full=full)
        objs = list(self.objects.values())
        parsed = self.parsed
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
            guardrails.of = await self.selection.select(
                guardrails.valid, excluded, lambda: governance.read_namespaces(self.client), full=full
            )
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
        top = render.render_data(
            (),
            self.config.all_excluded_namespaces,
            users,
            guardrails.documents(),
            guardrails.of,
            with_detector=True,
        )
        state = self._render(dirty, {k: v for k, v in top.items() if k not in ("policies", "revision")})
        new = bundle_mod.Bundle(modules=self.modules, data=state.view())
        previous, old_state = self.bundle, self.state
        changed = previous is None or new.revision != previous.revision
        self.bundle, self.state = new, state
        reps = await self.replicas()
        self.live_replicas = reps
        targets = [r for r in reps if full or changed or self.confirmed.get(r.url) != new.revision]
        # replicas that confirmed a revision built from these very modules need the data only;
        # those that confirmed the previous revision, the JSON Patch from it to this one only
        same_modules = frozenset(
            url for url, rev in self.confirmed.items() if self.modules_of.get(rev) == self.modules_digest
        )
        delta, at_previous = None, frozenset[str]()
        if previous is not None and old_state is not None and old_state.revision == previous.revision:
            delta = opadata.delta(old_state, state)
            at_previous = frozenset(
                url for url in same_modules if self.confirmed.get(url) == previous.revision
            )
        t_render = time.perf_counter()
        # OPA first, then the durable copy: encoding a shard (JSON and gzip of a sixteenth of all
        # policies, 14 ms at 10,000) runs on the event loop and, run beside the loads, held up
        # the reply that makes the change enforced
        load_results = await load_all(targets, new, same_modules, delta, at_previous)
        t_load = time.perf_counter()
        if changed or full or self.durable_revision != new.revision:
            await self._save_durable(new, full=full)
        t_save = time.perf_counter()
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
        labels = (frozenset(governed), frozenset(guardrails.namespaces))
        steps: dict[str, float] = {}
        mark = time.perf_counter()

        def step(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            steps[name], mark = now - mark, now

        if full or self._relabel or labels != self._labelled:
            self._relabel = False
            await namespace_labels.label(self.client, governed, guardrails.namespaces)
            self._labelled = labels
        self.governed = governed
        step("labels")
        await self._judge_pods(policies, set(extra_cut), full=full)
        step("pods")
        egress = await self._egress(policies, extra_cut, full=full)
        step("egress")
        bounds = await self._bounds(objs, guardrails)
        step("bounds")
        # what every status depends on beside its own policy: when it is as at the last sync, only
        # the policies of the namespaces that changed can need a new status
        inputs = (
            result.replicas,
            tuple(sorted(result.errors.items())),
            dt.datetime.now(dt.UTC).date(),
            tuple(sorted(bounds.items())),
            frozenset(guardrails.namespaces),
            egress.fingerprint() if egress else None,
        )
        only = None if full or inputs != self._status_inputs else dirty
        self._status_inputs = None  # a failed write: every status is looked at again next time
        await self.statuses.policies(objs, parsed, result, egress, bounds, guardrails.namespaces, only=only)
        self._status_inputs = inputs
        step("statuses")
        await self.statuses.guardrails(guardrails, objs, bounds)
        step("guardrails")
        self._inflight = set()
        if full or len(dirty) >= RELEASE_AFTER_NAMESPACES:
            release_memory()  # a large sync's transients (LIST pages, rendered objects) go back
            # and once more when the watch events of its status writes have been handled (Kopf's
            # per-object workers drop their bodies when they idle out)
            asyncio.get_running_loop().call_later(RELEASE_AGAIN_SECONDS, release_memory)
        done = time.perf_counter()
        log.info(
            "synced %d policies (%s, %d namespaces changed), revision %s, %d/%d OPA replicas in "
            "%.3fs (read and render %.3fs, OPA %.3fs, durable copy %.3fs, %s)",
            len(policies),
            "full" if full else "incremental",
            len(dirty),
            new.revision,
            len(reps) - len(errors),
            len(reps),
            done - t0,
            t_render - t0,
            t_load - t_render,
            t_save - t_load,
            ", ".join(f"{name} {took:.3f}s" for name, took in steps.items()),
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
        self, objs: list[HeldPolicy], guardrails: governance.Guardrails
    ) -> dict[tuple[str, str], str]:
        """(namespace, name) -> the out-of-bounds message of every policy in a guardrailed
        namespace that is looser than a guardrail now (the Rego's answer, as at admission)."""
        scope = guardrails.namespaces
        in_scope = [o for o in objs if o.namespace in scope]
        evaluate = self.evaluator()
        if not in_scope or evaluate is None:
            return {}
        reviews = [governance.policy_review(o.object(), i) for i, o in enumerate(in_scope)]
        decisions = await evaluate(reviews)
        out = {}
        for obj, decision in zip(in_scope, decisions, strict=True):
            problem = governance.bounds_problem(decision)
            if problem:
                out[obj.key] = problem
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

    def egress_changed(self) -> None:
        """A generated egress object was edited or deleted: put it back now, not at the next resync."""
        if self.egress is not None:
            self.trigger(drift=True)

    def user_policies_changed(self, namespace: str) -> None:
        """A user's NetworkPolicy (or CiliumNetworkPolicy) changed: which pods it isolates for
        egress may have changed."""
        if namespace in self.egress_namespaces:
            self.rejudge(namespace)

    def rejudge(self, namespace: str) -> None:
        """Judge every pod of the namespace again at the next sync (its user NetworkPolicies changed)."""
        self.judged.pop(namespace, None)
        self.trigger()

    async def _judge_pods(self, policies: list[Policy], more: set[str], *, full: bool) -> None:
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
        for ns in sorted(set(by_ns) | more | set(self.judged)):
            digest = f"{today}/{self.ns_digests.get(ns)}"
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
        applied = await self.egress.reconcile(
            policies, ctx, verify_live=verify, namespace_keys=self.ns_digests
        )
        return EgressView(self.egress_backend, snapshot, applied, today, applied.observed)

    # ---- durable copy ---------------------------------------------------------------------
    async def _save_durable(self, b: bundle_mod.Bundle, *, full: bool = False) -> None:
        """The shards whose namespaces changed since the last write (all on a full sync), then the
        head (aidp.bundle). A copy too large for its ConfigMaps is logged and counted, and tried
        again at the next sync; OPA is loaded all the same."""
        want = bundle_mod.shard_digests(self.ns_digests)
        only = None if full else {i for i, d in want.items() if self.durable_shards.get(i) != d}
        try:
            manifests = bundle_mod.durable_configmaps(
                self.config.bundle_configmap, self.config.namespace, b.modules, b.data, self.ns_digests, only
            )
        except bundle_mod.DurableTooLarge as err:
            metrics.RECONCILE_ERRORS.inc()
            log.error("durable copy not written: %s", err)
            self.durable_revision = None
            return
        for manifest in manifests:
            cm = ConfigMap.from_dict(manifest)
            if not isinstance(cm, ConfigMap):
                raise TypeError(f"the durable copy is not a ConfigMap: {type(cm).__name__}")
            await self.client.apply(cm, field_manager="aidp", force=True)
        self.durable_shards = want
        self.durable_revision = b.revision

    # ---- namespaces ------------------------------------------------------------------------


RELEASE_AFTER_NAMESPACES = 100
RELEASE_AGAIN_SECONDS = 5.0


def release_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the OS (glibc's malloc_trim; a
    no-op elsewhere): after a sync that read or rendered thousands of policies, the process keeps
    its resident size otherwise."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
