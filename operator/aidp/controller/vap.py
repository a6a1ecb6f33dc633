"""The `vap` admission engine in the operator: applies the ValidatingAdmissionPolicy objects of
`aidp.vap` (server-side apply, field manager aidp, labelled managed-by aidp), repairs drift, prunes
them when the engine is `opa`, and keeps the webhook configuration away when the engine is `vap`.

The reconciler calls `sync` on every sync (its one hook); Kopf's handler for the policy objects
calls `observed` (handlers.py); the webhook's certificates are managed by `webhook_certs`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
)

from aidp import render, vap
from aidp.config import OperatorConfig
from aidp.controller.certs import WebhookCerts
from aidp.controller.resources import to_dict
from aidp.model import Policy
from aidp.vap import unapproved as vap_params

log = logging.getLogger("aidp.operator.vap")

FIELD_MANAGER = "aidp"
KINDS: dict[str, type[ValidatingAdmissionPolicy] | type[ValidatingAdmissionPolicyBinding]] = {
    "ValidatingAdmissionPolicy": ValidatingAdmissionPolicy,
    "ValidatingAdmissionPolicyBinding": ValidatingAdmissionPolicyBinding,
}

# the vap engine's param for `unapproved-ai` (crds/aidp.io_namespaceadmissions.yaml)
NamespaceAdmission = create_namespaced_resource(
    "aidp.io", "v1alpha1", vap_params.PARAMS_KIND, vap_params.PARAMS_PLURAL
)


class State:
    """What this operator applied: (kind, name) -> the rendered object and its digest."""

    def __init__(self) -> None:
        self.desired: dict[tuple[str, str], dict[str, Any]] = {}
        self.applied: dict[tuple[str, str], str] = {}
        self.absent: set[tuple[str, str]] = set()  # not rendered, and known to be deleted
        self.pruned = False
        # the NamespaceAdmission params: namespace -> digest of what was applied; None: not listed
        self.params: dict[str, str] | None = None

    def forget(self, kind: str, name: str) -> None:
        self.applied.pop((kind, name), None)
        self.absent.discard((kind, name))
        self.pruned = False


STATE = State()


def uses_vap(config: OperatorConfig) -> bool:
    return config.admission_engine in ("vap", "both")


def uses_webhook(config: OperatorConfig) -> bool:
    return config.admission_engine in ("opa", "both")


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


async def sync(
    client: AsyncClient,
    config: OperatorConfig,
    operator_users: Sequence[str],
    guardrails: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    policies: Sequence[Policy] = (),
    guardrails_of: Mapping[str, Sequence[str]] | None = None,
    full: bool = False,
    today: dt.date | None = None,
    state: State = STATE,
) -> None:
    """Apply what changed (today's date, the excluded namespaces, the operator's user name, or an
    object found edited or deleted), and the NamespaceAdmission params `unapproved-ai` reads (from
    the parsed `policies` and `guardrails_of`, namespace -> the guardrails selecting it); with the
    `opa` engine, delete what aidp applied before. Errors are logged, not raised: the next sync
    retries, and the OPA side of the sync goes on. `full`: compare the live params too."""
    try:
        if uses_vap(config):
            wanted = vap_params.params_namespaces(guardrails or {}, guardrails_of or {})
            by_ns: dict[str, list[dict[str, Any]]] = {}
            for p in policies:
                if p.namespace in wanted:
                    by_ns.setdefault(p.namespace, []).append(render.policy_document(p))
            params = vap_params.params_objects(by_ns, guardrails or {}, guardrails_of or {})
            # the params before the policies that read them (a missing param admits)
            try:
                await _apply_params(client, params, full, state)
            except ApiError as err:
                # the rest of the vap engine does not depend on them: apply it all the same
                state.params = None
                log.error(
                    "NamespaceAdmission params not applied (rule unapproved-ai is not enforced by the vap "
                    "engine until they are; is crds/aidp.io_namespaceadmissions.yaml installed?): %s",
                    err.status.message,
                )
            await _apply(client, config, operator_users, today, guardrails, state)
        elif not state.pruned:
            await _prune(client)
            state.pruned = True
    except ApiError as err:
        if not uses_vap(config) and err.status.code == 404:  # no ValidatingAdmissionPolicy API: none to prune
            state.pruned = True
            return
        state.applied.clear()
        state.params = None
        log.error("ValidatingAdmissionPolicy objects not applied: %s", err.status.message)


async def _apply(
    client: AsyncClient,
    config: OperatorConfig,
    operator_users: Sequence[str],
    today: dt.date | None,
    guardrails: Mapping[str, Mapping[str, Any]] | None,
    state: State,
) -> None:
    objects = vap.render(config.all_excluded_namespaces, operator_users, today, guardrails)
    rendered = {(o["kind"], o["metadata"]["name"]) for o in objects}
    # what is not rendered (aidp-guardrails without ClusterAIDataPolicies) must not be left behind,
    # by this process or an earlier one
    every = {(kind, name) for kind in KINDS for name in vap.POLICY_NAMES}
    for key in sorted(every - rendered - state.absent, reverse=True):  # bindings first
        kind, name = key
        try:
            await client.delete(KINDS[kind], name)
            log.info("deleted %s %s (no longer rendered)", kind, name)
        except ApiError as err:
            if err.status.code != 404:
                raise
        state.desired.pop(key, None)
        state.applied.pop(key, None)
        state.absent.add(key)
    state.absent -= rendered
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        digest = _digest(obj)
        state.desired[key] = obj
        if state.applied.get(key) == digest:
            continue
        live: Any = await client.apply(codecs.from_dict(obj), field_manager=FIELD_MANAGER, force=True)
        if not covers(obj["spec"], _spec_of(live)):
            # server-side apply keeps what another manager added to a list of type set (an extra
            # validationAction, say): put the whole object back
            live = await client.get(KINDS[obj["kind"]], obj["metadata"]["name"])
            version = getattr(getattr(live, "metadata", None), "resourceVersion", None)
            fixed = codecs.from_dict({**obj, "metadata": {**obj["metadata"], "resourceVersion": version}})
            await client.replace(fixed, field_manager=FIELD_MANAGER)
        state.applied[key] = digest
        log.info("applied %s %s", *key)


async def _apply_params(
    client: AsyncClient, params: Mapping[str, dict[str, Any]], full: bool, state: State
) -> None:
    """Apply the NamespaceAdmission params that changed, delete those no longer wanted (a
    namespace no guardrail with unapprovedAI deny or warn selects any more). On the first and on
    every full sync the live ones are listed and compared: one edited or deleted by a cluster
    admin (who alone may bypass aidp-namespace-admission) is put back."""
    if state.params is None or full:
        state.params = {}
        async for live in client.list(NamespaceAdmission, namespace="*", labels={vap.ENGINE_LABEL: "vap"}):
            body = to_dict(live)
            ns = (body.get("metadata") or {}).get("namespace")
            if isinstance(ns, str):
                want = params.get(ns)
                same = want is not None and body.get("spec") == want["spec"]
                state.params[ns] = _digest(want) if same and want is not None else ""
    for ns in sorted(set(state.params) - set(params)):
        try:
            await client.delete(NamespaceAdmission, vap_params.PARAMS_NAME, namespace=ns)
            log.info("deleted NamespaceAdmission %s/%s", ns, vap_params.PARAMS_NAME)
        except ApiError as err:
            if err.status.code != 404:
                raise
        del state.params[ns]
    for ns, obj in params.items():
        digest = _digest(obj)
        if state.params.get(ns) == digest:
            continue
        await client.apply(codecs.from_dict(obj), field_manager=FIELD_MANAGER, force=True)
        state.params[ns] = digest
        log.info("applied NamespaceAdmission %s/%s", ns, vap_params.PARAMS_NAME)


async def _prune_params(client: AsyncClient) -> None:
    try:
        async for obj in client.list(NamespaceAdmission, namespace="*", labels={vap.ENGINE_LABEL: "vap"}):
            meta = getattr(obj, "metadata", None)
            ns, name = getattr(meta, "namespace", None), getattr(meta, "name", None)
            if isinstance(ns, str) and isinstance(name, str):
                with contextlib.suppress(ApiError):
                    await client.delete(NamespaceAdmission, name, namespace=ns)
    except ApiError as err:  # no CRD, or the chart's opa RBAC
        log.debug("NamespaceAdmission objects not pruned: %s", err.status.message)


async def _prune(client: AsyncClient) -> None:
    await _prune_params(client)
    for res in (ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicy):
        async for obj in client.list(res, labels={vap.ENGINE_LABEL: "vap"}):
            meta = getattr(obj, "metadata", None)
            name = getattr(meta, "name", None)
            if isinstance(name, str) and name in vap.POLICY_NAMES:
                try:
                    await client.delete(res, name)
                    log.info("deleted %s %s (admission engine opa)", res.__name__, name)
                except ApiError as err:
                    if err.status.code == 403:  # the chart's opa RBAC: list and watch only
                        log.warning("%s %s left from the vap engine: delete it (%s)", res.__name__, name, err)
                    elif err.status.code != 404:
                        raise


def _spec_of(obj: Any) -> Any:
    spec: Any = getattr(obj, "spec", None)
    return None if spec is None else spec.to_dict()


def covers(desired: Any, live: Any) -> bool:
    """Every field aidp sets has its value in the live object (the API server adds defaults)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(k in live and covers(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(covers, desired, live))
    return bool(desired == live)


def observed(body: Mapping[str, Any], event_type: str | None, state: State = STATE) -> bool:
    """A watch event of a ValidatingAdmissionPolicy or binding labelled managed-by aidp: True when
    it is one of ours and no longer what aidp applied (edited or deleted), so a sync must repair it."""
    kind = str(body.get("kind") or "")
    name = str((body.get("metadata") or {}).get("name") or "")
    desired = state.desired.get((kind, name))
    if desired is None:
        return False
    if event_type == "DELETED" or not covers(desired.get("spec"), body.get("spec")):
        state.forget(kind, name)
        return True
    return False


class _NoWebhookClient:
    """The API client WebhookCerts gets with the `vap` engine: applying the webhook configuration
    deletes it instead (no webhook on the request path); everything else goes through."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def apply(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, ValidatingWebhookConfiguration):
            name = obj.metadata.name if obj.metadata else None
            try:
                await self._client.delete(ValidatingWebhookConfiguration, str(name))
                log.info("deleted ValidatingWebhookConfiguration %s (admission engine vap)", name)
            except ApiError as err:
                if err.status.code == 403:
                    log.debug(
                        "may not delete ValidatingWebhookConfiguration %s: %s", name, err.status.message
                    )
                elif err.status.code != 404:
                    raise
            return obj
        return await self._client.apply(obj, *args, **kwargs)


def webhook_certs(config: OperatorConfig, client: AsyncClient) -> WebhookCerts:
    """OPA's serving certificate (the audit and the operator still talk to OPA over TLS), with the
    webhook configuration applied only when the engine uses the webhook."""
    if uses_webhook(config):
        return WebhookCerts(config, client)
    return WebhookCerts(config, cast(AsyncClient, _NoWebhookClient(client)))
