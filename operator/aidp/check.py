"""Offline admission (`aidp check`): workloads from files against the AIDataPolicies from files.

The workloads are evaluated with the same Rego modules and the same data document that admission
uses, in one `opa eval` run: one AdmissionReview (CREATE) per workload, every decision computed by
`data.aidp.admission.decision` with that review as input.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aidp import paths
from aidp.model import CHECKED_KINDS, DEFAULT_EXCLUDED_NAMESPACES, CheckedKind, PolicyError, checked_kind
from aidp.render import ADMISSION_QUERY, policies_from_manifests, policy_modules, render_data

OPA_ENV: Final = "AIDP_OPA_BIN"
DEFAULT_NAMESPACE: Final = "default"
OPA_TIMEOUT_SECONDS: Final = 120
# Evaluates every review of input.reviews in one query.
BATCH_QUERY: Final = f"[d | some review in input.reviews; d := {ADMISSION_QUERY} with input as review]"


class CheckError(Exception):
    """Bad input for a check: unreadable manifests, an invalid AIDataPolicy, nothing to check."""


class OpaError(CheckError):
    """The opa binary is missing or failed."""


@dataclass(frozen=True)
class Violation:
    policy: str
    rule: str
    message: str
    enforcement: str

    def to_dict(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "rule": self.rule,
            "message": self.message,
            "enforcement": self.enforcement,
        }


@dataclass(frozen=True)
class CheckResult:
    kind: str
    namespace: str
    name: str
    allowed: bool
    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The `aidp check -o json` entry for this object."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "allowed": self.allowed,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": list(self.warnings),
        }


def find_opa() -> Path:
    """The opa binary: $AIDP_OPA_BIN, else the test binaries' opa, else opa on PATH."""
    env = os.environ.get(OPA_ENV)
    if env:
        if not os.access(env, os.X_OK) or not Path(env).is_file():
            raise OpaError(f"{OPA_ENV}={env} is not an executable file")
        return Path(env)
    candidate = paths.testbin_dir() / "opa"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("opa")
    if found:
        return Path(found)
    raise OpaError(f"opa binary not found: run `make testbin`, put opa on PATH or set {OPA_ENV}")


# --- workloads -----------------------------------------------------------------------------------


def _describe(index: int, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") or meta.get("generateName") if isinstance(meta, Mapping) else None
    return f"object #{index + 1} (kind {obj.get('kind', '?')}, name {name or '?'})"


def _string_map(value: object, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise CheckError(f"{where} must be a mapping of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise CheckError(f'{where}["{key}"] must be a string, got {item!r} (quote the value in YAML)')


def _validate_workload(index: int, obj: Mapping[str, Any], kind: CheckedKind) -> None:
    what = _describe(index, obj)
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not (meta.get("name") or meta.get("generateName")):
        raise CheckError(f"{what}: metadata.name or metadata.generateName is required")
    for key in ("name", "generateName", "namespace"):
        if meta.get(key) is not None and not isinstance(meta.get(key), str):
            raise CheckError(f"{what}: metadata.{key} must be a string")
    _string_map(meta.get("labels"), f"{what}: metadata.labels")
    _string_map(meta.get("annotations"), f"{what}: metadata.annotations")
    template: object = obj
    for step, key in enumerate(kind.template_path):
        template = template.get(key) if isinstance(template, Mapping) else None
        if not isinstance(template, Mapping):
            path = ".".join(kind.template_path[: step + 1])
            raise CheckError(f"{what}: {path} is required and must be a mapping")
    if kind.template_path and isinstance(template, Mapping):
        tmeta = template.get("metadata")
        where = f"{what}: {'.'.join(kind.template_path)}.metadata"
        if tmeta is not None and not isinstance(tmeta, Mapping):
            raise CheckError(f"{where} must be a mapping")
        if isinstance(tmeta, Mapping):
            _string_map(tmeta.get("labels"), f"{where}.labels")
            _string_map(tmeta.get("annotations"), f"{where}.annotations")


def split_manifests(manifests: Sequence[Mapping[str, Any]]) -> list[tuple[CheckedKind, Mapping[str, Any]]]:
    """The checked workloads among the manifests, in order (AIDataPolicies and other kinds skipped)."""
    workloads: list[tuple[CheckedKind, Mapping[str, Any]]] = []
    for index, obj in enumerate(manifests):
        if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
            raise CheckError(f"{_describe(index, obj)}: apiVersion and kind are required")
        kind = checked_kind(obj["apiVersion"], obj["kind"])
        if kind is None:
            continue
        _validate_workload(index, obj, kind)
        workloads.append((kind, obj))
    return workloads


def admission_review(obj: Mapping[str, Any], kind: CheckedKind, uid: str) -> dict[str, Any]:
    """The AdmissionReview the API server would send for creating obj (namespace defaults to "default")."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    body = copy.deepcopy(dict(obj))
    body["metadata"] = {**meta, "namespace": namespace}
    version = obj["apiVersion"].rpartition("/")[2]
    gvk = {"group": kind.group, "version": version, "kind": kind.kind}
    gvr = {"group": kind.group, "version": version, "resource": kind.resource}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": meta.get("name") or "",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "aidp-check"},
            "object": body,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(
    reviews: Sequence[Mapping[str, Any]],
    data: Mapping[str, Any],
    *,
    opa: Path | None = None,
    modules: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """data.aidp.admission.decision for each review, computed in one `opa eval` process."""
    if not reviews:
        return []
    binary = opa or find_opa()
    if modules is None:
        try:
            modules = policy_modules()
        except OSError as err:
            raise OpaError(f"cannot read aidp's Rego modules: {err}") from None
    with tempfile.TemporaryDirectory(prefix="aidp-check-") as tmp:
        root = Path(tmp)
        module_dir = root / "modules"
        for policy_id, source in modules.items():
            target = module_dir / policy_id
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source, encoding="utf-8")
        data_file = root / "data.json"
        data_file.write_text(json.dumps({"aidp": data}), encoding="utf-8")
        input_file = root / "input.json"
        input_file.write_text(json.dumps({"reviews": list(reviews)}), encoding="utf-8")
        cmd = [str(binary), "eval", "--format", "json", "--data", str(module_dir), "--data", str(data_file)]
        cmd += ["--input", str(input_file), BATCH_QUERY]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=OPA_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise OpaError(f"cannot run {binary}: {err}") from None
    if proc.returncode != 0:
        raise OpaError(f"opa eval failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    try:
        decisions = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise OpaError(f"opa eval returned no decisions: {proc.stdout.strip()[:500]}") from None
    if not isinstance(decisions, list) or len(decisions) != len(reviews):
        raise OpaError(f"opa eval returned {len(decisions)} decisions for {len(reviews)} objects")
    return decisions


def _result(review: Mapping[str, Any], decision: Mapping[str, Any]) -> CheckResult:
    request = review["request"]
    meta = request["object"]["metadata"]
    return CheckResult(
        kind=request["kind"]["kind"],
        namespace=request["namespace"],
        name=meta.get("name") or meta.get("generateName") or "",
        allowed=bool(decision["allowed"]),
        violations=tuple(
            Violation(v["policy"], v["rule"], v["message"], v["enforcement"]) for v in decision["violations"]
        ),
        warnings=tuple(decision["warnings"]),
        message=decision["message"],
    )


def check_manifests(
    manifests: Sequence[Mapping[str, Any]],
    *,
    opa: Path | None = None,
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> list[CheckResult]:
    """Admission results for every checked workload in manifests, in order."""
    try:
        policies = policies_from_manifests(manifests, default_namespace=DEFAULT_NAMESPACE)
    except PolicyError as err:
        raise CheckError(str(err)) from None
    workloads = split_manifests(manifests)
    if not workloads:
        kinds = ", ".join(k.kind for k in CHECKED_KINDS)
        raise CheckError(f"nothing to check: the manifests contain no workload ({kinds})")
    reviews = [admission_review(obj, kind, f"aidp-check-{i}") for i, (kind, obj) in enumerate(workloads)]
    decisions = evaluate(reviews, render_data(policies, excluded_namespaces), opa=opa)
    return [_result(review, decision) for review, decision in zip(reviews, decisions, strict=True)]


def format_text(results: Iterable[CheckResult]) -> str:
    """`aidp check -o text`: one line per object, then its violations and warnings, indented."""
    lines: list[str] = []
    for result in results:
        verdict = "ALLOWED" if result.allowed else "DENIED"
        lines.append(f"{verdict} {result.kind} {result.namespace}/{result.name}")
        lines += [f"  - {v.policy} [{v.rule}] ({v.enforcement}) {v.message}" for v in result.violations]
        lines += [f"  warning: {w}" for w in result.warnings]
    return "\n".join(lines) + ("\n" if lines else "")


def format_json(results: Iterable[CheckResult]) -> str:
    """`aidp check -o json`: the list of per-object results."""
    return json.dumps([r.to_dict() for r in results], indent=2) + "\n"
