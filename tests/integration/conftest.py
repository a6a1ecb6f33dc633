"""Fixtures for tests that need aidp itself running: operator, OPA agent and OPA, as processes."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from aidp.devcluster import ControlPlane, ControlPlaneError
from aidp.devcluster.procs import free_port
from aidp.devcluster.stack import AidpStack
from aidp.paths import testbin_dir
from tests.conftest import EXTERNAL_KUBECONFIG
from tests.integration import helpers
from tests.waiting import wait_for


@pytest.fixture(scope="session")
def aidp_stack(
    control_plane: ControlPlane,
    crds: list[str],
    report_crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AidpStack]:
    """aidp installed on the session's control plane (webhook registered, OPA enforcing); with
    AIDP_TEST_KUBECONFIG, the release installed in that cluster by `make kind-e2e`."""
    if EXTERNAL_KUBECONFIG:
        yield InstalledAidp(control_plane, tmp_path_factory.mktemp("aidp"))  # type: ignore[misc]
        return
    metrics_port = free_port()
    stack = AidpStack(
        control_plane,
        tmp_path_factory.mktemp("aidp"),
        operator_args=(
            "--resync-seconds",
            "5",
            "--audit-interval",
            "5",
            "--audit-min-gap",
            "2",
            "--metrics-port",
            str(metrics_port),
        ),
    )
    stack.metrics_port = metrics_port
    try:
        stack.start()
    except ControlPlaneError as err:
        stack.stop()
        pytest.fail(str(err), pytrace=False)
    yield stack
    stack.stop()


class InstalledAidp:
    """aidp as the Helm chart installed it in an external cluster: the parts of AidpStack that the
    API can answer. Tests that need the processes themselves carry the `local_only` marker."""

    def __init__(self, cluster: Any, state_dir: Path) -> None:
        import os

        from lightkube.resources.core_v1 import ConfigMap

        from aidp import kube
        from aidp.config import OperatorConfig

        self.cp = cluster
        self.namespace = os.environ.get("AIDP_NAMESPACE", "aidp-system")
        self.config = OperatorConfig(namespace=self.namespace)
        self.addresses_file = state_dir / "egress-addresses.yaml"
        cm = kube.client(cluster.kubeconfig).get(ConfigMap, "aidp-egress-addresses", namespace=self.namespace)
        self.addresses_file.write_text((cm.data or {}).get("addresses.yaml", ""))

    def stop(self) -> None:
        """The release is not ours to stop."""


class Env:
    """One governed namespace with helpers to create policies and workloads in it."""

    def __init__(self, client: Client, kubeconfig: Path, name: str) -> None:
        self.client = client
        self.kubeconfig = kubeconfig
        self.ns = name

    def policy(self, name: str, **spec: Any) -> dict[str, Any]:
        obj = helpers.policy(name, self.ns, **spec)
        self.client.create(helpers.AIDataPolicy(obj))
        return helpers.wait_enforced(self.client, self.ns, name)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(testbin_dir() / "kubectl"), "--kubeconfig", str(self.kubeconfig), "-n", self.ns, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def make_env(client: Client, kubeconfig: Path) -> Env:
    name = f"a-{secrets.token_hex(4)}"
    client.create(Namespace(metadata=ObjectMeta(name=name)))
    wait_for(lambda: client.get(ServiceAccount, "default", namespace=name), timeout=30, what="default SA")
    client.create(ServiceAccount(metadata=ObjectMeta(name=helpers.SA, namespace=name)))
    return Env(client, kubeconfig, name)


def drop_env(client: Client, env: Env) -> None:
    with contextlib.suppress(ApiError):
        client.delete(Namespace, env.ns)


@pytest.fixture
def env(aidp_stack: AidpStack, kube_client: Client) -> Iterator[Env]:
    e = make_env(kube_client, aidp_stack.cp.kubeconfig)
    yield e
    drop_env(kube_client, e)


@pytest.fixture(scope="module")
def module_env(aidp_stack: AidpStack, kube_client: Client) -> Iterator[Env]:
    e = make_env(kube_client, aidp_stack.cp.kubeconfig)
    yield e
    drop_env(kube_client, e)
