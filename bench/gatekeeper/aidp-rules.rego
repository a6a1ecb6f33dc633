# aidp's admission rules (policies/aidp/admission.rego, contract section 3) as a Gatekeeper
# ConstraintTemplate's Rego (v1). bench/gatekeeper/template.yaml embeds this file verbatim
# (bench/gatekeeper.py renders it; a unit test checks they are the same).
#
# The AIDataPolicies come from Gatekeeper's replicated data (Config sync of aidp.io/v1alpha1
# AIDataPolicy): data.inventory.namespace[ns]["aidp.io/v1alpha1"].AIDataPolicy[name] is the object
# as stored (the CRD's defaults applied), where aidp's Rego reads the operator's rendered copy.
# input.parameters.enforcement picks the policies this constraint reports: one constraint per
# mode (deny -> enforcementAction deny, warn -> warn, dryrun -> dryrun), as aidp's modes are per
# policy and Gatekeeper's per constraint.
package aidpgatekeeper

# kind -> API group and the path of the pod template inside the object
checked_kinds := {
	"Pod": {"group": "", "template": []},
	"Deployment": {"group": "apps", "template": ["spec", "template"]},
	"ReplicaSet": {"group": "apps", "template": ["spec", "template"]},
	"StatefulSet": {"group": "apps", "template": ["spec", "template"]},
	"DaemonSet": {"group": "apps", "template": ["spec", "template"]},
	"Job": {"group": "batch", "template": ["spec", "template"]},
	"CronJob": {"group": "batch", "template": ["spec", "jobTemplate", "spec", "template"]},
}

rule_ids := [
	"review-expired",
	"service-account",
	"consent-basis",
	"retention-days",
	"zero-data-retention",
	"data-categories",
	"host-network",
]

review := input.review

kind := review.kind.kind

checked if {
	checked_kinds[kind].group == object.get(review.kind, "group", "")
	review.operation in {"CREATE", "UPDATE"}
}

namespace := review.namespace if {
	is_string(review.namespace)
	review.namespace != ""
} else := object.get(object.get(review.object, "metadata", {}), "namespace", "default")

name := review.name if {
	is_string(review.name)
	review.name != ""
} else := object.get(object.get(review.object, "metadata", {}), "name", "")

template := object.get(review.object, checked_kinds[kind].template, {})

labels := object_at(template, ["metadata", "labels"])

annotations := object_at(template, ["metadata", "annotations"])

spec := object_at(template, ["spec"])

object_at(obj, path) := value if {
	value := object.get(obj, path, {})
	is_object(value)
} else := {}

# An UPDATE that leaves what the verdict reads as it was (labels but the operator's, annotations,
# spec): admitted whatever the verdict.
operator_labels := ["aidp.io/approved", "aidp.io/egress-isolated"]

verdict_view(t) := {
	"labels": object.remove(object_at(t, ["metadata", "labels"]), operator_labels),
	"annotations": object_at(t, ["metadata", "annotations"]),
	"spec": object_at(t, ["spec"]),
}

template_unchanged if {
	review.operation == "UPDATE"
	is_object(review.oldObject)
	verdict_view(template) == verdict_view(object.get(review.oldObject, checked_kinds[kind].template, {}))
}

service_account := spec.serviceAccountName if {
	non_empty(spec.serviceAccountName)
} else := spec.serviceAccount if {
	non_empty(spec.serviceAccount)
} else := "default"

non_empty(v) if {
	is_string(v)
	v != ""
}

# --- the policies --------------------------------------------------------------------------------

policies := object.get(data.inventory.namespace, [namespace, "aidp.io/v1alpha1", "AIDataPolicy"], {})

mode(p) := object.get(p, ["spec", "enforcement"], "deny")

# deny, and any unknown mode (fail closed), blocks
reported(p) if {
	input.parameters.enforcement == "deny"
	not mode(p) in {"warn", "dryrun"}
}

reported(p) if {
	input.parameters.enforcement != "deny"
	mode(p) == input.parameters.enforcement
}

violation contains {"msg": msg, "details": {"policy": pname, "rules": rules}} if {
	checked
	not template_unchanged
	some pname, p in policies
	reported(p)
	selects(object.get(p, ["spec", "workloadSelector"], {}), labels)
	rules := [r | some r in rule_ids; problem(p.spec, r)]
	count(rules) > 0
	texts := [sprintf("[%s] %s", [r, problem(p.spec, r)]) | some r in rules]
	msg := sprintf("aidp: %s %s/%s denied by AIDataPolicy %s: %s", [kind, namespace, name, pname, concat("; ", texts)])
}

# --- label selectors (an empty selector selects nothing) -----------------------------------------

selects(sel, lbls) if {
	ml := object_or_empty(sel, "matchLabels")
	me := array_or_empty(sel, "matchExpressions")
	count(ml) + count(me) > 0
	every k, v in ml {
		lbls[k] == v
	}
	every req in me {
		requirement(req, lbls)
	}
}

object_or_empty(obj, key) := obj[key] if is_object(obj[key])

else := {}

array_or_empty(obj, key) := obj[key] if is_array(obj[key])

else := []

requirement(req, lbls) if {
	req.operator == "In"
	lbls[req.key] in array_or_empty(req, "values")
}

requirement(req, lbls) if {
	req.operator == "NotIn"
	not lbls[req.key] in array_or_empty(req, "values")
}

requirement(req, lbls) if {
	req.operator == "Exists"
	_ = lbls[req.key]
}

requirement(req, lbls) if {
	req.operator == "DoesNotExist"
	not has_key(lbls, req.key)
}

has_key(lbls, k) if _ = lbls[k]

# --- the rules -------------------------------------------------------------------------------------

today := sprintf("%04d-%02d-%02d", time.date(time.now_ns()))

problem(s, "review-expired") := sprintf("the policy review expired on %s (UTC)", [s.review.expires]) if {
	is_string(s.review.expires)
	s.review.expires < today
}

problem(s, "service-account") := sprintf("service account %q is not one of: %s", [service_account, concat(", ", sas)]) if {
	sas := object.get(s, "serviceAccountNames", [])
	count(sas) > 0
	not service_account in sas
}

problem(s, "consent-basis") := sprintf("annotation aidp.io/consent-basis is missing or not one of: %s", [concat(", ", bases)]) if {
	object.get(s, ["consent", "required"], true) == true
	bases := object.get(s, ["consent", "allowedBases"], [])
	not declared_in("aidp.io/consent-basis", bases)
}

problem(s, "retention-days") := sprintf("annotation aidp.io/retention-days is missing, not a non-negative integer, or more than %d", [s.retention.maxDays]) if {
	not retention_ok(s.retention.maxDays)
}

problem(s, "zero-data-retention") := "the policy requires provider-side zero data retention: annotation aidp.io/zero-data-retention must be \"true\"" if {
	object.get(s, ["retention", "requireZeroDataRetention"], false) == true
	not declared_in("aidp.io/zero-data-retention", ["true"])
}

problem(s, "data-categories") := "annotation aidp.io/data-categories is missing or empty, names a category outside the allowed list, or a forbidden one" if {
	not categories_ok(object.get(s, "dataCategories", {}))
}

problem(_, "host-network") := "the pod runs with hostNetwork: true, which escapes every egress rule" if {
	spec.hostNetwork == true
}

# the annotation (trimmed, lower-cased) is one of values; a helper, as `not f(x)` with an undefined
# x is undefined rather than true
declared_in(key, values) if lower(present(key)) in values

retention_ok(max_days) if {
	raw := readable("aidp.io/retention-days")
	regex.match(`^[0-9]+$`, raw)
	not more_than(decimal_digits(raw), max_days)
}

decimal_digits(raw) := digits if {
	digits := trim_left(raw, "0")
	digits != ""
} else := "0"

# beyond 15 digits to_number is inexact (and undefined past float64): longer is more than any maxDays
more_than(digits, _) if count(digits) > 15

more_than(digits, limit) if {
	count(digits) <= 15
	to_number(digits) > limit
}

categories_ok(c) if {
	count(declared_categories) > 0
	allowed := {x | some x in object.get(c, "allowed", [])}
	forbidden := {x | some x in object.get(c, "forbidden", [])}
	any_allowed(allowed)
	count(declared_categories & forbidden) == 0
}

any_allowed(allowed) if count(allowed) == 0

any_allowed(allowed) if {
	count(allowed) > 0
	count(declared_categories - allowed) == 0
}

declared_categories := {c |
	some item in split(readable("aidp.io/data-categories"), ",")
	c := lower(trim_space(item))
	c != ""
}

# --- annotations: trimmed; retention-days and data-categories longer than 1024 characters fail ----

present(key) := value if {
	raw := annotations[key]
	is_string(raw)
	value := trim_space(raw)
	value != ""
}

readable(key) := value if {
	value := present(key)
	count(value) <= 1024
}
