"""ValidatingAdmissionPolicy objects of the `vap` engine (pure rendering, no cluster): `render`
puts together the policies of aidp.vap.labels, .workloads, .guardrails and .unapproved, each
with its binding; aidp.vap.cel holds what they share.

The Rego in policies/aidp/ is the reference; these CEL expressions give the same verdict, the same
failing policies and the same rule ids (tests/integration/test_vap_differential.py checks it
against kube-apiserver). docs/admission-engines.md explains the design; in short:

- the AIDataPolicy objects themselves are the params (`paramKind`), looked up by each binding in the
  request's namespace (`paramRef.selector: {}`), so the objects do not grow with the policies; a
  namespace without AIDataPolicies has no params and passes (`parameterNotFoundAction: Allow`);
- validationActions belong to a binding, so there is one policy and one binding per enforcement mode
  (`deny` -> Deny, `warn` -> Warn, `dryrun` -> Audit); each evaluates only the params of its mode
  (`spec.enforcement`, read from the param itself: no label to keep in step, nothing a policy
  author could set apart from the spec);
- one validation per policy for `deny` (one message naming every failing rule of the policy), one
  per rule for `warn` and `dryrun` (one warning, or one audit annotation, per failing rule);
- each policy's one match condition is its check itself (`workloads._applies_and_fails`): kube-apiserver
  evaluates it once per param, and the validations with their variables and messages only for a
  param that fails, so what a compliant request costs is one expression per (policy, param);
- CEL has no clock: today's date (UTC) is rendered into the expressions and the operator re-renders
  them right after midnight; a policy whose status says `Expired` for its current generation is
  expired too;
- `aidp-approval-labels` (only the operator may change aidp.io/approved and
  aidp.io/egress-isolated) and `aidp-governed-label` (only the operator may change the namespace
  labels that scope admission) need no params.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aidp.render import detector_document
from aidp.vap.cel import API_VERSION, object_meta
from aidp.vap.guardrails import bounds_policy, guardrail_policy
from aidp.vap.labels import APPROVAL_POLICY, NAMESPACE_POLICY, approval_policy, namespace_policy
from aidp.vap.unapproved import (
    PARAMS_NAME,
    UNAPPROVED_MODES,
    params_guard_policy,
    render_detector,
    unapproved_policy,
)
from aidp.vap.workloads import ACTIONS, MODES, WORKLOAD_POLICY, workload_policy

POLICY_NAMES: Final = (
    APPROVAL_POLICY,
    NAMESPACE_POLICY,
    *(WORKLOAD_POLICY.format(mode=m) for m in MODES),
    "aidp-namespace-admission",
    "aidp-guardrails",
    "aidp-bounds",
    "aidp-unapproved-ai-deny",
    "aidp-unapproved-ai-warn",
)


def binding(
    policy: dict[str, Any], action: str, *, params: bool, param_name: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"policyName": policy["metadata"]["name"], "validationActions": [action]}
    if param_name is not None:
        # the one object of that name in the request's namespace; none: nothing to check
        spec["paramRef"] = {"name": param_name, "parameterNotFoundAction": "Allow"}
    elif params:
        # every AIDataPolicy of the request's namespace; none: nothing to check
        spec["paramRef"] = {"selector": {}, "parameterNotFoundAction": "Allow"}
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": object_meta(policy["metadata"]["name"]),
        "spec": spec,
    }


def render(
    excluded_namespaces: Sequence[str],
    operator_users: Sequence[str],
    today: dt.date | None = None,
    guardrails: Mapping[str, Mapping[str, Any]] | None = None,
    detector: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Every object of the `vap` engine: each policy followed by its binding; `guardrails` (name ->
    `ClusterPolicy.to_document()`) add `aidp-guardrails`, `aidp-bounds` and `aidp-unapproved-ai-*`
    (`aidp-namespace-admission`, which guards their params, is always there); `detector`
    (default: the current catalog's, `aidp.render.detector_document`) is what `unapproved-ai`
    looks for."""
    if not operator_users:
        raise ValueError("the operator's user name is needed (only it may change its labels)")
    day = today or dt.datetime.now(dt.UTC).date()
    objects: list[dict[str, Any]] = []
    for pol in (
        approval_policy(excluded_namespaces, operator_users),
        namespace_policy(excluded_namespaces, operator_users),
    ):
        objects += [pol, binding(pol, "Deny", params=False)]
    for mode in MODES:
        pol = workload_policy(mode, excluded_namespaces, day)
        objects += [pol, binding(pol, ACTIONS[mode], params=True)]
    # always, not only while guardrails exist: in force before the first param is written, and
    # never deleted and re-created under a namespace admin who would write one meanwhile
    pol = params_guard_policy(operator_users)
    objects += [pol, binding(pol, "Deny", params=False)]
    if guardrails:
        pol = guardrail_policy(excluded_namespaces, guardrails)
        objects += [pol, binding(pol, "Deny", params=True)]
        pol = bounds_policy(excluded_namespaces, guardrails, day)
        objects += [pol, binding(pol, "Deny", params=False)]
        detector = render_detector(detector_document() if detector is None else detector)
        for mode in UNAPPROVED_MODES:
            pol = unapproved_policy(mode, excluded_namespaces, day, detector)
            objects += [pol, binding(pol, ACTIONS[mode], params=True, param_name=PARAMS_NAME)]
    return objects
