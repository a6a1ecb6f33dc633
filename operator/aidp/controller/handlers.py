"""Kopf handlers: thin. They start the reconcilers and turn watch events into triggers.

Every handler is `async`: it runs in the event loop, where `trigger()` may set an asyncio.Event
(Kopf would run a plain function in a worker thread), and costs no thread hop per event."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import Any

import kopf
from lightkube import AsyncClient, KubeConfig

from aidp import catalog
from aidp.config import GOVERNED_LABEL, GUARDRAILED_LABEL, ISOLATED_LABEL, OperatorConfig
from aidp.controller import approval, discovery, egresswatch, kopfstorage
from aidp.controller import vap as vap_engine
from aidp.controller.auditloop import AuditLoop
from aidp.controller.catalogwatch import CatalogWatch
from aidp.controller.certs import WebhookCerts
from aidp.controller.leader import LeaderElector
from aidp.controller.reconciler import Reconciler
from aidp.controller.resources import PAGE
from aidp.egress import isolation
from aidp.opa_loader import Replica

log = logging.getLogger("aidp.operator")
GROUP, VERSION, PLURAL = "aidp.io", "v1alpha1", "aidatapolicies"


class Runtime:
    """What the handlers share (Kopf's `memo`)."""

    def __init__(self, config: OperatorConfig, catalog_data: object = None) -> None:
        self.config = config
        self.catalog_data = catalog_data  # the provider catalog ConfigMap's data read at start
        self.catalog_watch: CatalogWatch | None = None
        self.catalog_task: asyncio.Task[None] | None = None
        self.client: AsyncClient | None = None
        self.reconciler: Reconciler | None = None
        self.certs: WebhookCerts | None = None
        self.audit: AuditLoop | None = None
        self.generations: dict[str, int] = {}
        self.elector: LeaderElector | None = None
        self.elector_task: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []


def _runtime(memo: Any) -> Runtime:
    rt = memo.runtime
    if not isinstance(rt, Runtime):
        raise TypeError(f"the operator's memo holds no Runtime but {type(rt).__name__}")
    return rt


def new_client(config: OperatorConfig) -> AsyncClient:
    kc = KubeConfig.from_file(config.kubeconfig) if config.kubeconfig else KubeConfig.from_env()
    return AsyncClient(config=kc, field_manager="aidp", trust_env=False)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    rt = _runtime(memo)
    settings.posting.level = logging.WARNING
    # Kopf waits this long for more events of one object before handling them; the reconciler
    # coalesces bursts itself, so a short window only adds latency
    settings.batching.batch_window = 0.01
    # a per-object worker keeps its object's last event (the whole decoded body) until it idles
    # out: with 10,000 policies whose statuses were just written, 5 s (Kopf's default) of those
    # bodies is some 200 MB; the reconciler already holds its own slim copy
    settings.batching.idle_timeout = 0.5
    # every handler is on.event: no per-event deep copy of each body for a diff nobody reads
    kopfstorage.check_events_only(kopf.get_default_registry())
    settings.persistence.diffbase_storage = kopfstorage.EventsOnly()
    # Kopf's initial LIST of each watched kind in pages, as the reconciler's own reads: one LIST of
    # 10,000 policies is a 200 MB response held whole while it is decoded (the process keeps the
    # peak's pages long after)
    settings.watching.chunk_size = PAGE
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    rt.client = new_client(rt.config)
    if rt.config.provider_catalog_configmap:
        start_catalog_watch(rt, rt.client, catalog.ConfigMapRef.parse(rt.config.provider_catalog_configmap))
    if rt.config.leader_election:
        rt.elector = LeaderElector(rt.client, rt.config.namespace)
        rt.elector_task = asyncio.create_task(
            rt.elector.run(lambda: start_work(rt), lambda: stop_work(rt)), name="aidp-leader"
        )
    else:
        await start_work(rt)


def start_catalog_watch(rt: Runtime, client: AsyncClient, ref: catalog.ConfigMapRef) -> None:
    """Every replica follows the catalog ConfigMap (a new leader starts with the current one); the
    one that works re-syncs and audits on a change, and posts the Events."""

    def changed() -> None:
        if rt.reconciler is not None:
            rt.reconciler.trigger(full=True)
        if rt.audit is not None:
            rt.audit.trigger()

    rt.catalog_watch = CatalogWatch(client, ref, changed, report=lambda: rt.reconciler is not None)
    rt.catalog_watch.started_with(rt.catalog_data)
    rt.catalog_task = asyncio.create_task(rt.catalog_watch.run(), name="aidp-catalog-watch")


async def start_work(rt: Runtime) -> None:
    """The reconcilers: run by the one leader (or the only replica)."""
    client = rt.client
    if client is None:
        raise RuntimeError("start_work before startup created the API client")
    certs = vap_engine.webhook_certs(rt.config, client)  # no webhook with --admission-engine vap

    async def replicas() -> list[Replica]:
        return await discovery.replicas(rt.config, client, certs.ca_file)

    rt.certs = certs
    rt.reconciler = Reconciler(rt.config, client, replicas)
    rt.audit = AuditLoop(rt.config, replicas) if rt.config.audit_interval_seconds > 0 else None

    async def once_certs_ready(work: Awaitable[None]) -> None:
        # OPA serves with the certificate the webhook trusts: nothing to load before it exists.
        # Waiting here (not in start_work) keeps the leader's lease renewals going meanwhile.
        await certs.ready.wait()
        await work

    rec = rt.reconciler
    rt.tasks = [
        asyncio.create_task(certs.run(), name="aidp-certs"),
        asyncio.create_task(once_certs_ready(rec.run()), name="aidp-reconciler"),
        asyncio.create_task(
            once_certs_ready(rec.approver.run(rec.policies_of, rec.evaluator, rec.has_egress)),
            name="aidp-approval",
        ),
    ]
    if rt.audit is not None:
        rt.tasks.append(asyncio.create_task(once_certs_ready(rt.audit.run()), name="aidp-audit"))
    wake = egresswatch.Wakers(managed=rec.egress_changed, user=rec.user_policies_changed)
    for kind in egresswatch.kinds(rt.config.egress_backend):
        rt.tasks.append(
            asyncio.create_task(egresswatch.watch(client, kind, wake), name=f"aidp-watch-{kind.name}")
        )


async def stop_work(rt: Runtime) -> None:
    rt.reconciler, rt.certs, rt.audit = None, None, None
    for task in rt.tasks:
        task.cancel()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
    rt.tasks = []


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    rt = _runtime(memo)
    for task in (rt.elector_task, rt.catalog_task):
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await stop_work(rt)
    if rt.elector is not None:
        await rt.elector.release()
    if rt.client is not None:
        await rt.client.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
@kopf.on.event(GROUP, VERSION, "clusteraidatapolicies", id="guardrail_changed")
async def policy_changed(body: Any, event: Any, memo: Any, **_: Any) -> None:
    """An AIDataPolicy or a ClusterAIDataPolicy was created, changed or deleted. Status writes (the
    operator's own, mostly) bump no generation and trigger nothing: they would only make every
    sync cause another one."""
    rt = _runtime(memo)
    meta = body.get("metadata", {})
    if rt.reconciler is not None and body.get("kind") == "AIDataPolicy":
        rt.reconciler.observe(body, deleted=event.get("type") == "DELETED")  # status writes too
    uid, generation = str(meta.get("uid")), int(meta.get("generation") or 0)
    if event.get("type") == "DELETED":
        rt.generations.pop(uid, None)
    elif rt.generations.get(uid) != generation:
        rt.generations[uid] = generation
    else:
        return
    if rt.reconciler is not None:
        rt.reconciler.trigger()
    if rt.audit is not None:
        rt.audit.trigger()


@kopf.on.event("", "v1", "namespaces")
async def namespace_changed(body: Any, event: Any, memo: Any, **_: Any) -> None:
    """Someone changed the governed label (or a namespace came or went): put it right."""
    rec = _runtime(memo).reconciler
    if rec is None:
        return
    name = str(body.get("metadata", {}).get("name") or "")
    labels = dict(body.get("metadata", {}).get("labels") or {})
    deleted = event.get("type") == "DELETED"
    valid = rec.guardrails.valid
    # a new namespace, a label change or a deletion can move the namespace into or out of a
    # guardrail's selection: the selection the reconciler holds is read again at the next sync
    moved = bool(valid) and rec.selection.event(
        valid, name, None if deleted else labels, rec.config.all_excluded_namespaces
    )
    labelled = labels.get(GOVERNED_LABEL) == "true"
    guardrailed = labels.get(GUARDRAILED_LABEL) == "true"
    if not deleted and (
        labelled != (name in rec.governed) or guardrailed != (name in rec.guardrails.namespaces)
    ):
        rec.trigger(relabel=True)
    elif moved:
        rec.trigger()


@kopf.on.event("", "v1", "pods")
async def pod_changed(body: Any, event: Any, memo: Any, **_: Any) -> None:
    """A pod in a namespace with policies whose approval label may be wrong (a new pod a deny
    policy selects, or a labelled one it no longer selects): judge it."""
    rec = _runtime(memo).reconciler
    if rec is None or event.get("type") == "DELETED":
        return
    namespace = body.get("metadata", {}).get("namespace")
    if namespace not in rec.egress_namespaces or not approval.judged(body):
        return
    policies = rec.policies_of(namespace)
    isolated = isolation.isolated(body, rec.approver.netpols.get(namespace, []))
    if approval.selected_by_deny(body, policies) != approval.has_label(
        body
    ) or isolated != approval.has_label(body, ISOLATED_LABEL):
        rec.approver.enqueue(body)


@kopf.on.event("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
async def webhook_changed(body: Any, memo: Any, **_: Any) -> None:
    rt = _runtime(memo)
    if rt.certs is not None and body.get("metadata", {}).get("name") == rt.config.webhook_name:
        rt.certs.trigger()


@kopf.on.event(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicies",
    labels={"app.kubernetes.io/managed-by": "aidp"},
    id="vap_object_changed",
)
@kopf.on.event(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicybindings",
    labels={"app.kubernetes.io/managed-by": "aidp"},
    id="vap_binding_changed",
)
async def vap_object_changed(body: Any, event: Any, memo: Any, **_: Any) -> None:
    """A ValidatingAdmissionPolicy (or binding) of the vap engine was edited or deleted: put it
    back now (aidp.controller.vap)."""
    rec = _runtime(memo).reconciler
    if rec is not None and vap_engine.observed(body, event.get("type")):
        rec.trigger(drift=True)
