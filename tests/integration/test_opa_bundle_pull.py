"""OPA as the Helm chart runs it: it pulls aidp's modules and data as one bundle from its agent and
activates them in one storage transaction, so a decision never sees the modules of one revision with
the data of another. Against the real API server, a real OPA started with the chart's own arguments,
and the agent started with the chart's own arguments."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client

from aidp import bundle as bundle_mod
from aidp import opa_loader, paths, render
from aidp.controller.reconciler import make_bundle
from aidp.devcluster import ControlPlane
from aidp.devcluster.opa import OpaServer, new_token
from aidp.devcluster.procs import Process, free_port
from aidp.opa_loader import Replica, revision_of
from tests.integration.test_opa_agent import Prober, Setup, setup_of
from tests.unit.test_chart import container
from tests.unit.test_chart import render as render_chart
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # starts and kills processes

POLICIES = paths.policies_dir() / "system"


def probe_bundle(tag: str) -> bundle_mod.Bundle:
    """aidp's modules plus one whose constant must match the data's: `consistent` is false exactly
    when OPA evaluates modules of one revision with the data of another."""
    # first: pushed through the API, it is PUT before the other modules and long before the data
    modules = {
        "aidp/probe.rego": (
            f'package aidp.probe\n\ntag := "{tag}"\n\nconsistent := data.aidp.config.probeTag == tag\n'
        ),
        **render.policy_modules(),
    }
    data = render.render_data([])
    data["config"]["probeTag"] = tag
    return make_bundle(modules, data)


class ChartOpa(OpaServer):
    """OPA with the chart's arguments; only what points into the pod is mapped to this machine."""

    bundle_port: int = 0

    def argv(self) -> list[str]:
        chart = container(render_chart(), "aidp-opa", "opa")["args"]
        mapped = {
            "--addr=:8181": f"--addr=127.0.0.1:{self.port}",
            "--diagnostic-addr=:8282": f"--diagnostic-addr=127.0.0.1:{self.diagnostic_port}",
            "--tls-cert-file=/tls/tls.crt": f"--tls-cert-file={self.cert_file}",
            "--tls-private-key-file=/tls/tls.key": f"--tls-private-key-file={self.key_file}",
            "--set=services.agent.url=http://127.0.0.1:8384": (
                f"--set=services.agent.url=http://127.0.0.1:{self.bundle_port}"
            ),
            "/policies/authz.rego": str(POLICIES / "authz.rego"),
            "/policies/main.rego": str(POLICIES / "main.rego"),
        }
        assert set(mapped) <= set(chart), chart
        return [str(self.bin_dir / "opa"), *(mapped.get(a, a) for a in chart)]


@dataclass
class PullSetup(Setup):
    bundle_port: int = field(default_factory=free_port)

    def start_agent(self) -> Process:
        chart = container(render_chart(), "aidp-opa", "agent")["args"]
        values = {
            "--opa-url": self.opa_url,
            "--opa-token-file": str(self.token_file),
            "--tls-dir": str(self.tls_dir),
            "--interval": "0.2",
            "--health-port": str(self.health_port),
            "--bundle-port": str(self.bundle_port),
        }
        args = list(chart)
        for flag, value in values.items():
            args[args.index(flag) + 1] = value
        args += ["--kubeconfig", str(self.kubeconfig), "--namespace", self.ns, "--health-host", "127.0.0.1"]
        self.agent = Process(
            "opa-agent", [sys.executable, "-m", "aidp.cli.main", *args], self.tmp / "agent.log"
        )
        self.agent.start()
        return self.agent

    def start_opa(self) -> OpaServer:
        opa = ChartOpa(
            self.tmp / "opa",
            self.token_file.read_text().strip(),
            cert_file=self.tls_dir / "tls.crt",
            key_file=self.tls_dir / "tls.key",
            ca_file=self.tls_dir / "ca.crt",
            port=self.opa_port,
        )
        opa.bundle_port = self.bundle_port
        self.opa = opa.start()
        return self.opa


@pytest.fixture
def pull(
    control_plane: ControlPlane, kube_client: Client, namespace: str, tmp_path: Path
) -> Iterator[PullSetup]:
    yield from setup_of(PullSetup, control_plane, kube_client, namespace, tmp_path)


class Consistency(threading.Thread):
    """Asks OPA `data.aidp.probe.consistent` as fast as it answers."""

    def __init__(self, replica: Replica) -> None:
        super().__init__(daemon=True)
        self.replica = replica
        self.answers: list[Any] = []
        self.done = threading.Event()

    def run(self) -> None:
        with self.replica.client(timeout=2.0) as client:
            while not self.done.is_set():
                try:
                    self.answers.append(client.get_data("aidp/probe/consistent").get("result"))
                except Exception as exc:
                    self.answers.append(f"error: {exc}")

    def stop(self) -> list[Any]:
        self.done.set()
        self.join(timeout=10)
        return self.answers


def test_modules_and_data_activate_together(pull: PullSetup) -> None:
    first = probe_bundle("v0")
    pull.put_bundle(first)
    pull.start_agent()
    wait_for(lambda: (pull.tls_dir / "tls.crt").is_file(), timeout=30, what="the serving certificate")
    prober = Prober(pull)  # webhook calls whenever the pod is ready
    prober.start()
    try:
        pull.start_opa()
        wait_for(lambda: pull.health()[0] == 200, timeout=30, what="ready: OPA pulled the bundle")
        replica = pull.replica()
        assert revision_of(replica) == first.revision
        consistency = Consistency(replica)
        consistency.start()
        activations = []
        for i in range(1, 11):  # ten revisions whose modules and data change together
            b = probe_bundle(f"v{i}")
            began = time.monotonic()
            pull.put_bundle(b)
            wait_for(lambda b=b: revision_of(replica) == b.revision, timeout=15, what=f"revision v{i}")
            activations.append(time.monotonic() - began)
        answers = consistency.stop()
    finally:
        prober.done.set()
        prober.join(timeout=10)
    assert answers and all(a is True for a in answers), [a for a in answers if a is not True][:5]
    assert max(activations) < 5, activations
    assert not prober.bad(), prober.bad()[:3]
    log = (pull.tmp / "agent.log").read_text()
    assert "restored OPA" not in log, "the agent pushed through OPA's API instead of serving the bundle"

    # the contrast, so that the probe is known to see a mixed state when there is one: the same
    # changes pushed through OPA's API, modules one PUT each and then the data (as the operator did,
    # and the `--opa-url` test beds still do)
    api = OpaServer(pull.tmp / "api-opa", new_token()).start()
    try:
        pushed = Replica(api.url, api.token, api.ca_file)
        opa_loader.load(pushed, probe_bundle("w0"))
        consistency = Consistency(pushed)
        consistency.start()
        for i in range(1, 11):
            opa_loader.load(pushed, probe_bundle(f"w{i}"))
        answers = consistency.stop()
    finally:
        api.stop()
    assert False in answers, "the probe saw no mixed state even while modules and data were PUT one by one"


def test_the_operator_load_waits_for_the_pull_and_restarts_pull_again(pull: PullSetup) -> None:
    pull.put_bundle(probe_bundle("x0"))
    pull.start_agent()
    wait_for(lambda: (pull.tls_dir / "tls.crt").is_file(), timeout=30, what="the serving certificate")
    opa = pull.start_opa()
    wait_for(lambda: pull.health()[0] == 200, timeout=30, what="ready")
    replica = pull.replica()
    # what the reconciler does: load every replica while the durable copy is written beside it
    new = probe_bundle("x1")
    writer = threading.Timer(0.3, pull.put_bundle, args=(new,))
    writer.start()
    began = time.monotonic()
    opa_loader.load(replica, new)  # refused by OPA (the bundle owns data.aidp): waits for the pull
    assert revision_of(replica) == new.revision
    assert time.monotonic() - began < opa_loader.PULL_TIMEOUT
    writer.join()
    # the data-only path (the reconciler's for replicas that hold the same modules) is refused too
    opa_loader.load(replica, new, data_only=True)
    assert revision_of(replica) == new.revision
    # a restarted OPA is empty, then pulls the current revision by itself
    opa.kill()
    wait_for(lambda: pull.health()[0] == 503, timeout=30, what="not ready once OPA is gone")
    pull.start_opa()
    wait_for(lambda: pull.health()[0] == 200, timeout=30, what="ready after the restart")
    assert revision_of(replica) == new.revision
    # a durable copy that never comes: the load gives up with a message that says why
    with pytest.raises(opa_loader.OpaLoadError, match="pulls its bundle"):
        opa_loader._await_revision(replica, "0000000000000000", timeout=1.0)
