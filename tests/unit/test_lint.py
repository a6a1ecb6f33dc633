"""`aidp check` as a linter: AIDataPolicies validated as the API server would (schema, strict
fields, CEL rules), every error at once with file:line; hints for workloads; verdicts that say why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from aidp import check, lint
from aidp.cli import policy as policy_cli
from aidp.model import Policy, PolicyError

POLICY = """\
apiVersion: aidp.io/v1alpha1
kind: AIDataPolicy
metadata:
  name: support-summaries
  namespace: support
spec:
  provider: openai
  workloadSelector:
    matchLabels: {app: support-bot}
  serviceAccountNames: [support-bot]
  purpose: Summarise support tickets
  consent:
    allowedBases: [consent, contract]
  retention:
    maxDays: 30
  dataCategories:
    allowed: [public, internal]
    forbidden: [health]
  review:
    expires: "2099-12-31"
"""

WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bot
  namespace: support
spec:
  selector: {matchLabels: {app: support-bot}}
  template:
    metadata:
      labels: {app: support-bot}
      annotations:
        aidp.io/consent-basis: contract
        aidp.io/retention-days: "30"
        aidp.io/data-categories: internal
    spec:
      serviceAccountName: support-bot
      containers: [{name: c, image: x}]
"""


def app() -> typer.Typer:
    application = typer.Typer()
    policy_cli.register(application)
    return application


def run_check(tmp_path: Path, **files: str) -> Result:
    args = ["check"]
    for name, text in files.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        args += ["-f", str(path)]
    return CliRunner().invoke(app(), args)


def errors(result: Result) -> list[str]:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    return [line.removeprefix("error: ") for line in lines]


def findings(text: str) -> list[str]:
    """The lint findings of one policy document, without file and subject."""
    (manifest,) = lint.parse_text(text, "p.yaml")
    crd = lint.crd_kind_of(manifest.obj)
    assert crd is not None
    return [f.message for f in lint.lint_custom_resource(manifest, crd)]


# --- the cases ---------------------------------------------------------------------------


def test_the_three_mistyped_fields_are_refused_with_did_you_mean(tmp_path: Path) -> None:
    mistyped = (
        POLICY.replace("serviceAccountNames: [support-bot]", "serviceAccountName: support-bot")
        .replace("  dataCategories:", "  dataCategory:")
        .replace("  review:", "  enforcment: warn\n  review:")
    )
    result = run_check(tmp_path, policy=mistyped, workload=WORKLOAD)
    where = tmp_path / "policy.yaml"
    assert errors(result) == [
        f'{where}:10: AIDataPolicy support/support-summaries: unknown field "spec.serviceAccountName"; '
        'did you mean "serviceAccountNames"?',
        f'{where}:16: AIDataPolicy support/support-summaries: unknown field "spec.dataCategory"; '
        'did you mean "dataCategories"?',
        f'{where}:19: AIDataPolicy support/support-summaries: unknown field "spec.enforcment"; '
        'did you mean "enforcement"?',
    ]


NINE_ERRORS = """\
apiVersion: aidp.io/v1alpha1
kind: AIDataPolicy
metadata:
  name: support-summaries
  namespace: support
spec:
  provider: openia
  workloadSelector:
    matchLabels: {app: support-bot}
  serviceAccountName: support-bot
  purpose: " "
  consent:
    required: "yes"
    allowedBases: [consent]
  retention:
    maxDays: -1
  dataCategory:
    forbidden: [health]
  endpoints:
    - host: a.example.com
    - host: a.example.com
  enforcment: warn
  review:
    expires: "2027-02-30"
"""


def test_nine_errors_of_one_policy_are_reported_in_one_run_with_file_and_line(tmp_path: Path) -> None:
    result = run_check(tmp_path, workload=WORKLOAD, policy=NINE_ERRORS)
    where = f"{tmp_path / 'policy.yaml'}"
    subject = "AIDataPolicy support/support-summaries"
    assert errors(result) == [
        f"{where}:{line}: {subject}: {message}"
        for line, message in [
            (
                7,
                'spec.provider: unsupported value "openia"; supported values: "openai", "azure-openai", '
                '"anthropic", "google-gemini", "aws-bedrock", "mistral", "cohere"; did you mean "openai"?',
            ),
            (10, 'unknown field "spec.serviceAccountName"; did you mean "serviceAccountNames"?'),
            (11, "spec.purpose: purpose must not be blank"),
            (13, 'spec.consent.required: must be a boolean, got the string "yes"'),
            (16, "spec.retention.maxDays: must be between 0 and 3650, got -1"),
            (17, 'unknown field "spec.dataCategory"; did you mean "dataCategories"?'),
            (20, "spec.endpoints: endpoints must not list the same host twice"),
            (22, 'unknown field "spec.enforcment"; did you mean "enforcement"?'),
            (24, "spec.review.expires: review.expires must be a valid calendar date (YYYY-MM-DD)"),
        ]
    ]


def test_errors_of_several_files_are_all_reported_each_with_its_file(tmp_path: Path) -> None:
    second = POLICY.replace("name: support-summaries", "name: other").replace("maxDays: 30", "maxDays: 1.5")
    bad_workload = WORKLOAD.replace('"30"', "30")
    result = run_check(
        tmp_path, a=POLICY.replace("provider: openai", "provider: 7"), b=second, c=bad_workload
    )
    assert errors(result) == [
        f"{tmp_path / 'a.yaml'}:7: AIDataPolicy support/support-summaries: spec.provider: must be a string, "
        'got the integer 7 (quote it in YAML: "7")',
        f"{tmp_path / 'b.yaml'}:15: AIDataPolicy support/other: spec.retention.maxDays: must be an integer, "
        "got the number 1.5",
        f"{tmp_path / 'c.yaml'}:13: Deployment support/bot: "
        'spec.template.metadata.annotations["aidp.io/retention-days"]: must be a string, '
        'got the integer 30 (quote it in YAML: "30")',
    ]


@pytest.mark.parametrize(
    ("yaml_value", "words"),
    [
        ("true", "the boolean true"),
        ("yes", "the boolean yes"),
        ("False", "the boolean False"),
        ("42", "the integer 42"),
        ("0x1f", "the integer 0x1f"),
        ("4.5", "the number 4.5"),
        ("~", "null"),
        ("[a]", "a list"),
        ("{a: b}", "an object"),
    ],
)
def test_types_are_named_in_yamls_words(yaml_value: str, words: str) -> None:
    text = POLICY.replace("purpose: Summarise support tickets", f"purpose: {yaml_value}")
    messages = findings(text)
    if words == "null":  # null is pruned, then the required field is missing
        assert messages == ["spec.purpose: is required"]
        return
    hint = f' (quote it in YAML: "{yaml_value}")' if words.split()[-1] == yaml_value else ""
    assert messages == [f"spec.purpose: must be a string, got {words}{hint}"]


# --- the schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  name: support-summaries\n", "  name: Support_Summaries\n", "metadata.name: invalid name"),
        ("  namespace: support\n", "  namespace: support\n  namepsace: x\n", 'did you mean "namespace"?'),
        (
            "metadata:\n",
            "metadata:\n  labels: {tier: 1}\n",
            "metadata.labels.tier: must be a string, got the",
        ),
        ("spec:\n", "specs: {}\nspec:\n", 'unknown field "specs"; did you mean "spec"?'),
        ("  provider: openai\n", "", "spec.provider: is required"),
        ("  dataCategories:\n", "  dataResidency: EU\n  dataCategories:\n", 'supported values: "us", "eu"'),
        (
            "  enforcement: deny\n" if False else "  review:\n",
            "  enforcement: wran\n  review:\n",
            'did you mean "warn"?',
        ),
        (
            "[support-bot]",
            "[support-bot, support-bot]",
            'spec.serviceAccountNames[1]: duplicate value "support-bot"',
        ),
        (
            "[support-bot]",
            "[Support Bot]",
            'spec.serviceAccountNames[0]: invalid value "Support Bot": must match',
        ),
        ("maxDays: 30", "maxDays: 3651", "spec.retention.maxDays: must be between 0 and 3650, got 3651"),
        (
            "Summarise support tickets",
            "x" * 1025,
            "spec.purpose: must be at most 1024 characters long, got 1025",
        ),
        (
            "{app: support-bot}",
            "{app: support-bot, a: b}\n    matchExpression: []",
            'did you mean "matchExpressions"?',
        ),
        (
            "apiVersion: aidp.io/v1alpha1",
            "apiVersion: aidp.io/v1",
            'version "v1" of aidp.io/AIDataPolicy is not served',
        ),
    ],
)
def test_the_crd_schema_is_applied(old: str, new: str, message: str) -> None:
    text = POLICY.replace(old, new)
    assert text != POLICY
    messages = findings(text)
    assert any(message in m for m in messages), messages


def test_a_valid_policy_has_no_findings_and_duplicate_keys_are_refused() -> None:
    assert findings(POLICY) == []
    (manifest,) = lint.parse_text(
        POLICY.replace("  retention:\n", "  purpose: again\n  retention:\n"), "p.yaml"
    )
    assert [str(f) for f in lint.duplicate_keys(manifest)] == [
        'p.yaml:14: AIDataPolicy support/support-summaries: duplicate field "spec.purpose"'
    ]


# A failing example for each CEL rule of the CRDs, keyed by the rule's message: a rule added to a CRD
# without an example here fails test_every_cel_rule_of_the_crds_is_evaluated.
CEL_FAILURES: dict[str, tuple[str, str]] = {
    "endpoints must not list the same host twice": (
        "  review:\n",
        "  endpoints: [{host: a.example.com}, {host: a.example.com, port: 8443}]\n  review:\n",
    ),
    "workloadSelector must set matchLabels or matchExpressions; an empty selector would select every pod": (
        "    matchLabels: {app: support-bot}\n",
        "    matchLabels: {}\n",
    ),
    "matchExpressions with operator In or NotIn must have non-empty values": (
        "    matchLabels: {app: support-bot}\n",
        "    matchExpressions: [{key: app, operator: In}]\n",
    ),
    "matchExpressions with operator Exists or DoesNotExist must not have values": (
        "    matchLabels: {app: support-bot}\n",
        "    matchExpressions: [{key: app, operator: Exists, values: [x]}]\n",
    ),
    "purpose must not be blank": ("purpose: Summarise support tickets", 'purpose: "\\t \\u3000"'),
    # consent.required defaults to true: the rule sees the defaulted object
    "consent.allowedBases must list at least one lawful basis when consent.required is true": (
        "    allowedBases: [consent, contract]\n",
        "    allowedBases: []\n",
    ),
    "dataCategories.allowed and dataCategories.forbidden must not share a category": (
        "forbidden: [health]",
        "forbidden: [health, internal]",
    ),
    "review.expires must be a valid calendar date (YYYY-MM-DD)": ('"2099-12-31"', '"2100-02-29"'),
    # the provider rules, generated from the provider catalog (aidp.catalog.crd)
    "dataResidency must be one of the provider's regions (docs/providers.md lists them)": (
        "  provider: openai\n",
        "  provider: anthropic\n  dataResidency: eu\n",
    ),
    "the provider has no fixed endpoint: list its host in endpoints, or set dataResidency where the "
    "provider has regions": ("  provider: openai\n", "  provider: azure-openai\n"),
}


def _guardrail(spec: str) -> tuple[str, str]:
    """A CEL failure of the ClusterAIDataPolicy CRD: the whole document replaced by a guardrail."""
    head = "apiVersion: aidp.io/v1alpha1\nkind: ClusterAIDataPolicy\nmetadata: {name: g}\nspec:\n"
    return POLICY, head + spec


# the ClusterAIDataPolicy CRD's rules (its selector's matchExpressions rules share the messages above)
CEL_FAILURES |= {
    "providers: list at least one provider, or leave the field out for any": _guardrail(
        "  namespaceSelector: {}\n  providers: []\n"
    ),
    "dataResidency: list at least one residency, or leave the field out for any": _guardrail(
        "  namespaceSelector: {}\n  dataResidency: []\n"
    ),
    "consent.allowedBases: list at least one lawful basis, or leave the field out for no ceiling": _guardrail(
        "  namespaceSelector: {}\n  consent: {allowedBases: []}\n"
    ),
    "dataCategories.forbidden: list at least one category, or leave the field out": _guardrail(
        "  namespaceSelector: {}\n  dataCategories: {forbidden: []}\n"
    ),
    "namespaceSelector.matchLabels: list at least one label, or leave the field out (namespaceSelector: {} "
    "selects every namespace)": _guardrail("  namespaceSelector: {matchLabels: {}}\n"),
    "namespaceSelector.matchExpressions: list at least one requirement, or leave the field out "
    "(namespaceSelector: {} selects every namespace)": _guardrail(
        "  namespaceSelector: {matchExpressions: []}\n"
    ),
}


def _all_cel_rules() -> list[tuple[str, str, str]]:
    rules = []
    for crd in lint.crd_kinds().values():
        for version, schema in crd.schemas.items():
            for path, rule in lint.cel_rules(schema):
                rules.append(
                    (f"{crd.kind}/{version}", lint.path_text(path), rule.get("message") or rule["rule"])
                )
    return rules


@pytest.mark.parametrize(("kind", "path", "message"), _all_cel_rules())
def test_every_cel_rule_of_the_crds_is_evaluated(kind: str, path: str, message: str) -> None:
    assert message in CEL_FAILURES, f"{kind} {path}: add a failing example for the rule {message!r}"
    old, new = CEL_FAILURES[message]
    text = POLICY.replace(old, new)
    assert text != POLICY
    assert [m for m in findings(text) if message in m] != [], findings(text)


def test_cel_rules_see_defaults_and_the_kubernetes_string_functions() -> None:
    assert lint.evaluate_cel("self.trim() == 'a'", " a\u3000") is True
    assert lint.evaluate_cel("self.substring(1, 3) == 'bc'", "abcd") is True
    assert lint.evaluate_cel("self.lowerAscii() == 'abc'", "AbC") is True
    assert lint.evaluate_cel("self.substring(2, 9) == ''", "abc") is not True  # out of range
    assert isinstance(lint.evaluate_cel("self.nosuch()", "a"), str)
    consent_default = lint.apply_defaults({}, {"properties": {"consent": _spec_schema()["consent"]}})
    assert consent_default == {"consent": {"required": True, "allowedBases": []}}


def _spec_schema() -> dict[str, Any]:
    crd = lint.crd_kinds()[("aidp.io", "AIDataPolicy")]
    return dict(crd.schemas["v1alpha1"]["properties"]["spec"]["properties"])


def test_parse_path_and_path_text_agree() -> None:
    path = ("spec", "endpoints", 0, "host")
    assert lint.path_text(path) == "spec.endpoints[0].host"
    assert lint.parse_path("spec.endpoints[0].host") == path
    annotation = ("metadata", "annotations", "aidp.io/purpose")
    assert lint.parse_path(lint.path_text(annotation)) == annotation


# --- policy-only files, hints and reasons ------------------------------------------------------


def test_a_file_with_only_policies_is_linted(tmp_path: Path) -> None:
    result = run_check(tmp_path, policy=POLICY)
    assert result.exit_code == 0, result.output
    assert result.stdout == "VALID AIDataPolicy support/support-summaries\n"
    bad = run_check(tmp_path, policy=POLICY.replace("maxDays: 30", "maxDays: 9999"))
    assert errors(bad) == [
        f"{tmp_path / 'policy.yaml'}:15: AIDataPolicy support/support-summaries: spec.retention.maxDays: "
        "must be between 0 and 3650, got 9999"
    ]


def _moved_annotations() -> str:
    doc = yaml.safe_load(WORKLOAD)
    doc["metadata"]["annotations"] = doc["spec"]["template"]["metadata"].pop("annotations")
    return yaml.safe_dump(doc, sort_keys=False)


def test_annotations_on_the_deployments_own_metadata_get_a_hint(tmp_path: Path) -> None:
    result = run_check(tmp_path, policy=POLICY, workload=_moved_annotations())
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[1] == "DENIED Deployment support/bot (fails support/support-summaries)"
    assert lines[-1] == (
        f"  hint: {tmp_path / 'workload.yaml'}:7: aidp.io/consent-basis, aidp.io/retention-days, "
        "aidp.io/data-categories are on the Deployment's own metadata.annotations, which admission does "
        "not read: put them under spec.template.metadata.annotations"
    )


def test_labels_on_the_deployments_own_metadata_get_a_hint(tmp_path: Path) -> None:
    doc = yaml.safe_load(WORKLOAD)
    doc["metadata"]["labels"] = doc["spec"]["template"]["metadata"].pop("labels")
    result = run_check(tmp_path, policy=POLICY, workload=yaml.safe_dump(doc, sort_keys=False))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1] == "ALLOWED Deployment support/bot (no policy selects it)"
    assert lines[2].startswith(f"  hint: {tmp_path / 'workload.yaml'}:")
    assert lines[2].endswith(
        "the Deployment's own metadata.labels match support/support-summaries, but policies select pods "
        "by the pod template's labels: put the labels under spec.template.metadata.labels"
    )


@pytest.mark.parametrize(
    ("value", "fixed"),
    [
        ("internal; public", "internal,public"),
        ("internal|public", "internal,public"),
        ("internal public", "internal,public"),
        ("internal, public;health", "internal,public,health"),
    ],
)
def test_category_separators_other_than_commas_get_a_hint(tmp_path: Path, value: str, fixed: str) -> None:
    workload = WORKLOAD.replace("aidp.io/data-categories: internal", f'aidp.io/data-categories: "{value}"')
    result = run_check(tmp_path, policy=POLICY, workload=workload)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == (
        f'  hint: {tmp_path / "workload.yaml"}:14: aidp.io/data-categories "{value}" is a comma-separated '
        f'list: write "{fixed}"'
    )


def test_commas_get_no_hint(tmp_path: Path) -> None:
    workload = WORKLOAD.replace(
        "aidp.io/data-categories: internal", 'aidp.io/data-categories: "internal, public"'
    )
    result = run_check(tmp_path, policy=POLICY, workload=workload)
    assert result.exit_code == 0, result.output
    assert "hint" not in result.stdout


def test_each_allowed_verdict_says_why(tmp_path: Path) -> None:
    other = WORKLOAD.replace("name: bot", "name: other").replace("app: support-bot", "app: other")
    system = WORKLOAD.replace("name: bot", "name: sys").replace(
        "namespace: support", "namespace: kube-system"
    )
    result = run_check(tmp_path, policy=POLICY, a=WORKLOAD, b=other, c=system)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "VALID AIDataPolicy support/support-summaries",
        "ALLOWED Deployment support/bot (complies with support/support-summaries)",
        "ALLOWED Deployment support/other (no policy selects it)",
        "ALLOWED Deployment kube-system/sys (namespace not governed)",
    ]


def test_reasons_with_several_policies_and_modes() -> None:
    warn = POLICY.replace("name: support-summaries", "name: w").replace("maxDays: 30", "maxDays: 1")
    warn = warn.replace("  review:", "  enforcement: warn\n  review:")
    deny = POLICY.replace("name: support-summaries", "name: strict").replace("maxDays: 30", "maxDays: 2")
    manifests = [*lint.parse_text("---\n".join([POLICY, warn, deny, WORKLOAD]), "all.yaml")]
    (result,) = check.run_check(manifests).results
    assert not result.allowed
    assert (
        result.reason == "fails support/strict; complies with support/support-summaries; warned by support/w"
    )
    text = check.format_text([result])
    assert text.count("[retention-days]") == 2  # one line per failure, the warning not repeated


# --- robustness ----------------------------------------------------------------------------------

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_paths = st.lists(
    st.sampled_from(
        ["spec", "metadata", "consent", "endpoints", "workloadSelector", "matchExpressions", "x", 0]
    ),
    min_size=1,
    max_size=4,
)


def _put(obj: Any, path: list[str | int], value: object) -> None:
    for step in path[:-1]:
        nxt = obj[step] if isinstance(obj, dict) and step in obj else None
        if isinstance(obj, list) and isinstance(step, int) and step < len(obj):
            nxt = obj[step]
        if not isinstance(nxt, dict | list):
            return
        obj = nxt
    last = path[-1]
    if isinstance(obj, dict) or (isinstance(obj, list) and isinstance(last, int) and last < len(obj)):
        obj[last] = value


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=_paths, value=_values)
def test_any_mutation_of_a_policy_gives_findings_never_a_crash(path: list[str | int], value: object) -> None:
    """Whatever the mutation, the lint raises nothing but CheckError, and it refuses at least
    everything the model refuses."""
    obj = yaml.safe_load(POLICY)
    _put(obj, path, value)
    try:
        Policy.from_object(obj, default_namespace="default")
        model_ok = True
    except PolicyError:
        model_ok = False
    try:
        check.split_manifests([obj])
        lint_ok = True
    except check.CheckError as err:
        lint_ok = False
        assert err.lines()
    assert model_ok or not lint_ok, obj


def test_a_mistyped_aidp_annotation_gets_a_hint(tmp_path: Path) -> None:
    workload = WORKLOAD.replace("aidp.io/retention-days:", "aidp.io/retention-day:")
    result = run_check(tmp_path, policy=POLICY, workload=workload)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == (
        f"  hint: {tmp_path / 'workload.yaml'}:13: aidp.io/retention-day is not an annotation aidp reads; "
        'did you mean "aidp.io/retention-days"?'
    )


GUARDRAIL = Path(__file__).resolve().parents[2] / "examples" / "guardrails" / "60-guardrail.yaml"


def test_cluster_aidatapolicies_are_linted_too(tmp_path: Path) -> None:
    text = GUARDRAIL.read_text()
    valid = run_check(tmp_path, guardrail=text)
    assert valid.exit_code == 0, valid.output
    assert valid.stdout == "VALID ClusterAIDataPolicy org-guardrails\n"
    broken = text.replace("  unapprovedAI: deny", "  unapprovedAi: deny").replace(
        "providers: [openai]", "providers: []"
    )
    lines = errors(run_check(tmp_path, guardrail=broken))
    where = tmp_path / "guardrail.yaml"
    assert lines == [
        f"{where}:17: ClusterAIDataPolicy org-guardrails: spec.providers: "
        "providers: list at least one provider, or leave the field out for any",
        f'{where}:28: ClusterAIDataPolicy org-guardrails: unknown field "spec.unapprovedAi"; '
        'did you mean "unapprovedAI"?',
    ]
