"""`aidp check` and the real API server: the lint refuses what kube-apiserver (strict field
validation, the CRD's schema and CEL rules) refuses; `--kubeconfig` checks local manifests against
the policies live in a cluster, read-only; `aidp audit --output-file` and the deprecated spellings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from aidp import bundle, lint, paths
from aidp.devcluster import ControlPlane
from tests.integration import helpers


def aidp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def policy_yaml(name: str, namespace: str, **spec: Any) -> str:
    return yaml.safe_dump(helpers.policy(name, namespace, **spec), sort_keys=False)


def deployment_yaml(name: str, namespace: str, annotations: dict[str, str]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "bot"}},
                "template": {
                    "metadata": {"labels": {"app": "bot"}, "annotations": annotations},
                    "spec": {"serviceAccountName": helpers.SA, "containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
        sort_keys=False,
    )


COMPLIANT = {
    "aidp.io/consent-basis": "contract",
    "aidp.io/retention-days": "30",
    "aidp.io/zero-data-retention": "true",
    "aidp.io/data-categories": "internal",
}


# --- the lint and the API server agree -----------------------------------------------------------


def _variants(namespace: str) -> dict[str, str]:
    base = policy_yaml("p", namespace)
    assert "serviceAccountNames:" in base and "  enforcement: deny\n" in base and "allowedBases:\n" in base
    return {
        "valid": base,
        "service-account-name": base.replace("serviceAccountNames:", "serviceAccountName:"),
        "data-category": base.replace("  dataCategories:", "  dataCategory:"),
        "enforcment": base.replace("  enforcement: deny\n", "  enforcment: warn\n"),
        "metadata-typo": base.replace(
            f"  namespace: {namespace}\n", f"  namespace: {namespace}\n  labells: {{}}\n"
        ),
        "purpose-boolean": base.replace("purpose: Summarise support tickets", "purpose: true"),
        "required-string": base.replace("required: true", "required: 'yes'"),
        "maxdays-float": base.replace("maxDays: 30", "maxDays: 1.5"),
        "maxdays-range": base.replace("maxDays: 30", "maxDays: 4000"),
        "consent-defaulted": base.replace(
            "    required: true\n    allowedBases:\n    - consent\n    - contract\n", ""
        ),
        "consent-no-bases": base.replace(
            "    allowedBases:\n    - consent\n    - contract\n", "    allowedBases: []\n"
        ),
        "blank-purpose": base.replace("purpose: Summarise support tickets", "purpose: ' '"),
        "bad-date": base.replace("expires: '2099-12-31'", "expires: '2027-02-30'"),
        "name-uppercase": base.replace("  name: p\n", "  name: P_1\n"),
        "not-served": base.replace("aidp.io/v1alpha1", "aidp.io/v9"),
        "label-int": base.replace("matchLabels:\n      app: bot", "matchLabels:\n      app: 1"),
    }


def test_the_lint_refuses_exactly_what_the_api_server_refuses(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    kubectl = paths.testbin_dir() / "kubectl"
    disagreements = []
    for case, text in _variants(namespace).items():
        path = tmp_path / f"{case}.yaml"
        path.write_text(text)
        strict = ["create", "--dry-run=server", "--validate=strict", "-f", str(path)]
        server = subprocess.run(
            [str(kubectl), "--kubeconfig", str(control_plane.kubeconfig), *strict],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        (manifest,) = lint.parse_text(text, str(path))
        crd = lint.crd_kind_of(manifest.obj)
        assert crd is not None
        # (duplicate keys are left out: kubectl's YAML-to-JSON conversion keeps the last one, so the
        # API server never sees them; aidp check refuses them, the policy's meaning being ambiguous)
        found = lint.lint_custom_resource(manifest, crd)
        if (server.returncode != 0) != bool(found):
            disagreements.append((case, server.stderr.strip(), [str(f) for f in found]))
        for finding in found:  # each CEL message is the API server's own
            if finding.message.endswith(("must not be blank", "calendar date (YYYY-MM-DD)")):
                assert finding.message.split(": ", 1)[1] in server.stderr, (case, server.stderr)
    assert disagreements == []
    assert len(_variants(namespace)) == 16


# --- aidp check --kubeconfig ---------------------------------------------------------------------


def test_check_against_the_policies_live_in_the_cluster_read_only(
    control_plane: ControlPlane, crds: list[str], kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    live = kube_client.create(helpers.AIDataPolicy(helpers.policy("live", namespace)))
    # a reader who may only get and list AIDataPolicies of this namespace (no cluster-wide list)
    kube_client.create(ServiceAccount(metadata=ObjectMeta(name="checker", namespace=namespace)))
    kube_client.create(
        Role(
            metadata=ObjectMeta(name="policy-reader", namespace=namespace),
            rules=[PolicyRule(apiGroups=["aidp.io"], resources=["aidatapolicies"], verbs=["get", "list"])],
        )
    )
    kube_client.create(
        RoleBinding(
            metadata=ObjectMeta(name="policy-reader", namespace=namespace),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name="policy-reader"),
            subjects=[Subject(kind="ServiceAccount", name="checker", namespace=namespace)],
        )
    )
    kubeconfig = helpers.sa_kubeconfig(control_plane, kube_client, "checker", namespace, tmp_path / "kc")
    workloads = tmp_path / "workloads.yaml"
    workloads.write_text(
        deployment_yaml("good", namespace, COMPLIANT)
        + "---\n"
        + deployment_yaml("long", namespace, {**COMPLIANT, "aidp.io/retention-days": "60"})
    )

    offline = aidp("check", "-f", str(workloads))
    assert offline.returncode == 0, offline.stderr
    assert f"ALLOWED Deployment {namespace}/good (no policy selects it)" in offline.stdout

    result = aidp("check", "--kubeconfig", str(kubeconfig), "-f", str(workloads))
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[:2] == [
        f"ALLOWED Deployment {namespace}/good (complies with {namespace}/live)",
        f"DENIED Deployment {namespace}/long (fails {namespace}/live)",
    ]
    assert "AIDataPolicies read from the cluster" in result.stderr
    # the reader may not read the operator's bundle ConfigMap: the default excluded namespaces
    assert "using the default excluded namespaces" in result.stderr

    # a policy in the files replaces the cluster's policy of the same name: "what if I apply this?"
    relaxed = tmp_path / "relaxed.yaml"
    relaxed.write_text(
        policy_yaml("live", namespace, retention={"maxDays": 90, "requireZeroDataRetention": True})
    )
    what_if = aidp(
        "check", "--kubeconfig", str(kubeconfig), "-f", str(relaxed), "-f", str(workloads), "-o", "json"
    )
    assert what_if.returncode == 0, what_if.stderr
    assert [(e["name"], e["allowed"], e["reason"]) for e in json.loads(what_if.stdout)] == [
        ("good", True, f"complies with {namespace}/live"),
        ("long", True, f"complies with {namespace}/live"),
    ]
    # read-only: the live policy is untouched
    after = kube_client.get(helpers.AIDataPolicy, "live", namespace=namespace)
    # (the operator may write its status meanwhile: the spec and its generation are what a writer changes)
    assert after["metadata"]["generation"] == live["metadata"]["generation"]
    assert after["spec"] == live["spec"]
    assert after["spec"]["retention"]["maxDays"] == 30

    unreachable = aidp("check", "--kubeconfig", str(tmp_path / "missing"), "-f", str(workloads))
    assert unreachable.returncode == 2
    assert "error: cannot list the AIDataPolicies of the cluster" in unreachable.stderr


def test_check_takes_the_excluded_namespaces_in_force_from_the_operators_bundle(
    control_plane: ControlPlane, crds: list[str], kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    kube_client.create(helpers.AIDataPolicy(helpers.policy("live", namespace)))
    # this namespace plays the operator's: its durable bundle excludes the workloads' namespace
    data = {"revision": "r", "config": {"excludedNamespaces": ["kube-system", namespace]}, "policies": {}}
    cm = bundle.configmap("aidp-opa-bundle", namespace, bundle.Bundle(modules={}, data=data))
    kube_client.create(codecs.from_dict(cm))
    workloads = tmp_path / "w.yaml"
    workloads.write_text(deployment_yaml("long", namespace, {**COMPLIANT, "aidp.io/retention-days": "60"}))
    kubeconfig = str(control_plane.kubeconfig)
    excluded = aidp("check", "--kubeconfig", kubeconfig, "--aidp-namespace", namespace, "-f", str(workloads))
    assert excluded.returncode == 0, excluded.stderr
    assert excluded.stdout == f"ALLOWED Deployment {namespace}/long (namespace not governed)\n"
    elsewhere = aidp(
        "check", "--kubeconfig", kubeconfig, "--aidp-namespace", "no-such-ns", "-f", str(workloads)
    )
    assert elsewhere.returncode == 1, elsewhere.stderr
    assert elsewhere.stdout.startswith(f"DENIED Deployment {namespace}/long (fails {namespace}/live)")
    assert "cannot read ConfigMap no-such-ns/aidp-opa-bundle" in elsewhere.stderr


# --- aidp audit: -o is the format, --output-file the destination ---------------------------------


@pytest.mark.parametrize(
    ("args", "deprecated", "first"),
    [
        (["-o", "markdown", "--output-file", "{dir}/r.md"], False, "#"),
        (["--output", "{dir}/r.json"], True, "{"),  # the old meaning of --output, for one release
        (["--output-format", "csv", "--output", "{dir}/r.csv"], True, "type,"),
    ],
)
def test_audit_writes_the_report_where_and_as_asked(
    control_plane: ControlPlane,
    crds: list[str],
    namespace: str,
    tmp_path: Path,
    args: list[str],
    deprecated: bool,
    first: str,
) -> None:
    argv = [a.replace("{dir}", str(tmp_path)) for a in args]
    result = aidp(
        "audit", "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, "--fail-on", "never", *argv
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert ("deprecated" in result.stderr) == deprecated
    (written,) = tmp_path.glob("r.*")
    assert written.read_text().lstrip().startswith(first)
