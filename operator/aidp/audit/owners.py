"""Whose workload is it? The top-level owner of an audited object.

aidp audits the pod templates of the checked kinds (Pod, ReplicaSet, Job, Deployment, StatefulSet,
DaemonSet, CronJob). An object whose controller is the kind that manages it in Kubernetes itself
(a Pod of a ReplicaSet, StatefulSet, DaemonSet or Job; a ReplicaSet of a Deployment; a Job of a
CronJob) is audited through that owner. Any other controller (a ReplicationController, an Argo
Rollout, a custom operator's resource) is one aidp does not list: the object is audited itself,
and reported as its top-level owner, the highest owner up its chain of controllers that aidp can
read; when it cannot read even the first one, as the object itself. (A static pod's mirror, whose
controller is its Node, is the pod itself.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from aidp import kube

# (kind of object) -> the (API group, kind) of the controllers through which it is audited
KNOWN_PARENTS: Mapping[str, frozenset[tuple[str, str]]] = {
    "Pod": frozenset(
        {("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("batch", "Job")}
    ),
    "ReplicaSet": frozenset({("apps", "Deployment")}),
    "Job": frozenset({("batch", "CronJob")}),
}
# labels controllers put on each revision or pod: one owner's objects differ in them only
PER_OBJECT_LABELS = frozenset(
    {
        "pod-template-hash",
        "rollouts-pod-template-hash",
        "controller-revision-hash",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "batch.kubernetes.io/job-completion-index",
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "job-name",
        "batch.kubernetes.io/job-name",
    }
)
MAX_DEPTH = 8
UNREADABLE = frozenset({401, 403, 404, 405})

# (namespace, controller ownerReference) -> (kind, name) of the highest owner aidp can read, or
# None when it cannot read the referenced controller
OwnerLookup = Callable[[str, Mapping[str, Any]], tuple[str, str] | None]


def _group(api_version: object) -> str:
    text = str(api_version or "")
    return text.split("/")[0] if "/" in text else ""


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with controller: true, if any."""
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def audited_through_owner(obj: Mapping[str, Any]) -> bool:
    """True when the object's controller is one the audit lists and audits instead of it."""
    ref = controller_ref(obj)
    if ref is None:
        return False
    return (_group(ref.get("apiVersion")), str(ref.get("kind"))) in KNOWN_PARENTS.get(
        str(obj.get("kind")), ()
    )


def dedupe_labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The labels by which one owner's objects are told apart as distinct workloads."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in PER_OBJECT_LABELS))


class OwnerResolver:
    """An OwnerLookup that reads the owners with `client` (one GET per owner, cached; the CRDs
    are listed once, when a custom resource first needs its plural)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._memo: dict[tuple[str, str, str, str], tuple[str, str] | None] = {}
        self._crds: dict[tuple[str, str], tuple[str, bool]] | None = None

    def __call__(self, namespace: str, ref: Mapping[str, Any]) -> tuple[str, str] | None:
        key = (namespace, str(ref.get("apiVersion")), str(ref.get("kind")), str(ref.get("name")))
        if key not in self._memo:
            self._memo[key] = self._resolve(namespace, ref)
        return self._memo[key]

    def _resolve(self, namespace: str, ref: Mapping[str, Any]) -> tuple[str, str] | None:
        best: tuple[str, str] | None = None
        seen: set[str] = set()
        current: Mapping[str, Any] | None = ref
        while current is not None and len(seen) < MAX_DEPTH:
            if (current.get("apiVersion"), current.get("kind")) == ("v1", "Node"):
                break  # a static pod's mirror: the node is not its workload
            obj = self._get(namespace, current)
            if obj is None:
                break
            meta = obj.get("metadata") or {}
            uid = str(meta.get("uid") or "")
            if uid in seen:  # a cycle of owners
                break
            seen.add(uid)
            best = (str(current.get("kind")), str(meta.get("name") or current.get("name")))
            current = controller_ref(obj)
        return best

    def _get(self, namespace: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        res = self._resource(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
        if res is None:
            return None
        try:
            if issubclass(res, NamespacedResource):
                got = self.client.get(res, str(ref.get("name")), namespace=namespace)
            else:
                got = self.client.get(res, str(ref.get("name")))
        except kube.KUBE_ERRORS as err:
            if kube.error_code(err) in UNREADABLE:
                return None
            raise
        obj: dict[str, Any] = got.to_dict()
        uid = ref.get("uid")
        if uid and (obj.get("metadata") or {}).get("uid") != uid:
            return None  # replaced by another object of the same name: not this object's owner
        return obj

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return resource_registry.load(api_version, kind)
        except (LoadResourceError, ValueError, ImportError, AttributeError):  # also a malformed apiVersion
            pass
        group, _, version = api_version.rpartition("/")
        crd = self._crd_index().get((group, kind))
        if not group or crd is None:
            return None
        plural, namespaced = crd
        create = create_namespaced_resource if namespaced else create_global_resource
        try:
            return create(group, version, kind, plural)
        except ValueError:  # already defined by someone else with other settings
            return resource_registry.get(api_version, kind)

    def _crd_index(self) -> dict[tuple[str, str], tuple[str, bool]]:
        if self._crds is None:
            self._crds = {}
            try:
                for crd in self.client.list(CustomResourceDefinition):
                    spec = crd.spec
                    self._crds[(spec.group, spec.names.kind)] = (
                        spec.names.plural,
                        spec.scope == "Namespaced",
                    )
            except kube.KUBE_ERRORS as err:
                if kube.error_code(err) not in UNREADABLE:
                    raise
        return self._crds
