"""The webhook CA key lives in a Secret of its own that only the operator reads: the serving Secret,
which the OPA agent reads and OPA mounts, never holds it. An operator that finds the older
one-Secret layout moves the key out without issuing a new CA."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.core_v1 import Secret

from aidp import webhook_tls
from aidp.config import OperatorConfig
from aidp.controller.certs import WebhookCerts
from aidp.devcluster.stack import AidpStack


def _data(client: Client, name: str, ns: str) -> dict[str, bytes]:
    secret = client.get(Secret, name, namespace=ns)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def test_the_operator_keeps_the_ca_key_out_of_the_serving_secret(
    aidp_stack: AidpStack, kube_client: Client
) -> None:
    config = aidp_stack.config
    serving = _data(kube_client, config.webhook_tls_secret, aidp_stack.namespace)
    ca = _data(kube_client, config.webhook_ca_secret, aidp_stack.namespace)
    assert "ca.key" not in serving
    assert set(serving) == {"tls.crt", "tls.key", "ca-bundle.crt", "ca.crt"}
    assert set(ca) == {"ca.crt", "ca.key"}
    leaf = x509.load_pem_x509_certificate(serving["tls.crt"])
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca["ca.crt"]))
    # what OPA serves is what the agent wrote from the serving Secret
    assert (aidp_stack.tls_dir / "tls.crt").read_bytes() == serving["tls.crt"]
    assert (aidp_stack.tls_dir / "ca.crt").read_bytes() == serving["ca-bundle.crt"]


@pytest.fixture
async def aclient(kubeconfig: Path) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="aidp", trust_env=False)
    yield client
    await client.close()


async def test_the_one_secret_layout_is_split_without_a_new_ca(
    aclient: AsyncClient, kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    webhook = f"aidp-test-{secrets.token_hex(4)}"
    config = OperatorConfig(
        namespace=namespace,
        webhook_name=webhook,
        webhook_url="https://127.0.0.1:9/",  # never called: no namespace carries its label here
        webhook_failure_policy="Ignore",
        webhook_timeout_seconds=1,
        cert_step_seconds=0,
    )
    legacy, _ = webhook_tls.reconcile(
        None, dns_names=webhook_tls.dns_names_for(config.opa_service, namespace)
    )
    # what an earlier operator applied: everything in one Secret, with field manager "aidp"
    await aclient.apply(
        Secret(
            metadata=ObjectMeta(name=config.webhook_tls_secret, namespace=namespace),
            type="kubernetes.io/tls",
            data={k: base64.b64encode(v).decode() for k, v in legacy.as_secret_data().items()},
        ),
        field_manager="aidp",
        force=True,
    )
    certs = WebhookCerts(config, aclient)
    try:
        assert await certs.reconcile() is None  # no step: the CA and the certificate are current
        serving = _data(kube_client, config.webhook_tls_secret, namespace)
        ca = _data(kube_client, config.webhook_ca_secret, namespace)
        assert "ca.key" not in serving
        assert ca == {"ca.crt": legacy.ca_crt, "ca.key": legacy.ca_key}
        assert serving["tls.crt"] == legacy.tls_crt  # OPA keeps serving the same certificate
        # a key someone else left there (not this field manager's) goes too
        kube_client.patch(
            Secret,
            config.webhook_tls_secret,
            {"data": {"ca.key": base64.b64encode(legacy.ca_key).decode()}},
            namespace=namespace,
            field_manager="someone-else",
        )
        assert await certs.reconcile() is None
        assert "ca.key" not in _data(kube_client, config.webhook_tls_secret, namespace)
        assert _data(kube_client, config.webhook_ca_secret, namespace)["ca.key"] == legacy.ca_key
    finally:
        kube_client.delete(ValidatingWebhookConfiguration, webhook)
