# Admission decision for one AdmissionReview (`input`), against the AIDataPolicies in `data.aidp`.
#
# data.aidp (rendered by aidp.render.render_data, pushed by the operator):
#   revision: content hash of the data; undefined means "policies not loaded" (fail closed)
#   config.excludedNamespaces: namespaces that are never checked
#   config.operatorUsers: the aidp operator's user names (the only ones that may set or remove the
#     approval label on pods and the governed label on namespaces)
# data.aidp_policies[namespace][name]: one rendered AIDataPolicy (kept apart from data.aidp, under
#   which aidp's packages live: OPA checks every write inside data.aidp against the rules by
#   reading it whole, so a policy change would cost O(all policies); aidp.render.opa_documents)
#
# decision := {"allowed", "message", "violations", "warnings"}; data.system.main wraps it into the
# AdmissionReview response the API server expects.
#
# Annotation normalisation (what a workload declares on its pod template):
#   - every value is trimmed of surrounding white space first;
#   - aidp.io/consent-basis and the items of aidp.io/data-categories are lower-cased;
#     data-categories is a comma-separated list whose empty items are ignored;
#   - aidp.io/retention-days must match ^[0-9]+$ after trimming (no sign, no decimals, leading
#     zeros are fine) and is read as a decimal integer;
#   - aidp.io/zero-data-retention counts as declared only when it equals "true" after
#     trimming and lower-casing.
package aidp.admission

import data.aidp.guardrails
import data.aidp.selector
import data.aidp.workload

consent_basis_annotation := "aidp.io/consent-basis"

retention_days_annotation := "aidp.io/retention-days"

zero_data_retention_annotation := "aidp.io/zero-data-retention"

data_categories_annotation := "aidp.io/data-categories"

# Rule ids, in the order violations are reported for one policy.
rule_ids := [
	"review-expired",
	"service-account",
	"consent-basis",
	"retention-days",
	"zero-data-retention",
	"data-categories",
	"host-network",
	"unapproved-ai",
]

rule_rank := {rule: rank | some rank, rule in rule_ids}

# Used only while data.aidp.config is missing (nothing pushed yet).
fallback_excluded_namespaces := ["kube-system", "kube-public", "kube-node-lease"]

not_loaded_message := "aidp: policies not loaded into OPA yet (fail closed)"

request := input.request

# --- when the policies apply -----------------------------------------------------------------

applies if {
	request.operation in {"CREATE", "UPDATE"}
	workload.checked
}

operator_users := {u | some u in data.aidp.config.operatorUsers; is_string(u)}

from_operator if workload.username in operator_users

# The approval label (contract section 4) written by anyone but the operator: on a Pod or on a
# workload's template, at CREATE or as a change.
approval_tampered if {
	count(workload.changed_operator_labels) > 0
	not from_operator
}

approval_tampered_message := sprintf(
	"aidp: %s denied: the label %s is set and removed by the aidp operator only, after it judged the running pod; remove it from the %s",
	[object_ref, concat(" and ", workload.changed_operator_labels), labels_place],
)

labels_place := "pod's labels" if workload.kind == "Pod"

else := "pod template's labels"

excluded_namespaces := data.aidp.config.excludedNamespaces if {
	is_array(data.aidp.config.excludedNamespaces)
} else := fallback_excluded_namespaces

excluded if workload.namespace in excluded_namespaces

loaded if data.aidp.revision

# --- the decision ------------------------------------------------------------------------------

# Order: what is never checked; then the approval label, whatever the verdict; then UPDATEs that
# change nothing the verdict reads (admitted even while the policies are not loaded, so a tightened
# or expired policy, or an OPA without data, never blocks the cluster's controllers); then the verdict.
decision := namespace_decision if {
	namespace_request
} else := denial(guardrails.bounds_message) if {
	guardrails.policy_request
	not excluded
} else := allow if {
	not applies
} else := allow if {
	excluded
} else := denial(approval_tampered_message) if {
	approval_tampered
} else := allow if {
	workload.template_unchanged
} else := denial(not_loaded_message) if {
	not loaded
} else := {
	"allowed": count(denying_policies) == 0,
	"message": message,
	"violations": violations,
	"warnings": warnings,
}

allow := {"allowed": true, "message": "", "violations": [], "warnings": []}

denial(message) := {"allowed": false, "message": message, "violations": [], "warnings": []}

# --- the governed label of namespaces ----------------------------------------------------------

# The webhook's scope is the label aidp.io/governed on namespaces. Only the operator may change it
# (as Gatekeeper protects its ignore label): a namespace admin who may patch their own namespace
# must not be able to take it out of admission.
governed_label := "aidp.io/governed"

namespace_request if {
	request.kind.kind == "Namespace"
	object.get(request.kind, "group", "") == ""
	request.operation in {"CREATE", "UPDATE"}
}

# aidp.io/guardrailed marks the namespaces a ClusterAIDataPolicy selects (the scope of the bounds)
guardrailed_label := "aidp.io/guardrailed"

namespace_decision := denial(sprintf(
	"aidp: Namespace %s denied: the label %s is managed by the aidp operator (it marks the namespaces aidp governs: those with an AIDataPolicy or selected by a ClusterAIDataPolicy)",
	[object.get(workload.object_metadata, "name", ""), concat(" and ", changed_labels)],
)) if {
	count(changed_labels) > 0
	not from_operator
} else := allow

changed_labels := [label |
	some label in [governed_label, guardrailed_label]
	namespace_label(request.object, label) != namespace_label(object.get(request, "oldObject", {}), label)
]

namespace_label(ns, label) := ns.metadata.labels[label] if {
	is_string(ns.metadata.labels[label])
} else := ""

# The object as named in messages: "Deployment support/bot".
object_ref := sprintf("%s %s/%s", [workload.kind, workload.namespace, workload.name])

message := sprintf("aidp: %s denied by %s", [object_ref, concat("; ", denials)]) if {
	count(denying_policies) > 0
} else := ""

denials := [sprintf("%s: %s", [display(name), concat("; ", rules_text(name))]) | some name in denying_policies]

# how a policy is named in messages: "AIDataPolicy bots", "ClusterAIDataPolicy/org-guardrails"
display(name) := name if {
	startswith(name, "ClusterAIDataPolicy/")
} else := sprintf("AIDataPolicy %s", [name])

rules_text(name) := [sprintf("[%s] %s", [v.rule, v.message]) |
	some v in violations
	v.policy == name
	blocking(v)
]

denying_policies contains v.policy if {
	some v in violations
	blocking(v)
}

# deny, and any unknown mode (fail closed), blocks the request.
blocking(violation) if not violation.enforcement in {"warn", "dryrun"}

warnings := [sprintf("aidp: %s: %s [%s] %s", [object_ref, display(v.policy), v.rule, v.message]) |
	some v in violations
	v.enforcement == "warn"
]

# --- evaluation ----------------------------------------------------------------------------------

selected[name] := policy if {
	some name, policy in data.aidp_policies[workload.namespace]
	selector.matches(policy.workloadSelector, workload.labels)
}

# All failures, sorted by policy name and rule order: the namespace policies', then the cluster
# guardrails' (a workload a namespace policy selects must pass every guardrail selecting its
# namespace; one that references AI but that no active policy selects fails `unapproved-ai`).
violations := [v | some entry in sort(ranked_failures); v := entry[2]]

active_selected contains name if {
	some name, policy in selected
	not problem(policy, "review-expired")
}

ranked_failures contains [v.policy, rule_rank[v.rule], v] if {
	some v in array.concat(
		guardrails.violations(count(selected) > 0),
		guardrails.unapproved(count(active_selected) == 0),
	)
}

ranked_failures contains [name, rule_rank[rule], violation] if {
	some name, policy in selected
	some rule in rule_ids
	explanation := problem(policy, rule)
	violation := {
		"policy": name,
		"namespace": workload.namespace,
		"rule": rule,
		"enforcement": object.get(policy, "enforcement", "deny"),
		"message": explanation,
	}
}

# problem(policy, rule) is the plain explanation of why the workload fails rule; undefined when
# it passes.

problem(policy, "review-expired") := sprintf(
	"the policy review expired on %s (UTC); renew spec.review.expires after a new review",
	[policy.review.expires],
) if {
	is_string(policy.review.expires)
	policy.review.expires < today
}

problem(policy, "service-account") := sprintf(
	"service account %q is not one of the allowed service accounts: %s",
	[workload.service_account, concat(", ", policy.serviceAccountNames)],
) if {
	count(policy.serviceAccountNames) > 0
	not workload.service_account in policy.serviceAccountNames
}

problem(policy, "consent-basis") := sprintf(
	"%s; allowed bases: %s",
	[consent_problem(policy.consent.allowedBases), list_text(policy.consent.allowedBases)],
) if {
	policy.consent.required == true
}

problem(policy, "retention-days") := retention_problem(policy.retention.maxDays)

problem(policy, "zero-data-retention") := sprintf(
	"the policy requires provider-side zero data retention, but %s",
	[zero_data_retention_problem],
) if {
	policy.retention.requireZeroDataRetention == true
}

problem(policy, "data-categories") := category_problem(policy.dataCategories)

problem(_, "host-network") := "the pod runs with hostNetwork: true, which escapes every egress rule; AI workloads must use the pod network" if {
	workload.host_network
}

# Today's date (UTC) as YYYY-MM-DD; review.expires is valid through its own day.
today := sprintf("%04d-%02d-%02d", time.date(time.now_ns()))

consent_problem(_) := absent(consent_basis_annotation)

consent_problem(allowed) := sprintf("annotation %s %q is not an allowed basis", [consent_basis_annotation, raw]) if {
	raw := present(consent_basis_annotation)
	not lower(raw) in allowed
}

retention_problem(max_days) := sprintf("%s; the policy allows at most %d days", [absent(retention_days_annotation), max_days])

retention_problem(_) := sprintf("annotation %s %q is not a non-negative integer", [retention_days_annotation, raw]) if {
	raw := readable(retention_days_annotation)
	not regex.match(`^[0-9]+$`, raw)
}

retention_problem(max_days) := sprintf(
	"annotation %s declares %s days, more than the %d days the policy allows",
	[retention_days_annotation, days, max_days],
) if {
	raw := readable(retention_days_annotation)
	regex.match(`^[0-9]+$`, raw)
	days := decimal_digits(raw)
	more_than(days, max_days)
}

retention_problem(_) := too_long_message(retention_days_annotation) if too_long(retention_days_annotation)

# decimal_digits(raw): the digits of raw without leading zeros ("0" for zero).
decimal_digits(raw) := digits if {
	digits := trim_left(raw, "0")
	digits != ""
} else := "0"

# more_than(digits, limit): the decimal number digits is greater than limit. to_number fails
# (undefined, which would let the request through) beyond float64's range (309 digits and more),
# and is exact only up to 15 digits, so longer numbers are compared by their length: any number of
# 16 digits or more is greater than any limit the policy can state (maxDays <= 3650).
more_than(digits, _) if count(digits) > 15

more_than(digits, limit) if {
	count(digits) <= 15
	to_number(digits) > limit
}

zero_data_retention_problem := absent(zero_data_retention_annotation)

zero_data_retention_problem := sprintf("annotation %s is %q, not \"true\"", [zero_data_retention_annotation, raw]) if {
	raw := present(zero_data_retention_annotation)
	lower(raw) != "true"
}

category_problem(_) := absent(data_categories_annotation)

category_problem(_) := sprintf("annotation %s names no category", [data_categories_annotation]) if {
	readable(data_categories_annotation)
	count(declared_categories) == 0
}

category_problem(_) := too_long_message(data_categories_annotation) if too_long(data_categories_annotation)

category_problem(categories) := concat("; ", reasons) if {
	count(declared_categories) > 0
	reasons := [reason |
		some reason in [outside_allowed_reason(categories), forbidden_reason(categories)]
		reason != ""
	]
	count(reasons) > 0
}

outside_allowed_reason(categories) := sprintf(
	"categories not in the allowed list: %s (allowed: %s)",
	[concat(", ", outside), concat(", ", categories.allowed)],
) if {
	count(categories.allowed) > 0
	outside := declared_categories - {c | some c in categories.allowed}
	count(outside) > 0
} else := ""

forbidden_reason(categories) := sprintf("forbidden categories declared: %s", [concat(", ", forbidden)]) if {
	forbidden := declared_categories & {c | some c in categories.forbidden}
	count(forbidden) > 0
} else := ""

declared_categories := {category |
	some item in split(readable(data_categories_annotation), ",")
	category := lower(trim_space(item))
	category != ""
}

# --- annotations -----------------------------------------------------------------------------

# present(key): the trimmed annotation value; undefined when missing, not a string, or blank.
present(key) := value if {
	raw := workload.annotations[key]
	is_string(raw)
	value := trim_space(raw)
	value != ""
}

# The longest retention-days and data-categories value (trimmed) aidp reads: a longer one fails its
# rule. Both engines share this edge: kube-apiserver's CEL takes time quadratic in a list's length
# (docs/admission-engines.md), and no honest declaration is that long.
max_value_length := 1024

# readable(key): the trimmed annotation value when it is at most max_value_length characters.
readable(key) := value if {
	value := present(key)
	count(value) <= max_value_length
}

too_long(key) if count(present(key)) > max_value_length

too_long_message(key) := sprintf("annotation %s is longer than %d characters", [key, max_value_length])

# absent(key): explanation for a missing or blank annotation; undefined when present.
absent(key) := sprintf("annotation %s is missing", [key]) if {
	not has_string(key)
} else := sprintf("annotation %s is empty", [key]) if {
	not present(key)
}

has_string(key) if is_string(workload.annotations[key])

list_text(items) := concat(", ", items) if {
	count(items) > 0
} else := "(none)"
