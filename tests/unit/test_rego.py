"""The Rego policies: `opa check --strict`, `opa test` and coverage of aidp's modules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aidp import check, paths

MIN_COVERAGE = 90.0
# aidp's admission modules (policies/system/authz.rego is tested the same way, but owned elsewhere).
MODULES = (
    "aidp/selector.rego",
    "aidp/workload.rego",
    "aidp/admission.rego",
    "aidp/guardrails.rego",
    "system/main.rego",
)


@pytest.fixture(scope="module")
def opa() -> Path:
    try:
        return check.find_opa()
    except check.OpaError as err:
        pytest.fail(f"{err} (run make testbin)")


def run(opa: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(opa), *args], capture_output=True, text=True, timeout=300, check=False)


def test_opa_check_strict(opa: Path) -> None:
    result = run(opa, "check", "--strict", str(paths.policies_dir()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_opa_fmt(opa: Path) -> None:
    result = run(opa, "fmt", "--list", *(str(paths.policies_dir() / m) for m in MODULES))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"not formatted with opa fmt: {result.stdout}"


def test_opa_test_passes_with_coverage(opa: Path) -> None:
    policies = str(paths.policies_dir())
    result = run(opa, "test", "--v0-compatible=false", "--format", "json", policies)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    outcomes = json.loads(result.stdout)
    failed = [o["name"] for o in outcomes if o.get("fail") or o.get("error")]
    assert failed == []
    ours = [o for o in outcomes if o["package"].startswith(("data.aidp.", "data.system_test"))]
    assert len(ours) >= 80

    coverage = run(opa, "test", "--coverage", "--format", "json", policies)
    assert coverage.returncode == 0, coverage.stderr
    files = json.loads(coverage.stdout)["files"]
    for module in MODULES:
        entry = next(v for k, v in files.items() if Path(k).as_posix().endswith(module))
        assert entry.get("coverage", 0) >= MIN_COVERAGE, f"{module}: {entry.get('coverage')}% covered"


def rego_value(opa: Path, query: str) -> object:
    result = run(opa, "eval", "--format", "json", "-d", str(paths.policies_dir()), query)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["result"][0]["expressions"][0]["value"]


def test_python_and_rego_share_the_contract_constants(opa: Path) -> None:
    """One source of semantics: the Rego's rule ids and label keys are the ones Python uses."""
    from aidp import config, model

    assert tuple(rego_value(opa, "data.aidp.admission.rule_ids")) == model.RULE_IDS  # type: ignore[arg-type]
    assert rego_value(opa, "data.aidp.admission.governed_label") == config.GOVERNED_LABEL
    assert rego_value(opa, "data.aidp.workload.approval_label") == config.APPROVAL_LABEL
    assert rego_value(opa, "data.aidp.admission.guardrailed_label") == config.GUARDRAILED_LABEL
    assert rego_value(opa, "data.aidp.workload.isolation_label") == config.ISOLATED_LABEL


def test_both_engines_and_the_audit_read_values_of_the_same_length(opa: Path) -> None:
    from aidp.audit import declared
    from aidp.vap import cel as vap

    bound = rego_value(opa, "data.aidp.admission.max_value_length")
    assert bound == declared.MAX_VALUE_LENGTH == vap.MAX_VALUE
    assert rego_value(opa, "data.aidp.guardrails.admission_max") == bound
