"""The provider catalog (aidp.catalog): the shipped file, validation with line and field, the
override, and everything that reads it: the parser, `aidp render` (OPA data and egress), the
audit's shadow-AI detector, the CRD (enum and CEL, generated), the dev stack's addresses and
docs/providers.md."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aidp import catalog, check, lint, model, paths, selector
from aidp.audit import engine, netpol
from aidp.audit.engine import Auditor
from aidp.audit.evaluate import local_opa
from aidp.catalog import crd as crd_gen
from aidp.catalog import docs
from aidp.cli.main import app
from aidp.devcluster.stack import DEMO_ADDRESSES
from aidp.model import Endpoint, Policy, PolicyError

REQUIRED = ["openai", "azure-openai", "anthropic", "google-gemini", "aws-bedrock", "mistral", "cohere"]
BUILTIN = catalog.builtin()
BUILTIN_TEXT = catalog.BUILTIN_FILE.read_text(encoding="utf-8")
ROOT = paths.repo_root()
AZURE_HOST = "myres.openai.azure.com"
ADDRESSES: dict[str, list[str]] = {
    **yaml.safe_load(DEMO_ADDRESSES)["static"],
    AZURE_HOST: ["198.51.100.77"],
}
runner = CliRunner()


@pytest.fixture(autouse=True)
def builtin_catalog() -> Iterator[None]:
    """Every test starts and ends with the built-in catalog (the CLI installs overrides)."""
    catalog.use(None)
    lint.crd_kinds.cache_clear()
    yield
    catalog.use(None)
    lint.crd_kinds.cache_clear()


def policy_obj(provider: str, name: str = "p", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "provider": provider,
            "workloadSelector": {"matchLabels": {"app": "bot"}},
            "purpose": "Answer questions",
            "consent": {"allowedBases": ["consent"]},
            "retention": {"maxDays": 7},
            **spec,
        },
    }


def minimal_policy(provider: str, **spec: Any) -> dict[str, Any]:
    """A policy naming the provider that the CRD accepts: a provider without a fixed endpoint gets
    one (azure: the resource host; bedrock: its first region)."""
    p = BUILTIN[provider]
    if p.needs_policy_endpoints and "dataResidency" not in spec and "endpoints" not in spec:
        if p.regions:
            spec["dataResidency"] = p.regions[0]
        else:
            spec["endpoints"] = [{"host": AZURE_HOST}]
    return policy_obj(provider, **spec)


# --- the shipped catalog ---------------------------------------------------------------------------


def test_the_builtin_catalog_has_every_required_provider() -> None:
    assert list(BUILTIN.names) == REQUIRED
    assert list(model.PROVIDERS) == REQUIRED
    openai = BUILTIN["openai"]
    assert openai.endpoints == (Endpoint("api.openai.com", 443),)
    assert openai.regions == ("us", "eu", "au", "in", "jp")
    assert [openai.endpoint(r).host for r in openai.regions] == [
        f"{r}.api.openai.com" for r in openai.regions
    ]
    assert BUILTIN["azure-openai"].endpoints == () and BUILTIN["azure-openai"].detection.hosts == (
        "*.openai.azure.com",
    )
    assert BUILTIN["anthropic"].endpoints == (Endpoint("api.anthropic.com"),)
    assert BUILTIN["google-gemini"].endpoints == (Endpoint("generativelanguage.googleapis.com"),)
    assert all(
        e.host == f"{r}-aiplatform.googleapis.com"
        for r, eps in BUILTIN["google-gemini"].residency
        for e in eps
    )
    assert BUILTIN["aws-bedrock"].endpoints == ()
    assert all(
        e.host == f"bedrock-runtime.{r}.amazonaws.com"
        for r, eps in BUILTIN["aws-bedrock"].residency
        for e in eps
    )
    assert BUILTIN["mistral"].endpoints == (Endpoint("api.mistral.ai"),)
    assert [e.host for e in BUILTIN["cohere"].endpoints] == ["api.cohere.com", "api.cohere.ai"]


@pytest.mark.parametrize("name", REQUIRED)
def test_every_fact_names_a_public_source_or_says_unverified(name: str) -> None:
    p = BUILTIN[name]
    assert p.display_name and p.detection.env and p.detection.credential_env and p.detection.hosts
    for fact_name, fact in p.facts.items():
        assert fact.value.strip(), fact_name
        assert fact.source == "unverified" or fact.source.startswith("https://"), (fact_name, fact.source)
    assert p.facts.zero_data_retention.available in catalog.ZDR_AVAILABILITY
    assert p.facts.trains_on_api_data.value in catalog.TRAINING_VALUES


def test_the_catalog_file_is_shipped_in_the_wheel() -> None:
    # hatch ships every file under the package directory: the catalog sits inside it
    assert catalog.BUILTIN_FILE.parent == Path(catalog.__file__).parent
    pyproject = (ROOT / "pyproject.toml").read_text() if ROOT else ""
    assert 'packages = ["operator/aidp"]' in pyproject


# --- validation: line and field ----------------------------------------------------------------


def line_of(text: str, needle: str, nth: int = 0) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[nth]


BAD_CATALOGS = [
    # (what, old, new, field, line needle in the new text, fragment of the problem)
    (
        "a number for a name",
        "  - name: openai\n",
        "  - name: 5\n",
        "providers[0].name",
        "- name: 5",
        "Expected `str`",
    ),
    (
        "an unknown field",
        "    displayName: Anthropic Claude API\n",
        "    displayName: Anthropic Claude API\n    colour: red\n",
        "providers[2].colour",
        "colour: red",
        "unknown field `colour`",
    ),
    (
        "a missing required field",
        "    endpoints: [api.mistral.ai]\n",
        "",
        "providers[5].endpoints",
        "- name: mistral",
        "missing required field `endpoints`",
    ),
    (
        "a URL for a host",
        "    endpoints: [api.anthropic.com]\n",
        "    endpoints: [https://api.anthropic.com]\n",
        "providers[2].endpoints[0]",
        "endpoints: [https://api.anthropic.com]",
        "invalid host",
    ),
    (
        "a bad port",
        "    endpoints: [api.mistral.ai]\n",
        "    endpoints: [api.mistral.ai:99999]\n",
        "providers[5].endpoints[0]",
        "api.mistral.ai:99999",
        "invalid port",
    ),
    (
        "two providers of one name",
        "  - name: cohere\n",
        "  - name: mistral\n",
        "providers[6].name",
        "- name: mistral",
        "duplicate provider 'mistral'",
    ),
    (
        "a source that is not a URL",
        "        source: https://cohere.com/enterprise-data-commitments\n",
        "        source: the website\n",
        "providers[6].facts.apiRetention.source",
        "source: the website",
        "must be a public URL",
    ),
    (
        "YAML's no for a string",
        '        value: "yes"\n',
        "        value: yes\n",
        "providers[6].facts.trainsOnApiData.value",
        "        value: yes",
        "Expected `str`, got `bool`",
    ),
    (
        "an unknown zero-data-retention availability",
        "        available: self-serve\n",
        "        available: sometimes\n",
        "providers[4].facts.zeroDataRetention.available",
        "available: sometimes",
        "Invalid enum value 'sometimes'",
    ),
    (
        "a region with no endpoint",
        "      eu: [eu.api.openai.com]\n",
        "      eu: []\n",
        "providers[0].residency.eu",
        "      eu: []",
        "at least one endpoint",
    ),
    (
        "an env glob with a space",
        '      env: ["MISTRAL_*"]\n',
        '      env: ["MISTRAL *"]\n',
        "providers[5].detection.env[0]",
        'env: ["MISTRAL *"]',
        "invalid value 'MISTRAL *'",
    ),
    (
        "a duplicate key",
        "    displayName: Mistral AI API\n",
        "    displayName: Mistral AI API\n    displayName: again\n",
        "providers[5].displayName",
        "displayName: again",
        "duplicate key",
    ),
    (
        "a region's eea not a boolean",
        "  eu-west-1: {country: Ireland, eea: true}\n",
        "  eu-west-1: {country: Ireland, eea: maybe}\n",
        "regions.eu-west-1.eea",
        "eu-west-1: {country: Ireland, eea: maybe}",
        "Expected `bool`",
    ),
    (
        "a region without its country",
        "  us: {country: United States, eea: false}\n",
        "  us: {eea: false}\n",
        "regions.us.country",
        "  us: {eea: false}",
        "missing required field `country`",
    ),
    (
        "an empty country",
        "  au: {country: Australia, eea: false}\n",
        '  au: {country: " ", eea: false}\n',
        "regions.au.country",
        '  au: {country: " "',
        "must not be empty",
    ),
    (
        "a global country without eea",
        "    globalCountry: {country: France, eea: true}\n",
        "    globalCountry: {country: France}\n",
        "providers[5].globalCountry.eea",
        "    globalCountry: {country: France}",
        "missing required field `eea`",
    ),
    ("invalid YAML", "providers:\n", "providers: [\n", "", "providers: [", "invalid YAML"),
    ("no providers", BUILTIN_TEXT, "providers: []\n", "providers", "providers: []", "length >= 1"),
]


@pytest.mark.parametrize(
    ("old", "new", "field", "needle", "problem"),
    [case[1:] for case in BAD_CATALOGS],
    ids=[case[0] for case in BAD_CATALOGS],
)
def test_a_malformed_catalog_is_refused_with_line_and_field(
    old: str, new: str, field: str, needle: str, problem: str
) -> None:
    assert old in BUILTIN_TEXT
    text = BUILTIN_TEXT.replace(old, new, 1)
    with pytest.raises(catalog.CatalogError) as info:
        catalog.parse(text, "bad.yaml")
    err = info.value
    assert (err.field, problem in err.problem) == (field, True), str(err)
    if needle != "providers: [":  # the parser reports where it gave up, past the bracket
        assert err.line == line_of(text, needle, -1), str(err)
    else:
        assert err.line is not None
    assert str(err).startswith(f"provider catalog bad.yaml:{err.line}: ")


def _plain(output: str) -> str:
    """CLI output without the rich box (typer wraps errors in one)."""
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())


@pytest.mark.parametrize("command", ["render", "check", "run", "audit"])
def test_every_command_refuses_a_malformed_catalog_at_start(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BUILTIN_TEXT.replace("  - name: openai\n", "  - name: 5\n", 1))
    args = [command, "--provider-catalog", str(bad)]
    if command in ("render", "check"):
        policy = tmp_path / "p.yaml"
        policy.write_text(yaml.safe_dump(minimal_policy("anthropic")))
        args += ["-f", str(policy)]
    result = runner.invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    out = _plain(result.output)
    assert (
        f"{bad}:{line_of(bad.read_text(), '- name: 5')}: providers[0].name: Expected `str`, got `int`" in out
    ), out


# --- the parser reads the catalog ----------------------------------------------------------------


def test_the_parser_takes_endpoints_and_regions_from_the_catalog() -> None:
    eps = {n: Policy.from_object(minimal_policy(n)).endpoints for n in REQUIRED}
    assert eps["openai"] == (Endpoint("api.openai.com"),)
    assert eps["azure-openai"] == (Endpoint(AZURE_HOST),)
    assert eps["anthropic"] == (Endpoint("api.anthropic.com"),)
    assert eps["google-gemini"] == (Endpoint("generativelanguage.googleapis.com"),)
    assert eps["aws-bedrock"] == (Endpoint("bedrock-runtime.us-east-1.amazonaws.com"),)
    assert eps["mistral"] == (Endpoint("api.mistral.ai"),)
    assert eps["cohere"] == (Endpoint("api.cohere.com"), Endpoint("api.cohere.ai"))
    vertex = Policy.from_object(policy_obj("google-gemini", dataResidency="europe-west4"))
    assert vertex.endpoints == (Endpoint("europe-west4-aiplatform.googleapis.com"),)


@pytest.mark.parametrize(
    ("provider", "spec", "message"),
    [
        (
            "anthropic",
            {"dataResidency": "eu"},
            "spec.dataResidency: provider anthropic has no data-residency regions in the provider catalog",
        ),
        (
            "google-gemini",
            {"dataResidency": "eu"},
            "spec.dataResidency: unsupported value 'eu'; supported values: us-central1, us-east1",
        ),
        ("azure-openai", {}, "spec.endpoints: provider azure-openai has no fixed endpoint: list its host"),
        ("aws-bedrock", {}, "spec.endpoints: provider aws-bedrock has no global endpoint: set dataResidency"),
    ],
)
def test_the_parser_repeats_the_crds_provider_rules(
    provider: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_object(policy_obj(provider, **spec))
    assert message in str(info.value)


def test_bedrock_with_only_endpoints_is_accepted() -> None:
    host = "bedrock-runtime.eu-west-1.amazonaws.com"
    p = Policy.from_object(policy_obj("aws-bedrock", endpoints=[{"host": host}]))
    assert p.endpoints == (Endpoint(host),)


# --- aidp render: egress for every provider's hosts ------------------------------------------------


def render(
    tmp_path: Path,
    policy: dict[str, Any],
    *extra: str,
    backend: str = "networkpolicy",
    addresses: Mapping[str, list[str]] = ADDRESSES,
) -> list[Any]:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "addresses.yaml").write_text(yaml.safe_dump({"static": dict(addresses)}))
    args = ["render", "-f", str(tmp_path / "p.yaml"), "--addresses-file", str(tmp_path / "addresses.yaml")]
    result = runner.invoke(app, [*args, "--backend", backend, "-o", "json", *extra])
    assert result.exit_code == 0, result.output
    objects: list[Any] = json.loads(result.stdout)
    return objects


def egress_of(objects: list[Any], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind and o.get("metadata", {}).get("name") == name]
    spec: dict[str, Any] = obj["spec"]
    return spec


def data_endpoints(objects: list[Any]) -> list[str]:
    (data,) = [o for o in objects if o["kind"] == "OPAData"]
    return [e["host"] for e in data["data"]["policies"]["team"]["p"]["endpoints"]]


def cidrs(hosts: list[str], *, v6: bool = True) -> list[str]:
    return sorted(
        {f"{a}/128" if ":" in a else f"{a}/32" for h in hosts for a in ADDRESSES[h] if v6 or ":" not in a}
    )


def expected_hosts(provider: str, residency: str | None = None) -> list[str]:
    p = BUILTIN[provider]
    if residency is None and p.needs_policy_endpoints:
        residency = p.regions[0] if p.regions else None
        if residency is None:
            return [AZURE_HOST]
    return [e.host for e in p.endpoints_for(residency)]


def residency_cases() -> list[tuple[str, str]]:
    return [(p.name, p.regions[-1]) for p in BUILTIN if p.regions]


@pytest.mark.parametrize("provider", REQUIRED)
def test_render_opens_egress_to_the_providers_hosts(tmp_path: Path, provider: str) -> None:
    objects = render(tmp_path, minimal_policy(provider))
    hosts = expected_hosts(provider)
    assert data_endpoints(objects) == hosts
    rules = egress_of(objects, "NetworkPolicy", "aidp-egress-p")["egress"]
    assert sorted(b["ipBlock"]["cidr"] for r in rules for b in r["to"]) == cidrs(hosts)
    # the baseline cuts every host of the provider (the global and each regional one) for the others
    baseline = egress_of(objects, "NetworkPolicy", "aidp-egress-baseline")["egress"][0]["to"]
    (v4,) = [b["ipBlock"] for b in baseline if b.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"]
    all_hosts = BUILTIN[provider].all_hosts() or [AZURE_HOST]
    assert set(cidrs(all_hosts, v6=False)) <= set(v4["except"])
    cilium = render(tmp_path, minimal_policy(provider), backend="cilium")
    fqdns = [
        f["matchName"]
        for rule in egress_of(cilium, "CiliumNetworkPolicy", "aidp-egress-p")["egress"]
        for f in rule.get("toFQDNs", [])
    ]
    assert fqdns == hosts


@pytest.mark.parametrize(("provider", "region"), residency_cases())
def test_render_gives_a_residency_policy_its_regions_hosts_only(
    tmp_path: Path, provider: str, region: str
) -> None:
    objects = render(tmp_path, policy_obj(provider, dataResidency=region))
    hosts = expected_hosts(provider, region)
    assert data_endpoints(objects) == hosts and hosts != [e.host for e in BUILTIN[provider].endpoints]
    rules = egress_of(objects, "NetworkPolicy", "aidp-egress-p")["egress"]
    assert sorted(b["ipBlock"]["cidr"] for r in rules for b in r["to"]) == cidrs(hosts)


def test_every_catalog_host_has_a_test_address_in_the_dev_stack() -> None:
    hosts = {h for p in BUILTIN for h in p.all_hosts()}
    assert hosts <= set(yaml.safe_load(DEMO_ADDRESSES)["static"])


# --- the shadow-AI detector ------------------------------------------------------------------------


def deployment(name: str, env: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "template": {
                "metadata": {"labels": labels or {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "example/app", "env": env}]},
            }
        },
    }


# one private OPA per catalog in force (the detector's lists are rendered from it), for the module
_OPAS: list[tuple[catalog.Catalog, Any]] = []
_OPA_STACK = contextlib.ExitStack()


@pytest.fixture(autouse=True, scope="module")
def _stop_opas() -> Iterator[None]:
    yield
    _OPA_STACK.close()
    _OPAS.clear()


def rego_detector() -> Any:
    """The audit's evaluator with no AIDataPolicy in OPA (every selected workload compliant): the
    shadow-AI findings are the Rego detector's (data.aidp.audit.decisions' aiReferences)."""
    current = catalog.current()
    for cat, evaluate in _OPAS:
        if cat is current:
            return evaluate
    evaluate = _OPA_STACK.enter_context(local_opa([], check.find_opa()))
    _OPAS.append((current, evaluate))
    return evaluate


def audit(objects: list[dict[str, Any]], policies: Sequence[Policy] = ()) -> list[tuple[str, str, str]]:
    """The audit's findings, every selected workload judged compliant (OPA holds no policy)."""
    auditor = Auditor(
        evaluate=rego_detector(),
        policies=list(policies),
        today=dt.date(2026, 12, 1),
        network_policies=None,
    )
    auditor.add(objects)
    return [(f.type, f.name, f.message) for f in auditor.finish().findings]


def env_examples(provider: str) -> list[str]:
    return [g.replace("*", "API_KEY") for g in BUILTIN[provider].detection.env]


def host_examples(provider: str) -> list[str]:
    return [g.replace("*", "x1") for g in BUILTIN[provider].detection.hosts]


@pytest.mark.parametrize("provider", REQUIRED)
def test_a_workload_with_the_providers_env_names_is_shadow_ai_when_unselected(provider: str) -> None:
    other = Policy.from_object(minimal_policy("openai", workloadSelector={"matchLabels": {"app": "other"}}))
    names = [*env_examples(provider), *BUILTIN[provider].detection.credential_env]
    workloads = [deployment(f"w{i}", [{"name": n, "value": "x"}]) for i, n in enumerate(names)]
    findings = audit(workloads, [other])
    assert sorted((t, n) for t, n, _ in findings) == sorted(("shadow-ai", f"w{i}") for i in range(len(names)))
    for (_, name, message), env in zip(sorted(findings, key=lambda f: int(f[1][1:])), names, strict=True):
        assert f"env {env}" in message, (name, message)


@pytest.mark.parametrize("provider", REQUIRED)
def test_a_workload_naming_the_providers_host_is_shadow_ai_when_unselected(provider: str) -> None:
    hosts = host_examples(provider)
    workloads = [
        deployment(f"h{i}", [{"name": "BASE_URL", "value": f"https://{h}/v1"}]) for i, h in enumerate(hosts)
    ]
    findings = audit(workloads)
    assert len(findings) == len(hosts)
    for (kind, _, message), host in zip(sorted(findings, key=lambda f: int(f[1][1:])), hosts, strict=True):
        assert kind == "shadow-ai" and f"host {host}" in message, message


@pytest.mark.parametrize("provider", REQUIRED)
def test_a_selected_workload_is_not_shadow_ai(provider: str) -> None:
    policy = Policy.from_object(minimal_policy(provider))
    env = [{"name": n, "value": "x"} for n in env_examples(provider)]
    assert audit([deployment("bot", env, {"app": "bot"})], [policy]) == []


@pytest.mark.parametrize("provider", REQUIRED)
def test_credentials_are_traced_to_their_secret(provider: str) -> None:
    for name in BUILTIN[provider].detection.credential_env:
        spec = {
            "containers": [
                {"env": [{"name": name, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
            ]
        }
        assert engine.credential_secrets(spec, talks_ai=False) == {"s"}, name


def test_the_detector_finds_what_it_found_before_the_catalog() -> None:
    old_env = re.compile(r"^(OPENAI_|AZURE_OPENAI_)[A-Z0-9_]*$")
    old_cred = re.compile(r"^(OPENAI_API_KEY|OPENAI_KEY|AZURE_OPENAI_(API_)?KEY)$")
    old_host = re.compile(
        r"(?<![a-z0-9.-])((?:[a-z0-9-]+\.)?api\.openai\.com|[a-z0-9-]+\.openai\.azure\.com)(?![a-z0-9-])"
    )
    for name in ["OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_KEY", "OPENAI_"]:
        assert catalog.DETECT_ENV.match(name) and old_env.match(name), name
    for name in ["OPENAI_API_KEY", "OPENAI_KEY", "AZURE_OPENAI_KEY", "AZURE_OPENAI_API_KEY"]:
        assert engine.AI_CREDENTIAL_ENV.match(name) and old_cred.match(name), name
    for name in ["MY_OPENAI_KEY", "openai_api_key", "XOPENAI_API_KEY"]:
        assert not catalog.DETECT_ENV.match(name) and not old_env.match(name), name
    for text in [
        "https://api.openai.com/v1",
        "eu.api.openai.com",
        "x.y.api.openai.com",
        "myres.openai.azure.com:443",
        "notapi.openai.com",
        "api.openai.community",
        "api.openai.com.evil.example",
    ]:
        new, old = catalog.DETECT_HOST.search(text), old_host.search(text)
        assert (new and new.group(1)) == (old and old.group(1)), text


# --- an override with an extra provider ------------------------------------------------------------

EXTRA = """\
  - name: acme-ai
    displayName: Acme AI
    endpoints: [api.acme-ai.example, "batch.acme-ai.example:8443"]
    residency:
      eu: [eu.api.acme-ai.example]
    detection:
      env: ["ACME_AI_*"]
      credentialEnv: [ACME_AI_KEY]
      hosts: ["*.acme-ai.example"]
    facts:
      legalEntity: {value: Acme AI Ltd, source: unverified}
      processorTerms: {value: Acme DPA, source: "https://acme-ai.example/dpa"}
      apiRetention: {value: none, days: 0, source: unverified}
      zeroDataRetention: {available: self-serve, value: default, source: unverified}
      trainsOnApiData: {value: "no", source: unverified}
"""


@pytest.fixture
def override(tmp_path: Path) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(BUILTIN_TEXT + "\n" + EXTRA)
    return path


def test_an_override_with_an_extra_provider_is_used_by_render(tmp_path: Path, override: Path) -> None:
    acme = {
        **ADDRESSES,
        "api.acme-ai.example": ["198.51.100.201"],
        "batch.acme-ai.example": ["198.51.100.202"],
        "eu.api.acme-ai.example": ["198.51.100.203"],
    }
    objects = render(tmp_path, policy_obj("acme-ai"), "--provider-catalog", str(override), addresses=acme)
    assert data_endpoints(objects) == ["api.acme-ai.example", "batch.acme-ai.example"]
    rules = egress_of(objects, "NetworkPolicy", "aidp-egress-p")["egress"]
    assert sorted((b["ipBlock"]["cidr"], r["ports"][0]["port"]) for r in rules for b in r["to"]) == [
        ("198.51.100.201/32", 443),
        ("198.51.100.202/32", 8443),
    ]
    eu = render(
        tmp_path,
        policy_obj("acme-ai", dataResidency="eu"),
        "--provider-catalog",
        str(override),
        addresses=acme,
    )
    assert data_endpoints(eu) == ["eu.api.acme-ai.example"]
    # without the override the provider is unknown
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(policy_obj("acme-ai")))
    result = runner.invoke(app, ["render", "-f", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "unsupported provider 'acme-ai'" in result.output


def test_an_override_with_an_extra_provider_is_used_by_check(tmp_path: Path, override: Path) -> None:
    files = tmp_path / "in.yaml"
    workload = deployment("bot", [{"name": "ACME_AI_KEY", "value": "x"}], {"app": "bot"})
    tpl = workload["spec"]["template"]
    tpl["metadata"]["annotations"] = {
        "aidp.io/consent-basis": "consent",
        "aidp.io/retention-days": "1",
        "aidp.io/data-categories": "public",
    }
    files.write_text(yaml.safe_dump_all([policy_obj("acme-ai"), workload]))
    result = runner.invoke(
        app, ["check", "-f", str(files), "-o", "json", "--provider-catalog", str(override)]
    )
    assert result.exit_code == 0, result.output
    assert [(r["kind"], r["allowed"]) for r in json.loads(result.stdout)] == [("Deployment", True)]
    catalog.use(None)
    lint.crd_kinds.cache_clear()
    refused = runner.invoke(app, ["check", "-f", str(files)], env={"COLUMNS": "400"})
    assert refused.exit_code == 2 and "acme-ai" in refused.output, refused.output


def test_the_audit_reads_the_overrides_detection_lists(override: Path) -> None:
    catalog.use_file(override)
    findings = audit([deployment("w", [{"name": "ACME_AI_TOKEN", "value": "https://api.acme-ai.example"}])])
    assert [(t, n) for t, n, _ in findings] == [("shadow-ai", "w")]
    assert "env ACME_AI_TOKEN" in findings[0][2] and "host api.acme-ai.example" in findings[0][2]


# --- the CRD, the docs: generated from the catalog -------------------------------------------------


def crd_schema(path: Path) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


@pytest.mark.skipif(ROOT is None, reason="needs the source checkout")
def test_the_crds_provider_enum_equals_the_catalogs_names() -> None:
    assert ROOT is not None
    for path in crd_gen.crd_files(ROOT):
        spec = crd_schema(path)
        if path.name == crd_gen.CRD_NAME:
            assert spec["properties"]["provider"]["enum"] == list(BUILTIN.names), path
            assert spec["properties"]["dataResidency"]["enum"] == crd_gen.all_regions(BUILTIN), path
            messages = [r["message"] for r in spec["x-kubernetes-validations"]]
            assert messages == [crd_gen.RESIDENCY_MESSAGE, crd_gen.ENDPOINTS_MESSAGE], path
        else:  # ClusterAIDataPolicy: the providers and residencies namespace policies may name
            assert spec["properties"]["providers"]["items"]["enum"] == list(BUILTIN.names), path
            regions = spec["properties"]["dataResidency"]["items"]["enum"]
            assert regions == crd_gen.all_regions(BUILTIN), path


@pytest.mark.skipif(ROOT is None, reason="needs the source checkout")
def test_the_crds_and_docs_are_what_hack_gen_providers_writes() -> None:
    assert ROOT is not None
    for path in crd_gen.crd_files(ROOT):
        text = path.read_text()
        regenerated = crd_gen.regenerate(text, BUILTIN, crd_gen.REQUIRED_PARTS[path.name])
        assert regenerated == text, f"{path} is stale: run hack/gen-providers"
    assert (ROOT / "docs" / "providers.md").read_text() == docs.markdown(BUILTIN), "run hack/gen-providers"
    assert crd_gen.main(["--root", str(ROOT), "--check"]) == 0


def test_the_generated_cel_rules_accept_and_refuse_as_the_parser_does() -> None:
    cases = [minimal_policy(n) for n in REQUIRED] + [
        policy_obj("anthropic", dataResidency="eu"),
        policy_obj("openai", dataResidency="europe-west4"),
        policy_obj("google-gemini", dataResidency="europe-west4"),
        policy_obj("azure-openai"),
        policy_obj("aws-bedrock"),
        policy_obj("aws-bedrock", endpoints=[{"host": "bedrock-runtime.eu-west-1.amazonaws.com"}]),
    ]
    for obj in cases:
        cel_ok = all(lint.evaluate_cel(rule, obj["spec"]) is True for rule, _ in crd_gen.cel_rules(BUILTIN))
        try:
            Policy.from_object(obj)
            parsed = True
        except PolicyError:
            parsed = False
        assert cel_ok == parsed, obj["spec"]


def test_docs_providers_md_lists_every_provider_and_fact_source() -> None:
    page = docs.markdown(BUILTIN)
    for p in BUILTIN:
        assert f"## `{p.name}`: {p.display_name}" in page
        for _, fact in p.facts.items():
            assert fact.source == "unverified" or f"]({fact.source})" in page


# --- one implementation of label-selector semantics ----------------------------------------------


def test_the_audit_uses_the_one_selector_implementation() -> None:
    assert netpol._selects is selector.selects
    assert model.LabelSelector is selector.LabelSelector
    assert selector.selects({}, {"a": "b"}) and selector.selects(None, {})
    assert not selector.LabelSelector().matches({"a": "b"})
    assert selector.selects(
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}, {"a": "b"}
    )
    assert not selector.selects({"matchLabels": {"a": "c"}}, {"a": "b"})


# --- Helm: a ConfigMap as the catalog ----------------------------------------------------------------


def chart(*sets: str) -> list[dict[str, Any]]:
    assert ROOT is not None
    helm = paths.testbin_dir() / "helm"
    if not helm.is_file():
        pytest.fail(f"{helm} is missing: run `make testbin` first")
    args = [str(helm), "template", "r", str(ROOT / "charts" / "aidp"), "-n", "aidp-system"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def operator_container(*sets: str) -> dict[str, Any]:
    (dep,) = [
        d
        for d in chart(*sets)
        if d["kind"] == "Deployment" and d["spec"]["template"]["spec"]["containers"][0]["name"] == "operator"
    ]
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


@pytest.mark.skipif(ROOT is None, reason="needs the source checkout")
def test_the_chart_reads_the_provider_catalog_configmap_through_the_api() -> None:
    pod = operator_container("providerCatalog.configMap=my-catalog", "providerCatalog.key=cat.yaml")
    (c,) = pod["containers"]
    i = c["args"].index("--provider-catalog-configmap")
    assert c["args"][i + 1] == "aidp-system/my-catalog:cat.yaml"
    assert catalog.ConfigMapRef.parse(c["args"][i + 1]) == catalog.ConfigMapRef(
        "aidp-system", "my-catalog", "cat.yaml"
    )
    assert "--provider-catalog" not in c["args"]  # no file: the ConfigMap is watched, not mounted
    assert all(v["name"] != "provider-catalog" for v in pod["volumes"])
    default = operator_container()
    assert "--provider-catalog-configmap" not in default["containers"][0]["args"]


def catalog_rules(*sets: str) -> list[dict[str, Any]]:
    role = next(d for d in chart(*sets) if d["kind"] == "Role" and d["metadata"]["name"] == "r-aidp-operator")
    return [r for r in role["rules"] if "configmaps" in r["resources"] and "watch" in r["verbs"]]


@pytest.mark.skipif(ROOT is None, reason="needs the source checkout")
def test_the_chart_lets_the_operator_read_and_watch_only_the_catalog_configmap() -> None:
    assert catalog_rules("providerCatalog.configMap=my-catalog") == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["my-catalog"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert catalog_rules() == []
