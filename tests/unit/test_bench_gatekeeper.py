"""The Gatekeeper port of aidp's admission rules (bench/gatekeeper/): the template embeds the Rego
file verbatim, the Rego is OPA v1 and strict, and — evaluated offline by the opa binary as
Gatekeeper would (input.review, input.parameters, data.inventory) — it gives aidp check's verdict
on every workload of the examples the bench's live agreement check uses."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench import gatekeeper

from aidp import paths

OPA = paths.testbin_dir() / "opa"
REGO = gatekeeper.HERE / "aidp-rules.rego"


def test_the_template_embeds_the_rego_file() -> None:
    template = yaml.safe_load((gatekeeper.HERE / "template.yaml").read_text())
    (code,) = template["spec"]["targets"][0]["code"]
    assert code["engine"] == "Rego" and code["source"]["version"] == "v1"
    assert code["source"]["rego"] == REGO.read_text()


def test_the_rego_is_strict_v1() -> None:
    subprocess.run([str(OPA), "check", "--strict", str(REGO)], check=True, capture_output=True)


def _violations(tmp: Path, inventory: dict[str, Any], obj: dict[str, Any], mode: str) -> list[Any]:
    (tmp / "data.json").write_text(json.dumps({"inventory": inventory}))
    review = gatekeeper.create_review(obj)
    (tmp / "input.json").write_text(json.dumps({"review": review, "parameters": {"enforcement": mode}}))
    files = ["-d", str(REGO), "-d", str(tmp / "data.json"), "-i", str(tmp / "input.json")]
    out = subprocess.run(
        [str(OPA), "eval", "-f", "json", *files, "data.aidpgatekeeper.violation"],
        check=True,
        capture_output=True,
        text=True,
    )
    result: list[Any] = json.loads(out.stdout)["result"][0]["expressions"][0]["value"]
    return result


def test_offline_the_port_gives_aidps_verdicts_on_the_examples(tmp_path: Path) -> None:
    expected = gatekeeper.expected_verdicts()
    assert False in expected.values() and True in expected.values()
    seen = {}
    for manifests in gatekeeper.example_sets():
        renamed = [gatekeeper.renamed(m) for m in manifests]
        inventory = gatekeeper.inventory(renamed)
        for obj in renamed:
            key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if key in expected:
                seen[key] = not _violations(tmp_path, inventory, obj, "deny")
    assert seen == expected


@pytest.mark.parametrize("mode", ["warn", "dryrun"])
def test_offline_each_constraint_reports_only_its_mode(tmp_path: Path, mode: str) -> None:
    (manifests,) = [s for s in gatekeeper.example_sets() if any(m["kind"] == "AIDataPolicy" for m in s)][:1]
    policy = next(m for m in manifests if m["kind"] == "AIDataPolicy")
    bad = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "support-bot-archiver"
    )
    for policy_mode in ("deny", "warn", "dryrun"):
        changed = {**policy, "spec": {**policy["spec"], "enforcement": policy_mode}}
        found = _violations(tmp_path, gatekeeper.inventory([changed]), bad, mode)
        assert bool(found) == (policy_mode == mode), (policy_mode, found)
        if found:
            assert "[retention-days]" in found[0]["msg"] and "aidp:" in found[0]["msg"]


def test_the_cel_template_is_aidps_deny_policy_reading_the_constraint() -> None:
    template = gatekeeper.cel_template()
    (code,) = template["spec"]["targets"][0]["code"]
    source = code["source"]
    assert code["engine"] == "K8sNativeValidation" and source["generateVAP"] is True
    expressions = [v["expression"] for v in source["variables"] + source["matchCondition"]]
    expressions += [v.get("messageExpression", "") for v in source["validations"]]
    text = " ".join(expressions)
    assert "variables.params.policy.spec.workloadSelector" in text
    # every read of the AIDataPolicy goes through the constraint's parameters (in the match
    # conditions, which have no variables, the constraint's own `params.spec.parameters`)
    assert all(
        text[i - len("variables.") : i] == "variables."
        or text[i - 1 : i] in ("_", ".")
        or text.startswith("params.spec.parameters.policy.", i)
        for i in (m.start() for m in re.finditer(r"params\.", text))
    )
    conditions = " ".join(m["expression"] for m in source["matchCondition"])
    assert "params.spec.parameters.policy.spec.workloadSelector" in conditions
    assert "variables." not in conditions


def test_a_cel_constraint_carries_one_policy_for_its_namespace() -> None:
    policy = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": "bots", "namespace": "team"},
        "spec": {"provider": "openai", "workloadSelector": {"matchLabels": {"app": "bot"}}},
    }
    constraint = gatekeeper.cel_constraint(policy)
    assert constraint["kind"] == gatekeeper.CEL_KIND
    assert constraint["spec"]["match"]["namespaces"] == ["team"]
    assert constraint["spec"]["parameters"]["policy"]["spec"] == policy["spec"]
    (scoped,) = constraint["spec"]["scopedEnforcementActions"]
    assert scoped == {"action": "deny", "enforcementPoints": [{"name": "vap.k8s.io"}]}
