"""docs/app-teams.md stays true: its copy-paste Deployment passes its policy with `aidp check`, and
every denial and warning line it quotes is one that `aidp check` (the admission Rego, through the
real opa binary) prints for a variant of that Deployment, and the other way round."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aidp import check

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "app-teams.md"
GUARDRAIL = {
    "apiVersion": "aidp.io/v1alpha1",
    "kind": "ClusterAIDataPolicy",
    "metadata": {"name": "org-guardrails"},
    "spec": {"namespaceSelector": {}, "unapprovedAI": "deny"},
}


@pytest.fixture(scope="module", autouse=True)
def opa_binary() -> Path:
    try:
        return check.find_opa()
    except check.OpaError as err:
        pytest.fail(f"{err} (run make testbin)")


def doc_blocks(language: str) -> list[str]:
    """The doc's fenced blocks of that language ("" for the plain ones), in order."""
    blocks: list[str] = []
    fence: str | None = None
    lines: list[str] = []
    for line in DOC.read_text().splitlines():
        if fence is None and line.startswith("```"):
            fence, lines = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == language:
                blocks.append("\n".join(lines) + "\n")
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def example() -> tuple[dict[str, Any], dict[str, Any]]:
    """The doc's policy (its review renewed to a year from today, so the test does not age) and
    its Deployment."""
    policy, deployment = (yaml.safe_load(block) for block in doc_blocks("yaml")[:2])
    policy["spec"]["review"]["expires"] = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    return policy, deployment


def annotate(**values: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def mutate(policy: dict[str, Any], deployment: dict[str, Any]) -> None:
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        for key, value in values.items():
            name = f"aidp.io/{key.replace('_', '-')}"
            if value == "":
                annotations.pop(name)
            else:
                annotations[name] = value

    return mutate


def pod(**spec: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def mutate(policy: dict[str, Any], deployment: dict[str, Any]) -> None:
        deployment["spec"]["template"]["spec"].update(spec)

    return mutate


def policy_spec(path: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def mutate(policy: dict[str, Any], deployment: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = policy["spec"]
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def relabel(policy: dict[str, Any], deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["metadata"]["labels"] = {"app": "notebook"}


def approved(policy: dict[str, Any], deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["metadata"]["labels"]["aidp.io/approved"] = "true"


# each variant a team may write, with a guardrail in the files when True
VARIANTS: list[tuple[Callable[[dict[str, Any], dict[str, Any]], None], bool]] = [
    (annotate(consent_basis=""), False),
    (annotate(consent_basis="legitimate-interests"), False),
    (annotate(retention_days=""), False),
    (annotate(retention_days="90"), False),
    (annotate(retention_days="two weeks"), False),
    (annotate(data_categories=""), False),
    (annotate(data_categories="internal,health"), False),
    (annotate(data_categories="internal;health"), False),
    (pod(serviceAccountName="default"), False),
    (policy_spec("retention.requireZeroDataRetention", True), False),
    (policy_spec("review.expires", "2025-12-31"), False),
    (pod(hostNetwork=True), False),
    (relabel, True),
    (approved, False),
]


def outputs() -> tuple[set[str], list[check.CheckResult]]:
    """What `aidp check` prints for every variant: `[rule] message` lines, denial messages, and
    warn mode's warnings."""
    lines: set[str] = set()
    results = []
    for mutate, guardrail in VARIANTS:
        policy, deployment = example()
        mutate(policy, deployment)
        (result,) = check.check_manifests([policy, deployment, *([GUARDRAIL] if guardrail else [])])
        assert not result.allowed, mutate
        results.append(result)
        lines |= {f"[{v.rule}] {v.message}" for v in result.violations}
        if not result.violations:
            lines.add(result.message)
    policy, deployment = example()
    annotate(retention_days="90")(policy, deployment)
    policy["spec"]["enforcement"] = "warn"
    (warned,) = check.check_manifests([policy, deployment])
    lines |= {f"Warning: {w}" for w in warned.warnings}
    denied = results[3].message  # the retention-days denial, quoted whole in the doc
    lines.add(denied)
    return lines, results


def test_the_copy_paste_deployment_passes_its_policy() -> None:
    policy, deployment = example()
    (result,) = check.check_manifests([policy, deployment])
    assert result.allowed
    assert result.reason == "complies with support/support-summaries"
    assert f"`ALLOWED Deployment support/support-bot ({result.reason})`" in DOC.read_text()


def test_every_quoted_message_is_what_aidp_prints() -> None:
    printed, results = outputs()
    quoted = {
        line
        for block in doc_blocks("")
        for line in block.splitlines()
        if line.startswith(("[", "aidp: ", "Warning: aidp: "))
    }
    (kubectl,) = [
        line for block in doc_blocks("") for line in block.splitlines() if "Error from server" in line
    ]
    quoted.add(kubectl.split("denied the request: ", 1)[1])
    not_loaded = "aidp: policies not loaded into OPA yet (fail closed)"
    assert (
        f'not_loaded_message := "{not_loaded}"' in (ROOT / "policies" / "aidp" / "admission.rego").read_text()
    )
    assert quoted - {not_loaded} == printed, (
        f"quoted but not printed: {sorted(quoted - {not_loaded} - printed)}; "
        f"printed but not quoted: {sorted(printed - quoted)}"
    )
    # every rule id a team can meet has its section
    rules = {v.rule for r in results for v in r.violations}
    for rule in rules:
        assert f"### {rule}" in DOC.read_text(), rule
