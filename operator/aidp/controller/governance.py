"""Cluster governance (ClusterAIDataPolicy, contract section 6): which namespaces each guardrail
governs, what their baselines cut, and whether the namespace policies stay within bounds.

Pure functions first (unit-tested); `read_guardrails` and `read_namespaces` are the only reads.
Whether a namespace policy is within bounds is the Rego's answer (the admission decision for
creating it now), so admission and the `WithinBounds` condition can never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import create_global_resource
from lightkube.resources.core_v1 import Namespace

from aidp import kube
from aidp.catalog import current as current_catalog
from aidp.controller.resources import list_all, to_dict
from aidp.guardrail import ClusterPolicy
from aidp.model import PolicyError

log = logging.getLogger("aidp.governance")

ClusterAIDataPolicy = create_global_resource(
    "aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies"
)

BOUNDS_PREFIX = "looser than "


@dataclass
class Guardrails:
    """The ClusterAIDataPolicies read in one sync, and the namespaces each one selects."""

    valid: list[ClusterPolicy] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)  # name -> problem
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> the object as read
    of: dict[str, list[str]] = field(default_factory=dict)  # namespace -> names selecting it
    available: bool = True  # False when the CRD is not installed

    @property
    def namespaces(self) -> set[str]:
        return {ns for ns, names in self.of.items() if names}

    def documents(self) -> dict[str, dict[str, Any]]:
        return {g.name: g.to_document() for g in self.valid}

    def add(self, item: Any) -> None:
        """Keep a listed ClusterAIDataPolicy: as read, and parsed or with the reason it is not."""
        obj = to_dict(item)
        name = str((obj.get("metadata") or {}).get("name", ""))
        self.objects[name] = obj
        try:
            self.valid.append(ClusterPolicy.from_object(obj))
        except PolicyError as err:
            self.invalid[name] = str(err)


def select(
    guardrails: Sequence[ClusterPolicy], namespaces: Mapping[str, Mapping[str, str]], excluded: Iterable[str]
) -> dict[str, list[str]]:
    """namespace -> the guardrails that select it (by their namespaceSelector), excluded never."""
    skip = set(excluded)
    out: dict[str, list[str]] = {}
    for ns, labels in sorted(namespaces.items()):
        if ns in skip:
            continue
        names = sorted(g.name for g in guardrails if g.selects_namespace(labels))
        if names:
            out[ns] = names
    return out


def selection_key(guardrails: Sequence[ClusterPolicy], excluded: Iterable[str]) -> object:
    """All that `select` reads beside the namespaces' labels: equal keys, equal selections of
    the same namespaces."""
    by_name = sorted(guardrails, key=lambda g: g.name)
    return (tuple((g.name, g.namespace_selector) for g in by_name), frozenset(excluded))


NamespaceReader = Callable[[], Awaitable[Mapping[str, Mapping[str, str]]]]


@dataclass
class Selection:
    """Which namespaces the guardrails select, kept between syncs.

    Working it out needs every namespace's labels (a LIST of all namespaces, the largest read of
    a sync in a cluster with many of them), so it is read again only when the answer can have
    changed: on full syncs, when the guardrails' selectors (or the exclusions) changed, and when
    the namespace watch saw a namespace whose selection differs from the one held, or one that
    went away (`stale`, set by `aidp.controller.handlers.namespace_changed`)."""

    key: object = None
    of: dict[str, list[str]] = field(default_factory=dict)
    stale: bool = True

    async def select(
        self,
        guardrails: Sequence[ClusterPolicy],
        excluded: Iterable[str],
        read: NamespaceReader,
        *,
        full: bool = False,
    ) -> dict[str, list[str]]:
        """namespace -> the guardrails that select it; a copy the caller may keep."""
        skip = frozenset(excluded)
        key = selection_key(guardrails, skip)
        if full or self.stale or key != self.key:
            # cleared before the read: a namespace event that arrives during it marks it again
            self.stale = False
            try:
                namespaces = await read()
            except BaseException:
                self.stale = True
                raise
            self.key, self.of = key, select(guardrails, namespaces, skip)
        return {ns: list(names) for ns, names in self.of.items()}

    def event(
        self,
        guardrails: Sequence[ClusterPolicy],
        name: str,
        labels: Mapping[str, str] | None,
        excluded: Iterable[str],
    ) -> bool:
        """A namespace event (`labels` None: deleted): whether the selection held is now wrong, in
        which case it is marked stale (the caller triggers a sync)."""
        if labels is None:
            wrong = name in self.of
        else:
            wrong = select(guardrails, {name: labels}, excluded).get(name, []) != self.of.get(name, [])
        if wrong:
            self.stale = True
        return wrong


def governed_hosts(guardrails: Sequence[ClusterPolicy], names: Iterable[str]) -> tuple[str, ...]:
    """The hosts the guardrails `names` close off: those of the providers they list, or of the
    whole catalog when one lists none."""
    catalog = current_catalog()
    by_name = {g.name: g for g in guardrails}
    providers: dict[str, None] = {}
    for name in names:
        g = by_name.get(name)
        if g is None:
            continue
        providers.update(dict.fromkeys(g.providers or catalog.names))
    hosts = [h for p in providers if (prov := catalog.get(p)) is not None for h in prov.all_hosts()]
    return tuple(dict.fromkeys(hosts))


def bounds_problem(decision: Mapping[str, Any] | None) -> str | None:
    """The out-of-bounds message of an admission decision for creating a policy, else None."""
    if not decision or decision.get("allowed") is not False:
        return None
    message = str(decision.get("message") or "")
    return message if BOUNDS_PREFIX in message else None


def policy_review(obj: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The AdmissionReview of creating this AIDataPolicy now (what the bounds are checked on)."""
    from aidp.check import policy_review as review

    return review({**obj, "apiVersion": obj.get("apiVersion") or "aidp.io/v1alpha1"}, f"aidp-bounds-{index}")


def status_of(g: ClusterPolicy, governed: int, policies: int, out_of_bounds: Sequence[str]) -> dict[str, Any]:
    """The status a guardrail should show (conditions are merged by aidp.status.patch)."""
    message = f"governs {governed} namespace(s), {policies} AIDataPolicy object(s) in scope"
    if out_of_bounds:
        message += f"; out of bounds: {', '.join(out_of_bounds[:20])}"
    return {
        "observedGeneration": g.generation,
        "governedNamespaces": governed,
        "policies": policies,
        "outOfBounds": list(out_of_bounds),
        "ready": ("True", "Enforced", message),
    }


# ---- reads --------------------------------------------------------------------------------------


async def read_guardrails(client: AsyncClient) -> Guardrails:
    out = Guardrails()
    try:
        # a CRD just created or changed answers 429 for a while: asked again for a moment
        items = await kube.with_retries_async(lambda: _list(client), within=2.0)
        for item in items:
            out.add(item)
    except kube.KUBE_ERRORS as err:
        if kube.error_code(err) != 404:
            raise
        out.available = False  # the CRD is not installed: no guardrails
    return out


async def _list(client: AsyncClient) -> list[Any]:
    return [item async for item in list_all(client, ClusterAIDataPolicy, namespace=None)]


async def read_namespaces(client: AsyncClient) -> dict[str, dict[str, str]]:
    """name -> labels of every namespace (one paginated LIST)."""
    out: dict[str, dict[str, str]] = {}
    async for ns in list_all(client, Namespace, namespace=None):
        if ns.metadata and ns.metadata.name:
            out[ns.metadata.name] = dict(ns.metadata.labels or {})
    return out
