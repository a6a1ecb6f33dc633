"""Separation of duties on the real API server, with TokenRequest tokens of service accounts.

The roles are the ones `aidp dev up` installs (`AidpStack.install`; the chart's, checked equal in
tests/unit/test_rbac_roles.py). A namespace admin (the built-in `admin` ClusterRole, bound in their
namespace) reads AIDataPolicies through aggregation but cannot write one, nor grant themselves the
author role; bound to `aidp-policy-author` in their namespace they can write policies there (only
there); they can never create or patch a ClusterAIDataPolicy. Only `aidp-guardrail-admin` can.

ClusterAIDataPolicies are only ever created as server-side dry-runs (nothing is stored), so no
guardrail governs the session's namespaces.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding
from lightkube.types import PatchType

from aidp import kube, rbac_roles
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from tests.conftest import EXTERNAL_KUBECONFIG
from tests.integration import helpers
from tests.waiting import wait_for

ClusterAIDataPolicy = create_global_resource(
    "aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies"
)
SUFFIX = secrets.token_hex(3)
# a label no namespace carries
NOWHERE = {"matchLabels": {"aidp.test/rbac": "nowhere"}}


def guardrail(name: str) -> Any:
    return ClusterAIDataPolicy(
        {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "ClusterAIDataPolicy",
            "metadata": {"name": name},
            "spec": {"namespaceSelector": NOWHERE, "providers": ["openai"], "retention": {"maxDays": 30}},
        }
    )


def forbidden(call: Callable[[], object]) -> str:
    """Run `call`; it must be refused by authorization (403). Returns the message."""
    with pytest.raises(ApiError) as err:
        call()
    assert err.value.status.code == 403, err.value.status.message
    return str(err.value.status.message)


def can(call: Callable[[], object]) -> bool:
    """True once `call` is authorized (RBAC caches catch up with a new binding within moments)."""
    try:
        call()
    except ApiError as err:
        if err.status.code == 403:
            return False
        raise
    return True


class Cluster:
    """The cluster admin's side: namespaces, service accounts, bindings; removed afterwards."""

    def __init__(self, cp: ControlPlane, admin: Client, tmp: Path) -> None:
        self.cp = cp
        self.admin = admin
        self.tmp = tmp
        self.namespaces: list[str] = []
        self.cluster_bindings: list[str] = []

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.admin.create(Namespace(metadata=ObjectMeta(name=name)))
        self.namespaces.append(name)
        return name

    def account(self, name: str, namespace: str) -> Client:
        """A service account and a client with its TokenRequest token."""
        self.admin.create(ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)))
        path = self.tmp / f"{namespace}-{name}.kubeconfig"
        return kube.client(helpers.sa_kubeconfig(self.cp, self.admin, name, namespace, path))

    def bind(self, role: str, sa: str, sa_namespace: str, *, namespace: str | None = None) -> None:
        """Bind ClusterRole `role` to the account: in `namespace` (RoleBinding) or cluster-wide."""
        subject = Subject(kind="ServiceAccount", name=sa, namespace=sa_namespace)
        ref = RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=role)
        name = f"{role}-{sa}-{SUFFIX}"
        if namespace is not None:
            meta = ObjectMeta(name=name, namespace=namespace)
            self.admin.create(RoleBinding(metadata=meta, roleRef=ref, subjects=[subject]))
        else:
            self.admin.create(
                ClusterRoleBinding(metadata=ObjectMeta(name=name), roleRef=ref, subjects=[subject])
            )
            self.cluster_bindings.append(name)

    def cleanup(self) -> None:
        for name in self.cluster_bindings:
            with contextlib.suppress(ApiError):
                self.admin.delete(ClusterRoleBinding, name)
        for ns in self.namespaces:
            with contextlib.suppress(ApiError):
                self.admin.delete(Namespace, ns)


@pytest.fixture(scope="module")
def roles_installed(
    control_plane: ControlPlane, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The roles as `aidp dev up` installs them (against an external cluster: the chart's)."""
    if not EXTERNAL_KUBECONFIG:
        AidpStack(control_plane, tmp_path_factory.mktemp("rbac-install")).install()
    admin = kube.client(control_plane.kubeconfig)
    for name in rbac_roles.ROLE_NAMES:
        admin.get(ClusterRole, name)

    def aggregated() -> bool:
        for builtin in ("view", "edit", "admin"):
            rules = admin.get(ClusterRole, builtin).rules or []
            if not any("aidatapolicies" in (r.resources or []) for r in rules):
                return False
        return True

    wait_for(aggregated, timeout=30, what="aidp-policy-viewer aggregated into view, edit and admin")


@pytest.fixture
def cluster(
    control_plane: ControlPlane, kube_client: Client, roles_installed: None, tmp_path: Path
) -> Iterator[Cluster]:
    c = Cluster(control_plane, kube_client, tmp_path)
    yield c
    c.cleanup()


def test_a_namespace_admin_reads_policies_but_cannot_approve_ai_use_until_granted_the_author_role(
    cluster: Cluster, kube_client: Client
) -> None:
    ns = cluster.namespace("team")
    other = cluster.namespace("other")
    ns_admin = cluster.account("ns-admin", ns)
    cluster.bind("admin", "ns-admin", ns, namespace=ns)
    # a policy the approver wrote earlier (here: the cluster admin)
    kube_client.create(helpers.AIDataPolicy(helpers.policy("existing", ns)))

    # reading: granted by the aggregated aidp-policy-viewer
    wait_for(
        lambda: can(lambda: list(ns_admin.list(helpers.AIDataPolicy, namespace=ns))),
        timeout=30,
        what="the namespace admin can list AIDataPolicies",
    )
    assert [p.metadata.name for p in ns_admin.list(helpers.AIDataPolicy, namespace=ns)] == ["existing"]
    assert ns_admin.get(helpers.AIDataPolicy, "existing", namespace=ns).metadata.name == "existing"

    # writing: not by default
    new_policy = helpers.AIDataPolicy(helpers.policy("chat", ns))
    message = forbidden(lambda: ns_admin.create(new_policy))
    assert 'cannot create resource "aidatapolicies"' in message, message
    forbidden(lambda: ns_admin.create(new_policy, dry_run=True))
    patch = {"spec": {"retention": {"maxDays": 3650}}}
    forbidden(
        lambda: ns_admin.patch(
            helpers.AIDataPolicy, "existing", patch, namespace=ns, patch_type=PatchType.MERGE
        )
    )
    forbidden(lambda: ns_admin.delete(helpers.AIDataPolicy, "existing", namespace=ns))
    # nor by granting it to themselves: they do not hold its permissions (RBAC's escalation check)
    me = Subject(kind="ServiceAccount", name="ns-admin", namespace=ns)
    self_grant = RoleBinding(
        metadata=ObjectMeta(name="self-author", namespace=ns),
        roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name="aidp-policy-author"),
        subjects=[me],
    )
    forbidden(lambda: ns_admin.create(self_grant))
    own_role = Role(
        metadata=ObjectMeta(name="self-author", namespace=ns),
        rules=[PolicyRule(apiGroups=["aidp.io"], resources=["aidatapolicies"], verbs=["create"])],
    )
    forbidden(lambda: ns_admin.create(own_role))
    # and never a guardrail
    forbidden(lambda: ns_admin.create(guardrail(f"team-{SUFFIX}"), dry_run=True))
    forbidden(lambda: list(ns_admin.list(ClusterAIDataPolicy)))

    # granted aidp-policy-author in their namespace: they approve AI use there
    cluster.bind("aidp-policy-author", "ns-admin", ns, namespace=ns)
    wait_for(
        lambda: can(lambda: ns_admin.create(new_policy, dry_run=True)),
        timeout=30,
        what="the author role in force",
    )
    created = ns_admin.create(new_policy)
    assert created.metadata.name == "chat"
    ns_admin.patch(
        helpers.AIDataPolicy,
        "chat",
        {"spec": {"purpose": "Summarise support tickets for agents"}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    ns_admin.delete(helpers.AIDataPolicy, "chat", namespace=ns)
    # only there
    forbidden(lambda: ns_admin.create(helpers.AIDataPolicy(helpers.policy("chat", other)), dry_run=True))
    # the status stays the operator's
    status = {"status": {"violations": 0}}
    forbidden(
        lambda: ns_admin.patch(
            helpers.AIDataPolicy.Status, "existing", status, namespace=ns, patch_type=PatchType.MERGE
        )
    )
    # still never a guardrail, nor the role that writes them
    forbidden(lambda: ns_admin.create(guardrail(f"team-{SUFFIX}"), dry_run=True))
    forbidden(
        lambda: ns_admin.patch(
            ClusterAIDataPolicy,
            "org-guardrails",
            {"spec": {"unapprovedAI": "audit"}},
            patch_type=PatchType.MERGE,
        )
    )
    guardrail_grant = RoleBinding(
        metadata=ObjectMeta(name="self-guardrail", namespace=ns),
        roleRef=RoleRef(
            apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name="aidp-guardrail-admin"
        ),
        subjects=[me],
    )
    forbidden(lambda: ns_admin.create(guardrail_grant))
    cluster_grant = ClusterRoleBinding(
        metadata=ObjectMeta(name=f"self-guardrail-{SUFFIX}"),
        roleRef=RoleRef(
            apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name="aidp-guardrail-admin"
        ),
        subjects=[me],
    )
    forbidden(lambda: ns_admin.create(cluster_grant))


def test_view_and_edit_read_policies_and_write_none(cluster: Cluster) -> None:
    ns = cluster.namespace("team")
    clients = {}
    for builtin in ("view", "edit"):
        clients[builtin] = cluster.account(f"ns-{builtin}", ns)
        cluster.bind(builtin, f"ns-{builtin}", ns, namespace=ns)
    for builtin, client in clients.items():
        check_reader(client, builtin, ns)


def check_reader(client: Client, role: str, ns: str) -> None:
    """`client` (bound to the built-in `role` in `ns`) reads AIDataPolicies there, writes none, and
    sees no guardrail."""
    wait_for(
        lambda: can(lambda: list(client.list(helpers.AIDataPolicy, namespace=ns))),
        timeout=30,
        what=f"{role} can list AIDataPolicies",
    )
    forbidden(lambda: client.create(helpers.AIDataPolicy(helpers.policy("p", ns)), dry_run=True))
    forbidden(lambda: list(client.list(ClusterAIDataPolicy)))


def test_only_the_guardrail_admin_writes_guardrails(cluster: Cluster) -> None:
    ns = cluster.namespace("privacy")
    team = cluster.namespace("team")
    viewer = cluster.account("guardrail-viewer", ns)
    admin = cluster.account("guardrail-admin", ns)
    cluster.bind("aidp-guardrail-viewer", "guardrail-viewer", ns)
    cluster.bind("aidp-guardrail-admin", "guardrail-admin", ns)
    name = f"org-{SUFFIX}"

    wait_for(
        lambda: can(lambda: admin.create(guardrail(name), dry_run=True)),
        timeout=30,
        what="the guardrail admin role in force",
    )
    created = admin.create(guardrail(name), dry_run=True)
    assert created.metadata.name == name
    assert created["spec"]["unapprovedAI"] == "audit"  # the CRD's default
    assert list(admin.list(ClusterAIDataPolicy)) is not None
    # every namespace's policies are visible to the privacy team, none writable
    assert list(admin.list(helpers.AIDataPolicy, namespace=team)) == []
    assert list(admin.list(helpers.AIDataPolicy, namespace="*")) is not None
    forbidden(lambda: admin.create(helpers.AIDataPolicy(helpers.policy("p", team)), dry_run=True))

    wait_for(
        lambda: can(lambda: list(viewer.list(ClusterAIDataPolicy))),
        timeout=30,
        what="the guardrail viewer role in force",
    )
    assert list(viewer.list(helpers.AIDataPolicy, namespace=team)) == []
    forbidden(lambda: viewer.create(guardrail(name), dry_run=True))
    forbidden(
        lambda: viewer.patch(
            ClusterAIDataPolicy, name, {"spec": {"unapprovedAI": "deny"}}, patch_type=PatchType.MERGE
        )
    )
    # nobody here writes the status
    forbidden(
        lambda: admin.patch(
            ClusterAIDataPolicy.Status,
            name,
            {"status": {"governedNamespaces": 0}},
            patch_type=PatchType.MERGE,
        )
    )
