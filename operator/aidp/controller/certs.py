"""The webhook's TLS Secrets and the ValidatingWebhookConfiguration, kept current by the operator.

Two Secrets: `webhook_tls_secret` (serving certificate, key and public CA certificates: what the
OPA agent reads and OPA mounts) and `webhook_ca_secret` (the CA and its key: only the operator reads
it). The CA Secret is written before the serving Secret, so a serving certificate is never published
by a CA that is not stored. A pass that finds the older one-Secret layout (the CA key inside the
serving Secret) writes both, which moves the key out: the serving Secret is server-side applied by
the same field manager without `ca.key`, so the API server removes it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import math
import tempfile
import time
from pathlib import Path

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from aidp import webhook, webhook_tls
from aidp.config import MANAGED_BY, OperatorConfig

log = logging.getLogger("aidp.certs")


class WebhookCerts:
    """Issues and rotates OPA's serving certificate; keeps the webhook's caBundle in step."""

    def __init__(self, config: OperatorConfig, client: AsyncClient) -> None:
        self.config = config
        self.client = client
        self._wake = asyncio.Event()
        self._dir = Path(tempfile.mkdtemp(prefix="aidp-operator-"))
        self.ca_file = self._dir / "opa-ca-bundle.crt"
        self.ready = asyncio.Event()
        self._last_step = -math.inf
        self._users: tuple[str, ...] | None = None

    def trigger(self) -> None:
        self._wake.set()

    async def operator_users(self) -> tuple[str, ...]:
        """Who the operator is to the API server (a SelfSubjectReview, asked once): its label writes
        on Pods stay out of the webhook (aidp.webhook.operator_label_write)."""
        if self._users is None:
            review = await self.client.create(SelfSubjectReview())
            info = review.status.userInfo if review.status else None
            if info is None or not info.username:
                raise RuntimeError("the API server did not say who the operator is (SelfSubjectReview)")
            self._users = (info.username,)
        return self._users

    async def _render(self, ca_bundle: bytes) -> ValidatingWebhookConfiguration:
        obj = webhook.render(self.config, ca_bundle, await self.operator_users())
        vwc = ValidatingWebhookConfiguration.from_dict(obj)
        if not isinstance(vwc, ValidatingWebhookConfiguration):
            raise TypeError(f"webhook.render gave {type(vwc).__name__}")
        return vwc

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook TLS reconcile failed; retrying in 2s")
                await asyncio.sleep(2.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.cert_check_seconds)
            self._wake.clear()

    async def reconcile(self) -> str | None:
        """One step: issue/renew/rotate if due, then make the webhook trust the current bundle."""
        if self.config.external_webhook_tls:
            return await self._external()
        current, layout_ok = await self._read()
        material, reason = current, None
        # Rotation steps are spaced out: the webhook's caBundle and OPA's certificate files must
        # have caught up with one step before the next one removes what they still rely on.
        if current is None or time.monotonic() - self._last_step >= self.config.cert_step_seconds:
            material, reason = webhook_tls.reconcile(
                current,
                dns_names=webhook_tls.dns_names_for(self.config.opa_service, self.config.namespace),
                ip_addresses=self.config.webhook_ip_sans,
                serving_lifetime=dt.timedelta(seconds=self.config.cert_serving_lifetime_seconds),
                ca_lifetime=dt.timedelta(seconds=self.config.cert_ca_lifetime_seconds),
            )
        if material is None:
            raise RuntimeError("webhook TLS: no material after a reconcile step")
        if reason:
            await self._write(material)
            self._last_step = time.monotonic()
            log.info("webhook TLS: %s", reason)
        elif not layout_ok:
            await self._write(material)
            await self._drop_legacy_ca_key()
            log.info("webhook TLS: ca-key-moved (Secret %s)", self.config.webhook_ca_secret)
        self.ca_file.write_bytes(material.ca_bundle)
        await self.client.apply(await self._render(material.ca_bundle), field_manager="aidp", force=True)
        self.ready.set()
        return reason

    async def _external(self) -> str | None:
        """cert-manager (or another issuer) owns the Secret: only keep the webhook's caBundle in step
        with the Secret's ca.crt, as cert-manager's CA injector would."""
        try:
            secret = await self.client.get(
                Secret, self.config.webhook_tls_secret, namespace=self.config.namespace
            )
        except ApiError as err:
            if err.status.code == 404:
                log.info(
                    "waiting for the webhook TLS Secret %s (external issuer)", self.config.webhook_tls_secret
                )
                return None
            raise
        ca = base64.b64decode((secret.data or {}).get("ca.crt", ""))
        if not ca:
            log.warning("Secret %s has no ca.crt yet", self.config.webhook_tls_secret)
            return None
        self.ca_file.write_bytes(ca)
        await self.client.apply(await self._render(ca), field_manager="aidp", force=True)
        self.ready.set()
        return None

    async def _get(self, name: str) -> dict[str, bytes] | None:
        try:
            secret = await self.client.get(Secret, name, namespace=self.config.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def _read(self) -> tuple[webhook_tls.TLSMaterial | None, bool]:
        """The material, and whether it is stored as it should be (the CA key only in the CA Secret)."""
        serving = await self._get(self.config.webhook_tls_secret)
        ca = await self._get(self.config.webhook_ca_secret)
        material = webhook_tls.TLSMaterial.from_secrets(serving, ca)
        layout_ok = ca is not None and "ca.key" in ca and "ca.key" not in (serving or {})
        return material, layout_ok

    async def _drop_legacy_ca_key(self) -> None:
        """Server-side apply removes `ca.key` only if this field manager owned it; someone else's
        copy (a restore from a backup, a hand-made Secret) is removed explicitly."""
        serving = await self._get(self.config.webhook_tls_secret)
        if serving is not None and "ca.key" in serving:
            await self.client.patch(
                Secret,
                self.config.webhook_tls_secret,
                [{"op": "remove", "path": "/data/ca.key"}],
                namespace=self.config.namespace,
                patch_type=PatchType.JSON,
            )

    async def _write(self, material: webhook_tls.TLSMaterial) -> None:
        for name, kind, data in (
            (self.config.webhook_ca_secret, "Opaque", material.ca_secret_data()),
            (self.config.webhook_tls_secret, "kubernetes.io/tls", material.serving_secret_data()),
        ):
            secret = Secret(
                metadata=ObjectMeta(name=name, namespace=self.config.namespace, labels=dict(MANAGED_BY)),
                type=kind,
                data={k: base64.b64encode(v).decode() for k, v in data.items()},
            )
            await self.client.apply(secret, field_manager="aidp", force=True)
