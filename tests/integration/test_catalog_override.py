"""A provider catalog override end to end on the real control plane.

The operator runs with `--provider-catalog FILE` (the built-in catalog plus an extra provider, as
the chart's providerCatalog.configMap mounts it) and the CRD regenerated from the same file (what
`hack/gen-providers --provider-catalog FILE` writes): a policy naming the extra provider is
admitted by the API server, reconciled into OPA and into egress rules for the provider's hosts
(and its residency region's), with the addresses in status; `aidp audit --provider-catalog`
reports a workload with the extra provider's env names as shadow AI. A malformed catalog stops
`aidp run` at start, naming the line and the field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.networking_v1 import NetworkPolicy

from aidp import catalog, kube, paths
from aidp.catalog import crd as crd_gen
from aidp.devcluster.stack import DEMO_ADDRESSES, AidpStack
from tests.integration import helpers
from tests.integration.conftest import make_env
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

EXTRA = """
  - name: acme-ai
    displayName: Acme AI
    endpoints: [api.acme-ai.example]
    residency:
      eu: [eu.api.acme-ai.example]
    detection:
      env: ["ACME_AI_*"]
      credentialEnv: [ACME_AI_KEY]
      hosts: ["*.acme-ai.example"]
    facts:
      legalEntity: {value: Acme AI Ltd, source: unverified}
      processorTerms: {value: Acme DPA, source: unverified}
      apiRetention: {value: none, days: 0, source: unverified}
      zeroDataRetention: {available: self-serve, value: by default, source: unverified}
      trainsOnApiData: {value: "no", source: unverified}
"""
ACME_ADDRESSES = "  api.acme-ai.example: [198.51.100.201]\n  eu.api.acme-ai.example: [198.51.100.203]\n"


@pytest.fixture(scope="module")
def override(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AidpStack, Path]]:
    tmp = tmp_path_factory.mktemp("catalog")
    cat = tmp / "providers.yaml"
    cat.write_text(catalog.BUILTIN_FILE.read_text(encoding="utf-8") + EXTRA)
    crd = tmp / crd_gen.CRD_NAME
    crd.write_text(crd_gen.regenerate((paths.crds_dir() / crd_gen.CRD_NAME).read_text(), catalog.load(cat)))
    for cp, stack in helpers.own_stack(tmp, "--audit-interval", "0", "--provider-catalog", str(cat)):
        client = kube.client(cp.kubeconfig)
        kube.install_crd_files(client, [crd])  # over the packaged CRD the stack installed
        stack.addresses_file.write_text(DEMO_ADDRESSES + ACME_ADDRESSES)  # re-read on every sync
        yield client, stack, cat


def create_when_admitted(client: Client, obj: dict[str, Any]) -> bool:
    """The API server serves a replaced CRD's schema a moment after it is Established."""
    try:
        client.create(helpers.AIDataPolicy(obj))
    except ApiError as err:
        if err.status.code == 422 and "acme-ai" in str(err.status.message):
            return False
        raise
    return True


def endpoint_addresses(client: Client, ns: str, name: str) -> dict[str, list[str]]:
    obj = client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict()
    return {e["host"]: e.get("addresses", []) for e in (obj.get("status") or {}).get("endpoints") or []}


def egress_cidrs(client: Client, ns: str, name: str) -> list[str]:
    np = client.get(NetworkPolicy, f"aidp-egress-{name}", namespace=ns).to_dict()
    return sorted(b["ipBlock"]["cidr"] for rule in np["spec"].get("egress") or [] for b in rule["to"])


def test_a_policy_naming_the_overrides_extra_provider_gets_egress_to_its_hosts(
    override: tuple[Client, AidpStack, Path],
) -> None:
    client, stack, _ = override
    env = make_env(client, stack.cp.kubeconfig)
    wait_for(
        lambda: create_when_admitted(client, helpers.policy("acme", env.ns, provider="acme-ai")),
        timeout=30,
        interval=0.2,
        what="the regenerated CRD to admit provider acme-ai",
    )
    enforced = helpers.wait_enforced(client, env.ns, "acme")
    assert enforced["spec"]["provider"] == "acme-ai"
    wait_for(
        lambda: endpoint_addresses(client, env.ns, "acme") == {"api.acme-ai.example": ["198.51.100.201/32"]},
        timeout=30,
        interval=0.2,
        what="status.endpoints of the extra provider, with its address",
    )
    assert egress_cidrs(client, env.ns, "acme") == ["198.51.100.201/32"]

    client.create(
        helpers.AIDataPolicy(
            helpers.policy(
                "acme-eu",
                env.ns,
                provider="acme-ai",
                dataResidency="eu",
                workloadSelector={"matchLabels": {"app": "eu-bot"}},
            )
        )
    )
    helpers.wait_enforced(client, env.ns, "acme-eu")
    wait_for(
        lambda: (
            endpoint_addresses(client, env.ns, "acme-eu") == {"eu.api.acme-ai.example": ["198.51.100.203/32"]}
        ),
        timeout=30,
        interval=0.2,
        what="the residency region's endpoint, replacing the provider's",
    )
    assert egress_cidrs(client, env.ns, "acme-eu") == ["198.51.100.203/32"]


def test_the_audit_with_the_override_finds_the_extra_providers_shadow_ai(
    override: tuple[Client, AidpStack, Path],
) -> None:
    client, stack, cat = override
    env = make_env(client, stack.cp.kubeconfig)
    pod = helpers.workload("Pod", "rogue", env.ns, labels={"app": "rogue"})
    pod["spec"]["containers"][0]["env"] = [{"name": "ACME_AI_KEY", "value": "x"}]
    assert helpers.create(client, pod) is None
    argv = [sys.executable, "-m", "aidp.cli.main", "audit", "--kubeconfig", str(stack.cp.kubeconfig)]
    argv += ["-n", env.ns, "--provider-catalog", str(cat), "--fail-on", "never"]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    shadow = [f for f in json.loads(out.stdout)["findings"] if f["type"] == "shadow-ai"]
    assert [(f["name"], "env ACME_AI_KEY" in f["message"]) for f in shadow] == [("rogue", True)], shadow


def test_a_malformed_catalog_stops_the_operator_at_start_with_line_and_field(
    override: tuple[Client, AidpStack, Path], tmp_path: Path
) -> None:
    _, stack, cat = override
    bad = tmp_path / "providers.yaml"
    text = cat.read_text().replace(
        "      credentialEnv: [ACME_AI_KEY]\n", "      credentialEnv: ACME_AI_KEY\n"
    )
    bad.write_text(text)
    line = next(i + 1 for i, s in enumerate(text.splitlines()) if s == "      credentialEnv: ACME_AI_KEY")
    argv = [sys.executable, "-m", "aidp.cli.main", "run", "--kubeconfig", str(stack.cp.kubeconfig)]
    argv += ["--opa-url", stack.opa_url, "--opa-token-file", str(stack.token_file)]
    out = subprocess.run(
        [*argv, "--provider-catalog", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    message = " ".join(out.stderr.replace("│", " ").split())
    expected = f"{bad}:{line}: providers[7].detection.credentialEnv: Expected `array`, got `str`"
    assert expected in message, out.stderr
