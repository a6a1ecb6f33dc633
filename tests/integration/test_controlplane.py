"""The local control plane is real: CRDs with schema validation, RBAC, garbage collection."""

from __future__ import annotations

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import ConfigMap, ServiceAccount
from lightkube.types import PatchType

from aidp import kube
from aidp.devcluster import ControlPlane, kubeconfig
from tests.waiting import wait_for

AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")


def _policy(name: str, ns: str, max_days: int = 30) -> dict[str, object]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "provider": "openai",
            "workloadSelector": {"matchLabels": {"app": "bot"}},
            "purpose": "Summarise support tickets",
            "consent": {"allowedBases": ["consent"]},
            "retention": {"maxDays": max_days},
        },
    }


def test_custom_object_crud_and_schema_validation(
    kube_client: Client, crds: list[str], namespace: str
) -> None:
    assert "aidatapolicies.aidp.io" in crds
    created = kube_client.create(AIDataPolicy(_policy("p1", namespace)))
    assert created.metadata.uid
    got = kube_client.get(AIDataPolicy, "p1", namespace=namespace)
    # defaults from the schema are applied by the API server
    assert got["spec"]["enforcement"] == "deny"
    assert got["spec"]["consent"]["required"] is True
    kube_client.patch(
        AIDataPolicy,
        "p1",
        {"spec": {"retention": {"maxDays": 7}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    assert kube_client.get(AIDataPolicy, "p1", namespace=namespace)["spec"]["retention"]["maxDays"] == 7

    with pytest.raises(ApiError) as err:
        kube_client.create(AIDataPolicy(_policy("bad", namespace, max_days=9999)))
    assert err.value.status.code == 422
    assert "spec.retention.maxDays" in err.value.status.message

    kube_client.delete(AIDataPolicy, "p1", namespace=namespace)
    wait_for(lambda: not list(kube_client.list(AIDataPolicy, namespace=namespace)), what="policy deleted")


def test_garbage_collector_cascades_owner_deletion(kube_client: Client, namespace: str) -> None:
    owner = kube_client.create(ConfigMap(metadata=ObjectMeta(name="owner", namespace=namespace)))
    ref = OwnerReference(apiVersion="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    kube_client.create(
        ConfigMap(
            metadata=ObjectMeta(name="child", namespace=namespace, ownerReferences=[ref]), data={"a": "b"}
        )
    )
    kube_client.delete(ConfigMap, "owner", namespace=namespace)

    def child_gone() -> bool:
        try:
            kube_client.get(ConfigMap, "child", namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    wait_for(child_gone, timeout=60, what="garbage collector to delete the dependent ConfigMap")


def test_rbac_is_enforced(control_plane: ControlPlane, kube_client: Client, namespace: str) -> None:
    """A service account without bindings is refused: authorization really is RBAC."""
    req = kube_client.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(name="default", namespace=namespace),
            spec=TokenRequestSpec(audiences=[], expirationSeconds=600),
        ),
        name="default",
        namespace=namespace,
    )
    path = kubeconfig.write(
        control_plane.state_dir / f"sa-{namespace}.kubeconfig",
        kubeconfig.render(
            control_plane.server, control_plane.ca_file.read_bytes(), user="sa", token=req.status.token
        ),
    )
    sa_client = kube.client(path)
    with pytest.raises(ApiError) as err:
        list(sa_client.list(ConfigMap, namespace=namespace))
    assert err.value.status.code == 403
