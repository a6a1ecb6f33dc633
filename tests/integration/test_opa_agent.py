"""`aidp opa-agent` against the real API server and a real OPA: the pod's readiness (`/readyz`) says
"ready" only while OPA can decide, so a rollout never sends the webhook to an OPA that would answer
"not loaded"; the ConfigMap and the Secret are watched, not polled."""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret

from aidp import bundle as bundle_mod
from aidp import opadata, paths, render, webhook_tls
from aidp.agent import Agent, Watched
from aidp.controller.reconciler import make_bundle
from aidp.devcluster import ControlPlane
from aidp.devcluster.opa import OpaServer, new_token
from aidp.devcluster.procs import Process, free_port
from aidp.model import DEFAULT_EXCLUDED_NAMESPACES, Policy
from aidp.opa_loader import Replica, revision_of
from tests.unit.test_bundle import policy_object, seeded
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # starts and kills processes

REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "agent-test",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "somewhere",
        "name": "p",
        "operation": "CREATE",
        "userInfo": {"username": "someone"},
        "object": {"metadata": {"name": "p", "namespace": "somewhere", "labels": {}}, "spec": {}},
    },
}


DOWN = "down"


def durable(policy_count: int = 0) -> bundle_mod.Bundle:
    data = render.render_data([])
    data["config"]["agentTest"] = policy_count  # a different revision per value
    data["revision"] = render.revision_of(data["policies"], data["config"])
    return make_bundle(render.policy_modules(), data)


@dataclass
class Setup:
    ns: str
    client: Client
    kubeconfig: Path
    tmp: Path
    token_file: Path
    tls_dir: Path
    opa_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    opa: OpaServer | None = None
    agent: Process | None = None

    @property
    def opa_url(self) -> str:
        return f"https://127.0.0.1:{self.opa_port}"

    def start_agent(self) -> Process:
        argv = [
            sys.executable,
            "-m",
            "aidp.cli.main",
            "opa-agent",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.ns,
            "--opa-url",
            self.opa_url,
            "--opa-token-file",
            str(self.token_file),
            "--tls-dir",
            str(self.tls_dir),
            "--interval",
            "0.2",
            "--health-port",
            str(self.health_port),
            "--health-host",
            "127.0.0.1",
        ]
        self.agent = Process("opa-agent", argv, self.tmp / "agent.log")
        self.agent.start()
        return self.agent

    def start_opa(self) -> OpaServer:
        self.opa = OpaServer(
            self.tmp / "opa",
            self.token_file.read_text().strip(),
            cert_file=self.tls_dir / "tls.crt",
            key_file=self.tls_dir / "tls.key",
            ca_file=self.tls_dir / "ca.crt",
            port=self.opa_port,
        ).start()
        return self.opa

    def health(self, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read())

    def admission(self) -> dict[str, Any] | str:
        """OPA's answer to a webhook call, or why there was none."""
        ctx = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        req = urllib.request.Request(  # noqa: S310 - a fixed local URL
            f"{self.opa_url}/",
            data=json.dumps(REVIEW).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:  # noqa: S310
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as err:
            return f"no decision: HTTP {err.code} {err.read()[:200]!r}"
        except (urllib.error.URLError, ConnectionError, ssl.SSLError):
            # no HTTP answer at all: the process is gone or going (killed by the test), which is
            # OPA's own probe's business; an empty OPA answers over HTTP and counts below
            return DOWN
        except ValueError as exc:
            return f"no decision: {exc}"

    def replica(self) -> Replica:
        return Replica(self.opa_url, self.token_file.read_text().strip(), self.tls_dir / "ca.crt")

    def put_bundle(self, b: bundle_mod.Bundle) -> None:
        cm = ConfigMap.from_dict(bundle_mod.configmap("aidp-opa-bundle", self.ns, b))
        self.client.apply(cm, field_manager="aidp", force=True)

    def put_sharded(self, b: bundle_mod.Bundle, only: set[int] | None = None) -> None:
        """The durable copy as the operator writes it: shards, then the head."""
        digests = {ns: opadata.digest(doc) for ns, doc in b.data["policies"].items()}
        for manifest in bundle_mod.durable_configmaps(
            "aidp-opa-bundle", self.ns, b.modules, b.data, digests, only
        ):
            self.client.apply(ConfigMap.from_dict(manifest), field_manager="aidp", force=True)

    def stop(self) -> None:
        if self.opa:
            self.opa.stop()
        if self.agent:
            self.agent.stop()


S = TypeVar("S", bound=Setup)


def setup_of(
    cls: type[S], control_plane: ControlPlane, kube_client: Client, namespace: str, tmp_path: Path
) -> Iterator[S]:
    """A `cls` with a token file and the serving certificate's Secret in `namespace`, stopped after."""
    token_file = tmp_path / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(new_token())
    s = cls(namespace, kube_client, control_plane.kubeconfig, tmp_path, token_file, tmp_path / "tls")
    material, _ = webhook_tls.reconcile(
        None, dns_names=webhook_tls.dns_names_for("aidp-opa", namespace), ip_addresses=("127.0.0.1",)
    )
    kube_client.create(
        Secret(
            metadata=ObjectMeta(name="aidp-webhook-tls", namespace=namespace),
            type="kubernetes.io/tls",
            data={k: base64.b64encode(v).decode() for k, v in material.serving_secret_data().items()},
        )
    )
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def setup(
    control_plane: ControlPlane, kube_client: Client, namespace: str, tmp_path: Path
) -> Iterator[Setup]:
    yield from setup_of(Setup, control_plane, kube_client, namespace, tmp_path)


class Prober(threading.Thread):
    """What kube-apiserver would see: whenever the pod is ready, a webhook call to its OPA."""

    def __init__(self, s: Setup) -> None:
        super().__init__(daemon=True)
        self.s = s
        self.samples: list[tuple[int, dict[str, Any] | str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                code, _ = self.s.health()
            except OSError:
                code = 0
            self.samples.append((code, self.s.admission() if code == 200 else None))
            self.done.wait(0.02)

    def bad(self) -> list[Any]:
        return [
            answer
            for code, answer in self.samples
            if code == 200
            and answer != DOWN
            and not (isinstance(answer, dict) and answer.get("response", {}).get("allowed") is True)
        ]


def test_ten_thousand_policies_restored_from_the_sharded_copy_after_the_old_format(setup: Setup) -> None:
    """The durable copy of 10,000 policies (more than one ConfigMap holds) in its shards: the agent
    restores OPA from it with no operator running, and first from the format before the shards
    (an upgrade loses no enforcement); the policies are the ones OPA then decides with."""
    old = durable(3)
    setup.put_bundle(old)  # what an operator before the shards left behind
    setup.start_agent()
    wait_for(lambda: (setup.tls_dir / "tls.crt").is_file(), timeout=30, what="the serving certificate")
    opa = setup.start_opa()
    wait_for(lambda: setup.health()[0] == 200, timeout=60, what="ready from the old format")
    assert revision_of(setup.replica()) == old.revision

    rng = seeded(10_000)
    policies = [Policy.from_object(policy_object(rng, i)) for i in range(10_000)]
    big = make_bundle(render.policy_modules(), render.render_data(policies, DEFAULT_EXCLUDED_NAMESPACES))
    setup.put_sharded(big)  # the head replaces the old key: the operator's apply owns both
    head = setup.client.get(ConfigMap, "aidp-opa-bundle", namespace=setup.ns)
    assert set(head.binaryData or {}) == {bundle_mod.HEAD_KEY}
    opa.kill()  # restarted empty: restored from the shards
    opa = setup.start_opa()
    wait_for(
        lambda: revision_of(setup.replica()) == big.revision, timeout=120, what="restored from the shards"
    )
    wait_for(lambda: setup.health()[0] == 200, timeout=60, what="ready at the sharded revision")
    with setup.replica().client() as opa_client:
        held = opa_client.get_data("aidp_policies")["result"]
    assert held == big.data["policies"]
    assert sum(len(names) for names in held.values()) == 10_000

    # one namespace changes: its shard and the head are rewritten, the restore follows
    ns = sorted(big.data["policies"])[0]
    edited = [p for p in policies if p.namespace != ns]
    changed = make_bundle(render.policy_modules(), render.render_data(edited, DEFAULT_EXCLUDED_NAMESPACES))
    setup.put_sharded(changed, only={bundle_mod.shard_of(ns)})
    opa.kill()
    setup.start_opa()
    wait_for(lambda: revision_of(setup.replica()) == changed.revision, timeout=120, what="the edited copy")
    with setup.replica().client() as opa_client:
        assert ns not in opa_client.get_data("aidp_policies")["result"]


def test_a_restore_reads_the_head_again_rather_than_a_lagging_watch(setup: Setup) -> None:
    """An emptied OPA is restored from the durable copy as it is now, even when the agent's watch
    has not yet delivered the last write: an agent that restored the older revision would leave it
    there (OPA then holds a revision, which is the operator's business), with no operator to fix it."""
    older, newer = durable(7), durable(8)
    assert older.revision != newer.revision
    setup.put_bundle(older)
    lagging = Watched(setup.client, ConfigMap, "aidp-opa-bundle", setup.ns)  # never started: it lags
    lagging.obj = setup.client.get(ConfigMap, "aidp-opa-bundle", namespace=setup.ns)
    setup.put_bundle(newer)  # the write the watch has not delivered
    agent = Agent(
        setup.client,
        setup.ns,
        "aidp-opa-bundle",
        "aidp-webhook-tls",
        setup.opa_url,
        setup.token_file,
        setup.tls_dir,
    )
    agent._cm_watch = lagging
    assert agent.write_tls()
    setup.start_opa()
    assert revision_of(setup.replica()) is None  # empty: the agent restores it
    readiness = agent.step()
    assert revision_of(setup.replica()) == newer.revision
    # not ready until the watch shows the revision OPA holds, then ready
    assert (readiness.ready, readiness.revision) == (False, newer.revision), readiness
    lagging.obj = setup.client.get(ConfigMap, "aidp-opa-bundle", namespace=setup.ns)
    assert agent.step().ready


def test_the_pod_is_ready_only_while_opa_holds_the_durable_revision(setup: Setup) -> None:
    first = durable(1)
    setup.put_bundle(first)
    agent = setup.start_agent()
    wait_for(lambda: (setup.tls_dir / "tls.crt").is_file(), timeout=30, what="the serving certificate")
    wait_for(lambda: setup.health()[0] == 503, timeout=30, what="/readyz while OPA is down")
    assert setup.health()[1]["ready"] is False

    prober = Prober(setup)
    prober.start()
    try:
        opa = setup.start_opa()  # empty: the agent restores it
        wait_for(lambda: setup.health()[0] == 200, timeout=30, what="ready after the restore")
        assert setup.health()[1]["revision"] == first.revision == revision_of(setup.replica())

        # a restarted OPA is empty again: not ready until the agent has restored it
        opa.kill()
        wait_for(lambda: setup.health()[0] == 503, timeout=30, what="not ready once OPA is gone")
        second = durable(2)
        setup.put_bundle(second)  # meanwhile the durable bundle moves on: the watch brings it
        setup.start_opa()
        wait_for(lambda: setup.health()[0] == 200, timeout=30, what="ready after the second restore")
        assert revision_of(setup.replica()) == second.revision
        assert agent.alive()
    finally:
        prober.done.set()
        prober.join(timeout=10)
    ready = [c for c, _ in prober.samples if c == 200]
    assert ready and len(ready) < len(prober.samples), "the probe saw both states"
    assert not prober.bad(), f"ready, yet OPA could not decide: {prober.bad()[:3]}"


def _request_count(kubeconfig: Path, resource: str, verb: str) -> int:
    raw = subprocess.run(
        [str(paths.testbin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    total = 0
    for line in raw.splitlines():
        labels = (f'resource="{resource}"', f'verb="{verb}"', 'subresource=""')
        if line.startswith("apiserver_request_total{") and all(x in line for x in labels):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_the_agent_watches_instead_of_polling(setup: Setup) -> None:
    setup.put_bundle(durable(5))
    setup.start_agent()
    wait_for(lambda: (setup.tls_dir / "tls.crt").is_file(), timeout=30, what="the serving certificate")
    setup.start_opa()
    wait_for(lambda: setup.health()[0] == 200, timeout=30, what="ready")
    secrets_before = _request_count(setup.kubeconfig, "secrets", "GET")
    cms_before = _request_count(setup.kubeconfig, "configmaps", "GET")
    passes = setup.health("/healthz")[1]["passes"]
    # 25 passes at --interval 0.2: a polling agent would have read both objects 25 times
    wait_for(lambda: setup.health("/healthz")[1]["passes"] >= passes + 25, timeout=60, what="25 passes")
    secret_gets = _request_count(setup.kubeconfig, "secrets", "GET") - secrets_before
    cm_gets = _request_count(setup.kubeconfig, "configmaps", "GET") - cms_before
    # other components of the session may read a few; a polling agent alone reads 25 of each
    assert secret_gets < 5 and cm_gets < 5, (secret_gets, cm_gets)

    # a rotated certificate still reaches OPA's files at once, through the watch
    renewed, _ = webhook_tls.reconcile(
        None, dns_names=webhook_tls.dns_names_for("aidp-opa", setup.ns), ip_addresses=("127.0.0.1",)
    )
    setup.client.patch(
        Secret,
        "aidp-webhook-tls",
        {"data": {k: base64.b64encode(v).decode() for k, v in renewed.serving_secret_data().items()}},
        namespace=setup.ns,
    )
    wait_for(
        lambda: (setup.tls_dir / "tls.crt").read_bytes() == renewed.tls_crt,
        timeout=15,
        what="the rotated certificate in the agent's files",
    )
    log = setup.tmp / "agent.log"
    assert not re.search(r"agent iteration failed", log.read_text()), log.read_text()[-2000:]
