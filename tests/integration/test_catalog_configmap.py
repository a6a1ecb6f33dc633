"""The provider catalog read from a ConfigMap through the API, end to end on the real control plane.

The operator runs with `--provider-catalog-configmap NS/NAME` (the built-in catalog plus an extra
provider, on the provider stand-in addresses 203.0.113.0/24 by the stack's addresses file) and the
CRDs regenerated from the same catalog (what `hack/gen-providers --provider-catalog FILE` writes):
a policy naming the extra provider is EgressEnforced with the provider's address in its
NetworkPolicy; the in-cluster audit reports a workload with the provider's env names as shadow AI.
A change to the ConfigMap is applied while the operator runs: the NetworkPolicy follows the
provider's new host and a guardrail's unapprovedAI denies a workload with the env name the change
added. A malformed change keeps the last good catalog, and a Warning Event on the ConfigMap names
the line and the field. A malformed (or missing) ConfigMap stops `aidp run` at start.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp import catalog, kube, paths
from aidp.catalog import crd as crd_gen
from aidp.controller import catalogwatch
from aidp.devcluster.cluster import ControlPlane
from aidp.devcluster.procs import free_port
from aidp.devcluster.stack import DEMO_ADDRESSES, AidpStack
from tests.conftest import upstream_crd
from tests.integration import helpers
from tests.integration.conftest import Env, make_env
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

CM = "aidp-providers"
Report = create_namespaced_resource("openreports.io", "v1alpha1", "Report", "reports")
EXTRA = """
  - name: acme-ai
    displayName: Acme AI
    endpoints: [api.acme-ai.test]
    residency:
      eu: [eu.api.acme-ai.test]
    detection:
      env: ["ACME_AI_*"]
      credentialEnv: [ACME_AI_KEY]
      hosts: ["*.acme-ai.test"]
    facts:
      legalEntity: {value: Acme AI Ltd, source: unverified}
      processorTerms: {value: Acme DPA, source: unverified}
      apiRetention: {value: none, days: 0, source: unverified}
      zeroDataRetention: {available: self-serve, value: by default, source: unverified}
      trainsOnApiData: {value: "no", source: unverified}
"""
# the change: the provider moves to another host, and the detector learns another env name
CHANGED = EXTRA.replace("endpoints: [api.acme-ai.test]", "endpoints: [api2.acme-ai.test]").replace(
    'env: ["ACME_AI_*"]', 'env: ["ACME_AI_*", "ACME_NEXT_*"]'
)
BAD_LINE = "      credentialEnv: ACME_AI_KEY"
ACME_ADDRESSES = (
    "  api.acme-ai.test: [203.0.113.201]\n"
    "  api2.acme-ai.test: [203.0.113.202]\n"
    "  eu.api.acme-ai.test: [203.0.113.203]\n"
)


def catalog_text(extra: str) -> str:
    return catalog.BUILTIN_FILE.read_text(encoding="utf-8") + extra


def malformed(extra: str) -> tuple[str, int]:
    """The catalog with the extra provider's credentialEnv a string, and that line's number."""
    text = catalog_text(extra).replace("      credentialEnv: [ACME_AI_KEY]\n", BAD_LINE + "\n")
    return text, next(i + 1 for i, s in enumerate(text.splitlines()) if s == BAD_LINE)


def install_regenerated_crds(client: Client, tmp: Path, text: str) -> None:
    cat = catalog.parse(text)
    files = []
    for name, required in crd_gen.REQUIRED_PARTS.items():
        out = tmp / name
        out.write_text(crd_gen.regenerate((paths.crds_dir() / name).read_text(), cat, required))
        files.append(out)
    kube.install_crd_files(client, files)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AidpStack]]:
    tmp = tmp_path_factory.mktemp("catalog-cm")
    cp = ControlPlane(tmp / "cp").start()
    ns = "aidp-system"
    metrics_port = free_port()
    stack = AidpStack(
        cp,
        tmp / "aidp",
        namespace=ns,
        operator_args=(
            "--audit-interval",
            "3",
            "--audit-min-gap",
            "1",
            "--metrics-port",
            str(metrics_port),
            "--provider-catalog-configmap",
            f"{ns}/{CM}",
        ),
        metrics_port=metrics_port,
    )
    try:
        client = kube.client(cp.kubeconfig)
        stack.install()  # the namespace, for the ConfigMap the operator reads at start
        kube.install_crd_files(client, [upstream_crd("openreports-reports.yaml")])  # the audit's reports
        client.create(
            ConfigMap(
                metadata=ObjectMeta(name=CM, namespace=ns), data={"providers.yaml": catalog_text(EXTRA)}
            )
        )
        (tmp / "aidp").mkdir(parents=True, exist_ok=True)
        stack.addresses_file.write_text(DEMO_ADDRESSES + ACME_ADDRESSES)
        stack.start()
        install_regenerated_crds(client, tmp, catalog_text(EXTRA))  # over the packaged CRDs
        yield client, stack
    finally:
        stack.stop()
        cp.stop()


def create_when_admitted(client: Client, obj: dict[str, Any]) -> bool:
    """The API server serves a replaced CRD's schema a moment after it is Established."""
    try:
        client.create(helpers.AIDataPolicy(obj))
    except ApiError as err:
        if err.status.code == 422 and "acme-ai" in str(err.status.message):
            return False
        raise
    return True


def egress_enforced(client: Client, ns: str, name: str) -> bool:
    obj = client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict()
    st = obj.get("status") or {}
    return st.get("observedGeneration") == obj["metadata"]["generation"] and any(
        c["type"] == "EgressEnforced" and c["status"] == "True" for c in st.get("conditions") or []
    )


def egress_cidrs(client: Client, ns: str, name: str) -> list[str]:
    try:
        np = client.get(NetworkPolicy, f"aidp-egress-{name}", namespace=ns).to_dict()
    except ApiError:
        return []
    return sorted(b["ipBlock"]["cidr"] for rule in np["spec"].get("egress") or [] for b in rule["to"])


def acme_policy(client: Client, env: Env, name: str, app: str = "bot") -> None:
    obj = helpers.policy(name, env.ns, provider="acme-ai", workloadSelector={"matchLabels": {"app": app}})
    wait_for(
        lambda: create_when_admitted(client, obj),
        timeout=30,
        interval=0.2,
        what="the regenerated CRD to admit provider acme-ai",
    )


def catalog_events(client: Client, ns: str, reason: str) -> list[str]:
    return [
        e.message or ""
        for e in client.list(Event, namespace=ns)
        if e.reason == reason and e.involvedObject.kind == "ConfigMap" and e.involvedObject.name == CM
    ]


def catalog_metrics(aidp: AidpStack) -> dict[str, float]:
    """The operator's aidp_provider_catalog_* samples."""
    url = f"http://127.0.0.1:{aidp.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:  # the operator this module started
        text = resp.read().decode()
    return {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("aidp_provider_catalog_")
        )
    }


def set_catalog(client: Client, ns: str, text: str) -> None:
    client.patch(ConfigMap, CM, {"data": {"providers.yaml": text}}, namespace=ns, patch_type=PatchType.MERGE)


def shadow_pod(client: Client, ns: str, name: str, env_name: str, *, dry_run: bool = False) -> str | None:
    pod = helpers.workload("Pod", name, ns, labels={"app": name}, annotations={})
    pod["spec"]["containers"][0]["env"] = [{"name": env_name, "value": "x"}]
    return helpers.create(client, pod, dry_run=dry_run)


def test_a_policy_naming_the_configmaps_extra_provider_gets_egress_to_its_addresses(
    stack: tuple[Client, AidpStack],
) -> None:
    client, aidp = stack
    env = make_env(client, aidp.cp.kubeconfig)
    acme_policy(client, env, "acme")
    wait_for(lambda: egress_enforced(client, env.ns, "acme"), timeout=60, what="acme EgressEnforced")
    assert egress_cidrs(client, env.ns, "acme") == ["203.0.113.201/32"]


def test_the_in_cluster_audit_finds_the_extra_providers_env_names_as_shadow_ai(
    stack: tuple[Client, AidpStack],
) -> None:
    client, aidp = stack
    env = make_env(client, aidp.cp.kubeconfig)
    acme_policy(client, env, "acme")  # selects app=bot only
    assert shadow_pod(client, env.ns, "rogue", "ACME_AI_KEY") is None

    def shadow() -> list[str] | None:
        try:
            rep = client.get(Report, "aidp-audit", namespace=env.ns).to_dict()
        except ApiError:
            return None
        found = [r["resources"][0]["name"] for r in rep.get("results") or [] if r["category"] == "shadow-ai"]
        return found or None

    assert wait_for(shadow, timeout=90, what="the operator's Report with the shadow AI") == ["rogue"]


def test_a_changed_catalog_is_applied_and_a_malformed_one_keeps_the_last_good(
    stack: tuple[Client, AidpStack],
) -> None:
    client, aidp = stack
    env = make_env(client, aidp.cp.kubeconfig)
    label = secrets.token_hex(4)
    client.patch(
        Namespace, env.ns, {"metadata": {"labels": {"aidp-test/cm": label}}}, patch_type=PatchType.MERGE
    )
    guardrail = f"g-{label}"
    client.create(
        from_dict(
            {
                "apiVersion": "aidp.io/v1alpha1",
                "kind": "ClusterAIDataPolicy",
                "metadata": {"name": guardrail},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"aidp-test/cm": label}},
                    "unapprovedAI": "deny",
                },
            }
        )
    )
    acme_policy(client, env, "moves")
    wait_for(lambda: egress_enforced(client, env.ns, "moves"), timeout=60, what="moves EgressEnforced")
    assert egress_cidrs(client, env.ns, "moves") == ["203.0.113.201/32"]
    wait_for(
        lambda: shadow_pod(client, env.ns, "known", "ACME_AI_KEY", dry_run=True) is not None,
        timeout=60,
        what="the guardrail to deny the catalog's env name",
    )
    assert shadow_pod(client, env.ns, "next", "ACME_NEXT_KEY", dry_run=True) is None  # not yet AI

    set_catalog(client, aidp.namespace, catalog_text(CHANGED))
    wait_for(
        lambda: egress_cidrs(client, env.ns, "moves") == ["203.0.113.202/32"],
        timeout=60,
        what="the NetworkPolicy to follow the provider's new host",
    )
    denied = wait_for(
        lambda: shadow_pod(client, env.ns, "next", "ACME_NEXT_KEY", dry_run=True),
        timeout=60,
        what="the Rego detector to know the env name the change added",
    )
    assert f"ClusterAIDataPolicy/{guardrail}: [unapproved-ai]" in denied, denied
    wait_for(
        lambda: any("acme-ai" in m for m in catalog_events(client, aidp.namespace, catalogwatch.APPLIED)),
        timeout=30,
        what="the Normal Event of the applied catalog",
    )

    text, line = malformed(CHANGED)
    set_catalog(client, aidp.namespace, text)
    expected = (
        f"provider catalog ConfigMap {aidp.namespace}/{CM} key providers.yaml:{line}: "
        "providers[7].detection.credentialEnv: Expected `array`, got `str`"
    )
    messages = wait_for(
        lambda: (
            [m for m in catalog_events(client, aidp.namespace, catalogwatch.REJECTED) if expected in m]
            or None
        ),
        timeout=30,
        what="the Warning Event naming the line and the field",
    )
    assert "keeping the last good catalog" in messages[0], messages
    wait_for(
        lambda: catalog_metrics(aidp).get("aidp_provider_catalog_rejected") == 1.0,
        timeout=10,
        what="the rejected gauge at 1",
    )
    got = catalog_metrics(aidp)
    assert got['aidp_provider_catalog_reloads_total{result="applied"}'] == 1.0, got
    assert got['aidp_provider_catalog_reloads_total{result="rejected"}'] == 1.0, got
    # the last good catalog (the changed one) is still the one in use: a new policy naming the
    # extra provider is enforced with the provider's new host, and the detector keeps the new env name
    acme_policy(client, env, "after", app="after")
    wait_for(lambda: egress_enforced(client, env.ns, "after"), timeout=60, what="after EgressEnforced")
    assert egress_cidrs(client, env.ns, "after") == ["203.0.113.202/32"]
    assert egress_cidrs(client, env.ns, "moves") == ["203.0.113.202/32"]
    assert shadow_pod(client, env.ns, "next", "ACME_NEXT_KEY", dry_run=True) is not None
    assert aidp.operator is not None and aidp.operator.alive()


def run_operator(aidp: AidpStack, ref: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "aidp.cli.main", "run", "--kubeconfig", str(aidp.cp.kubeconfig)]
    argv += ["--opa-url", aidp.opa_url, "--opa-token-file", str(aidp.token_file)]
    return subprocess.run(
        [*argv, "--provider-catalog-configmap", ref],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_a_malformed_or_missing_configmap_stops_the_operator_at_start(
    stack: tuple[Client, AidpStack],
) -> None:
    client, aidp = stack
    text, line = malformed(EXTRA)
    client.create(
        ConfigMap(metadata=ObjectMeta(name="bad", namespace=aidp.namespace), data={"providers.yaml": text})
    )
    out = run_operator(aidp, f"{aidp.namespace}/bad")
    assert out.returncode == 2, (out.stdout, out.stderr)
    message = " ".join(out.stderr.replace("│", " ").split())
    expected = (
        f"provider catalog ConfigMap {aidp.namespace}/bad key providers.yaml:{line}: "
        "providers[7].detection.credentialEnv: Expected `array`, got `str`"
    )
    assert expected in message, out.stderr

    out = run_operator(aidp, f"{aidp.namespace}/nowhere")
    assert out.returncode == 2, (out.stdout, out.stderr)
    message = " ".join(out.stderr.replace("│", " ").split())
    assert f"ConfigMap {aidp.namespace}/nowhere key providers.yaml: the ConfigMap does not exist" in message
