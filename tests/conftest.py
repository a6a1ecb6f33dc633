"""Shared fixtures: a real control plane and a real OPA for the whole session.

Integration tests (everything under tests/integration) start real processes built by
`make testbin`; when the binaries are missing they fail with that instruction, never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from aidp import kube
from aidp.devcluster import ControlPlane, ControlPlaneError, OpaServer
from aidp.devcluster.opa import new_token
from aidp.paths import crds_dir

from .waiting import wait_for

INTEGRATION_DIR = Path(__file__).parent / "integration"
# An explicit opt-in (`make kind-e2e`): a plain KUBECONFIG, often someone's real cluster, never
# makes the suite use it. Unset: the suite starts its own local control plane.
EXTERNAL_KUBECONFIG = os.environ.get("AIDP_TEST_KUBECONFIG")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    if EXTERNAL_KUBECONFIG:
        # tests that start, kill or reconfigure aidp's processes need the local stack
        local = [i for i in items if i.get_closest_marker("local_only")]
        if local:
            config.hook.pytest_deselected(items=local)
            items[:] = [i for i in items if not i.get_closest_marker("local_only")]


class ExternalCluster:
    """A cluster someone else runs (kind in `make kind-e2e`), reached through a kubeconfig."""

    def __init__(self, kubeconfig: Path, state_dir: Path) -> None:
        import base64

        import yaml

        self.kubeconfig = kubeconfig
        self.state_dir = state_dir
        doc = yaml.safe_load(kubeconfig.read_text())
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        self.server = cluster["server"]
        self.ca_file = state_dir / "ca.crt"
        self.ca_file.write_bytes(base64.b64decode(cluster.get("certificate-authority-data", "")))

    def stop(self) -> None:
        """Nothing to stop: the cluster is not ours."""


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager, started once per test session (or, with
    AIDP_TEST_KUBECONFIG, the cluster that kubeconfig names)."""
    state = tmp_path_factory.mktemp("controlplane")
    if EXTERNAL_KUBECONFIG:
        yield ExternalCluster(Path(EXTERNAL_KUBECONFIG), state)  # type: ignore[misc]
        return
    cp = ControlPlane(state)
    try:
        cp.start()
    except ControlPlaneError as err:
        pytest.fail(str(err), pytrace=False)
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kube_client(kubeconfig: Path) -> Client:
    return kube.client(kubeconfig)


@pytest.fixture(scope="session")
def crds(kube_client: Client) -> list[str]:
    """aidp's CRDs, installed into the session's API server."""
    return kube.install_crds(kube_client, crds_dir())


UPSTREAM_CRDS = Path(__file__).resolve().parent / "upstream-crds"


def upstream_crd(name: str) -> Path:
    """A genuine upstream CRD pinned in tests/upstream-crds (see its SOURCES.md)."""
    path = UPSTREAM_CRDS / name
    if not path.is_file():
        pytest.fail(f"upstream CRD {path} is missing: add it to tests/upstream-crds with a SOURCES.md row")
    return path


@pytest.fixture(scope="session")
def report_crds(kube_client: Client) -> list[str]:
    """The genuine OpenReports and wgpolicyk8s PolicyReport CRDs, for the audit's report objects."""
    names = []
    for file in ("openreports-reports.yaml", "wgpolicyk8s-policyreports.yaml"):
        names += kube.install_crd_files(kube_client, [upstream_crd(file)])
    return names


@pytest.fixture(scope="session")
def opa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    """A real OPA server with TLS and a token-protected management API."""
    opa = OpaServer(tmp_path_factory.mktemp("opa"), new_token())
    try:
        opa.start()
    except ControlPlaneError as err:
        pytest.fail(str(err), pytrace=False)
    yield opa
    opa.stop()


@pytest.fixture
def namespace(kube_client: Client) -> Iterator[str]:
    """A fresh namespace per test (with its default service account), deleted afterwards."""
    name = f"t-{secrets.token_hex(4)}"
    kube_client.create(Namespace(metadata=ObjectMeta(name=name, labels={"aidp-test": "true"})))
    wait_for(lambda: _has_default_sa(kube_client, name), timeout=30, what=f"default SA in {name}")
    yield name
    if not os.environ.get("AIDP_KEEP_NAMESPACES"):
        kube_client.delete(Namespace, name)


def _has_default_sa(client: Client, ns: str) -> bool:
    try:
        client.get(ServiceAccount, "default", namespace=ns)
    except Exception:
        return False
    return True
