"""Egress objects on the real API server, written by the real operator (`networkpolicy` backend).

Also: the `cilium` backend's objects against the genuine Cilium CRD schema (server-side dry-run
and real creates), drift repair, the addresses file moving the rules, clean-up and status.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp import kube
from aidp.controller.egress import covers, same_spec
from aidp.devcluster.stack import AidpStack
from aidp.egress import backends
from aidp.egress.model import AddressBook, EgressContext, EgressSettings
from aidp.egress.resolver import load_overrides
from aidp.model import Policy
from tests.conftest import upstream_crd
from tests.integration import helpers
from tests.integration.conftest import Env
from tests.waiting import wait_for

CiliumNetworkPolicy = create_namespaced_resource(
    "cilium.io", "v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies"
)
MANAGED = {"app.kubernetes.io/managed-by": "aidp"}
BASELINE = "aidp-egress-baseline"
API_CIDRS = ["203.0.113.10/32", "203.0.113.11/32", "2001:db8::10/128"]
RESYNC = 30  # seconds: drift is repaired at the latest on the next resync (5 s in the test stack)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def live(client: Client, ns: str) -> dict[str, dict[str, Any]]:
    """The managed NetworkPolicies of `ns` by name."""
    out = {}
    for np in client.list(NetworkPolicy, namespace=ns, labels=MANAGED):
        d = np.to_dict()
        out[d["metadata"]["name"]] = d
    return out


def rendered(client: Client, ns: str, addresses_file: Path) -> dict[str, dict[str, Any]]:
    """What the networkpolicy backend renders for the live policies of `ns` and the addresses file."""
    policies = [Policy.from_object(p.to_dict()) for p in client.list(helpers.AIDataPolicy, namespace=ns)]
    static, _ = load_overrides(addresses_file)
    ctx = EgressContext(AddressBook(static), today())
    objs = backends.render_all(backends.get("networkpolicy"), policies, ctx)
    return {o["metadata"]["name"]: o for o in objs}


def as_rendered(client: Client, ns: str, addresses_file: Path) -> dict[str, dict[str, Any]] | None:
    """The live objects when they are exactly the rendered ones (names, spec, labels, owners)."""
    want, have = rendered(client, ns, addresses_file), live(client, ns)
    if set(want) != set(have):
        return None
    for name, obj in want.items():
        spec = have[name]["spec"]  # equal but for empty lists, which the API server drops
        if not (same_spec(obj["spec"], spec) and same_spec(spec, obj["spec"])):
            return None
        if not covers(obj["metadata"], have[name]["metadata"]):
            return None
    return have


def wait_as_rendered(client: Client, ns: str, stack: AidpStack, what: str) -> dict[str, dict[str, Any]]:
    return wait_for(
        lambda: as_rendered(client, ns, stack.addresses_file), timeout=RESYNC, interval=0.2, what=what
    )


def condition(client: Client, ns: str, name: str, type_: str) -> dict[str, Any]:
    obj = client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict()
    conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    return conds.get(type_, {})


def expired_review() -> dict[str, str]:
    yesterday = today() - dt.timedelta(days=1)
    return {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": yesterday.isoformat()}


# ---- the networkpolicy backend on the API server ---------------------------------------------


def test_generated_networkpolicies_are_accepted_and_stored_as_rendered(
    env: Env, kube_client: Client, aidp_stack: AidpStack
) -> None:
    env.policy("chat", endpoints=[{"host": "jp.api.openai.com", "port": 8443}])
    env.policy("eu", workloadSelector={"matchLabels": {"app": "eu"}}, dataResidency="eu")
    env.policy("batch", workloadSelector={"matchExpressions": [{"key": "batch", "operator": "Exists"}]})
    have = wait_as_rendered(kube_client, env.ns, aidp_stack, "the generated NetworkPolicies")
    assert set(have) == {BASELINE, "aidp-egress-chat", "aidp-egress-eu", "aidp-egress-batch"}
    # deny policies: only the pods the operator judged compliant (approval label)
    assert have["aidp-egress-batch"]["spec"]["podSelector"] == {
        "matchExpressions": [{"key": "batch", "operator": "Exists"}],
        "matchLabels": {"aidp.io/approved": "true"},
    }
    chat = have["aidp-egress-chat"]
    assert chat["spec"]["podSelector"] == {"matchLabels": {"app": "bot", "aidp.io/approved": "true"}}
    assert chat["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": c}} for c in API_CIDRS], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "203.0.113.60/32"}}], "ports": [{"protocol": "TCP", "port": 8443}]},
    ]
    assert chat["metadata"]["labels"] == {
        **MANAGED,
        "aidp.io/egress-role": "approved",
        "aidp.io/policy": "chat",
    }
    uids = {p.metadata.name: p.metadata.uid for p in kube_client.list(helpers.AIDataPolicy, namespace=env.ns)}
    assert [r["uid"] for r in chat["metadata"]["ownerReferences"]] == [uids["chat"]]
    base = have[BASELINE]
    assert sorted(r["uid"] for r in base["metadata"]["ownerReferences"]) == sorted(uids.values())
    v4 = next(
        p["ipBlock"]
        for p in base["spec"]["egress"][0]["to"]
        if p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
    )
    assert {"203.0.113.10/32", "203.0.113.30/32", "203.0.113.60/32"} <= set(v4["except"])


# ---- the cilium backend against the genuine Cilium CRD -------------------------------------


@pytest.fixture(scope="module")
def cilium_crd(kube_client: Client) -> str:
    """Cilium's own CiliumNetworkPolicy CRD (v1.17.3, unchanged bytes), installed once; left in place."""
    [name] = kube.install_crd_files(kube_client, [upstream_crd("cilium-ciliumnetworkpolicies.yaml")])
    return name


def cilium_policies(ns: str) -> list[Policy]:
    specs: dict[str, dict[str, Any]] = {
        "chat": {},
        "eu": {"workloadSelector": {"matchLabels": {"app": "eu"}}, "dataResidency": "eu"},
        "extra": {
            "workloadSelector": {
                "matchLabels": {"app": "extra"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod", "staging"]}],
            },
            "endpoints": [{"host": "myres.openai.azure.com", "port": 8443}],
        },
        "old": {"workloadSelector": {"matchLabels": {"app": "old"}}, "review": expired_review()},
    }
    return [Policy.from_object(helpers.policy(name, ns, **spec)) for name, spec in specs.items()]


CILIUM_SETTINGS = {
    "strict": EgressSettings(),
    "strict-extra-cidrs": EgressSettings(extra_cidrs=("192.0.2.0/24", "2001:db8:1::/48")),
    "preserve": EgressSettings(cilium_mode="preserve"),
    "preserve-no-sni": EgressSettings(cilium_mode="preserve", cilium_sni=False),
}


def render_cilium(ns: str, settings: EgressSettings, stack: AidpStack) -> list[dict[str, Any]]:
    static, _ = load_overrides(stack.addresses_file)
    ctx = EgressContext(AddressBook(static), today(), settings)
    return backends.render_all(backends.get("cilium"), cilium_policies(ns), ctx)


@pytest.mark.parametrize("mode", sorted(CILIUM_SETTINGS))
def test_cilium_objects_are_accepted_by_the_genuine_crd(
    mode: str, env: Env, kube_client: Client, aidp_stack: AidpStack, cilium_crd: str
) -> None:
    objs = render_cilium(env.ns, CILIUM_SETTINGS[mode], aidp_stack)
    names = {o["metadata"]["name"] for o in objs}
    assert names == {BASELINE, "aidp-egress-chat", "aidp-egress-eu", "aidp-egress-extra"}
    for obj in objs:
        # dry-run: validated (schema, CEL) and pruned exactly as a create would be, not stored
        answer = kube_client.create(CiliumNetworkPolicy.from_dict(copy.deepcopy(obj)), dry_run=True)
        assert answer.to_dict()["spec"] == obj["spec"], f"{obj['metadata']['name']}: fields pruned or changed"
    for obj in objs:
        kube_client.create(CiliumNetworkPolicy.from_dict(copy.deepcopy(obj)))
    for obj in objs:
        stored = kube_client.get(CiliumNetworkPolicy, obj["metadata"]["name"], namespace=env.ns).to_dict()
        assert stored["spec"] == obj["spec"]
        assert stored["metadata"]["labels"] == obj["metadata"]["labels"]
    if mode.startswith("preserve"):
        base = next(o for o in objs if o["metadata"]["name"] == BASELINE)
        cidrs = next(r["toCIDRSet"] for r in base["spec"]["egress"] if "toCIDRSet" in r)
        assert {"203.0.113.10/32", "203.0.113.30/32"} <= set(cidrs[0]["except"])


def broken(obj: dict[str, Any], change: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    rule = obj["spec"]["egress"][1]
    if change == "matchName not a DNS name":
        rule["toFQDNs"] = [{"matchName": "https://api.openai.com/v1"}]
    elif change == "matchName and matchPattern together":
        rule["toFQDNs"] = [{"matchName": "api.openai.com", "matchPattern": "*.openai.com"}]
    elif change == "protocol not an L4 protocol":
        rule["toPorts"][0]["ports"][0]["protocol"] = "HTTPS"
    elif change == "toFQDNs not a list":
        rule["toFQDNs"] = {"matchName": "api.openai.com"}
    return obj


@pytest.mark.parametrize(
    "change",
    [
        "matchName not a DNS name",
        "matchName and matchPattern together",
        "protocol not an L4 protocol",
        "toFQDNs not a list",
    ],
)
def test_a_broken_cilium_object_is_rejected_by_the_crd_schema(
    change: str, env: Env, kube_client: Client, aidp_stack: AidpStack, cilium_crd: str
) -> None:
    good = next(
        o
        for o in render_cilium(env.ns, EgressSettings(), aidp_stack)
        if o["metadata"]["name"] == "aidp-egress-chat"
    )
    kube_client.create(CiliumNetworkPolicy.from_dict(copy.deepcopy(good)), dry_run=True)  # the control
    with pytest.raises(ApiError) as err:
        kube_client.create(CiliumNetworkPolicy.from_dict(broken(good, change)), dry_run=True)
    assert err.value.status.code == 422, err.value.status.message
    assert "spec.egress[1].to" in str(err.value.status.message), err.value.status.message


# ---- drift repair ------------------------------------------------------------------------------


def test_a_deleted_generated_networkpolicy_comes_back(
    env: Env, kube_client: Client, aidp_stack: AidpStack
) -> None:
    env.policy("chat")
    before = wait_as_rendered(kube_client, env.ns, aidp_stack, "the generated NetworkPolicies")
    for name in ("aidp-egress-chat", BASELINE):
        kube_client.delete(NetworkPolicy, name, namespace=env.ns)
        after = wait_for(
            lambda name=name: (
                (h := as_rendered(kube_client, env.ns, aidp_stack.addresses_file))
                and h[name]["metadata"]["uid"] != before[name]["metadata"]["uid"]
                and h
            ),
            timeout=RESYNC,
            interval=0.2,
            what=f"{name} re-created as rendered",
        )
        assert after[name]["spec"] == before[name]["spec"]


def _narrower_selector(spec: dict[str, Any]) -> None:
    spec["podSelector"]["matchLabels"]["tier"] = "x"


def _other_selector(spec: dict[str, Any]) -> None:
    spec["podSelector"]["matchLabels"]["app"] = "x"


def _other_port(spec: dict[str, Any]) -> None:
    spec["egress"][0]["ports"][0]["port"] = 80


def _port_range(spec: dict[str, Any]) -> None:
    spec["egress"][0]["ports"][0]["endPort"] = 65535


def _except_in_allowed_block(spec: dict[str, Any]) -> None:
    spec["egress"][0]["to"][-1] = {"ipBlock": {"cidr": "2001:db8::/64", "except": ["2001:db8::10/128"]}}


def _cut_removed(spec: dict[str, Any]) -> None:
    for peer in spec["egress"][0]["to"]:
        peer.get("ipBlock", {}).pop("except", None)


def _cluster_peer_narrowed(spec: dict[str, Any]) -> None:
    spec["egress"][0]["to"][0] = {"namespaceSelector": {"matchLabels": {"team": "x"}}}


# edits of a generated NetworkPolicy by someone else: (object, change to its spec)
EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "another podSelector": ("aidp-egress-chat", _other_selector),
    "a narrower podSelector": ("aidp-egress-chat", _narrower_selector),
    "another port": ("aidp-egress-chat", _other_port),
    "a port range (broader)": ("aidp-egress-chat", _port_range),
    "an except in an allowed block": ("aidp-egress-chat", _except_in_allowed_block),
    "the baseline's provider cut removed": (BASELINE, _cut_removed),
    "the baseline's cluster peer narrowed": (BASELINE, _cluster_peer_narrowed),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_generated_networkpolicy_is_put_back(
    edit: str, env: Env, kube_client: Client, aidp_stack: AidpStack
) -> None:
    env.policy("chat")
    before = wait_as_rendered(kube_client, env.ns, aidp_stack, "the generated NetworkPolicies")
    name, change = EDITS[edit]
    spec = copy.deepcopy(before[name]["spec"])
    change(spec)
    edited = kube_client.patch(
        NetworkPolicy,
        name,
        {"spec": spec},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
        field_manager="someone-else",
    ).to_dict()
    assert edited["spec"] == spec != before[name]["spec"]  # the edit took, and only it
    after = wait_as_rendered(kube_client, env.ns, aidp_stack, f"{name} put back after {edit}")
    assert after[name]["spec"] == before[name]["spec"]


# ---- addresses, clean-up, status ------------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def endpoint_addresses(client: Client, ns: str, name: str) -> dict[str, list[str]]:
    obj = client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict()
    return {e["host"]: e.get("addresses", []) for e in (obj.get("status") or {}).get("endpoints") or []}


@pytest.fixture
def addresses_file(aidp_stack: AidpStack) -> Iterator[Path]:
    """The stack's addresses file, restored after the test whatever happens."""
    original = aidp_stack.addresses_file.read_text()
    yield aidp_stack.addresses_file
    write_atomically(aidp_stack.addresses_file, original)


@pytest.mark.local_only  # rewrites the operator's addresses file
def test_generated_rules_follow_the_addresses_file(
    env: Env, kube_client: Client, aidp_stack: AidpStack, addresses_file: Path
) -> None:
    env.policy("chat")
    wait_as_rendered(kube_client, env.ns, aidp_stack, "the generated NetworkPolicies")
    assert sorted(endpoint_addresses(kube_client, env.ns, "chat")["api.openai.com"]) == sorted(API_CIDRS)
    doc = yaml.safe_load(addresses_file.read_text())
    doc["static"]["api.openai.com"] = ["203.0.113.77", "2001:db8::77"]
    write_atomically(addresses_file, yaml.safe_dump(doc))
    moved = ["203.0.113.77/32", "2001:db8::77/128"]

    def follows() -> dict[str, dict[str, Any]] | None:
        have = live(kube_client, env.ns)
        chat = have.get("aidp-egress-chat", {}).get("spec", {}).get("egress", [{}])
        if [b["ipBlock"]["cidr"] for b in chat[0].get("to", [])] != moved:
            return None
        return have

    have = wait_for(follows, timeout=RESYNC, interval=0.2, what="the rules to follow the new address")
    assert have == as_rendered(kube_client, env.ns, addresses_file)
    cut = [
        p["ipBlock"].get("except", []) for p in have[BASELINE]["spec"]["egress"][0]["to"] if "ipBlock" in p
    ]
    flat = {c for block in cut for c in block}
    assert {"203.0.113.77/32", "2001:db8::77/128"} <= flat
    assert not {"203.0.113.10/32", "203.0.113.11/32", "2001:db8::10/128"} & flat
    wait_for(
        lambda: sorted(endpoint_addresses(kube_client, env.ns, "chat")["api.openai.com"]) == sorted(moved),
        timeout=RESYNC,
        interval=0.2,
        what="status.endpoints[].addresses to show the new address",
    )


def test_deleting_policies_removes_their_objects_and_then_the_baseline(
    env: Env, kube_client: Client, aidp_stack: AidpStack
) -> None:
    env.policy("a", workloadSelector={"matchLabels": {"app": "a"}})
    env.policy("b", workloadSelector={"matchLabels": {"app": "b"}}, dataResidency="eu")
    wait_as_rendered(kube_client, env.ns, aidp_stack, "the generated NetworkPolicies")
    kube_client.delete(helpers.AIDataPolicy, "a", namespace=env.ns)
    have = wait_as_rendered(kube_client, env.ns, aidp_stack, "aidp-egress-a gone, the rest as rendered")
    assert set(have) == {BASELINE, "aidp-egress-b"}
    assert [r["name"] for r in have[BASELINE]["metadata"]["ownerReferences"]] == ["b"]
    kube_client.delete(helpers.AIDataPolicy, "b", namespace=env.ns)
    wait_for(
        lambda: not live(kube_client, env.ns),
        timeout=RESYNC,
        interval=0.2,
        what="every generated object gone",
    )


def test_status_egress_enforced_applied_and_expired(env: Env, kube_client: Client) -> None:
    env.policy("chat")
    env.policy("old", workloadSelector={"matchLabels": {"app": "old"}}, review=expired_review())
    applied = wait_for(
        lambda: (c := condition(kube_client, env.ns, "chat", "EgressEnforced")).get("status") == "True" and c,
        timeout=RESYNC,
        interval=0.2,
        what="EgressEnforced True",
    )
    assert applied["reason"] == "Applied"
    assert "aidp-egress-chat" in applied["message"]
    assert "api.openai.com:443" in applied["message"]
    expired = wait_for(
        lambda: (c := condition(kube_client, env.ns, "old", "EgressEnforced")).get("status") == "False" and c,
        timeout=RESYNC,
        interval=0.2,
        what="EgressEnforced False",
    )
    assert expired["reason"] == "Expired"
    assert "aidp-egress-old" not in live(kube_client, env.ns)
