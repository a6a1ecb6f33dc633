"""`aidp check` (offline) agrees with the live webhook on every object of examples/."""

from __future__ import annotations

from pathlib import Path

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace

from aidp import kube
from aidp.check import check_manifests
from aidp.devcluster.stack import AidpStack
from aidp.render import load_manifests
from tests.integration import helpers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_offline_check_agrees_with_the_live_webhook(aidp_stack: AidpStack, kube_client: Client) -> None:
    offline = {(r.kind, r.namespace, r.name): r.allowed for r in check_manifests(load_manifests([EXAMPLES]))}
    assert offline, "examples/ holds no checked workloads"
    live: dict[tuple[str, str, str], bool] = {}
    try:
        for path in sorted(EXAMPLES.glob("*.yaml")):
            for obj in kube.load_yaml_files([path]):
                key = (obj.kind, obj.metadata.namespace, obj.metadata.name)
                try:
                    kube_client.create(obj)
                    live[key] = True
                except ApiError as err:
                    assert err.status.code in (400, 403), err.status.message
                    assert "aidp:" in err.status.message
                    live[key] = False
                if obj.kind == "AIDataPolicy":
                    helpers.wait_enforced(kube_client, obj.metadata.namespace, obj.metadata.name)
        assert {k: live[k] for k in offline} == offline
        assert False in offline.values() and True in offline.values()
    finally:
        for ns in ("support", "marketing"):
            try:
                kube_client.delete(Namespace, ns)
            except ApiError as err:
                if err.status.code != 404:  # not created when an earlier step failed
                    raise
