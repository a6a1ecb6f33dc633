"""lightkube resource types for aidp's own API and helpers for paginated, async reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource

AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")
# read for the egress isolation of pods with the cilium backend (aidp.egress.isolation)
CiliumNetworkPolicy = create_namespaced_resource(
    "cilium.io", "v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies"
)

PAGE = 500  # the audit and the reconciler never ask for more than this per request


async def list_all(
    client: AsyncClient, res: Any, namespace: str | None = "*", **kw: Any
) -> AsyncIterator[Any]:
    """Every object of `res`, fetched in chunks of at most PAGE (lightkube follows `continue`)."""
    async for obj in client.list(res, namespace=namespace, chunk_size=PAGE, **kw):
        yield obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object as a plain dict (as the API server sent it)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
