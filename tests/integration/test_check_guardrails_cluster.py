"""`aidp check --kubeconfig` with the ClusterAIDataPolicies live in the cluster: the files'
AIDataPolicies are judged against the live guardrails' bounds, workloads get their rules and
`unapproved-ai`, which namespaces they govern follows the live namespaces' labels (a Namespace in
the files replaces the cluster's), and nothing in the cluster is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Namespace

from aidp.controller.governance import ClusterAIDataPolicy
from aidp.devcluster import ControlPlane
from tests.integration import helpers
from tests.waiting import wait_for


def aidp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_check_judges_the_files_against_the_live_guardrails(
    control_plane: ControlPlane, crds: list[str], kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    def served() -> bool:  # just after the CRDs are installed, lists may get 503 for a moment
        list(kube_client.list(helpers.AIDataPolicy, namespace="*"))
        list(kube_client.list(ClusterAIDataPolicy))
        return True

    wait_for(served, timeout=60, what="aidp's CRDs served")
    name = f"check-{namespace}"
    guardrail = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"aidp-check-guardrail": namespace}},
            "retention": {"maxDays": 7},
            "unapprovedAI": "deny",
        },
    }
    created = kube_client.create(ClusterAIDataPolicy(guardrail))
    try:
        kube_client.patch(Namespace, namespace, {"metadata": {"labels": {"aidp-check-guardrail": namespace}}})
        notebook = helpers.workload("Deployment", "notebook", namespace, labels={"app": "notebook"})
        notebook["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "OPENAI_API_KEY", "value": "x"}
        ]
        files = tmp_path / "files.yaml"
        files.write_text(yaml.safe_dump_all([helpers.policy("p", namespace), notebook], sort_keys=False))
        kubeconfig = str(control_plane.kubeconfig)

        offline = aidp("check", "-f", str(files))
        assert offline.returncode == 0, offline.stderr  # without the cluster: no guardrail

        result = aidp("check", "--kubeconfig", kubeconfig, "-f", str(files))
        assert result.returncode == 1, result.stderr
        assert result.stdout.splitlines() == [
            f"DENIED AIDataPolicy {namespace}/p (looser than ClusterAIDataPolicy/{name})",
            f"  - ClusterAIDataPolicy/{name} [out-of-bounds] (deny) spec.retention.maxDays: 30, more than "
            "its ceiling of 7 days",
            f"DENIED Deployment {namespace}/notebook (no policy selects it; fails "
            f"ClusterAIDataPolicy/{name})",
            f"  - ClusterAIDataPolicy/{name} [unapproved-ai] (deny) the pod references an AI provider (env "
            "OPENAI_API_KEY) but no active AIDataPolicy selects it; write one (within the cluster's "
            "guardrails) or remove the reference",
        ]
        assert "1 ClusterAIDataPolicies read from the cluster" in result.stderr

        # a Namespace in the files replaces the cluster's labels: "what if I drop the label?"
        unlabelled = tmp_path / "namespace.yaml"
        unlabelled.write_text(
            yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        )
        what_if = aidp("check", "--kubeconfig", kubeconfig, "-f", str(unlabelled), "-f", str(files))
        assert what_if.returncode == 0, what_if.stdout + what_if.stderr
        assert f"VALID AIDataPolicy {namespace}/p" in what_if.stdout
        assert f"ALLOWED Deployment {namespace}/notebook (no policy selects it)" in what_if.stdout

        # a guardrail in the files replaces the live one of the same name
        relaxed = tmp_path / "guardrail.yaml"
        relaxed.write_text(
            yaml.safe_dump({**guardrail, "spec": {**guardrail["spec"], "retention": {"maxDays": 60}}})
        )
        replaced = aidp("check", "--kubeconfig", kubeconfig, "-f", str(relaxed), "-f", str(files))
        assert replaced.returncode == 1  # the notebook is still an unapproved AI client
        assert f"VALID AIDataPolicy {namespace}/p" in replaced.stdout  # within the relaxed bounds
        assert f"DENIED AIDataPolicy {namespace}/p" not in replaced.stdout
    finally:
        after = kube_client.get(ClusterAIDataPolicy, name)
        # read-only (the operator writes the guardrail's status meanwhile; a writer would change the spec)
        assert after["metadata"]["generation"] == created["metadata"]["generation"]
        assert after["spec"] == created["spec"]
        kube_client.delete(ClusterAIDataPolicy, name)
