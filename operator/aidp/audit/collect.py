"""Reading the cluster for an audit: paginated LISTs (at most 500 objects a request), streamed."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import threading
import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypedDict, TypeVar

import httpx2
import msgspec
from lightkube import Client
from lightkube.config import client_adapter
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import NamespacedResourceG, api_info
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding

from aidp import kube
from aidp.audit import guardrails as audit_guardrails
from aidp.audit.engine import Auditor, Evaluate, governed_namespaces
from aidp.audit.owners import OwnerResolver
from aidp.audit.rbac import RbacIndex
from aidp.audit.report import AuditReport, Skipped
from aidp.model import DEFAULT_EXCLUDED_NAMESPACES, Policy, PolicyError

PAGE = 500
LIST_TIMEOUT = 60.0  # seconds: a page of 500 objects from a busy API server
T = TypeVar("T")
IN_FLIGHT = 2
MAX_WAITING = 8  # prepared pages waiting for OPA before reading waits (see _audit_cluster)
AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")
# controllers first: a page of them is as cheap as a page of pods, and they are what people own
WORKLOAD_RESOURCES: tuple[tuple[Any, str, str], ...] = (
    (Deployment, "apps/v1", "Deployment"),
    (StatefulSet, "apps/v1", "StatefulSet"),
    (DaemonSet, "apps/v1", "DaemonSet"),
    (CronJob, "batch/v1", "CronJob"),
    (Job, "batch/v1", "Job"),
    (ReplicaSet, "apps/v1", "ReplicaSet"),
    (Pod, "v1", "Pod"),
)


class _Meta(TypedDict, total=False):
    """ObjectMeta without managedFields (most of a listed object's bytes) and selfLink."""

    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    deletionGracePeriodSeconds: int
    labels: dict[str, Any]
    annotations: dict[str, Any]
    ownerReferences: list[dict[str, Any]]
    finalizers: list[Any]


class _Workload(TypedDict, total=False):
    """What the audit reads of a workload: its metadata (as above) and spec; status is skipped."""

    apiVersion: str
    kind: str
    metadata: _Meta
    spec: dict[str, Any]


_ListMeta = TypedDict("_ListMeta", {"continue": str}, total=False)


class _AnyList(TypedDict, total=False):
    metadata: _ListMeta
    items: list[dict[str, Any]]


class _WorkloadList(TypedDict, total=False):
    metadata: _ListMeta
    items: list[_Workload]


class _Policy(TypedDict, total=False):
    """What the audit reads of an AIDataPolicy: its metadata (as above), spec and status (10,000
    policies with their managedFields took some 100 MB more)."""

    apiVersion: str
    kind: str
    metadata: _Meta
    spec: dict[str, Any]
    status: dict[str, Any]


class _PolicyList(TypedDict, total=False):
    metadata: _ListMeta
    items: list[_Policy]


ANY_LIST = msgspec.json.Decoder(_AnyList)
WORKLOAD_LIST = msgspec.json.Decoder(_WorkloadList)
POLICY_LIST = msgspec.json.Decoder(_PolicyList)

# the HTTP client of each lightkube client the audit lists with (see _http)
_HTTP: weakref.WeakKeyDictionary[Client, httpx2.Client] = weakref.WeakKeyDictionary()
_HTTP_LOCK = threading.Lock()


def _http(client: Client) -> httpx2.Client:
    """An HTTP client for `client`'s cluster, built from its public configuration (`Client.config`)
    by lightkube's own adapter (`lightkube.config.client_adapter`: the server, the CA, the user's
    credentials, exec plugins and token files included), made once per lightkube client and kept
    while that client lives, so that its connections are reused from one LIST to the next."""
    with _HTTP_LOCK:
        http = _HTTP.get(client)
        if http is None:
            params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(LIST_TIMEOUT), trust_env=False)
            http = _HTTP[client] = client_adapter.Client(client.config, params)
        return http


def list_path(res: Any, namespace: str | None) -> str:
    """The LIST URL path of `res` (in `namespace`, or in every namespace when None)."""
    info = api_info(res)
    group, version = info.resource.group, info.resource.version
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace and issubclass(res, NamespacedResourceG):
        path += f"/namespaces/{namespace}"
    return f"{path}/{info.plural}"


def _raise_for_status(response: httpx2.Response) -> None:
    """An HTTP error as lightkube raises it: ApiError (with the API server's Status) when the body
    is JSON, else httpx2.HTTPStatusError (both in kube.KUBE_ERRORS)."""
    if response.is_success:
        return
    if response.headers.get("Content-Type", "").startswith("application/json"):
        raise ApiError(request=response.request, response=response)
    response.raise_for_status()


def raw_pages(
    client: Client,
    res: Any,
    namespace: str | None,
    decoder: msgspec.json.Decoder[Any] = ANY_LIST,
    limit: int = PAGE,
) -> Iterator[list[dict[str, Any]]]:
    """Paginated LIST of `res` (at most `limit` objects a request), each page decoded straight into
    plain dicts, keeping only what `decoder` declares. lightkube's list() would decode into typed
    models that to_dict() then turns back into the same dicts: twice the work, and lightkube has no
    public call for an undecoded LIST; so the request goes out on an HTTP client that lightkube's
    public configuration API builds for the same cluster and user (`_http`)."""
    http = _http(client)
    url = list_path(res, namespace)
    params = {"limit": str(limit)}
    while True:
        response = http.get(url, params=params)
        _raise_for_status(response)
        page = decoder.decode(response.content)
        yield page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
        params["continue"] = token


def stamped_pages(
    client: Client,
    res: Any,
    namespace: str | None,
    api_version: str,
    kind: str,
    decoder: msgspec.json.Decoder[Any] = ANY_LIST,
) -> Iterator[list[dict[str, Any]]]:
    """raw_pages with apiVersion and kind set on every object (list items lack them)."""
    for page in raw_pages(client, res, namespace, decoder):
        for obj in page:
            obj["apiVersion"], obj["kind"] = api_version, kind
        yield page


def listed(
    client: Client,
    res: Any,
    namespace: str | None,
    api_version: str,
    kind: str,
    decoder: msgspec.json.Decoder[Any] = ANY_LIST,
) -> Iterator[dict[str, Any]]:
    """Every object of `res` as a plain dict with apiVersion and kind set."""
    for page in stamped_pages(client, res, namespace, api_version, kind, decoder):
        yield from page


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the audit reads and judges pages.

    Decoding a page of 500 objects allocates some 10^5 dicts and lists, and every few hundred
    allocations trigger a collection that walks the live objects (the report so far, the
    policies, the verdict memo): with the collector on, the audit took three times as long. What
    is read is acyclic JSON, freed by reference counting as soon as a page is done, so memory
    still follows the page size. The collector is back on (if it was on) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _workload_pages(
    client: Client, namespace: str | None, skipped: list[Skipped]
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for res, api_version, kind in WORKLOAD_RESOURCES:
        pages = stamped_pages(client, res, namespace, api_version, kind, WORKLOAD_LIST)
        try:
            first = next(pages, None)
        except kube.KUBE_ERRORS as err:
            if kube.error_code(err) != 403:
                raise
            skipped.append(Skipped(f"workloads of kind {kind}", f"cannot list them: {kube.error_text(err)}"))
            continue
        for page in () if first is None else itertools.chain([first], pages):
            yield kind, page


def _readable(skipped: list[Skipped], analysis: str, read: Callable[[], T]) -> T | None:
    """`read()`, or None when the caller may not read what it needs (403): that analysis is then
    skipped and the report says so, rather than the whole audit failing (a namespace admin running
    `aidp audit -n` usually cannot list ClusterRoles)."""
    try:
        return read()
    except kube.KUBE_ERRORS as err:
        if kube.error_code(err) != 403:
            raise
        skipped.append(Skipped(analysis, f"not analysed: {kube.error_text(err)}"))
        return None


_END: Any = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, with the next one produced in a thread while the caller handles the current one
    (for pages: the request waits on the API server without holding up the caller)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aidp-read-ahead") as pool:
        upcoming = pool.submit(next, items, _END)
        while True:
            item = upcoming.result()
            if item is _END:
                return
            upcoming = pool.submit(next, items, _END)
            yield item


def list_policies(client: Client, namespace: str | None) -> list[dict[str, Any]]:
    return list(listed(client, AIDataPolicy, namespace, "aidp.io/v1alpha1", "AIDataPolicy", POLICY_LIST))


def provider_addresses(policy_objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """The addresses in force per (namespace, host), as the operator reports them in status."""
    out: dict[tuple[str, str], list[str]] = {}
    for obj in policy_objects:
        ns = obj["metadata"]["namespace"]
        for e in (obj.get("status") or {}).get("endpoints") or []:
            if e.get("host") and e.get("addresses"):
                out.setdefault((ns, e["host"]), [])
                out[(ns, e["host"])] = sorted(set(out[(ns, e["host"])]) | set(e["addresses"]))
    return out


def audit_cluster(
    client: Client,
    evaluate: Evaluate,
    *,
    namespace: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    today: dt.date | None = None,
    policy_objects: list[dict[str, Any]] | None = None,
    excluded: Collection[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> tuple[AuditReport, Auditor, list[dict[str, Any]]]:
    """Audit every top-level workload (of `namespace`, or the cluster). Returns the report, the
    auditor (per-policy tallies for status) and the AIDataPolicy objects read.

    The ClusterAIDataPolicies are read first (`excluded`: the namespaces they never govern): a
    private OPA (`LocalOpa`) gets them for its data; an operator's replica already has them."""
    with gc_paused():
        return _audit_cluster(client, evaluate, namespace, progress, today, policy_objects, excluded)


def _audit_cluster(
    client: Client,
    evaluate: Evaluate,
    namespace: str | None,
    progress: Callable[[str, int], None] | None,
    today: dt.date | None,
    policy_objects: list[dict[str, Any]] | None,
    excluded: Collection[str],
) -> tuple[AuditReport, Auditor, list[dict[str, Any]]]:
    skipped: list[Skipped] = []
    guardrails = audit_guardrails.read(client, namespace, skipped, excluded)
    from aidp.audit.evaluate import LocalOpa  # not at import: listing alone needs no OPA server code

    if isinstance(evaluate, LocalOpa):
        evaluate.use_guardrails(guardrails.documents(), guardrails.of)
    policy_objs = policy_objects if policy_objects is not None else list_policies(client, namespace)
    policies: list[Policy] = []
    if isinstance(evaluate, LocalOpa) and evaluate.parsed_from is policy_objs:
        policies = evaluate.policies  # parsed from these very objects (5,500 took 0.2 s)
    else:
        for obj in policy_objs:
            try:
                policies.append(Policy.from_object(obj))
            except PolicyError:
                continue  # the operator reports it in the policy's status
    netpols = _readable(
        skipped,
        "egress-bypass",
        lambda: list(listed(client, NetworkPolicy, namespace, "networking.k8s.io/v1", "NetworkPolicy")),
    )
    rbac = _readable(
        skipped,
        "credential-exposure",
        lambda: RbacIndex.build(
            listed(client, Role, namespace, "rbac.authorization.k8s.io/v1", "Role"),
            listed(client, ClusterRole, None, "rbac.authorization.k8s.io/v1", "ClusterRole"),
            listed(client, RoleBinding, namespace, "rbac.authorization.k8s.io/v1", "RoleBinding"),
            listed(client, ClusterRoleBinding, None, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ),
    )
    auditor = Auditor(
        evaluate,
        policies,
        today or dt.datetime.now(dt.UTC).date(),
        netpols,
        rbac,
        provider_addresses(policy_objs),
        scope=f"namespace {namespace}" if namespace else "cluster",
        owners=OwnerResolver(client),
        governed=governed_namespaces(policies, policy_objs) | guardrails.namespaces,
        guardrails=guardrails.valid,
        guardrails_of=guardrails.of,
    )
    auditor.report.skipped.extend(skipped)
    bounds = audit_guardrails.bounds(guardrails, policy_objs, evaluate)
    auditor.report.findings.extend(audit_guardrails.findings(bounds))
    auditor.report.guardrails = audit_guardrails.summaries(guardrails, policy_objs, bounds)
    # A pipeline: the API server sends the next page while this one is prepared, and OPA judges
    # the pages already prepared meanwhile (IN_FLIGHT at a time); judged pages are applied in
    # order as soon as they are judged. Reading waits only when MAX_WAITING pages wait for OPA (a
    # private OPA may still be loading thousands of policies as the first pages come), so memory
    # stays bounded by the page size.
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="aidp-audit") as pool:
        pending: deque[tuple[list[Any], Future[list[dict[str, Any]]]]] = deque()
        for kind, page in read_ahead(_workload_pages(client, namespace, auditor.report.skipped)):
            batch = auditor.prepare(page)
            if batch:
                pending.append((batch, pool.submit(evaluate, [g.review for g in batch])))
            while pending and (len(pending) > MAX_WAITING or pending[0][1].done()):
                done, future = pending.popleft()
                auditor.apply(done, future.result())
            if progress:
                progress(kind, len(page))
        while pending:
            done, future = pending.popleft()
            auditor.apply(done, future.result())
    return auditor.finish(), auditor, policy_objs
