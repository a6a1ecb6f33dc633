"""examples/library: each example's policy, compliant and non-compliant workloads give the verdicts
its expected.txt states (in the manner of `kyverno test` / `gator verify`), checked with `aidp check`.

expected.txt: `# ...` comments, an `exit: N` line, then one line per workload as `aidp check` prints
its verdict, with the ids of the failed rules in brackets when there are any:
`DENIED Deployment ns/name (fails ns/policy) [consent-basis, retention-days]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aidp.cli import policy as policy_cli

LIBRARY = Path(__file__).resolve().parents[2] / "examples" / "library"
REQUIRED = {
    "warn",
    "dryrun",
    "match-expressions",
    "residency",
    "zero-data-retention",
    "azure-endpoint",
    "guardrail",
}
EXAMPLES = sorted(p.name for p in LIBRARY.iterdir() if p.is_dir())


def app() -> typer.Typer:
    application = typer.Typer()
    policy_cli.register(application)
    return application


def expected(example: Path) -> tuple[int, list[str]]:
    lines = [
        line.strip()
        for line in (example / "expected.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0].startswith("exit: "), f"{example}/expected.txt must start with `exit: N`"
    return int(lines[0].removeprefix("exit: ")), lines[1:]


def test_the_library_has_every_kind_of_example() -> None:
    assert set(EXAMPLES) >= REQUIRED
    for name in EXAMPLES:
        files = {p.name for p in (LIBRARY / name).iterdir()}
        assert files >= {"policy.yaml", "compliant.yaml", "noncompliant.yaml", "expected.txt"}, name


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_gives_its_expected_verdicts(name: str) -> None:
    example = LIBRARY / name
    exit_code, verdicts = expected(example)
    result = CliRunner().invoke(app(), ["check", "-f", str(example), "-o", "json"])
    assert result.exit_code == exit_code, result.output
    entries = json.loads(result.stdout)
    got = []
    for e in entries:
        verdict = "ALLOWED" if e["allowed"] else "DENIED"
        line = f"{verdict} {e['kind']} {e['namespace']}/{e['name']} ({e['reason']})"
        rules = list(dict.fromkeys(v["rule"] for v in e["violations"]))
        got.append(line + (f" [{', '.join(rules)}]" if rules else ""))
    assert got == verdicts
    # the compliant workloads comply with a policy; each non-compliant file shows a failure
    by_file: dict[str, list[dict[str, object]]] = {}
    for e in entries:
        by_file.setdefault(Path(str(e["source"]).rsplit(":", 1)[0]).name, []).append(e)
    assert all(str(e["reason"]).startswith("complies with") for e in by_file["compliant.yaml"])
    assert any(e["violations"] for e in by_file["noncompliant.yaml"])


def test_the_guardrail_example_names_the_guardrail_and_every_field() -> None:
    """The policy out of bounds is refused as admission refuses it: one message naming the
    ClusterAIDataPolicy and every field out of bounds; the text output prints a line per field."""
    example = LIBRARY / "guardrail"
    result = CliRunner().invoke(app(), ["check", "-f", str(example)])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert "VALID ClusterAIDataPolicy library-guardrail" in lines
    assert "VALID AIDataPolicy library-guardrail/assistant-eu" in lines
    assert not any("VALID AIDataPolicy library-guardrail/archiver" in line for line in lines)
    denied = lines.index(
        "DENIED AIDataPolicy library-guardrail/archiver (looser than ClusterAIDataPolicy/library-guardrail)"
    )
    fields = [line.split(") ", 1)[1].split(":")[0] for line in lines[denied + 1 : denied + 6]]
    assert fields == [
        "spec.dataResidency",
        "spec.consent.allowedBases",
        "spec.retention.maxDays",
        "spec.dataCategories.allowed",
        "spec.review.approvedBy",
    ]
    entries = json.loads(CliRunner().invoke(app(), ["check", "-f", str(example), "-o", "json"]).stdout)
    (policy,) = [e for e in entries if e["kind"] == "AIDataPolicy"]
    assert {v["policy"] for v in policy["violations"]} == {"ClusterAIDataPolicy/library-guardrail"}
