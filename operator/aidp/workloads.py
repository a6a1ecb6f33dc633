"""Workloads as aidp sees them: the pod template of each checked kind, and top-level owners."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aidp.model import CHECKED_KINDS, LabelSelector

# these are workloads in their own right only without an owner (contract section 5 (docs/policy-contract.md))
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


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def pod_template(obj: Mapping[str, Any]) -> PodTemplate | None:
    """The pod template of a checked object (the Pod itself for a Pod), or None.

    Only the kind is looked at: objects listed from the API server may come without apiVersion.
    """
    checked = next((c for c in CHECKED_KINDS if c.kind == obj.get("kind")), None)
    if checked is None:
        return None
    tpl: Mapping[str, Any] = obj
    for key in checked.template_path:
        tpl = _mapping(tpl.get(key))
    meta = _mapping(tpl.get("metadata"))
    pspec = _mapping(tpl.get("spec"))
    sa = pspec.get("serviceAccountName") or pspec.get("serviceAccount") or "default"
    return PodTemplate(_meta_map(meta, "labels"), _meta_map(meta, "annotations"), str(sa), pspec)


def is_top_level(obj: Mapping[str, Any]) -> bool:
    """True for the workloads the audit reports: controllers, and Pods/ReplicaSets/Jobs without one."""
    if obj.get("kind") not in OWNED_WHEN_CONTROLLED:
        return True
    refs = _mapping(obj.get("metadata")).get("ownerReferences") or []
    return not any(r.get("controller") for r in refs if isinstance(r, Mapping))


def count_selected(selector: LabelSelector, workloads: Iterable[Mapping[str, Any]]) -> int:
    """How many top-level workloads' pod templates `selector` selects (an empty selector: none)."""
    total = 0
    for obj in workloads:
        if not is_top_level(obj):
            continue
        tpl = pod_template(obj)
        if tpl is not None and selector.matches(tpl.labels):
            total += 1
    return total
