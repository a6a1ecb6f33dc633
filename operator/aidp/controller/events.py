"""Kubernetes Events about AIDataPolicies (core/v1, the kind `kubectl describe` shows)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

log = logging.getLogger("aidp.events")
COMPONENT = "aidp-operator"


async def post(client: AsyncClient, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Record an Event on `obj`; failures are logged, never raised (events are best effort)."""
    meta = obj.get("metadata") or {}
    now = dt.datetime.now(dt.UTC)
    event = Event(
        # Events about cluster-scoped objects (ClusterAIDataPolicies) live in `default`
        metadata=ObjectMeta(
            generateName=f"{meta.get('name', 'aidp')}.", namespace=meta.get("namespace") or "default"
        ),
        involvedObject=ObjectReference(
            apiVersion=obj.get("apiVersion"),
            kind=obj.get("kind"),
            name=meta.get("name"),
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
            resourceVersion=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:1024],
        type=type_,
        source=EventSource(component=COMPONENT),
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
    try:
        await client.create(event)
    except Exception as exc:
        log.warning("could not record event %s on %s: %s", reason, meta.get("name"), exc)
