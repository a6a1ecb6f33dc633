"""examples/library on the real admission webhook: every workload is admitted or denied live
exactly as its expected.txt (checked offline by tests/unit/test_examples_library.py) says."""

from __future__ import annotations

import contextlib
from pathlib import Path

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from aidp import kube
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers

LIBRARY = Path(__file__).resolve().parents[2] / "examples" / "library"
# the examples of one namespace policy each; the guardrail example (a cluster-scoped
# ClusterAIDataPolicy and several policies) is judged live by test_check_guardrails_cluster.py
SINGLE = sorted(p for p in LIBRARY.iterdir() if p.is_dir() and not (p / "guardrail.yaml").exists())


def expected_verdicts() -> dict[tuple[str, str, str], bool]:
    verdicts = {}
    for file in (example / "expected.txt" for example in SINGLE):
        for line in file.read_text().splitlines():
            if line.startswith(("ALLOWED ", "DENIED ")):
                verdict, kind, ref = line.split()[:3]
                namespace, name = ref.split("/")
                verdicts[(kind, namespace, name)] = verdict == "ALLOWED"
    return verdicts


def test_the_live_webhook_gives_the_librarys_expected_verdicts(
    aidp_stack: AidpStack, kube_client: Client
) -> None:
    expected = expected_verdicts()
    assert len(expected) >= 12 and False in expected.values()
    namespaces = sorted({ns for _, ns, _ in expected})
    live: dict[tuple[str, str, str], bool] = {}
    try:
        for ns in namespaces:
            kube_client.create(Namespace(metadata=ObjectMeta(name=ns)))
        for example in SINGLE:
            (policy,) = kube.load_yaml_files([example / "policy.yaml"])
            kube_client.create(policy)
            helpers.wait_enforced(kube_client, policy.metadata.namespace, policy.metadata.name)
            for obj in kube.load_yaml_files([example / "compliant.yaml", example / "noncompliant.yaml"]):
                key = (obj.kind, obj.metadata.namespace, obj.metadata.name)
                try:
                    kube_client.create(obj, dry_run=True)
                    live[key] = True
                except ApiError as err:
                    assert err.status.code in (400, 403), err.status.message
                    assert "aidp:" in err.status.message
                    live[key] = False
        assert live == expected
    finally:
        for ns in namespaces:
            with contextlib.suppress(ApiError):
                kube_client.delete(Namespace, ns)
