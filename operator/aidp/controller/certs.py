"""The webhook's TLS Secret and the ValidatingWebhookConfiguration, kept current by the operator."""

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
from lightkube.resources.core_v1 import Secret

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

    def trigger(self) -> None:
        self._wake.set()

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
        current = await self._read()
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
        assert material is not None
        if reason:
            await self._write(material)
            self._last_step = time.monotonic()
            log.info("webhook TLS: %s", reason)
        self.ca_file.write_bytes(material.ca_bundle)
        vwc = ValidatingWebhookConfiguration.from_dict(webhook.render(self.config, material.ca_bundle))
        assert isinstance(vwc, ValidatingWebhookConfiguration)
        await self.client.apply(vwc, field_manager="aidp", force=True)
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
        vwc = ValidatingWebhookConfiguration.from_dict(webhook.render(self.config, ca))
        assert isinstance(vwc, ValidatingWebhookConfiguration)
        await self.client.apply(vwc, field_manager="aidp", force=True)
        self.ready.set()
        return None

    async def _read(self) -> webhook_tls.TLSMaterial | None:
        try:
            secret = await self.client.get(
                Secret, self.config.webhook_tls_secret, namespace=self.config.namespace
            )
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return webhook_tls.TLSMaterial.from_secret_data(data)

    async def _write(self, material: webhook_tls.TLSMaterial) -> None:
        secret = Secret(
            metadata=ObjectMeta(
                name=self.config.webhook_tls_secret, namespace=self.config.namespace, labels=dict(MANAGED_BY)
            ),
            type="kubernetes.io/tls",
            data={k: base64.b64encode(v).decode() for k, v in material.as_secret_data().items()},
        )
        await self.client.apply(secret, field_manager="aidp", force=True)
