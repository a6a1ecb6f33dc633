"""policies/system/authz.rego compares the management token in constant time.

OPA's `==` on strings stops at the first differing byte. The one constant-time comparison OPA has is
`crypto.hmac.equal` (Go's hmac.Equal), and only for inputs of equal length: so the presented token
may reach a comparison only through SHA-256, whose digests always have the same length. Checked on
the policy's syntax tree as the real `opa parse` gives it, and the builtin's behaviour with the real
`opa eval`.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from aidp import paths

AUTHZ = paths.policies_dir() / "system" / "authz.rego"
IDENTITY = [{"type": "var", "value": "input"}, {"type": "string", "value": "identity"}]


def opa(*args: str) -> str:
    binary = paths.testbin_dir() / "opa"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run `make testbin` first", pytrace=False)
    return subprocess.run([str(binary), *args], capture_output=True, text=True, check=True, timeout=60).stdout


def ref_name(term: dict[str, Any]) -> str:
    parts = term["value"]
    return ".".join([parts[0]["value"], *(p["value"] for p in parts[1:])])


def uses_identity(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("type") == "ref" and node.get("value", [])[:2] == IDENTITY:
            return True
        return any(uses_identity(v) for v in node.values())
    if isinstance(node, list):
        return any(uses_identity(v) for v in node)
    return False


def token_rules() -> list[dict[str, Any]]:
    tree = json.loads(opa("parse", "--format", "json", str(AUTHZ)))
    return [r for r in tree["rules"] if uses_identity(r["body"])]


def test_the_token_reaches_only_a_constant_time_comparison_of_digests() -> None:
    rules = token_rules()
    assert rules, "no rule reads input.identity"
    for rule in rules:
        for expr in rule["body"]:
            terms = expr["terms"]
            if not uses_identity(terms) or not isinstance(terms, list):
                continue
            op = ref_name(terms[0])
            if op == "is_string":
                continue
            assert op == "crypto.hmac.equal", f"input.identity compared with {op}"
            for arg in terms[1:]:
                # each side is crypto.sha256(<one term>): equal lengths, whatever was presented
                assert arg["type"] == "call", arg
                assert ref_name(arg["value"][0]) == "crypto.sha256", arg


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [("same-token", "same-token", True), ("same-token", "same-tokeX", False), ("short", "longer", False)],
)
def test_the_built_opa_has_crypto_hmac_equal(a: str, b: str, equal: bool) -> None:
    query = f"crypto.hmac.equal(crypto.sha256({json.dumps(a)}), crypto.sha256({json.dumps(b)}))"
    assert opa("eval", "--format", "raw", query).strip() == json.dumps(equal)
