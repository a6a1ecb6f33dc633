"""Guardrails in the audit (ClusterAIDataPolicy, contract section 6).

The audit reads the ClusterAIDataPolicies (none when the CRD is not installed) and the labels of the
namespaces once, and works out which namespaces each one selects as the operator does
(`aidp.controller.governance.select`). From that:

- the data the audit evaluates with carries the guardrails (`render.render_data(guardrails=...,
  guardrails_of=...)`), so workloads get the guardrail rules and `unapproved-ai` exactly as at
  admission;
- the namespaces they select are governed (egress-bypass, egress-would-block only elsewhere);
- `out-of-bounds` findings: the Rego's bounds decision on a CREATE review of each AIDataPolicy in a
  selected namespace (`governance.policy_review` / `bounds_problem`), one finding per policy and
  guardrail, with the fields;
- the report's `guardrails` section (`GuardrailSummary`): name, the namespaces it governs, the
  policies in scope and those out of bounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lightkube import Client
from lightkube.resources.core_v1 import Namespace

from aidp import kube
from aidp.audit.report import Finding, GuardrailSummary, Skipped
from aidp.controller import governance
from aidp.guardrail import CLUSTER_KIND, ClusterPolicy
from aidp.model import DEFAULT_EXCLUDED_NAMESPACES

Guardrails = governance.Guardrails
T = TypeVar("T")
RETRY_SECONDS = 20.0
OUT_OF_BOUNDS_SEVERITY = "medium"


def guardrail_hosts(guardrails: Sequence[ClusterPolicy], names: Iterable[str]) -> tuple[str, ...]:
    """The provider hosts the baseline of a namespace selected by `names` cuts."""
    names = list(names)
    return governance.governed_hosts(guardrails, names) if names else ()


def read(
    client: Client,
    namespace: str | None,
    skipped: list[Skipped],
    excluded: Collection[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> Guardrails:
    """The ClusterAIDataPolicies and the namespaces (of the audit's scope) each one selects.

    A missing CRD (404) means no guardrails; a caller who may not list them or the namespaces (403)
    gets none either, and the report says that the guardrails were not analysed."""
    out = Guardrails()
    try:
        for item in _retried(lambda: list(client.list(governance.ClusterAIDataPolicy))):
            out.add(item)
    except kube.KUBE_ERRORS as err:
        code = kube.error_code(err)
        if code not in (403, 404):
            raise
        out.available = False
        if code == 403:
            skipped.append(Skipped("guardrails", f"not analysed: {kube.error_text(err)}"))
        return out
    if not out.valid:
        return out
    try:
        if namespace:
            ns = client.get(Namespace, namespace)
            labels = {namespace: dict((ns.metadata.labels if ns.metadata else None) or {})}
        else:
            labels = {
                n.metadata.name: dict(n.metadata.labels or {})
                for n in client.list(Namespace)
                if n.metadata and n.metadata.name
            }
    except kube.KUBE_ERRORS as err:
        if kube.error_code(err) not in (403, 404):
            raise
        skipped.append(
            Skipped("guardrails", f"which namespaces they govern not analysed: {kube.error_text(err)}")
        )
        return out
    out.of = governance.select(out.valid, labels, excluded)
    return out


def _retried(read: Callable[[], T], budget: float = RETRY_SECONDS) -> T:
    """`read()`, again while the API server answers 429 or 503 (as it does for a few seconds after a
    CRD is installed: "storage is (re)initializing"), waiting as its Retry-After says (1 s if not),
    for at most `budget` seconds."""
    deadline = time.monotonic() + budget
    while True:
        try:
            return read()
        except kube.KUBE_ERRORS as err:
            if kube.error_code(err) not in (429, 503) or time.monotonic() >= deadline:
                raise
            response = getattr(err, "response", None)
            after = response.headers.get("Retry-After", "") if response is not None else ""
            time.sleep(min(float(after) if after.isdigit() else 1.0, max(deadline - time.monotonic(), 0.0)))


def fields_of(message: str, name: str) -> list[str]:
    """The fields the bounds message (guardrails.rego `bounds_message`) gives for guardrail `name`:
    `... looser than ClusterAIDataPolicy/a (f1; f2); ClusterAIDataPolicy/b (f3)`; a field may hold
    parentheses of its own."""
    start = message.find(f"{CLUSTER_KIND}/{name} (")
    if start < 0:
        return []
    i = start + len(f"{CLUSTER_KIND}/{name} (")
    depth = 0
    fields: list[str] = []
    current: list[str] = []
    while i < len(message):
        ch = message[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        if depth == 0 and message.startswith("; ", i):
            fields.append("".join(current))
            current = []
            i += 2
            continue
        current.append(ch)
        i += 1
    fields.append("".join(current))
    return [f for f in fields if f]


@dataclass
class Bounds:
    """Which AIDataPolicies are out of bounds of which guardrail: (namespace, name) -> {guardrail: fields}."""

    out: dict[tuple[str, str], dict[str, list[str]]]

    def of(self, guardrail: str) -> list[str]:
        return sorted(f"{ns}/{n}" for (ns, n), by in self.out.items() if guardrail in by)


def bounds(
    guardrails: Guardrails,
    policy_objects: Sequence[Mapping[str, Any]],
    evaluate: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]],
) -> Bounds:
    """The Rego's bounds decision for creating each AIDataPolicy of a governed namespace now."""
    in_scope = [
        o for o in policy_objects if guardrails.of.get(str((o.get("metadata") or {}).get("namespace")))
    ]
    if not in_scope:
        return Bounds({})
    decisions = evaluate([governance.policy_review(o, i) for i, o in enumerate(in_scope)])
    out: dict[tuple[str, str], dict[str, list[str]]] = {}
    for obj, decision in zip(in_scope, decisions, strict=True):
        message = governance.bounds_problem(decision)
        if message is None:
            continue
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        for g in guardrails.of.get(ns, ()):
            fields = fields_of(message, g)
            if fields:
                out.setdefault((ns, name), {})[g] = fields
    return Bounds(out)


def findings(result: Bounds) -> list[Finding]:
    """One `out-of-bounds` finding per policy and guardrail."""
    out = []
    for (ns, name), by in sorted(result.out.items()):
        for g, fields in sorted(by.items()):
            out.append(
                Finding(
                    "out-of-bounds",
                    OUT_OF_BOUNDS_SEVERITY,
                    ns,
                    "AIDataPolicy",
                    name,
                    f"looser than {CLUSTER_KIND}/{g}: {'; '.join(fields)}. It stays enforced with both "
                    "rule sets (its own and the guardrail's); an update that keeps it this loose is "
                    "refused at admission",
                    name,
                    guardrail=g,
                    fields=tuple(fields),
                )
            )
    return out


def summaries(
    guardrails: Guardrails, policy_objects: Sequence[Mapping[str, Any]], result: Bounds
) -> list[GuardrailSummary]:
    """The report's guardrails section: every guardrail, valid or not, by name."""
    policies_of: dict[str, list[str]] = {}
    for o in policy_objects:
        meta = o.get("metadata") or {}
        policies_of.setdefault(str(meta.get("namespace")), []).append(
            f"{meta.get('namespace')}/{meta.get('name')}"
        )
    out = []
    for g in guardrails.valid:
        namespaces = sorted(ns for ns, names in guardrails.of.items() if g.name in names)
        out.append(
            GuardrailSummary(
                name=g.name,
                namespaces=namespaces,
                policies=sorted(p for ns in namespaces for p in policies_of.get(ns, ())),
                out_of_bounds=result.of(g.name),
                unapproved_ai=g.unapproved_ai,
                providers=list(g.providers),
            )
        )
    for name, problem in guardrails.invalid.items():
        out.append(GuardrailSummary(name=name, problem=problem))
    return sorted(out, key=lambda s: s.name)
