"""Egress rendering (pure) and the address resolver (with a fake lookup, no network)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from aidp.controller.egress import covers, same_spec
from aidp.egress import backends
from aidp.egress.model import AddressBook, EgressContext, EgressSettings, catalog_hosts
from aidp.egress.resolver import Resolver
from aidp.model import Policy

TODAY = dt.date(2026, 11, 29)
BOOK = AddressBook(
    {
        "api.openai.com": ("203.0.113.10/32", "2001:db8::10/128"),
        "eu.api.openai.com": ("203.0.113.30/32",),
        "myres.openai.azure.com": ("198.51.100.7/32",),
    }
)


def policy(name: str, ns: str = "team", uid: str = "", **spec: Any) -> Policy:
    body: dict[str, Any] = {
        "provider": "openai",
        "workloadSelector": {"matchLabels": {"app": name}},
        "purpose": "p",
        "consent": {"allowedBases": ["consent"]},
        "retention": {"maxDays": 30},
    }
    body.update(spec)
    return Policy.from_object(
        {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "AIDataPolicy",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": body,
        }
    )


def render(
    backend: str, *policies: Policy, settings: EgressSettings | None = None
) -> dict[str, dict[str, Any]]:
    ctx = EgressContext(BOOK, TODAY, settings or EgressSettings())
    return {o["metadata"]["name"]: o for o in backends.render_all(backends.get(backend), policies, ctx)}


def test_networkpolicy_baseline_cuts_out_every_provider_address_of_the_namespace() -> None:
    objs = render("networkpolicy", policy("a"), policy("b", dataResidency="eu"))
    base = objs["aidp-egress-baseline"]
    assert base["spec"]["podSelector"] == {
        "matchExpressions": [{"key": "aidp.io/egress-isolated", "operator": "DoesNotExist"}]
    }  # but user-isolated pods
    to = base["spec"]["egress"][0]["to"]
    assert {"namespaceSelector": {}} in to  # the cluster, cluster DNS included
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.10/32", "203.0.113.30/32"]}} in to
    assert {"ipBlock": {"cidr": "::/0", "except": ["2001:db8::10/128"]}} in to
    assert "ports" not in base["spec"]["egress"][0]  # every port of everything else stays open


def test_networkpolicy_per_policy_rule_allows_only_its_endpoints() -> None:
    objs = render(
        "networkpolicy", policy("bot", dataResidency="eu", endpoints=[{"host": "myres.openai.azure.com"}])
    )
    rule = objs["aidp-egress-bot"]
    assert rule["spec"]["podSelector"]["matchLabels"] == {"app": "bot", "aidp.io/approved": "true"}
    egress = rule["spec"]["egress"]
    # residency replaces api.openai.com
    assert egress[0] == {
        "to": [{"ipBlock": {"cidr": "203.0.113.30/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "198.51.100.7/32"}}]
    assert len(egress) == 2


def test_expired_policy_keeps_the_baseline_but_loses_its_allow() -> None:
    objs = render("networkpolicy", policy("old", review={"expires": "2026-11-28"}))
    assert set(objs) == {"aidp-egress-baseline"}
    assert objs["aidp-egress-baseline"]["spec"]["egress"][0]["to"][1]["ipBlock"]["except"] == [
        "203.0.113.10/32",
        "203.0.113.30/32",  # the provider's regional hosts are cut out too
    ]


def test_residency_policy_alone_cuts_out_the_global_endpoint_too() -> None:
    objs = render("networkpolicy", policy("eu", dataResidency="eu"))
    to = objs["aidp-egress-baseline"]["spec"]["egress"][0]["to"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.10/32", "203.0.113.30/32"]}} in to
    assert {"ipBlock": {"cidr": "::/0", "except": ["2001:db8::10/128"]}} in to
    assert objs["aidp-egress-eu"]["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "203.0.113.30/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    ]


def test_the_expiry_day_itself_still_grants_egress() -> None:
    assert "aidp-egress-today" in render("networkpolicy", policy("today", review={"expires": "2026-11-29"}))


def test_objects_are_labelled_and_owned() -> None:
    objs = render("networkpolicy", policy("a", uid="u-a"), policy("b", uid="u-b"))
    base = objs["aidp-egress-baseline"]["metadata"]
    assert base["labels"]["app.kubernetes.io/managed-by"] == "aidp"
    assert [r["uid"] for r in base["ownerReferences"]] == ["u-a", "u-b"]  # shared rule: every policy owns it
    assert [r["uid"] for r in objs["aidp-egress-a"]["metadata"]["ownerReferences"]] == ["u-a"]


def test_cilium_strict_allows_dns_cluster_and_the_provider_by_name() -> None:
    objs = render("cilium", policy("bot"))
    base = objs["aidp-egress-baseline"]["spec"]
    assert base["endpointSelector"] == {
        "matchExpressions": [{"key": "aidp.io/egress-isolated", "operator": "DoesNotExist"}]
    }
    assert base["egress"][0]["toPorts"][0]["rules"]["dns"] == [{"matchPattern": "*"}]
    assert {"toEntities": ["cluster"]} in base["egress"]
    assert not any("toCIDRSet" in r for r in base["egress"])
    bot = objs["aidp-egress-bot"]["spec"]
    fqdn = bot["egress"][1]
    assert fqdn["toFQDNs"] == [{"matchName": "api.openai.com"}]
    assert fqdn["toPorts"] == [
        {"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": ["api.openai.com"]}
    ]


def test_cilium_preserve_mode_and_sni_off() -> None:
    objs = render("cilium", policy("bot"), settings=EgressSettings(cilium_mode="preserve", cilium_sni=False))
    cidrs = next(r for r in objs["aidp-egress-baseline"]["spec"]["egress"] if "toCIDRSet" in r)["toCIDRSet"]
    assert cidrs[0] == {"cidr": "0.0.0.0/0", "except": ["203.0.113.10/32", "203.0.113.30/32"]}
    assert "serverNames" not in objs["aidp-egress-bot"]["spec"]["egress"][1]["toPorts"][0]


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown egress backend 'calico'"):
        backends.get("calico")


def test_covers_ignores_server_defaults_but_not_changes() -> None:
    want = {"spec": {"ports": [{"port": 443}]}}
    assert covers(want, {"spec": {"ports": [{"port": 443, "protocol": "TCP"}], "x": 1}})
    assert not covers(want, {"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
    assert not covers(want, {"spec": {"ports": [{"port": 443}, {"port": 80}]}})


def test_same_spec_sees_added_fields_inside_what_aidp_sets() -> None:
    want = {
        "podSelector": {"matchLabels": {"app": "bot"}},
        "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}], "ports": [{"port": 443}]}],
    }
    assert same_spec(want, {**want, "ingress": [{}]})  # a field aidp does not set is not its business
    assert same_spec({**want, "egress": []}, {"podSelector": want["podSelector"]})  # dropped empty list
    narrower = {**want, "podSelector": {"matchLabels": {"app": "bot", "tier": "x"}}}
    broader = {**want, "egress": [{**want["egress"][0], "ports": [{"port": 443, "endPort": 65535}]}]}
    for drifted in (narrower, broader, {"podSelector": want["podSelector"]}, None):
        assert not same_spec(want, drifted)


def test_resolver_static_file_extra_cidrs_and_last_good_set(tmp_path: Path) -> None:
    answers: dict[str, list[str] | Exception] = {"api.openai.com": ["192.0.2.1", "2001:db8::1"]}

    def lookup(host: str) -> list[str]:
        answer = answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer

    file = tmp_path / "addresses.yaml"
    file.write_text(
        "static:\n  eu.api.openai.com: [203.0.113.30]\nextra:\n  api.openai.com: [198.51.100.0/24]\n"
    )
    resolver = Resolver(file, refresh_seconds=0, lookup=lookup)
    hosts = ["api.openai.com", "eu.api.openai.com"]
    snap = asyncio.run(resolver.snapshot(hosts))
    assert snap.book.cidrs("eu.api.openai.com") == ("203.0.113.30/32",)
    assert snap.book.cidrs("api.openai.com") == ("192.0.2.1/32", "198.51.100.0/24", "2001:db8::1/128")
    assert snap.problems(hosts) == []

    answers["api.openai.com"] = OSError("temporary failure in name resolution")
    stale = asyncio.run(resolver.snapshot(hosts))
    assert stale.book.cidrs("api.openai.com") == snap.book.cidrs("api.openai.com")
    assert "keeping the addresses" in stale.problems(hosts)[0]

    file.write_text("static:\n  eu.api.openai.com: [203.0.113.31]\n")
    moved = asyncio.run(resolver.snapshot(["eu.api.openai.com", "never.example.com"]))
    assert moved.book.cidrs("eu.api.openai.com") == ("203.0.113.31/32",)


def test_resolver_reports_hosts_without_addresses(tmp_path: Path) -> None:
    def lookup(host: str) -> list[str]:
        raise OSError("no network")

    snap = asyncio.run(Resolver(None, lookup=lookup).snapshot(["api.openai.com"]))
    assert snap.book.cidrs("api.openai.com") == ()
    assert snap.problems(["api.openai.com"]) == ["no addresses known for api.openai.com (no network)"]


def test_networkpolicy_strict_mode_allows_only_the_cluster_and_the_extra_cidrs() -> None:
    """strict: no address outside the cluster but the approved endpoints and the allow-list, so
    another CDN edge of the provider and an outside proxy are closed too."""
    settings = EgressSettings(egress_mode="strict", extra_cidrs=("192.0.2.0/24",))
    objs = render("networkpolicy", policy("a"), settings=settings)
    assert objs["aidp-egress-baseline"]["spec"]["egress"] == [
        {"to": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "192.0.2.0/24"}}]}
    ]
    approved = objs["aidp-egress-a"]["spec"]
    assert approved["egress"][0]["to"] == [
        {"ipBlock": {"cidr": "203.0.113.10/32"}},
        {"ipBlock": {"cidr": "2001:db8::10/128"}},
    ]
    # preserve (the default): the world minus the provider addresses
    preserve = render("networkpolicy", policy("a"))["aidp-egress-baseline"]["spec"]["egress"][0]["to"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.10/32", "203.0.113.30/32"]}} in preserve


@pytest.mark.parametrize("backend", ["networkpolicy", "cilium"])
def test_a_namespace_with_only_invalid_policies_fails_closed(backend: str) -> None:
    """Governed all the same: a baseline that cuts every catalog provider, and no approvals."""
    settings = EgressSettings(cilium_mode="preserve")
    ctx = EgressContext(BOOK, TODAY, settings, extra_cut={"broken": tuple(catalog_hosts())})
    objs = backends.render_all(backends.get(backend), [policy("a")], ctx)
    by_ns = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs}
    assert ("broken", "aidp-egress-baseline") in by_ns
    assert [name for ns, name in by_ns if ns == "broken"] == ["aidp-egress-baseline"]
    [base] = [o for o in objs if o["metadata"]["namespace"] == "broken"]
    text = str(base["spec"])
    for cidr in ("203.0.113.10/32", "203.0.113.30/32"):  # every OpenAI host, global and regional
        assert cidr in text, (cidr, text)


@pytest.mark.parametrize("backend", ["networkpolicy", "cilium"])
def test_a_dryrun_only_namespace_is_observed_not_cut(backend: str) -> None:
    """Contract section 4: no egress objects until a policy is warn or deny (or a guardrail governs)."""
    assert render(backend, policy("a", enforcement="dryrun"), policy("b", enforcement="dryrun")) == {}
    assert render(backend, policy("a", enforcement="dryrun"), policy("b", enforcement="warn"))
    guarded = EgressContext(BOOK, TODAY, EgressSettings(), extra_cut={"team": ("api.openai.com",)})
    objs = backends.render_all(backends.get(backend), [policy("a", enforcement="dryrun")], guarded)
    assert objs, "a namespace a guardrail governs is cut even with dryrun policies only"


@pytest.mark.parametrize(
    ("backend", "accept", "kind"),
    [
        ("clusternetworkpolicy", "Accept", "ClusterNetworkPolicy"),
        ("adminnetworkpolicy", "Allow", "AdminNetworkPolicy"),
    ],
)
def test_admin_tier_backends_deny_the_provider_and_accept_the_approved_endpoints_only(
    backend: str, accept: str, kind: str
) -> None:
    objs = render(backend, policy("bot", endpoints=[{"host": "myres.openai.azure.com", "port": 8443}]))
    assert set(objs) == {"aidp-team-deny", "aidp-team-bot"}
    deny, approved = objs["aidp-team-deny"], objs["aidp-team-bot"]
    assert deny["kind"] == approved["kind"] == kind
    assert "namespace" not in deny["metadata"]  # cluster-scoped, named after the namespace
    assert deny["metadata"]["labels"]["aidp.io/namespace"] == "team"
    assert deny["spec"]["subject"] == {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "team"}}}
    # Deny only: every other destination is left to the namespace's own NetworkPolicies
    assert [r["action"] for r in deny["spec"]["egress"]] == ["Deny"]
    assert sorted(deny["spec"]["egress"][0]["to"][0]["networks"]) == sorted(
        ["203.0.113.10/32", "203.0.113.30/32", "198.51.100.7/32", "2001:db8::10/128"]
    )
    # the approved pods (approval label under deny) first: a lower priority number
    assert approved["spec"]["priority"] < deny["spec"]["priority"]
    assert approved["spec"]["subject"]["pods"]["podSelector"] == {
        "matchLabels": {"app": "bot", "aidp.io/approved": "true"}
    }
    rules = approved["spec"]["egress"]
    assert {r["action"] for r in rules} == {accept}
    assert [r["to"][0]["networks"] for r in rules] == [
        ["203.0.113.10/32", "2001:db8::10/128"],
        ["198.51.100.7/32"],
    ]
    if backend == "clusternetworkpolicy":
        assert deny["spec"]["tier"] == "Admin"
        assert rules[1]["protocols"] == [{"tcp": {"destinationPort": {"number": 8443}}}]
    else:
        assert rules[1]["ports"] == [{"portNumber": {"protocol": "TCP", "port": 8443}}]


def test_admin_tier_chunks_long_address_lists_within_the_crd_limits() -> None:
    many = AddressBook({"api.openai.com": tuple(f"203.0.113.{i}/32" for i in range(1, 60))})
    ctx = EgressContext(many, TODAY, EgressSettings())
    objs = backends.render_all(backends.get("clusternetworkpolicy"), [policy("a")], ctx)
    for obj in objs:
        assert len(obj["spec"]["egress"]) <= 25
        for rule in obj["spec"]["egress"]:
            assert all(len(peer["networks"]) <= 25 for peer in rule["to"])
    deny = next(o for o in objs if o["metadata"]["name"].endswith("-deny"))
    assert sum(len(r["to"][0]["networks"]) for r in deny["spec"]["egress"]) == 59
