"""Reachability of the `networkpolicy` egress backend, judged by an independent oracle.

The real operator writes NetworkPolicies for real AIDataPolicies on the real API server; the
cluster's Namespaces, Pods (API objects: there is no kubelet) and all NetworkPolicies are exported
and np-guard's network-config-analyzer (`nca`, `make venv-nca`) computes who can connect to what.
One module-wide world, one nca run; every test asks it one question of the contract (section 4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace, Pod, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp.config import APPROVAL_LABEL, ISOLATED_LABEL
from aidp.controller.governance import ClusterAIDataPolicy
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers, nca
from tests.integration.conftest import Env, drop_env, make_env
from tests.waiting import wait_for

API = ("203.0.113.10", "203.0.113.11", "2001:db8::10")  # api.openai.com in the stack's addresses file
EU = ("203.0.113.30", "2001:db8::30")  # eu.api.openai.com
US = ("203.0.113.20",)  # us.api.openai.com
JP = "203.0.113.60"  # jp.api.openai.com, an extra endpoint on port 8443
ELSEWHERE = "198.51.100.99"  # no provider's address
DNS_POD = "kube-dns-nca"
DNS = f"kube-system/{DNS_POD}"
BASELINE = "aidp-egress-baseline"


@dataclass
class World:
    gov: str  # policy `chat` (api.openai.com:443 + jp.api.openai.com:8443); pods approved, unapproved
    res: str  # policy `eu-bot` with dataResidency eu; pods approved, other
    two: str  # policies `alpha` (api.openai.com) and `beta` (residency us); pods alpha, beta
    exp: str  # policy `old`, review expired yesterday; pod bot
    free: str  # no policy: ungoverned; pod bot
    iso: str  # user deny egress (DNS allowed) for approved, other; policy `bots`; pod loose not isolated
    guarded: str  # no AIDataPolicy, governed by a ClusterAIDataPolicy; pod bot
    # the user's NetworkPolicy in `gov` as it was before the namespace was governed
    user_np: dict[str, Any] = field(repr=False)
    generated: dict[str, set[str]] = field(default_factory=dict)
    conn: nca.Connectivity | None = field(default=None, repr=False)

    @property
    def answer(self) -> nca.Connectivity:
        assert self.conn is not None
        return self.conn


def managed(client: Client, ns: str) -> set[str]:
    return {
        np.metadata.name
        for np in client.list(NetworkPolicy, namespace=ns, labels={"app.kubernetes.io/managed-by": "aidp"})
        if np.metadata and np.metadata.name
    }


def pod(client: Client, ns: str, name: str, labels: dict[str, str]) -> None:
    denied = helpers.create(client, helpers.workload("Pod", name, ns, labels=labels))
    assert denied is None, f"pod {ns}/{name} was not admitted: {denied}"


def dns_pod(client: Client) -> None:
    wait_for(lambda: client.get(ServiceAccount, "default", namespace="kube-system"), timeout=30, what="SA")
    try:
        client.create(
            Pod.from_dict(
                {
                    "metadata": {
                        "name": DNS_POD,
                        "namespace": "kube-system",
                        "labels": {"k8s-app": "kube-dns"},
                    },
                    "spec": {"containers": [{"name": "coredns", "image": "registry.example.com/coredns:1"}]},
                }
            )
        )
    except ApiError as err:
        if err.status.code != 409:
            raise


@pytest.fixture(scope="module")
def world(
    aidp_stack: AidpStack, kube_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    client, kubeconfig = kube_client, aidp_stack.cp.kubeconfig
    envs: list[Env] = []
    guardrail = f"oracle-{secrets.token_hex(3)}"

    def env() -> Env:
        envs.append(make_env(client, kubeconfig))
        return envs[-1]

    try:
        dns_pod(client)
        gov, res, two, exp, free, iso, guarded = env(), env(), env(), env(), env(), env(), env()
        # a namespace without any AIDataPolicy that a guardrail governs
        client.patch(
            Namespace,
            guarded.ns,
            {"metadata": {"labels": {"aidp-test/oracle": guardrail}}},
            patch_type=PatchType.MERGE,
        )
        client.create(
            from_dict(
                {
                    "apiVersion": "aidp.io/v1alpha1",
                    "kind": "ClusterAIDataPolicy",
                    "metadata": {"name": guardrail},
                    "spec": {"namespaceSelector": {"matchLabels": {"aidp-test/oracle": guardrail}}},
                }
            )
        )
        # a common hardening baseline: default-deny egress but DNS, there before aidp
        client.create(
            NetworkPolicy.from_dict(
                {
                    "metadata": {"name": "user-default-deny-egress", "namespace": iso.ns},
                    "spec": {
                        "podSelector": {
                            "matchExpressions": [{"key": "app", "operator": "In", "values": ["bot", "other"]}]
                        },
                        "policyTypes": ["Egress"],
                        "egress": [
                            {
                                "to": [
                                    {
                                        "namespaceSelector": {},
                                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                                    }
                                ],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                            }
                        ],
                    },
                }
            )
        )
        # the user's own NetworkPolicy, there before the namespace is governed
        client.create(
            NetworkPolicy.from_dict(
                {
                    "metadata": {"name": "user-deny-ingress", "namespace": gov.ns},
                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
                }
            )
        )
        user_np = client.get(NetworkPolicy, "user-deny-ingress", namespace=gov.ns).to_dict()
        # the expired policy's pod exists first: admission denies its workloads once it is in force
        pod(client, exp.ns, "bot", {"app": "bot"})
        # Env.policy creates the policy and waits until the operator reports it enforced
        yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
        exp.policy("old", review={"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": yesterday})

        gov.policy("chat", endpoints=[{"host": "jp.api.openai.com", "port": 8443}])
        pod(client, gov.ns, "approved", {"app": "bot"})
        pod(client, gov.ns, "unapproved", {"app": "other"})
        res.policy("eu-bot", dataResidency="eu")
        pod(client, res.ns, "approved", {"app": "bot"})
        pod(client, res.ns, "other", {"app": "other"})
        two.policy("alpha", workloadSelector={"matchLabels": {"app": "alpha"}})
        two.policy("beta", workloadSelector={"matchLabels": {"app": "beta"}}, dataResidency="us")
        pod(client, two.ns, "alpha", {"app": "alpha"})
        pod(client, two.ns, "beta", {"app": "beta"})
        pod(client, free.ns, "bot", {"app": "bot"})
        iso.policy("bots")
        pod(client, iso.ns, "approved", {"app": "bot"})
        pod(client, iso.ns, "other", {"app": "other"})
        pod(client, iso.ns, "loose", {"app": "loose"})  # nothing of the user's isolates it
        wait_for(
            lambda: managed(client, guarded.ns) == {BASELINE}, timeout=30, what="the guardrail's baseline"
        )
        pod(client, guarded.ns, "bot", {"app": "bot"})
        # the operator's labels first: approval of the compliant pods, isolation in `iso`
        for ns, name, label in [
            (gov.ns, "approved", APPROVAL_LABEL),
            (res.ns, "approved", APPROVAL_LABEL),
            (two.ns, "alpha", APPROVAL_LABEL),
            (two.ns, "beta", APPROVAL_LABEL),
            (iso.ns, "approved", APPROVAL_LABEL),
            (iso.ns, "approved", ISOLATED_LABEL),
            (iso.ns, "other", ISOLATED_LABEL),
        ]:
            wait_for(
                lambda ns=ns, name=name, label=label: (
                    (client.get(Pod, name, namespace=ns).metadata.labels or {}).get(label) == "true"  # type: ignore[union-attr]
                ),
                timeout=30,
                what=f"{label} on {ns}/{name}",
            )

        want = {
            gov.ns: {BASELINE, "aidp-egress-chat"},
            res.ns: {BASELINE, "aidp-egress-eu-bot"},
            two.ns: {BASELINE, "aidp-egress-alpha", "aidp-egress-beta"},
            exp.ns: {BASELINE},  # an expired policy keeps the provider cut out but allows nothing
            free.ns: set(),
            iso.ns: {BASELINE, "aidp-egress-bots"},
            guarded.ns: {BASELINE},
        }
        for ns, names in want.items():
            wait_for(lambda ns=ns, names=names: managed(client, ns) == names, timeout=30, what=f"NPs in {ns}")
        w = World(gov.ns, res.ns, two.ns, exp.ns, free.ns, iso.ns, guarded.ns, user_np, generated=want)
        w.conn = nca.analyse(client, tmp_path_factory.mktemp("nca"), [*want, "kube-system"])
        yield w
    finally:
        with contextlib.suppress(ApiError):
            client.delete(ClusterAIDataPolicy, guardrail)
        for e in envs:
            drop_env(client, e)
        try:
            client.delete(Pod, DNS_POD, namespace="kube-system", grace_period=0)
        except ApiError as err:
            if err.status.code != 404:
                raise


def no_connection(world: World, pod: str, address: str) -> None:
    found = world.answer.to_address(pod, address)
    assert found is None, f"nca: {pod} reaches {address} with {found.text}"


def test_an_approved_pod_reaches_its_endpoints_on_their_ports_only(world: World) -> None:
    approved = f"{world.gov}/approved"
    for address in API:
        found = world.answer.to_address(approved, address)
        assert found is not None, f"nca: {approved} cannot reach {address}"
        assert found.allows("TCP", 443), found.text
        assert not found.allows("TCP", 80), found.text  # the endpoint's port only
        assert not found.allows("UDP", 443), found.text
    assert world.answer.reaches(approved, JP, "TCP", 8443)  # the extra endpoint, on its own port
    assert not world.answer.reaches(approved, JP, "TCP", 443)


def test_an_unapproved_pod_of_the_namespace_reaches_none_of_them_on_any_port(world: World) -> None:
    for address in (*API, JP):
        no_connection(world, f"{world.gov}/unapproved", address)


def test_everything_else_stays_open_dns_included(world: World) -> None:
    for pod in (f"{world.gov}/approved", f"{world.gov}/unapproved", f"{world.exp}/bot", f"{world.res}/other"):
        assert world.answer.reaches(pod, ELSEWHERE, "TCP", 443), pod
        found = world.answer.to_address(pod, ELSEWHERE)
        assert found is not None
        assert found.text == "All connections", (pod, found.text)
        assert world.answer.reaches(pod, DNS, "UDP", 53), pod
        assert world.answer.reaches(pod, DNS, "TCP", 53), pod


def test_pods_of_an_ungoverned_namespace_are_unaffected(world: World) -> None:
    for address in (*API, *EU, JP, ELSEWHERE):
        found = world.answer.to_address(f"{world.free}/bot", address)
        assert found is not None, address
        assert found.text == "All connections", (address, found.text)


def test_residency_allows_only_the_regional_endpoint(world: World) -> None:
    approved = f"{world.res}/approved"
    for address in EU:
        assert world.answer.reaches(approved, address, "TCP", 443), address
        no_connection(world, f"{world.res}/other", address)
    for address in (*API, *US):
        no_connection(world, approved, address)


def test_two_policies_in_one_namespace_each_allow_only_their_own_workloads(world: World) -> None:
    alpha, beta = f"{world.two}/alpha", f"{world.two}/beta"
    for address in API:
        assert world.answer.reaches(alpha, address, "TCP", 443), address
        no_connection(world, beta, address)
    for address in US:
        assert world.answer.reaches(beta, address, "TCP", 443), address
        no_connection(world, alpha, address)


def test_an_expired_policy_gives_its_pods_no_egress_to_the_provider(world: World) -> None:
    for address in API:
        no_connection(world, f"{world.exp}/bot", address)


def test_a_users_networkpolicy_is_left_intact_and_in_effect(world: World, kube_client: Client) -> None:
    now = kube_client.get(NetworkPolicy, "user-deny-ingress", namespace=world.gov).to_dict()
    assert now["metadata"]["resourceVersion"] == world.user_np["metadata"]["resourceVersion"]
    assert now["spec"] == world.user_np["spec"]
    assert "labels" not in now["metadata"]
    # it denies ingress to the governed namespace's pods; aidp's rules (egress only) change nothing there
    assert world.answer.to_pod(f"{world.free}/bot", f"{world.gov}/approved") is None
    assert world.answer.to_pod(f"{world.gov}/unapproved", f"{world.gov}/approved") is None
    assert world.answer.reaches(f"{world.free}/bot", f"{world.res}/approved", "TCP", 8080)


def test_aidp_never_loosens_a_namespaces_own_egress_isolation(world: World) -> None:
    """Pods a user default-deny egress policy isolates reach nothing they could not reach before
    aidp (the provider included); approved ones reach their endpoints in addition; DNS as before."""
    approved, other = f"{world.iso}/approved", f"{world.iso}/other"
    for pod in (approved, other):
        no_connection(world, pod, ELSEWHERE)  # as before aidp: the user denies it
        assert world.answer.reaches(pod, DNS, "UDP", 53), pod  # as before
        assert not world.answer.reaches(pod, DNS, "TCP", 8080), pod  # nothing more in the cluster either
    for address in API:
        no_connection(world, other, address)
        assert world.answer.reaches(approved, address, "TCP", 443), address  # its endpoint, in addition
        assert not world.answer.reaches(approved, address, "TCP", 80), address
    # a pod of the same namespace that nothing of the user's isolates: the baseline, as before
    loose = f"{world.iso}/loose"
    assert world.answer.reaches(loose, ELSEWHERE, "TCP", 443)
    for address in API:
        no_connection(world, loose, address)


def test_a_guardrail_closes_the_provider_in_a_namespace_without_policies(world: World) -> None:
    """ClusterAIDataPolicy (contract section 6): no pod of a namespace it governs reaches any
    provider address, though no AIDataPolicy is there; everything else stays open."""
    bot = f"{world.guarded}/bot"
    for address in (*API, *EU, *US, JP):
        no_connection(world, bot, address)
    assert world.answer.reaches(bot, ELSEWHERE, "TCP", 443)
    assert world.answer.reaches(bot, DNS, "UDP", 53)


def test_the_oracle_saw_the_generated_policies(world: World, kube_client: Client) -> None:
    for ns, names in world.generated.items():
        assert managed(kube_client, ns) == names


def test_the_oracle_fails_loudly_on_input_it_cannot_read(tmp_path: Path) -> None:
    """nca exits 0 after a parse error (it then analyses nothing): `nca.answer` must not accept that."""
    files = {name: tmp_path / f"{name}.yaml" for name in ("namespaces", "pods", "networkpolicies")}
    files["namespaces"].write_text(
        "apiVersion: v1\nkind: List\nitems:\n- {kind: Namespace, apiVersion: v1, metadata: {name: a}}\n"
    )
    files["pods"].write_text(
        "apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, apiVersion: v1, metadata: {name: p, namespace: a, "
        "labels: {app: p}}, spec: {containers: [{name: c, image: i}]}}\n"
    )
    files["networkpolicies"].write_text(  # an unquoted `::/0` in a flow mapping is not YAML
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicyList\nitems:\n"
        "- {kind: NetworkPolicy, metadata: {name: x, namespace: a}, spec: {podSelector: {}, "
        "egress: [{to: [{ipBlock: {cidr: ::/0}}]}]}}\n"
    )
    proc = nca.run(files)
    assert proc.returncode == 0  # the reason for the check
    with pytest.raises(nca.NcaError, match="Parse Error"):
        nca.answer(proc)


def test_the_audits_network_policy_analysis_agrees_with_nca(world: World, kube_client: Client) -> None:
    """The audit's egress-bypass analysis (aidp.audit.netpol) gives nca's answer for every pod of
    this world and every address and port asked above."""
    from aidp.audit import netpol

    policies = [np.to_dict() for np in kube_client.list(NetworkPolicy, namespace="*")]
    targets = [(a, 443) for a in (*API, *EU, *US, ELSEWHERE)] + [(JP, 8443), (JP, 443), (API[0], 80)]
    compared = 0
    for ns in (world.gov, world.res, world.two, world.exp, world.free, world.iso, world.guarded):
        for p in kube_client.list(Pod, namespace=ns):
            name = f"{ns}/{p.metadata.name}"
            labels = dict(p.metadata.labels or {})
            for address, port in targets:
                ours = netpol.egress_allowed(policies, ns, labels, address, port)
                theirs = world.answer.reaches(name, address, "TCP", port)
                assert ours == theirs, f"{name} -> {address}:{port}: audit says {ours}, nca says {theirs}"
                compared += 1
    assert compared > 50
