"""Workloads as aidp sees them: the pod template of each checked kind, and top-level owners."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# kind -> (apiVersion, plural); the kinds the admission rules check (CONTRACT section 3)
CHECKED_KINDS: dict[str, tuple[str, str]] = {
    "Pod": ("v1", "pods"),
    "Deployment": ("apps/v1", "deployments"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
}
# these are workloads in their own right only without an owner (CONTRACT section 5)
OWNED_WHEN_CONTROLLED = ("Pod", "ReplicaSet", "Job")


@dataclass(frozen=True)
class PodTemplate:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account: str
    spec: Mapping[str, Any]


def _meta_map(meta: Mapping[str, Any], key: str) -> dict[str, str]:
    value = meta.get(key) or {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def pod_template(obj: Mapping[str, Any]) -> PodTemplate | None:
    """The pod template of a checked object (the Pod itself for a Pod), or None."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        tpl: Mapping[str, Any] = {"metadata": obj.get("metadata") or {}, "spec": spec}
    elif kind == "CronJob":
        tpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    elif kind in CHECKED_KINDS:
        tpl = spec.get("template") or {}
    else:
        return None
    meta = tpl.get("metadata") or {}
    pspec = tpl.get("spec") or {}
    sa = pspec.get("serviceAccountName") or pspec.get("serviceAccount") or "default"
    return PodTemplate(_meta_map(meta, "labels"), _meta_map(meta, "annotations"), str(sa), pspec)


def is_top_level(obj: Mapping[str, Any]) -> bool:
    """True for the workloads the audit reports: controllers, and Pods/ReplicaSets/Jobs without one."""
    if obj.get("kind") not in OWNED_WHEN_CONTROLLED:
        return True
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return not any(r.get("controller") for r in refs if isinstance(r, Mapping))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty or missing selector matches nothing (as in aidp)."""
    if not selector:
        return False
    match_labels = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not match_labels and not exprs:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in exprs:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def count_selected(selector: Mapping[str, Any] | None, workloads: Iterable[Mapping[str, Any]]) -> int:
    """How many top-level workloads' pod templates `selector` selects."""
    total = 0
    for obj in workloads:
        if not is_top_level(obj):
            continue
        tpl = pod_template(obj)
        if tpl is not None and selector_matches(selector, tpl.labels):
            total += 1
    return total
