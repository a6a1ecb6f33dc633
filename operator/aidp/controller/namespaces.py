"""The operator's labels on namespaces: `aidp.io/governed` (the webhook's scope: any AIDataPolicy,
or a ClusterAIDataPolicy selecting it) and `aidp.io/guardrailed` (a ClusterAIDataPolicy selects it:
AIDataPolicy writes there are checked against its bounds). Admission lets only the operator change
them (policies/aidp/admission.rego)."""

from __future__ import annotations

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from aidp.config import GOVERNED_LABEL, GUARDRAILED_LABEL
from aidp.controller.resources import list_all


async def label(client: AsyncClient, governed: set[str], guardrailed: set[str]) -> None:
    """Set each label where it belongs and remove it everywhere else (a namespace that is gone
    meanwhile is skipped)."""
    for key, want in ((GOVERNED_LABEL, governed), (GUARDRAILED_LABEL, guardrailed)):
        labelled = {
            ns.metadata.name
            async for ns in list_all(client, Namespace, namespace=None, labels={key: "true"})
            if ns.metadata and ns.metadata.name
        }
        for name in sorted(want - labelled):
            await _patch(client, name, key, "true")
        for name in sorted(labelled - want):
            await _patch(client, name, key, None)


async def _patch(client: AsyncClient, name: str, key: str, value: str | None) -> None:
    try:
        await client.patch(
            Namespace, name, {"metadata": {"labels": {key: value}}}, patch_type=PatchType.MERGE
        )
    except ApiError as err:
        if err.status.code != 404:
            raise
