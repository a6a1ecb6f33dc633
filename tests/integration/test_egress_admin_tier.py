"""The admin-tier backends (`clusternetworkpolicy`, `adminnetworkpolicy`) against the genuine
network-policy-api CRDs (tests/upstream-crds), and the operator applying them on the real control
plane."""

from __future__ import annotations

import copy
import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import DEMO_ADDRESSES, AidpStack
from aidp.egress import backends
from aidp.egress.model import AddressBook, EgressContext, EgressSettings
from aidp.egress.resolver import load_overrides
from aidp.model import Policy
from aidp.paths import crds_dir
from tests.conftest import upstream_crd
from tests.integration import helpers
from tests.waiting import wait_for

CRDS = {
    "clusternetworkpolicy": ("policy-api-clusternetworkpolicies.yaml", "v1alpha2", "ClusterNetworkPolicy"),
    "adminnetworkpolicy": ("policy-api-adminnetworkpolicies.yaml", "v1alpha1", "AdminNetworkPolicy"),
}
GROUP = "policy.networking.k8s.io"


def resource(backend: str) -> Any:
    _, version, kind = CRDS[backend]
    plural = backend.replace("policy", "policies")
    return create_global_resource(GROUP, version, kind, plural)


def cases(ns: str) -> list[Policy]:
    """The policies of the other egress tests: endpoints on other ports, residency, expressions,
    an extra Azure endpoint, an expired review, warn and dryrun."""
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    specs: dict[str, dict[str, Any]] = {
        "chat": {"endpoints": [{"host": "jp.api.openai.com", "port": 8443}]},
        "eu": {"workloadSelector": {"matchLabels": {"app": "eu"}}, "dataResidency": "eu"},
        "batch": {"workloadSelector": {"matchExpressions": [{"key": "batch", "operator": "Exists"}]}},
        "extra": {
            "workloadSelector": {
                "matchLabels": {"app": "extra"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod", "staging"]}],
            },
            "endpoints": [{"host": "myres.openai.azure.com", "port": 8443}],
        },
        "old": {
            "workloadSelector": {"matchLabels": {"app": "old"}},
            "review": {"approvedBy": "x", "expires": yesterday},
        },
        "warned": {"workloadSelector": {"matchLabels": {"app": "w"}}, "enforcement": "warn"},
    }
    return [Policy.from_object(helpers.policy(name, ns, **spec)) for name, spec in specs.items()]


@pytest.fixture(scope="module")
def admin_crds(kube_client: Client) -> list[str]:
    return kube.install_crd_files(kube_client, [upstream_crd(f) for f, _, _ in CRDS.values()])


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> AddressBook:
    """The dev stack's provider addresses (TEST-NET), as the operator reads them."""
    path = tmp_path_factory.mktemp("addresses") / "addresses.yaml"
    path.write_text(DEMO_ADDRESSES)
    static, _ = load_overrides(path)
    return AddressBook(static)


def rendered(book: AddressBook, backend: str, ns: str) -> list[dict[str, Any]]:
    ctx = EgressContext(book, dt.datetime.now(dt.UTC).date(), EgressSettings())
    return backends.render_all(backends.get(backend), cases(ns), ctx)


@pytest.mark.parametrize("backend", sorted(CRDS))
def test_the_genuine_crd_accepts_every_generated_object(
    kube_client: Client, admin_crds: list[str], book: AddressBook, backend: str
) -> None:
    objs = rendered(book, backend, f"ns-{secrets.token_hex(3)}")
    assert len(objs) >= 5
    for obj in objs:
        kube_client.create(from_dict(copy.deepcopy(obj)), dry_run=True)  # server-side validation


@pytest.mark.parametrize("backend", sorted(CRDS))
def test_the_genuine_crd_refuses_a_broken_object(
    kube_client: Client, admin_crds: list[str], book: AddressBook, backend: str
) -> None:
    obj = copy.deepcopy(rendered(book, backend, "ns-broken")[0])
    obj["spec"]["egress"][0]["action"] = "Permit"  # not an action of the API
    with pytest.raises(ApiError) as err:
        kube_client.create(from_dict(obj), dry_run=True)
    assert "action" in str(err.value.status.message)
    obj = copy.deepcopy(rendered(book, backend, "ns-broken")[0])
    obj["spec"]["egress"][0]["to"][0]["networks"] = [f"203.0.113.{i}/32" for i in range(26)]  # maxItems 25
    with pytest.raises(ApiError):
        kube_client.create(from_dict(obj), dry_run=True)


# ---- the operator with the clusternetworkpolicy backend --------------------------------------------


@pytest.fixture(scope="module")
def cnp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, AidpStack]]:
    crds = [upstream_crd(CRDS["clusternetworkpolicy"][0])]
    yield from helpers.own_stack(
        tmp_path_factory.mktemp("cnp"),
        "--egress-backend",
        "clusternetworkpolicy",
        "--resync-seconds",
        "5",
        crds=crds,
    )


@pytest.mark.local_only
def test_the_operator_applies_repairs_and_removes_cluster_network_policies(
    cnp_stack: tuple[ControlPlane, AidpStack],
) -> None:
    cp, _ = cnp_stack
    client = kube.client(cp.kubeconfig)
    kube.install_crds(client, crds_dir())
    ns = f"cnp-{secrets.token_hex(3)}"
    client.create(Namespace(metadata=ObjectMeta(name=ns)))
    client.create(helpers.AIDataPolicy(helpers.policy("bots", ns)))
    helpers.wait_enforced(client, ns, "bots")
    res = resource("clusternetworkpolicy")
    names = {f"aidp-{ns}-deny", f"aidp-{ns}-bots"}

    def present() -> set[str]:
        return {
            o.metadata.name
            for o in client.list(res, labels={"app.kubernetes.io/managed-by": "aidp"})
            if o.metadata and o.metadata.labels and o.metadata.labels.get("aidp.io/namespace") == ns
        }

    wait_for(lambda: present() == names, timeout=30, what="the ClusterNetworkPolicies")
    deny = client.get(res, f"aidp-{ns}-deny").to_dict()
    assert deny["spec"]["tier"] == "Admin" and deny["spec"]["egress"][0]["action"] == "Deny"
    assert "203.0.113.10/32" in deny["spec"]["egress"][0]["to"][0]["networks"]
    status = client.get(helpers.AIDataPolicy, "bots", namespace=ns).to_dict()["status"]
    egress = next(c for c in status["conditions"] if c["type"] == "EgressEnforced")
    assert (egress["status"], egress["reason"]) == ("True", "Applied"), egress
    # an edit (the Deny turned into Pass) is repaired
    client.patch(
        res,
        f"aidp-{ns}-deny",
        [{"op": "replace", "path": "/spec/egress/0/action", "value": "Pass"}],
        patch_type=PatchType.JSON,
    )
    wait_for(
        lambda: client.get(res, f"aidp-{ns}-deny").to_dict()["spec"]["egress"][0]["action"] == "Deny",
        timeout=30,
        what="the Deny restored",
    )
    # the policy goes: its namespace's objects go too
    client.delete(helpers.AIDataPolicy, "bots", namespace=ns)
    wait_for(lambda: present() == set(), timeout=30, what="the ClusterNetworkPolicies removed")
