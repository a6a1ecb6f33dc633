"""Watches that only wake the reconciler: the egress objects aidp generates (an edit or a deletion
is repaired at once, not at the next resync) and the users' NetworkPolicies (which pods they
isolate for egress: aidp.egress.isolation).

A plain lightkube watch run by the working replica, not a Kopf handler: Kopf keeps a memory of every
object it watches (about 1.2 KB each; 11,000 generated NetworkPolicies at 10,000 policies), and these
events need none, since the sync they trigger reads what it needs again. A watch that fails is
started again after `retry_seconds`; its first events (every object, as ADDED) only ask for a sync
that compares the live objects, which is what a missed event needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.networking_v1 import NetworkPolicy

from aidp import kube
from aidp.config import MANAGED_BY
from aidp.controller.egress import KINDS, resource_for
from aidp.egress import backends

log = logging.getLogger("aidp.egress")

_MANAGED_KEY, _MANAGED_VALUE = next(iter(MANAGED_BY.items()))


@dataclass(frozen=True)
class WatchedKind:
    """One kind to watch: `users` when the users' objects of that kind matter too (they can
    isolate pods for egress), not only aidp's own."""

    name: str
    resource: Any
    namespaced: bool
    users: bool


def kinds(backend: str) -> list[WatchedKind]:
    """What to watch with an egress backend: NetworkPolicies always (users' ones isolate pods
    whatever the backend), and the kinds the backend writes (aidp.egress.backends); users' objects
    matter for namespaced kinds only (a user's cluster-scoped admin-tier object isolates nothing
    aidp reads)."""
    out = [WatchedKind("networkpolicies", NetworkPolicy, namespaced=True, users=True)]
    if backend == "none":
        return out
    b = backends.get(backend)
    for group, version, plural in b.kinds:
        if plural != "networkpolicies":
            res = resource_for(group, version, plural, KINDS[plural], b.cluster_scoped)
            out.append(WatchedKind(plural, res, namespaced=not b.cluster_scoped, users=not b.cluster_scoped))
    return out


def is_managed(labels: Mapping[str, Any] | None) -> bool:
    """An object aidp generated (app.kubernetes.io/managed-by: aidp)."""
    return labels is not None and labels.get(_MANAGED_KEY) == _MANAGED_VALUE


@dataclass(frozen=True)
class Wakers:
    """What an event asks of the reconciler: `managed()` after a generated object changed,
    `user(namespace)` after a user's object changed in a namespace."""

    managed: Callable[[], None]
    user: Callable[[str], None]


def dispatch(kind: WatchedKind, obj: Any, wake: Wakers) -> None:
    """One watch event (pure routing; never raises on odd data)."""
    meta = getattr(obj, "metadata", None)
    labels = getattr(meta, "labels", None)
    if is_managed(labels if isinstance(labels, Mapping) else None):
        wake.managed()
    elif kind.users:
        namespace = getattr(meta, "namespace", None)
        if isinstance(namespace, str) and namespace:
            wake.user(namespace)


async def watch(client: AsyncClient, kind: WatchedKind, wake: Wakers, *, retry_seconds: float = 2.0) -> None:
    """Watch one kind until cancelled; a failed watch is started again."""
    while True:
        try:
            stream = (
                client.watch(kind.resource, namespace="*") if kind.namespaced else client.watch(kind.resource)
            )
            async for _, obj in stream:
                dispatch(kind, obj, wake)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the watch is started again, never given up
            log.warning(
                "watching %s failed (%s); again in %.0fs", kind.name, kube.error_text(err), retry_seconds
            )
        await asyncio.sleep(retry_seconds)
