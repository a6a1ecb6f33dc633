"""Contract section 6's `unapproved-ai` in CEL, and the NamespaceAdmission params it reads."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aidp.config import MANAGED_BY
from aidp.vap.cel import (
    API_VERSION,
    ENGINE_LABEL,
    lit,
    lit_list,
    lower,
    not_operator,
    object_meta,
    selects,
    template_of,
    workload_conditions,
    workload_vap,
)
from aidp.vap.workloads import workload_variables

# --- unapproved AI (contract section 6; policies/aidp/guardrails.rego `unapproved`) ---------------
#
# "No active AIDataPolicy selects the pod" is an AND over the namespace's policies, which a policy
# whose params are the AIDataPolicies cannot compute (each param is evaluated alone, and with none
# the evaluation is skipped). So the operator writes one typed param per namespace, the
# NamespaceAdmission `aidp` (crds/aidp.io_namespaceadmissions.yaml): the namespace's parsed
# AIDataPolicies (name, review date, workload selector, as in data.aidp.policies) and the selecting
# guardrails whose unapprovedAI is deny or warn (data.aidp.guardrailsOf). Only the operator may
# write it: no aggregated role grants it, and `aidp-namespace-admission` refuses everyone else.

UNAPPROVED_MODES: Final = ("deny", "warn")
UNAPPROVED_POLICY: Final = "aidp-unapproved-ai-{mode}"
PARAMS_GUARD_POLICY: Final = "aidp-namespace-admission"
PARAMS_API_VERSION: Final = "aidp.io/v1alpha1"
PARAMS_KIND: Final = "NamespaceAdmission"
PARAMS_PLURAL: Final = "namespaceadmissions"
PARAMS_NAME: Final = "aidp"
NAMESPACE_CONTROLLERS: Final = (
    "system:serviceaccount:kube-system:namespace-controller",
    "system:kube-controller-manager",
)
# env values, args and commands longer than this in all are not searched for hosts and count as a
# reference (guardrails.rego max_texts_length): searching more exceeds kube-apiserver's per-call CEL
# cost limit (measured: 48,000 characters of dense host-like tokens within it, 64,000 over)
MAX_TEXTS: Final = 16384
# the Rego's host token (guardrails.rego ai_references), found in lower-cased texts
HOST_TOKEN: Final = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"  # noqa: S105


def glob_regex(pattern: str) -> str:
    """An RE2 expression equal to OPA's `glob.match(pattern, [], text)` for the catalog's globs
    (env names `[A-Za-z0-9_*]`, hosts `[a-z0-9.*-]`): OPA's default delimiter is `.`, so `*`
    matches any run of characters but `.`, and the whole text must match."""
    return "".join("[^.]*" if c == "*" else re.escape(c) for c in pattern)


def render_detector(detector: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The catalog's detector (`aidp.render.detector_document`, what the Rego reads as
    data.aidp.detector) as two anchored RE2 expressions: env names and hosts."""

    def one(globs: Sequence[str]) -> str:
        return "^(" + "|".join(glob_regex(g) for g in globs) + ")$" if globs else "^$.^"

    return {"env": one(list(detector.get("env") or [])), "hosts": one(list(detector.get("hosts") or []))}


def params_object(
    namespace: str,
    policies: Sequence[Mapping[str, Any]],
    unapproved: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The NamespaceAdmission `aidp` of one namespace: `policies` as rendered for the Rego
    (`aidp.render.policy_document`), `unapproved` the (guardrail name, unapprovedAI) selecting it."""
    return {
        "apiVersion": PARAMS_API_VERSION,
        "kind": PARAMS_KIND,
        "metadata": {
            "name": PARAMS_NAME,
            "namespace": namespace,
            "labels": {**MANAGED_BY, ENGINE_LABEL: "vap"},
        },
        "spec": {
            "unapprovedAI": [
                {"name": name, "mode": mode} for name, mode in sorted(unapproved) if mode in UNAPPROVED_MODES
            ],
            "policies": [
                {
                    "name": str(p["name"]),
                    "expires": str((p.get("review") or {}).get("expires") or ""),
                    "workloadSelector": p.get("workloadSelector") or {},
                }
                for p in sorted(policies, key=lambda p: str(p["name"]))
            ],
        },
    }


def params_namespaces(
    guardrails: Mapping[str, Mapping[str, Any]], guardrails_of: Mapping[str, Sequence[str]]
) -> set[str]:
    """The namespaces that a guardrail with unapprovedAI deny or warn selects."""
    return {
        ns
        for ns, names in guardrails_of.items()
        if any((guardrails.get(n) or {}).get("unapprovedAI") in UNAPPROVED_MODES for n in names)
    }


def params_objects(
    policies_by_namespace: Mapping[str, Sequence[Mapping[str, Any]]],
    guardrails: Mapping[str, Mapping[str, Any]],
    guardrails_of: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, Any]]:
    """namespace -> its NamespaceAdmission, for every namespace that a guardrail with
    unapprovedAI deny or warn selects (elsewhere `unapproved-ai` has nothing to do)."""
    out: dict[str, dict[str, Any]] = {}
    for ns, names in sorted(guardrails_of.items()):
        unapproved = [
            (n, str(guardrails[n].get("unapprovedAI")))
            for n in names
            if n in guardrails and guardrails[n].get("unapprovedAI") in UNAPPROVED_MODES
        ]
        if unapproved:
            out[ns] = params_object(ns, policies_by_namespace.get(ns, ()), unapproved)
    return out


def unapproved_policy(
    mode: str, excluded_namespaces: Sequence[str], today: dt.date, detector: Mapping[str, str]
) -> dict[str, Any]:
    """Rule `unapproved-ai` of the guardrails with unapprovedAI `mode` (the param's list): a pod
    template that references AI credentials or endpoints (the catalog's detector, `render_detector`)
    but that no active AIDataPolicy of the namespace selects (the param's policies; active: its
    review date is not before today, rendered as for the workload policies)."""
    containers = (
        "[variables.pod.?initContainers.orValue([]), variables.pod.?containers.orValue([]), "
        "variables.pod.?ephemeralContainers.orValue([])]"
    )
    env_refs = (
        f"{containers}.map(cs, cs.map(c, c.?env.orValue([])"
        f".filter(e, e.?name.orValue('').matches({lit(detector['env'])}))"
        ".map(e, 'env ' + e.name).join(', ')).filter(t, t != '').join(', ')).filter(t, t != '').join(', ')"
    )
    texts = "(c.?env.orValue([]).map(e, e.?value.orValue('')) + c.?args.orValue([]) + c.?command.orValue([]))"
    host_refs = (
        f"{containers}.map(cs, cs.map(c, {texts}.map(t, {lower('t')}.findAll({lit(HOST_TOKEN)})"
        f".filter(h, h.matches({lit(detector['hosts'])})).map(h, 'host ' + h).join(', '))"
        ".filter(t, t != '').join(', ')).filter(t, t != '').join(', ')).filter(t, t != '').join(', ')"
    )
    length = f"{containers}.map(cs, cs.map(c, {texts}.map(t, t.size()).sum()).sum()).sum()"
    too_long = f"'env values, args and commands longer than {MAX_TEXTS} characters (not read)'"
    approved = (
        "params.spec.?policies.orValue([]).exists(p, "
        f"!(p.?expires.orValue('') != '' && p.expires < {lit(today.isoformat())}) && "
        f"{selects('p.workloadSelector', 'variables.labels')})"
    )
    references = f"[{env_refs}, {length} > {MAX_TEXTS} ? {too_long} : {host_refs}].filter(t, t != '')"
    variables = [{"name": name, "expression": expr} for name, expr in workload_variables(today)[:5]]
    variables += [
        {
            "name": "rails",
            "expression": f"params.spec.?unapprovedAI.orValue([]).filter(g, g.mode == {lit(mode)})",
        },
        {"name": "approved", "expression": approved},
        {"name": "references", "expression": f"{references}.join(', ')"},
    ]
    # the check itself as a match condition (as workloads._applies_and_fails): a guardrail of this mode, the
    # template approved by no active policy, and a reference
    fails = workload_conditions(
        f"params.spec.?unapprovedAI.orValue([]).exists(g, g.mode == {lit(mode)})",
        "unapproved-reference",
        f"[{template_of('object')}].exists(tpl, [tpl.?metadata.?labels.orValue({{}})].exists(labels, "
        f"!({approved.replace('variables.labels', 'labels')}) && [tpl.?spec.orValue({{}})].exists(pod, "
        f"{references.replace('variables.pod', 'pod')}.size() > 0)))",
    )
    reason = (
        "' [unapproved-ai] the pod references an AI provider (' + variables.references + ') but no active "
        "AIDataPolicy selects it; write one (within the cluster\\'s guardrails) or remove the reference'"
    )
    if mode == "deny":
        message = (
            "'aidp: ' + variables.ref + ' denied by ' + variables.rails.map(g, 'ClusterAIDataPolicy/' + "
            f"g.name + ':' + {reason}).join('; ')"
        )
    else:
        message = (
            "'aidp: ' + variables.ref + ': ' + variables.rails.map(g, 'ClusterAIDataPolicy/' + g.name + "
            f"{reason}).join('; ')"
        )
    validation: dict[str, Any] = {
        "expression": "variables.rails.size() == 0 || variables.approved || variables.references == ''",
        "messageExpression": message,
        "message": f"aidp: [unapproved-ai] the pod references an AI provider but no active AIDataPolicy "
        f"selects it ({mode})",
    }
    if mode == "deny":
        validation["reason"] = "Forbidden"
    return workload_vap(
        UNAPPROVED_POLICY.format(mode=mode),
        {"apiVersion": PARAMS_API_VERSION, "kind": PARAMS_KIND},
        excluded_namespaces,
        variables,
        [validation],
        fails,
    )


def params_guard_policy(operator_users: Sequence[str]) -> dict[str, Any]:
    """Only the operator writes a NamespaceAdmission: an owner of a namespace who could write one
    would list a selector that approves their own pod, or drop the guardrails. A namespace being
    deleted takes its objects along (the namespace controller's deletes)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": object_meta(PARAMS_GUARD_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [
                    {
                        "apiGroups": ["aidp.io"],
                        "apiVersions": ["*"],
                        "resources": [PARAMS_PLURAL],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "scope": "Namespaced",
                    }
                ],
            },
            "matchConditions": [
                not_operator(operator_users),
                {
                    # the namespace controller's deletes (a DeleteCollection) of a namespace being
                    # deleted, whichever user kube-controller-manager runs it as
                    "name": "not-a-namespace-being-deleted",
                    "expression": "!(request.operation == 'DELETE' && "
                    f"(request.userInfo.username in {lit_list(NAMESPACE_CONTROLLERS)} || "
                    "(namespaceObject != null && "
                    "namespaceObject.?status.?phase.orValue('') == 'Terminating')))",
                },
            ],
            "validations": [
                {
                    "expression": "false",
                    "messageExpression": "'aidp: NamespaceAdmission ' + request.namespace + '/' + "
                    "request.name + "
                    "' denied: it is written by the aidp operator only (the vap engine reads it to decide "
                    "rule unapproved-ai)'",
                    "message": "aidp: NamespaceAdmission objects are written by the aidp operator only",
                    "reason": "Forbidden",
                }
            ],
        },
    }
