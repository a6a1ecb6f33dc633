"""aidp.kube.client finds its configuration where a pod or a shell has it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightkube import KubeConfig

from aidp import kube, pki

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://192.0.2.7:6443"}
users:
- name: u
  user: {token: abc}
contexts:
- name: x
  context: {cluster: c, user: u, namespace: team}
current-context: x
"""


def test_without_a_path_the_kubeconfig_variable_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kc").write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))  # no ~/.kube/config
    client = kube.client()
    assert client.namespace == "team"
    assert str(client._client.config.cluster.server) == "https://192.0.2.7:6443"


def test_in_a_pod_the_service_account_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod (KUBERNETES_SERVICE_HOST, the token mounted) the service account wins over any file."""
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "namespace").write_text("aidp-system")
    (sa / "ca.crt").write_bytes(pki.new_ca("test-ca").cert_pem)
    real = KubeConfig.from_service_account
    monkeypatch.setattr(
        KubeConfig, "from_service_account", classmethod(lambda cls, **_: real(service_account=sa))
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    client = kube.client()
    assert client.namespace == "aidp-system"
    assert str(client._client.config.cluster.server) == "https://10.0.0.1:443"
