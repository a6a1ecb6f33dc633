"""Faults survived with real processes killed by SIGKILL (issue: reliability and security).

Each scenario that must not disturb the rest of the suite runs on a control plane of its own.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Secret
from lightkube.resources.networking_v1 import NetworkPolicy

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import Env, make_env
from tests.integration.helpers import create, violating, workload
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # starts, kills or reconfigures processes


def _own_stack(tmp: Path, *args: str) -> Iterator[tuple[ControlPlane, AidpStack]]:
    yield from helpers.own_stack(tmp, "--audit-interval", "0", *args)


def _aidp_denial(client: Client, obj: dict[str, object]) -> bool:
    msg = create(client, obj, dry_run=True)  # type: ignore[arg-type]
    return msg is not None and "aidp:" in msg


class Stream:
    """Creates violating pods back to back from a thread; records every outcome."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.admitted: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = kube.client(self.env.kubeconfig)
        while not self._stop.is_set():
            name = f"v-{secrets.token_hex(4)}"
            if create(client, violating("Pod", name, self.env.ns, "retention-days")) is None:
                self.admitted.append(name)
            else:
                self.refused += 1

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_opa_killed_under_a_stream_of_creates_admits_nothing(aidp_stack: AidpStack, env: Env) -> None:
    env.policy("stream")
    operator, opa = aidp_stack.operator, aidp_stack.opa
    assert operator is not None and opa is not None
    with Stream(env) as stream:
        wait_for(lambda: stream.refused > 20, timeout=30, what="the stream to run")
        operator.kill()
        opa.kill()
        during = stream.refused
        wait_for(lambda: stream.refused > during + 20, timeout=30, what="creates while OPA is down")
        aidp_stack.start_opa()
        wait_for(
            lambda: _aidp_denial(env.client, violating("Pod", "probe", env.ns, "consent-basis")),
            timeout=30,
            what="enforcement from the durable copy",
        )
        after = stream.refused
        wait_for(lambda: stream.refused > after + 20, timeout=30, what="creates after the restart")
    aidp_stack.start_operator()
    helpers.wait_enforced(env.client, env.ns, "stream")
    assert stream.admitted == [], f"violating pods admitted: {stream.admitted}"


@pytest.fixture
def batch_stack(tmp_path: Path) -> Iterator[tuple[ControlPlane, AidpStack]]:
    yield from _own_stack(tmp_path, "--resync-seconds", "300")


def test_operator_killed_in_a_batch_of_100_policy_changes_converges(
    batch_stack: tuple[ControlPlane, AidpStack],
) -> None:
    cp, stack = batch_stack
    client = kube.client(cp.kubeconfig)
    envs = [make_env(client, cp.kubeconfig) for _ in range(5)]
    names = []
    assert stack.operator is not None
    for i in range(100):
        e = envs[i % 5]
        obj = helpers.policy(f"p-{i:03d}", e.ns, workloadSelector={"matchLabels": {"app": f"a{i}"}})
        client.create(helpers.AIDataPolicy(obj))
        names.append((e.ns, f"p-{i:03d}"))
        if i == 50:
            stack.operator.kill()  # mid-batch, mid-reconcile
    stack.start_operator()

    def converged() -> bool:
        for ns, name in names:
            st = client.get(helpers.AIDataPolicy, name, namespace=ns).get("status") or {}
            conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
            if st.get("observedGeneration") != 1 or conds.get("AdmissionEnforced") != "True":
                return False
        return True

    wait_for(converged, timeout=120, what="100 policies enforced after the restart")
    # OPA holds exactly these policies, once each
    data = stack.replica().client().get_data("aidp_policies")["result"]
    loaded = sorted((ns, n) for ns, by in data.items() for n in by)
    assert loaded == sorted(names)
    # egress: one rule per policy and one baseline per namespace, nothing duplicated
    managed = [
        n for n in client.list(NetworkPolicy, namespace="*", labels={"app.kubernetes.io/managed-by": "aidp"})
    ]
    got = sorted((n.metadata.namespace, n.metadata.name) for n in managed)
    want = sorted(
        [(ns, f"aidp-egress-{n}") for ns, n in names] + [(e.ns, "aidp-egress-baseline") for e in envs]
    )
    assert got == want


@pytest.fixture
def restart_stack(tmp_path: Path) -> Iterator[tuple[ControlPlane, AidpStack]]:
    # a long resync: only the watches can bring the change in quickly
    yield from _own_stack(tmp_path, "--resync-seconds", "600")


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_then_a_policy_change_is_enforced(
    restart_stack: tuple[ControlPlane, AidpStack], component: str
) -> None:
    cp, stack = restart_stack
    client = kube.client(cp.kubeconfig)
    env = make_env(client, cp.kubeconfig)
    env.policy("before")
    cp.kill_component(component)
    cp.start_component(component)
    client = kube.client(cp.kubeconfig)
    env = Env(client, cp.kubeconfig, env.ns)
    wait_for(
        lambda: client.get(helpers.AIDataPolicy, "before", namespace=env.ns), timeout=60, what="API back"
    )
    obj = helpers.policy("after", env.ns, workloadSelector={"matchLabels": {"app": "after"}})
    t0 = time.monotonic()
    client.create(helpers.AIDataPolicy(obj))
    bad = violating("Pod", "probe", env.ns, "consent-basis")
    bad["metadata"]["labels"] = {"app": "after"}
    wait_for(lambda: _aidp_denial(client, bad), timeout=120, what=f"enforcement after a {component} restart")
    assert time.monotonic() - t0 < 600, "enforced by the resync, not by the watch"
    assert stack.operator is not None and stack.operator.alive()


@pytest.fixture
def rotating_stack(tmp_path: Path) -> Iterator[tuple[ControlPlane, AidpStack]]:
    yield from _own_stack(
        tmp_path,
        "--cert-serving-lifetime",
        "12",
        "--cert-ca-lifetime",
        "45",
        "--cert-check-seconds",
        "1",
        "--cert-step-seconds",
        "4",
    )


def test_webhook_certificate_rotation_under_load_fails_no_request(
    rotating_stack: tuple[ControlPlane, AidpStack],
) -> None:
    cp, stack = rotating_stack
    client = kube.client(cp.kubeconfig)
    env = make_env(client, cp.kubeconfig)
    env.policy("rotate")
    seen_leaf: set[bytes] = set()
    seen_ca: set[bytes] = set()
    failures: list[str] = []
    answered = 0
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        secret = client.get(Secret, "aidp-webhook-tls", namespace=stack.namespace)
        data = secret.data or {}
        seen_leaf.add(base64.b64decode(data["tls.crt"]))
        seen_ca.add(base64.b64decode(data["ca.crt"]))
        for obj in (violating("Pod", "bad", env.ns, "consent-basis"), workload("Pod", "good", env.ns)):
            msg = create(client, obj, dry_run=True)
            answered += 1
            if msg is not None and "aidp:" not in msg:
                failures.append(msg)  # a webhook call that failed (TLS, connection), not a verdict
            if (msg is None) != (obj["metadata"]["name"] == "good"):
                failures.append(f"wrong verdict for {obj['metadata']['name']}: {msg}")
    assert len(seen_ca) >= 2, "no CA rotation happened"
    assert len(seen_leaf) >= 4, "too few serving certificate renewals"
    assert failures == [], f"{len(failures)} of {answered} requests failed, e.g. {failures[:3]}"
