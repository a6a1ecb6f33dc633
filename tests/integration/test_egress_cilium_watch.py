"""The operator running the `cilium` backend: generated CiliumNetworkPolicies (genuine Cilium CRD)
are created as rendered, and an edit or a deletion is repaired through the watch, long before the
next full resync (600 s here).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from aidp import kube
from aidp.config import ISOLATED_LABEL
from aidp.controller.egress import same_spec
from aidp.devcluster.stack import AidpStack
from tests.conftest import upstream_crd
from tests.integration import helpers
from tests.integration.conftest import make_env
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # a control plane and an operator of its own

CiliumNetworkPolicy = create_namespaced_resource(
    "cilium.io", "v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies"
)
MANAGED = {"app.kubernetes.io/managed-by": "aidp"}
REPAIRED_WITHIN = 15.0  # seconds; the full resync is 600 s away


@pytest.fixture(scope="module")
def cilium_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AidpStack]]:
    for cp, stack in helpers.own_stack(
        tmp_path_factory.mktemp("cilium"),
        *("--audit-interval", "0", "--egress-backend", "cilium", "--resync-seconds", "600"),
        crds=[upstream_crd("cilium-ciliumnetworkpolicies.yaml")],
    ):
        yield kube.client(cp.kubeconfig), stack


def live(client: Client, ns: str) -> dict[str, dict[str, Any]]:
    return {
        o.metadata.name: o.to_dict() for o in client.list(CiliumNetworkPolicy, namespace=ns, labels=MANAGED)
    }


def test_generated_cilium_policies_are_repaired_through_the_watch(
    cilium_stack: tuple[Client, AidpStack],
) -> None:
    client, stack = cilium_stack
    env = make_env(client, stack.cp.kubeconfig)
    env.policy("chat")
    names = {"aidp-egress-baseline", "aidp-egress-chat"}
    before = wait_for(
        lambda: (have := live(client, env.ns)) and set(have) == names and have,
        timeout=30,
        interval=0.2,
        what="the generated CiliumNetworkPolicies",
    )

    client.delete(CiliumNetworkPolicy, "aidp-egress-chat", namespace=env.ns)
    again = wait_for(
        lambda: (
            (obj := live(client, env.ns).get("aidp-egress-chat"))
            and obj["metadata"]["uid"] != before["aidp-egress-chat"]["metadata"]["uid"]
            and obj
        ),
        timeout=REPAIRED_WITHIN,
        interval=0.2,
        what="the deleted CiliumNetworkPolicy re-created",
    )
    assert same_spec(before["aidp-egress-chat"]["spec"], again["spec"])

    edited = copy.deepcopy(before["aidp-egress-baseline"]["spec"])
    edited["egress"] = edited["egress"][:1]  # someone drops rules from the baseline
    patched = client.patch(
        CiliumNetworkPolicy,
        "aidp-egress-baseline",
        {"spec": edited},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    assert not same_spec(before["aidp-egress-baseline"]["spec"], patched.to_dict()["spec"])
    wait_for(
        lambda: (
            same_spec(
                before["aidp-egress-baseline"]["spec"], live(client, env.ns)["aidp-egress-baseline"]["spec"]
            )
            and same_spec(
                live(client, env.ns)["aidp-egress-baseline"]["spec"], before["aidp-egress-baseline"]["spec"]
            )
        ),
        timeout=REPAIRED_WITHIN,
        interval=0.2,
        what="the edited baseline put back",
    )


def _isolated(client: Client, ns: str, name: str) -> bool:
    labels = client.get(Pod, name, namespace=ns).metadata.labels or {}  # type: ignore[union-attr]
    return labels.get(ISOLATED_LABEL) == "true"


def test_pods_a_user_cilium_policy_isolates_are_left_out_of_the_baseline(
    cilium_stack: tuple[Client, AidpStack],
) -> None:
    """Never loosen, with the cilium backend: a user's CiliumNetworkPolicy with an egress section
    puts its endpoints in Cilium's egress default-deny, so the operator labels them isolated and
    aidp's baseline CiliumNetworkPolicy (which selects only unlabelled pods) adds nothing to them."""
    client, stack = cilium_stack
    env = make_env(client, stack.cp.kubeconfig)
    user = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "db-egress", "namespace": env.ns},
        "spec": {
            "endpointSelector": {"matchLabels": {"k8s:locked": "yes"}},
            "egress": [{"toEndpoints": [{"matchLabels": {"app": "db"}}]}],
        },
    }
    client.create(CiliumNetworkPolicy.from_dict(user))
    env.policy("bots")
    baseline = wait_for(
        lambda: live(client, env.ns).get("aidp-egress-baseline"), timeout=30, what="the baseline"
    )
    exprs = baseline["spec"]["endpointSelector"]["matchExpressions"]
    assert {"key": ISOLATED_LABEL, "operator": "DoesNotExist"} in exprs, baseline["spec"]
    locked = helpers.workload("Pod", "locked", env.ns, labels={"app": "bot", "locked": "yes"})
    free = helpers.workload("Pod", "free", env.ns)
    assert helpers.create(client, locked) is None and helpers.create(client, free) is None
    wait_for(lambda: _isolated(client, env.ns, "locked"), timeout=30, what="the locked pod labelled isolated")
    assert not _isolated(client, env.ns, "free")
    # the rule turns default-deny off: the label goes (re-judged on the CiliumNetworkPolicy event)
    client.patch(
        CiliumNetworkPolicy,
        "db-egress",
        {"spec": {"enableDefaultDeny": {"egress": False}}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    wait_for(lambda: not _isolated(client, env.ns, "locked"), timeout=30, what="the isolation label removed")
