"""The chart's NetworkPolicy for OPA, judged by an independent analyser: the rendered objects are
applied to the real API server next to pods labelled as the chart labels them, and np-guard's
network-config-analyzer (`nca`) says who can reach OPA's port 8181: the operator pods and the API
server's CIDR, nobody else."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from aidp import paths
from tests.integration import nca
from tests.waiting import wait_for

CHART = Path(__file__).resolve().parents[2] / "charts" / "aidp"
API_SERVER = "10.96.200.7/32"


def helm_template(namespace: str, *values: str) -> list[dict[str, Any]]:
    argv = [str(paths.testbin_dir() / "helm"), "template", "aidp", str(CHART), "-n", namespace]
    for v in values:
        argv += ["--set", v]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8181}]}]},
    }


@pytest.fixture
def two_namespaces(kube_client: Client) -> Iterator[tuple[str, str]]:
    names = (f"np-opa-{secrets.token_hex(3)}", f"np-other-{secrets.token_hex(3)}")
    for n in names:
        kube_client.create(Namespace(metadata=ObjectMeta(name=n)))
    for n in names:  # pods are admitted once the namespace's default service account exists
        wait_for(
            lambda n=n: kube_client.get(ServiceAccount, "default", namespace=n), timeout=30, what=f"SA in {n}"
        )
    yield names
    for n in names:
        kube_client.delete(Namespace, n)


def sources_of(output: str, target: str) -> list[tuple[str, nca.Connections]]:
    """Every `src => target : connections` line of nca's answer."""
    found = []
    for line in output.splitlines():
        src, sep, rest = line.partition(" => ")
        dst, sep2, text = rest.partition(" : ")
        if sep and sep2 and dst.strip().split("[")[0] == target:
            found.append((src.strip(), nca.Connections(text)))
    return found


def test_only_the_api_server_and_the_operator_reach_opa(
    kube_client: Client, two_namespaces: tuple[str, str], tmp_path: Path
) -> None:
    ns, other_ns = two_namespaces
    objs = helm_template(
        ns, "opa.networkPolicy.enabled=true", f"opa.networkPolicy.apiServerCIDRs={{{API_SERVER}}}"
    )
    netpol = next(o for o in objs if o["kind"] == "NetworkPolicy")
    labels = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
        for o in objs
        if o["kind"] == "Deployment"
    }
    for obj in (
        netpol,
        pod("opa", ns, labels["aidp-opa"]),
        pod("operator", ns, labels["aidp-operator"]),
        pod("neighbour", ns, {"app": "something-else"}),
        pod("stranger", other_ns, labels["aidp-operator"]),  # the operator's labels, elsewhere
    ):
        kube_client.create(from_dict(obj))

    files = nca.export(kube_client, tmp_path, [ns, other_ns])
    proc = nca.run(files, [ns, other_ns])
    (tmp_path / "nca.out").write_text(proc.stdout)
    conn = nca.answer(proc)
    opa = f"{ns}/opa"
    assert conn.reaches(f"{ns}/operator", opa, "TCP", 8181)
    assert not conn.reaches(f"{ns}/operator", opa, "TCP", 8282)  # the port, not the pod
    assert not conn.reaches(f"{ns}/neighbour", opa, "TCP", 8181)
    assert not conn.reaches(f"{other_ns}/stranger", opa, "TCP", 8181)
    # from outside the cluster: exactly the API server's CIDR, and only on 8181
    external = [(s, c) for s, c in sources_of(proc.stdout, opa) if "/" not in s or nca._address_ranges(s)]
    allowed = [s for s, c in external if c.allows("TCP", 8181)]
    assert allowed, proc.stdout
    for src in allowed:
        ranges = nca._address_ranges(src)
        assert ranges is not None, src
        for r in ranges:
            assert (
                ipaddress.ip_network(API_SERVER)[0]
                <= r.first
                <= r.last
                <= ipaddress.ip_network(API_SERVER)[-1]
            ), src
    # without the NetworkPolicy the neighbour reaches OPA: the analyser does see the difference
    kube_client.delete(type(from_dict(netpol)), netpol["metadata"]["name"], namespace=ns)
    open_conn = nca.analyse(kube_client, tmp_path / "open", [ns, other_ns])
    assert open_conn.reaches(f"{ns}/neighbour", opa, "TCP", 8181)
