"""The provider catalog from a ConfigMap (`aidp run --provider-catalog-configmap NS/NAME[:KEY]`):
read once at start (refused: the operator does not start), then watched.

Thin: parsing and validation are aidp.catalog's (`from_configmap`). A valid change is installed as
the process's catalog (`aidp.catalog.use`) and a full sync and an audit are asked for, so the egress
rules, the Rego detector data in the bundle and the shadow-AI detection follow without a restart.
A change that does not validate (or a deleted ConfigMap) keeps the last good catalog and is
reported: a log line, a Warning Event on the ConfigMap (`ProviderCatalogRejected`, naming the line
and the field) and the gauge `aidp_provider_catalog_rejected` (1 while the ConfigMap's content is
not the catalog in use). The watch asks for the one ConfigMap by name (a field selector), which is
what lets RBAC grant list/watch on it alone (resourceNames; docs/operations.md).

A sync that is running while a change is installed may read both catalogs (readers look up
`catalog.current()` on every call); the full sync the change asks for follows it and renders
everything from the new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lightkube import AsyncClient, Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap

from aidp import catalog, kube, metrics
from aidp.controller import events

log = logging.getLogger("aidp.catalog")

REJECTED = "ProviderCatalogRejected"
APPLIED = "ProviderCatalogApplied"


class StartError(Exception):
    """The ConfigMap's catalog cannot be used at start; the message names the ConfigMap (and, for
    its content, the line and the field)."""


def read_at_start(client: Client, ref: catalog.ConfigMapRef) -> tuple[catalog.Catalog, object]:
    """The catalog in the ConfigMap now, and the ConfigMap's data (for CatalogWatch.started_with);
    StartError when it is missing, unreadable or malformed."""
    try:
        cm = client.get(ConfigMap, ref.name, namespace=ref.namespace)
    except ApiError as err:
        raise StartError(f"provider catalog {ref.source}: {unreadable(err, ref)}") from None
    except Exception as err:  # no connection, no credentials: said, and no start
        raise StartError(f"provider catalog {ref.source}: cannot be read ({kube.error_text(err)})") from None
    try:
        return catalog.from_configmap(cm.data, ref), cm.data
    except catalog.CatalogError as err:
        raise StartError(str(err)) from None


def unreadable(err: ApiError, ref: catalog.ConfigMapRef) -> str:
    """Why the API refused to give the ConfigMap, and what fixes it (404: create it; 403: the RBAC
    the caller needs, get on that one ConfigMap)."""
    code = kube.error_code(err)
    if code == 404:
        return (
            f"the ConfigMap does not exist (create it: kubectl -n {ref.namespace} create configmap "
            f"{ref.name} --from-file={ref.key}=FILE)"
        )
    if code == 403:
        return (
            f"the ConfigMap cannot be read ({kube.error_text(err)}): the identity in use needs get on "
            f'configmaps in namespace {ref.namespace} (a Role with apiGroups [""], resources '
            f"[configmaps], resourceNames [{ref.name}], verbs [get], and a RoleBinding to it)"
        )
    return f"the ConfigMap cannot be read ({kube.error_text(err)})"


def _digest(data: object) -> str:
    return hashlib.sha256(
        repr(sorted((data or {}).items()) if isinstance(data, Mapping) else data).encode()
    ).hexdigest()


class CatalogWatch:
    """Watches the ConfigMap; `on_change` is called after a new catalog was installed. `report`
    says whether this replica posts Events (the one that works: the leader, or the only one)."""

    def __init__(
        self,
        client: AsyncClient,
        ref: catalog.ConfigMapRef,
        on_change: Callable[[], None],
        report: Callable[[], bool] = lambda: True,
        *,
        retry_seconds: float = 2.0,
    ) -> None:
        self.client = client
        self.ref = ref
        self.on_change = on_change
        self.report = report
        self.retry_seconds = retry_seconds
        self.applied: str | None = None  # digest of the data whose catalog is in use
        self.seen: str | None = None  # digest of the last data observed (applied or refused)
        self.applied_count = 0
        self.rejected_count = 0

    def started_with(self, data: object) -> None:
        """The data read at start (read_at_start) is in use."""
        self.applied = self.seen = _digest(data)
        metrics.CATALOG_REJECTED.set(0)

    async def run(self) -> None:
        """Watch until cancelled; a failed watch is started again after `retry_seconds` (the
        first events of a new watch are the ConfigMap as it is, compared with what is in use)."""
        while True:
            try:
                async for op, obj in self.client.watch(
                    ConfigMap, namespace=self.ref.namespace, fields={"metadata.name": self.ref.name}
                ):
                    await self.observe(op, obj)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the watch is started again, never given up
                log.warning(
                    "watching %s failed (%s); again in %.0fs",
                    self.ref.source,
                    kube.error_text(err),
                    self.retry_seconds,
                )
            await asyncio.sleep(self.retry_seconds)

    async def observe(self, op: str, obj: Any) -> None:
        """One watch event: apply a valid change, report an invalid one; never raises on odd data."""
        if getattr(obj, "metadata", None) is None or getattr(obj.metadata, "name", None) != self.ref.name:
            return
        if op == "DELETED":
            self.seen = None
            await self._reject(obj, f"provider catalog {self.ref.source}: the ConfigMap was deleted")
            return
        data = getattr(obj, "data", None)
        digest = _digest(data)
        if digest == self.seen:
            return  # what is in use, or what was refused already
        self.seen = digest
        try:
            new = catalog.from_configmap(data, self.ref)
        except catalog.CatalogError as err:
            await self._reject(obj, str(err))
            return
        except Exception as err:  # odd data never stops the operator
            await self._reject(obj, f"provider catalog {self.ref.source}: cannot be used ({err})")
            return
        if digest == self.applied:
            metrics.CATALOG_REJECTED.set(0)  # back to the content in use: nothing to reload
            return
        catalog.use(new)
        self.applied = digest
        self.applied_count += 1
        metrics.CATALOG_REJECTED.set(0)
        metrics.CATALOG_RELOADS.labels("applied").inc()
        log.info(
            "provider catalog %s applied: %d providers (%s)",
            self.ref.source,
            len(new.names),
            ", ".join(new.names),
        )
        self.on_change()
        if self.report():
            await events.post(
                self.client,
                _reference(obj),
                "Normal",
                APPLIED,
                f"provider catalog applied: {len(new.names)} providers ({', '.join(new.names)})",
            )

    async def _reject(self, obj: Any, message: str) -> None:
        self.rejected_count += 1
        metrics.CATALOG_REJECTED.set(1)
        metrics.CATALOG_RELOADS.labels("rejected").inc()
        kept = catalog.current()
        full = f"{message}; keeping the last good catalog ({kept.source}, {len(kept.names)} providers)"
        log.error("%s", full)
        if self.report():
            await events.post(self.client, _reference(obj), "Warning", REJECTED, full)


def _reference(obj: Any) -> dict[str, Any]:
    meta = obj.metadata
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "resourceVersion": meta.resourceVersion,
        },
    }
