"""Offline admission (`aidp check`): workloads from files against the AIDataPolicies from files
(and, with a kubeconfig, those live in a cluster), after linting every object; with the
ClusterAIDataPolicies of the files, as admission would with them.

1. Lint (`aidp.lint`): every AIDataPolicy is validated as the API server would (the CRD's schema
   with strict field validation, then its CEL rules), every workload for what admission needs;
   all errors of all files are reported at once, each with `file:line`.
2. Evaluate: the workloads with the same Rego modules and the same data document that admission
   uses, in one `opa eval` run: one AdmissionReview (CREATE) per workload, every decision computed by
   `data.aidp.admission.decision` with that review as input, together with the policies that select
   the workload and whether its namespace is governed at all, so that each verdict says why.
   With ClusterAIDataPolicies in the files, the data document also holds them
   (`data.aidp.cluster`) and the namespaces each governs (`data.aidp.guardrailsOf`, computed from
   the labels of the Namespace objects in the files; a namespace without one has only the label
   `kubernetes.io/metadata.name`; excluded namespaces never). Every AIDataPolicy of the files is
   then first admitted as a CREATE of the policy object would be: one looser than a guardrail is
   refused (a DENIED result naming the guardrail and each field) and is left out of the workloads'
   evaluation, as it would never exist in the cluster. Workloads get the guardrails' rules and
   `unapproved-ai` as at admission.
3. Hints: what is most likely wrong when a workload fails for a reason the Rego cannot see
   (aidp.io/* annotations on a Deployment's own metadata, categories separated by `;`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aidp import lint, paths
from aidp.guardrail import CLUSTER_KIND, ClusterPolicy
from aidp.model import (
    ANNOTATION_DATA_CATEGORIES,
    CHECKED_KINDS,
    DEFAULT_EXCLUDED_NAMESPACES,
    KIND,
    WORKLOAD_ANNOTATIONS,
    CheckedKind,
    Policy,
    PolicyError,
    checked_kind,
)
from aidp.model import GROUP as AIDP_GROUP
from aidp.render import ADMISSION_QUERY, opa_documents, policy_modules, render_data

OPA_ENV: Final = "AIDP_OPA_BIN"
DEFAULT_NAMESPACE: Final = "default"
OPA_TIMEOUT_SECONDS: Final = 120
# Evaluates every review of input.reviews in one query.
BATCH_QUERY: Final = f"[d | some review in input.reviews; d := {ADMISSION_QUERY} with input as review]"
# The same, with why: the policies that select the workload, whether its namespace is excluded,
# the guardrails selecting its namespace and (for an AIDataPolicy object) the fields out of bounds
# of each.
EXPLAINED_QUERY: Final = (
    "[r | some review in input.reviews; "
    f"d := {ADMISSION_QUERY} with input as review; "
    "s := [n | data.aidp.admission.selected[n]] with input as review; "
    "e := [x | x := data.aidp.admission.excluded] with input as review; "
    "g := [n | data.aidp.guardrails.selecting[n]] with input as review; "
    "o := data.aidp.guardrails.out_of_bounds with input as review; "
    'r := {"decision": d, "selected": s, "excluded": count(e) > 0, "guardrails": g, "outOfBounds": o}]'
)
# The label the API server gives every namespace (its name); the only label of a namespace that
# has no Namespace object in the files.
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# The rule id of a policy refused for being looser than a guardrail (also the audit's finding type).
RULE_OUT_OF_BOUNDS: Final = "out-of-bounds"
# What separates categories by mistake in aidp.io/data-categories (the list is comma-separated).
_SEPARATOR_RE: Final = re.compile(r"[;|\s]")


class CheckError(Exception):
    """Bad input for a check: unreadable manifests, invalid objects, nothing to check. `findings`
    holds every problem found (each with file:line)."""

    def __init__(self, message: str, findings: Sequence[lint.Finding] = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)

    def lines(self) -> list[str]:
        """One line per problem."""
        return [str(f) for f in self.findings] or [str(self)]


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
    reason: str = ""
    hints: tuple[str, ...] = ()
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The `aidp check -o json` entry for this object."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "allowed": self.allowed,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": list(self.warnings),
            "reason": self.reason,
            "hints": list(self.hints),
            "source": self.source,
        }


@dataclass(frozen=True)
class CheckedPolicy:
    """An AIDataPolicy of the files that passed the lint; `obj` is the object as the API server
    would store it (the CRD's defaults applied), which admission sees."""

    policy: Policy
    source: str
    obj: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ref(self) -> str:
        return self.policy.ref


@dataclass(frozen=True)
class Report:
    """What `aidp check` found: the valid policies of the files (those admitted) and one result per
    policy refused at admission (out of bounds of a guardrail) and per workload."""

    policies: tuple[CheckedPolicy, ...]
    results: tuple[CheckResult, ...]
    cluster_policies: int = 0
    others: tuple[str, ...] = ()  # other valid custom resources of aidp's CRDs: "ClusterAIDataPolicy g"

    @property
    def allowed(self) -> bool:
        return all(r.allowed for r in self.results)


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


# --- lint ----------------------------------------------------------------------------------------


@dataclass
class _Linted:
    """What the lint keeps: the valid policies, workloads and other custom resources."""

    policies: list[CheckedPolicy] = field(default_factory=list)
    workloads: list[tuple[CheckedKind, lint.Manifest]] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    first_at: dict[str, str] = field(default_factory=dict)
    guardrails: list[ClusterPolicy] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # Namespace objects' labels


def _lint(manifests: Sequence[lint.Manifest]) -> _Linted:
    """The valid objects; raises CheckError with every finding."""
    findings: list[lint.Finding] = []
    linted = _Linted()
    for m in manifests:
        findings += sorted(lint.duplicate_keys(m) + _lint_object(m, linted), key=lambda f: f.line)
    if findings:
        count = f"{len(findings)} error{'s' if len(findings) != 1 else ''}"
        raise CheckError(f"{count}:\n" + "\n".join(map(str, findings)), findings)
    return linted


def _lint_object(m: lint.Manifest, linted: _Linted) -> list[lint.Finding]:
    """The findings of one object (a valid one is kept in linted)."""
    api_version, kind_name = m.obj.get("apiVersion"), m.obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind_name, str):
        return [lint.Finding(m.at(), m.subject, "apiVersion and kind are required")]
    crd = lint.crd_kind_of(m.obj)
    if crd is not None:
        found = lint.lint_custom_resource(m, crd)
        if found:
            return found
        if crd.kind == KIND:
            return _keep_policy(m, linted, crd)
        if crd.kind == CLUSTER_KIND:
            return _keep_guardrail(m, linted)
        linted.others.append(m.subject)
        return []
    if api_version == "v1" and kind_name == "Namespace":
        return _keep_namespace(m, linted)
    kind = checked_kind(api_version, kind_name)
    if kind is None:
        return []
    found = lint.lint_workload(m, kind.template_path)
    if not found:
        linted.workloads.append((kind, m))
    return found


def _keep_policy(m: lint.Manifest, linted: _Linted, crd: lint.CrdKind) -> list[lint.Finding]:
    try:
        policy = Policy.from_object(m.obj, default_namespace=DEFAULT_NAMESPACE)
    except PolicyError as err:
        return [lint.policy_error_finding(m, err)]
    found = _once(m, linted, policy.ref)
    if found:
        return found
    schema = crd.schemas[str(m.obj["apiVersion"]).rpartition("/")[2]]
    stored = lint.apply_defaults(m.obj, schema)
    linted.policies.append(CheckedPolicy(policy, m.at(), stored if isinstance(stored, dict) else m.obj))
    return []


def _once(m: lint.Manifest, linted: _Linted, ref: str) -> list[lint.Finding]:
    """A finding when an object of the same kind and name came before."""
    if ref in linted.first_at:
        return [lint.Finding(m.at(), m.subject, f"defined more than once (first at {linted.first_at[ref]})")]
    linted.first_at[ref] = m.at()
    return []


def _keep_guardrail(m: lint.Manifest, linted: _Linted) -> list[lint.Finding]:
    try:
        guardrail = ClusterPolicy.from_object(m.obj)
    except PolicyError as err:
        return [lint.policy_error_finding(m, err)]
    found = _once(m, linted, guardrail.ref)
    if not found:
        linted.guardrails.append(guardrail)
        linted.others.append(m.subject)
    return found


def _keep_namespace(m: lint.Manifest, linted: _Linted) -> list[lint.Finding]:
    """A Namespace: its labels decide which guardrails select it."""
    validator = lint.Validator(m)
    lint.check_metadata(validator, m.obj.get("metadata"), custom=False)
    meta = m.obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        validator.error(("metadata", "name"), "is required")
    found = validator.findings or _once(m, linted, f"Namespace/{name}")
    if not found and isinstance(meta, Mapping) and isinstance(name, str):
        linted.namespaces[name] = dict(meta.get("labels") or {})
    return found


def namespace_labels(namespace: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """A namespace's labels as the API server keeps them: its own, and its name under
    kubernetes.io/metadata.name (which the API server sets on every namespace)."""
    return {**(labels or {}), NAMESPACE_NAME_LABEL: namespace}


def guardrails_of(
    guardrails: Iterable[ClusterPolicy],
    namespaces: Iterable[str],
    labels: Mapping[str, Mapping[str, str]],
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> dict[str, list[str]]:
    """namespace -> the names of the guardrails governing it (data.aidp.guardrailsOf): a namespace's
    labels are those of its Namespace object in `labels` (only kubernetes.io/metadata.name without
    one); excluded namespaces are never governed; namespaces no guardrail governs are left out."""
    excluded = set(excluded_namespaces)
    rails = list(guardrails)
    out: dict[str, list[str]] = {}
    for namespace in sorted(set(namespaces) | set(labels)):
        of_ns = namespace_labels(namespace, labels.get(namespace))
        names = sorted(g.name for g in rails if g.governs(namespace, of_ns, excluded))
        if names:
            out[namespace] = names
    return out


def guardrail_data(
    policies: Iterable[Policy],
    guardrails: Sequence[ClusterPolicy],
    namespaces: Mapping[str, Mapping[str, str]],
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
    also: Iterable[str] = (),
) -> dict[str, Any]:
    """The data.aidp document for the policies and the guardrails (render_data's guardrails and
    guardrails_of), the guardrails' namespaces computed for every namespace of the policies, of
    `namespaces` (name -> labels of the Namespace objects) and of `also`."""
    policies = list(policies)
    excluded = list(excluded_namespaces)
    if not guardrails:
        return render_data(policies, excluded)
    names = {p.namespace for p in policies} | set(also)
    return render_data(
        policies,
        excluded,
        guardrails={g.name: g.to_document() for g in guardrails},
        guardrails_of=guardrails_of(guardrails, names, namespaces, excluded),
    )


def split_manifests(manifests: Sequence[Mapping[str, Any]]) -> list[tuple[CheckedKind, Mapping[str, Any]]]:
    """The checked workloads among the manifests, in order (AIDataPolicies and other kinds skipped);
    raises CheckError with every problem of every object."""
    return [(kind, m.obj) for kind, m in _lint(lint.from_objects(manifests)).workloads]


def admission_review(obj: Mapping[str, Any], kind: CheckedKind, uid: str) -> dict[str, Any]:
    """The AdmissionReview the API server would send for creating obj (namespace defaults to "default")."""
    version = obj["apiVersion"].rpartition("/")[2]
    return create_review(
        obj, {"group": kind.group, "version": version, "kind": kind.kind}, kind.resource, uid
    )


def policy_review(obj: Mapping[str, Any], uid: str) -> dict[str, Any]:
    """The AdmissionReview the API server would send for creating the AIDataPolicy obj (as stored:
    the CRD's defaults applied; namespace defaults to "default")."""
    version = str(obj.get("apiVersion", "")).rpartition("/")[2]
    return create_review(obj, {"group": AIDP_GROUP, "version": version, "kind": KIND}, "aidatapolicies", uid)


def create_review(obj: Mapping[str, Any], gvk: Mapping[str, str], resource: str, uid: str) -> dict[str, Any]:
    """The AdmissionReview of creating obj (its kind `gvk`, its resource `resource`); the
    namespace defaults to "default"."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    body = copy.deepcopy(dict(obj))
    body["metadata"] = {**meta, "namespace": namespace}
    gvr = {"group": gvk["group"], "version": gvk["version"], "resource": resource}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": dict(gvk),
            "resource": gvr,
            "requestKind": dict(gvk),
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
    query: str = BATCH_QUERY,
) -> list[dict[str, Any]]:
    """data.aidp.admission.decision for each review (or what `query` computes per review), in one
    `opa eval` process."""
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
        data_file.write_text(json.dumps(opa_documents(data)), encoding="utf-8")
        input_file = root / "input.json"
        input_file.write_text(json.dumps({"reviews": list(reviews)}), encoding="utf-8")
        cmd = [str(binary), "eval", "--format", "json", "--data", str(module_dir), "--data", str(data_file)]
        cmd += ["--input", str(input_file), query]
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


def _hints(
    kind: CheckedKind, m: lint.Manifest, namespace: str, policies: Sequence[Policy], selected: bool
) -> list[str]:
    """What is most likely wrong, for mistakes that the Rego cannot see."""
    hints: list[str] = []
    obj = m.obj
    meta = obj.get("metadata") or {}
    template: Any = obj
    for key in kind.template_path:
        template = template.get(key) or {}
    tmeta = template.get("metadata") or {}
    t_annotations = tmeta.get("annotations") or {}
    where_t = ".".join((*kind.template_path, "metadata"))
    if kind.template_path:
        misplaced = [
            k for k in meta.get("annotations") or {} if k.startswith("aidp.io/") and k not in t_annotations
        ]
        if misplaced:
            hints.append(
                f"{m.at(('metadata', 'annotations', misplaced[0]), key=True)}: {', '.join(misplaced)} "
                f"{'is' if len(misplaced) == 1 else 'are'} on the {kind.kind}'s own metadata.annotations, "
                f"which admission does not read: put {'it' if len(misplaced) == 1 else 'them'} "
                f"under {where_t}.annotations"
            )
        if not selected:
            own = meta.get("labels") or {}
            matching = [
                p.ref for p in policies if p.namespace == namespace and p.spec.workload_selector.matches(own)
            ]
            if matching:
                hints.append(
                    f"{m.at(('metadata', 'labels'), key=True)}: the {kind.kind}'s own metadata.labels match "
                    f"{', '.join(matching)}, but policies select pods by the pod template's labels: "
                    f"put the labels under {where_t}.labels"
                )
    annotations = t_annotations if kind.template_path else meta.get("annotations") or {}
    where_a = (*kind.template_path, "metadata", "annotations")
    for key in annotations:
        if isinstance(key, str) and key.startswith("aidp.io/") and key not in WORKLOAD_ANNOTATIONS:
            mean = lint.did_you_mean(key, WORKLOAD_ANNOTATIONS)
            hints.append(f"{m.at((*where_a, key), key=True)}: {key} is not an annotation aidp reads{mean}")
    categories = annotations.get(ANNOTATION_DATA_CATEGORIES)
    if isinstance(categories, str) and any(_SEPARATOR_RE.search(i.strip()) for i in categories.split(",")):
        fixed = ",".join(c for c in re.split(r"[,;|\s]+", categories) if c)
        path = (*kind.template_path, "metadata", "annotations", ANNOTATION_DATA_CATEGORIES)
        hints.append(
            f'{m.at(path)}: {ANNOTATION_DATA_CATEGORIES} "{categories}" is a comma-separated list: '
            f'write "{fixed}"'
        )
    return hints


def _display(namespace: str, policy: str) -> str:
    """How a verdict names a failing policy: `ns/name`, or `ClusterAIDataPolicy/name` as is."""
    return policy if policy.startswith(f"{CLUSTER_KIND}/") else f"{namespace}/{policy}"


def _reason(namespace: str, explained: Mapping[str, Any], violations: Sequence[Violation]) -> str:
    """Why the verdict: governed or not, selected or not, complies with or fails which policies (and
    which guardrails selecting the namespace, whose rules apply to the workloads a policy selects)."""
    if explained["excluded"]:
        return "namespace not governed"
    selected = sorted(explained["selected"])
    by_mode: dict[str, list[str]] = {}
    for v in violations:
        mode = v.enforcement if v.enforcement in ("warn", "dryrun") else "deny"
        refs = by_mode.setdefault(mode, [])
        if _display(namespace, v.policy) not in refs:
            refs.append(_display(namespace, v.policy))
    failing = {ref for refs in by_mode.values() for ref in refs}
    parts = []
    complying: list[str] = []
    if selected:
        rails = [f"{CLUSTER_KIND}/{name}" for name in sorted(explained.get("guardrails") or ())]
        complying = [ref for ref in [f"{namespace}/{n}" for n in selected] + rails if ref not in failing]
    else:
        parts.append("no policy selects it")
    if by_mode.get("deny"):
        parts.append(f"fails {', '.join(by_mode['deny'])}")
    if complying:
        parts.append(f"complies with {', '.join(complying)}")
    if by_mode.get("warn"):
        parts.append(f"warned by {', '.join(by_mode['warn'])}")
    if by_mode.get("dryrun"):
        parts.append(f"fails {', '.join(by_mode['dryrun'])} in dryrun mode")
    return "; ".join(parts)


def _bounds_result(
    checked: CheckedPolicy, review: Mapping[str, Any], explained: Mapping[str, Any]
) -> CheckResult:
    """The verdict on admitting an AIDataPolicy of the files: refused when out of bounds of a
    guardrail selecting its namespace, one violation per field out of bounds."""
    decision = explained["decision"]
    out = explained.get("outOfBounds") or {}
    violations = tuple(
        Violation(f"{CLUSTER_KIND}/{name}", RULE_OUT_OF_BOUNDS, problem, "deny")
        for name in sorted(out)
        for problem in out[name]
    )
    allowed = bool(decision["allowed"])
    refs = ", ".join(f"{CLUSTER_KIND}/{name}" for name in sorted(out))
    rails = ", ".join(f"{CLUSTER_KIND}/{n}" for n in sorted(explained.get("guardrails") or ()))
    if not allowed:
        reason = f"looser than {refs}" if refs else "refused"
    else:
        reason = f"within {rails}" if rails else ""
    return CheckResult(
        kind=KIND,
        namespace=review["request"]["namespace"],
        name=checked.policy.name,
        allowed=allowed,
        violations=violations,
        message=decision["message"],
        reason=reason,
        source=checked.source,
    )


def _result(
    review: Mapping[str, Any], explained: Mapping[str, Any], hints: Sequence[str], source: str
) -> CheckResult:
    request = review["request"]
    meta = request["object"]["metadata"]
    decision = explained["decision"]
    violations = tuple(
        Violation(v["policy"], v["rule"], v["message"], v["enforcement"]) for v in decision["violations"]
    )
    allowed = bool(decision["allowed"])
    reason = _reason(request["namespace"], explained, violations)
    if not allowed and not any(v.enforcement not in ("warn", "dryrun") for v in violations):
        # refused before any policy's rules (the approval label set by someone else, say): the why
        # is the message's
        reason = str(decision["message"]).partition(" denied: ")[2] or reason
    return CheckResult(
        kind=request["kind"]["kind"],
        namespace=request["namespace"],
        name=meta.get("name") or meta.get("generateName") or "",
        allowed=allowed,
        violations=violations,
        warnings=tuple(decision["warnings"]),
        message=decision["message"],
        reason=reason,
        hints=tuple(hints),
        source=source,
    )


def run_check(
    manifests: Sequence[Mapping[str, Any] | lint.Manifest],
    *,
    opa: Path | None = None,
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
    cluster_policies: Sequence[Policy] | None = None,
    cluster_guardrails: Sequence[ClusterPolicy] = (),
    cluster_namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> Report:
    """Lint the manifests, then evaluate their workloads against their AIDataPolicies (and, when
    given, the cluster's: a policy of the files replaces the cluster's policy of the same name).
    Likewise the cluster's ClusterAIDataPolicies (a guardrail of the files replaces the cluster's
    of the same name) and its namespaces' labels (a Namespace of the files replaces the cluster's).

    With ClusterAIDataPolicies in the files, their AIDataPolicies are first admitted as objects
    (bounds): a refused one is a DENIED result and takes no part in the workloads' evaluation."""
    excluded = list(excluded_namespaces)
    linted = _lint(lint.from_objects(manifests))
    checked, workloads = linted.policies, linted.workloads
    if not workloads and not checked and not linted.others:
        kinds = ", ".join(k.kind for k in CHECKED_KINDS)
        raise CheckError(f"nothing to check: the manifests contain no AIDataPolicy and no workload ({kinds})")
    reviews = [admission_review(m.obj, kind, f"aidp-check-{i}") for i, (kind, m) in enumerate(workloads)]
    workload_namespaces = [r["request"]["namespace"] for r in reviews]
    mine_rails = {g.name for g in linted.guardrails}
    rails = [g for g in cluster_guardrails if g.name not in mine_rails] + linted.guardrails
    labels = {**{ns: dict(v) for ns, v in (cluster_namespaces or {}).items()}, **linted.namespaces}

    def data(policies: Sequence[Policy]) -> dict[str, Any]:
        return guardrail_data(policies, rails, labels, excluded, also=workload_namespaces)

    bounds: list[CheckResult] = []
    refused: dict[str, CheckResult] = {}
    if rails and checked:
        policy_reviews = [policy_review(c.obj, f"aidp-check-policy-{i}") for i, c in enumerate(checked)]
        verdicts = evaluate(policy_reviews, data([c.policy for c in checked]), opa=opa, query=EXPLAINED_QUERY)
        for c, review, why in zip(checked, policy_reviews, verdicts, strict=True):
            result = _bounds_result(c, review, why)
            if not result.allowed:
                bounds.append(result)
                refused[c.ref] = result
    admitted = [c for c in checked if c.ref not in refused]
    mine = {c.ref for c in admitted}
    policies = [p for p in cluster_policies or () if p.ref not in mine] + [c.policy for c in admitted]
    explained = evaluate(reviews, data(policies), opa=opa, query=EXPLAINED_QUERY)
    results = []
    for (kind, m), review, why in zip(workloads, reviews, explained, strict=True):
        namespace = review["request"]["namespace"]
        hints = _hints(kind, m, namespace, policies, bool(why["selected"]))
        hints += _refused_hints(kind, m, namespace, [c.policy for c in checked if c.ref in refused], refused)
        results.append(_result(review, why, hints, m.at()))
    return Report(tuple(admitted), (*bounds, *results), len(cluster_policies or ()), tuple(linted.others))


def _refused_hints(
    kind: CheckedKind,
    m: lint.Manifest,
    namespace: str,
    refused: Sequence[Policy],
    why: Mapping[str, CheckResult],
) -> list[str]:
    """For a workload that a policy refused at admission would select: that it would not exist."""
    template: Any = m.obj
    for key in kind.template_path:
        template = template.get(key) or {}
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    return [
        f"{m.at()}: {KIND} {p.ref} selects it but is refused ({why[p.ref].reason}), so it does not "
        "take part: bring the policy within bounds"
        for p in refused
        if p.namespace == namespace and p.spec.workload_selector.matches(pod_labels)
    ]


def check_manifests(
    manifests: Sequence[Mapping[str, Any] | lint.Manifest],
    *,
    opa: Path | None = None,
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> list[CheckResult]:
    """Admission results for every checked workload in manifests, in order (see run_check)."""
    return list(run_check(manifests, opa=opa, excluded_namespaces=excluded_namespaces).results)


def cluster_policies(
    kubeconfig: Path | None, namespaces: Iterable[str] = ()
) -> tuple[list[Policy], list[str]]:
    """The AIDataPolicies live in the cluster (read-only: list), and a warning per policy that
    cannot be read. Without the right to list them cluster-wide, those of `namespaces`."""
    from lightkube.core.exceptions import ApiError
    from lightkube.generic_resource import create_namespaced_resource

    from aidp import kube
    from aidp.model import GROUP, PLURAL, VERSION

    resource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
    client = kube.client(kubeconfig)
    try:
        objects = [o.to_dict() for o in client.list(resource, namespace="*")]  # type: ignore[no-untyped-call]
    except ApiError as err:
        if err.status.code != 403:
            raise
        listed = (o for ns in sorted(set(namespaces)) for o in client.list(resource, namespace=ns))
        objects = [o.to_dict() for o in listed]  # type: ignore[no-untyped-call]
    policies: list[Policy] = []
    warnings: list[str] = []
    for obj in objects:
        try:
            policies.append(Policy.from_object(obj))
        except PolicyError as err:
            warnings.append(f"skipped: {err}")
    return policies, warnings


def cluster_guardrails(
    kubeconfig: Path | None, namespaces: Iterable[str]
) -> tuple[list[ClusterPolicy], dict[str, dict[str, str]], list[str]]:
    """The ClusterAIDataPolicies live in the cluster (list) and the labels of `namespaces` (get),
    read-only, with a warning for what cannot be read: no CRD means no guardrails; a namespace that
    does not exist has only its name label; without the right to read them, the files' alone."""
    from lightkube.resources.core_v1 import Namespace

    from aidp import kube
    from aidp.controller.governance import ClusterAIDataPolicy

    client = kube.client(kubeconfig)
    warnings: list[str] = []
    try:
        objects = [o.to_dict() for o in client.list(ClusterAIDataPolicy)]  # type: ignore[no-untyped-call]
    except kube.KUBE_ERRORS as err:
        if kube.error_code(err) == 404:
            return [], {}, []
        if kube.error_code(err) != 403:
            raise
        return (
            [],
            {},
            [f"cannot list the ClusterAIDataPolicies ({kube.error_text(err)}): only the files' apply"],
        )
    guardrails: list[ClusterPolicy] = []
    for obj in objects:
        try:
            guardrails.append(ClusterPolicy.from_object(obj))
        except PolicyError as err:
            warnings.append(f"skipped: {err}")
    labels: dict[str, dict[str, str]] = {}
    if not guardrails:
        return guardrails, labels, warnings
    for name in sorted(set(namespaces)):
        try:
            ns = client.get(Namespace, name)
        except kube.KUBE_ERRORS as err:
            if kube.error_code(err) == 404:
                continue
            if kube.error_code(err) != 403:
                raise
            warnings.append(
                f"cannot read Namespace {name} ({kube.error_text(err)}): judged by its name alone"
            )
            continue
        labels[name] = dict((ns.metadata.labels if ns.metadata else None) or {})
    return guardrails, labels, warnings


def cluster_excluded_namespaces(
    kubeconfig: Path | None, aidp_namespace: str, configmap: str = "aidp-opa-bundle"
) -> tuple[list[str] | None, str]:
    """The excluded namespaces the operator of the cluster enforces, read (get only) from its
    durable bundle ConfigMap; (None, why) when it cannot be read."""

    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import ConfigMap

    from aidp import kube
    from aidp.bundle import DurableUnreadable, decode_durable

    try:
        cm = kube.client(kubeconfig).get(ConfigMap, configmap, namespace=aidp_namespace)
        try:  # the head holds the config (the shards only the policies, not read here)
            bundle, _ = decode_durable(cm.binaryData or {}, lambda _name: None)
        except DurableUnreadable:
            return None, f"ConfigMap {aidp_namespace}/{configmap} holds no bundle"
        excluded = bundle.data.get("config", {}).get("excludedNamespaces")
    except ApiError as err:
        return None, f"cannot read ConfigMap {aidp_namespace}/{configmap}: {err.status.message}"
    except (ValueError, OSError) as err:
        return None, f"cannot read the bundle in ConfigMap {aidp_namespace}/{configmap}: {err}"
    if not isinstance(excluded, list) or not all(isinstance(n, str) for n in excluded):
        return None, f"the bundle in ConfigMap {aidp_namespace}/{configmap} has no excludedNamespaces"
    return excluded, ""


def _shown(policy: str) -> str:
    """How admission's messages name a policy: `AIDataPolicy name`, `ClusterAIDataPolicy/name`."""
    return policy if policy.startswith(f"{CLUSTER_KIND}/") else f"AIDataPolicy {policy}"


def _text_violations(result: CheckResult) -> list[str]:
    lines = [f"  - {v.policy} [{v.rule}] ({v.enforcement}) {v.message}" for v in result.violations]
    # warnings repeat the warn-mode violations: print only those that say something else
    said = [f"{_shown(v.policy)} [{v.rule}] {v.message}" for v in result.violations]
    lines += [f"  warning: {w}" for w in result.warnings if not any(w.endswith(s) for s in said)]
    return lines


def format_text(
    results: Iterable[CheckResult], policies: Iterable[CheckedPolicy] = (), others: Iterable[str] = ()
) -> str:
    """`aidp check -o text`: a line per valid policy (and other custom resource) of the files, then
    per workload its verdict and why, its violations (each once) and hints, indented."""
    lines = [f"VALID {other}" for other in others] + [f"VALID AIDataPolicy {p.ref}" for p in policies]
    for result in results:
        verdict = "ALLOWED" if result.allowed else "DENIED"
        why = f" ({result.reason})" if result.reason else ""
        lines.append(f"{verdict} {result.kind} {result.namespace}/{result.name}{why}")
        lines += _text_violations(result)
        lines += [f"  hint: {h}" for h in result.hints]
    return "\n".join(lines) + ("\n" if lines else "")


def format_json(results: Iterable[CheckResult]) -> str:
    """`aidp check -o json`: the list of per-object results."""
    return json.dumps([r.to_dict() for r in results], indent=2) + "\n"
