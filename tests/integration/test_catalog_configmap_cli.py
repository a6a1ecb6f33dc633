"""`aidp audit` and `aidp check --kubeconfig` with `--provider-catalog-configmap NS/NAME[:KEY]` on
the real control plane: the catalog the operator reads from a ConfigMap (the built-in one plus an
extra provider, set up as tests/integration/test_catalog_configmap.py does) is read once through
the API. The audit finds the extra provider's env name as shadow AI (without the option, the
built-in catalog does not); `aidp check` takes a policy naming the extra provider; stderr says which
catalog was used. A malformed ConfigMap exits 2 naming the ConfigMap, the line and the field; a
missing one (404) and one the caller may not read (403, naming the RBAC needed) exit 2 too.
No operator is needed: the CLI reads the ConfigMap itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, ServiceAccount

from aidp.devcluster import ControlPlane
from tests.integration import helpers
from tests.integration.test_catalog_configmap import EXTRA, catalog_text, malformed
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

CM = "aidp-providers"


def aidp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )


def plain(stderr: str) -> str:
    """stderr without typer's error box, on one line."""
    return " ".join(stderr.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())


def served(client: Client) -> bool:  # just after the CRDs are installed, lists may get 503 for a moment
    list(client.list(helpers.AIDataPolicy, namespace="*"))
    return True


def shadow_findings(stdout: str) -> list[tuple[str, str]]:
    return [(f["name"], f["message"]) for f in json.loads(stdout)["findings"] if f["type"] == "shadow-ai"]


def test_the_audit_with_the_configmap_catalog_finds_the_extra_providers_env_name_as_shadow_ai(
    control_plane: ControlPlane, crds: list[str], kube_client: Client, namespace: str
) -> None:
    wait_for(lambda: served(kube_client), timeout=60, what="aidp's CRDs served")
    kube_client.create(
        ConfigMap(
            metadata=ObjectMeta(name=CM, namespace=namespace), data={"providers.yaml": catalog_text(EXTRA)}
        )
    )
    kube_client.create(ServiceAccount(metadata=ObjectMeta(name=helpers.SA, namespace=namespace)))
    pod = helpers.workload("Pod", "rogue", namespace, labels={"app": "rogue"}, annotations={})
    pod["spec"]["containers"][0]["env"] = [{"name": "ACME_AI_KEY", "value": "x"}]
    assert helpers.create(kube_client, pod) is None
    base = ["audit", "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, "--fail-on", "never"]

    out = aidp(*base, "--provider-catalog-configmap", f"{namespace}/{CM}")
    assert out.returncode == 0, out.stderr
    shadow = shadow_findings(out.stdout)
    assert [(name, "env ACME_AI_KEY" in message) for name, message in shadow] == [("rogue", True)], shadow
    assert (
        f"aidp audit: using provider catalog ConfigMap {namespace}/{CM} key providers.yaml (8 providers)"
        in out.stderr
    ), out.stderr

    # the same audit without the option: the built-in catalog does not know the env name
    builtin = aidp(*base)
    assert builtin.returncode == 0, builtin.stderr
    assert shadow_findings(builtin.stdout) == []
    assert "aidp audit: using the built-in provider catalog (7 providers)" in builtin.stderr

    # the key is part of the reference
    kube_client.create(
        ConfigMap(
            metadata=ObjectMeta(name="other-key", namespace=namespace), data={"cat.yaml": catalog_text(EXTRA)}
        )
    )
    keyed = aidp(*base, "--provider-catalog-configmap", f"{namespace}/other-key:cat.yaml")
    assert keyed.returncode == 0, keyed.stderr
    assert [name for name, _ in shadow_findings(keyed.stdout)] == ["rogue"]
    wrong_key = aidp(*base, "--provider-catalog-configmap", f"{namespace}/other-key")
    assert wrong_key.returncode == 2
    assert "the ConfigMap has no key providers.yaml (its keys: cat.yaml)" in plain(wrong_key.stderr)


def test_a_malformed_missing_or_forbidden_configmap_exits_2_saying_why(
    control_plane: ControlPlane, crds: list[str], kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    text, line = malformed(EXTRA)
    kube_client.create(
        ConfigMap(metadata=ObjectMeta(name="bad", namespace=namespace), data={"providers.yaml": text})
    )
    kc = str(control_plane.kubeconfig)
    bad = aidp(
        "audit", "--kubeconfig", kc, "-n", namespace, "--provider-catalog-configmap", f"{namespace}/bad"
    )
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert bad.stdout == ""  # no audit ran
    expected = (
        f"provider catalog ConfigMap {namespace}/bad key providers.yaml:{line}: "
        "providers[7].detection.credentialEnv: Expected `array`, got `str`"
    )
    assert expected in plain(bad.stderr), bad.stderr

    missing = aidp("audit", "--kubeconfig", kc, "--provider-catalog-configmap", f"{namespace}/nowhere")
    assert missing.returncode == 2, (missing.stdout, missing.stderr)
    assert (
        f"ConfigMap {namespace}/nowhere key providers.yaml: the ConfigMap does not exist (create it: "
        f"kubectl -n {namespace} create configmap nowhere --from-file=providers.yaml=FILE)"
    ) in plain(missing.stderr)

    # a caller who may not get the ConfigMap is told which RBAC it needs
    kube_client.create(ServiceAccount(metadata=ObjectMeta(name="auditor", namespace=namespace)))
    sa_kc = helpers.sa_kubeconfig(control_plane, kube_client, "auditor", namespace, tmp_path / "kc")
    forbidden = aidp("audit", "--kubeconfig", str(sa_kc), "--provider-catalog-configmap", f"{namespace}/bad")
    assert forbidden.returncode == 2, (forbidden.stdout, forbidden.stderr)
    message = plain(forbidden.stderr)
    assert (
        f"provider catalog ConfigMap {namespace}/bad key providers.yaml: the ConfigMap cannot be read"
        in message
    )
    assert f"system:serviceaccount:{namespace}:auditor" in message, message
    assert (
        f'needs get on configmaps in namespace {namespace} (a Role with apiGroups [""], resources '
        "[configmaps], resourceNames [bad], verbs [get]"
    ) in message, message

    # aidp check --kubeconfig refuses the malformed ConfigMap the same way, before any check
    files = tmp_path / "in.yaml"
    files.write_text(yaml.safe_dump(helpers.policy("p", namespace)))
    checked = aidp(
        "check", "--kubeconfig", kc, "-f", str(files), "--provider-catalog-configmap", f"{namespace}/bad"
    )
    assert checked.returncode == 2, (checked.stdout, checked.stderr)
    assert expected in plain(checked.stderr), checked.stderr


def test_check_against_the_cluster_uses_the_configmap_catalog(
    control_plane: ControlPlane, crds: list[str], kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    wait_for(lambda: served(kube_client), timeout=60, what="aidp's CRDs served")
    kube_client.create(
        ConfigMap(
            metadata=ObjectMeta(name=CM, namespace=namespace), data={"providers.yaml": catalog_text(EXTRA)}
        )
    )
    files = tmp_path / "in.yaml"
    files.write_text(
        yaml.safe_dump_all(
            [
                helpers.policy("acme", namespace, provider="acme-ai"),
                helpers.workload("Deployment", "bot", namespace),
            ]
        )
    )
    kc = str(control_plane.kubeconfig)
    out = aidp(
        "check", "--kubeconfig", kc, "-f", str(files), "--provider-catalog-configmap", f"{namespace}/{CM}"
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert f"ALLOWED Deployment {namespace}/bot (complies with {namespace}/acme)" in out.stdout
    assert f"aidp check: using provider catalog ConfigMap {namespace}/{CM} key providers.yaml" in out.stderr

    # with the built-in catalog the provider is unknown
    builtin = aidp("check", "--kubeconfig", kc, "-f", str(files))
    assert builtin.returncode == 2, (builtin.stdout, builtin.stderr)
    assert "acme-ai" in builtin.stderr
    assert "aidp check: using the built-in provider catalog" in builtin.stderr
