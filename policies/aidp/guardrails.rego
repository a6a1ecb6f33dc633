# Cluster guardrails (ClusterAIDataPolicy, contract section 6), against data.aidp:
#
#   cluster[name]: one rendered ClusterAIDataPolicy (aidp.guardrail.ClusterPolicy.to_document)
#   guardrailsOf[namespace]: the names of the ClusterAIDataPolicies that select the namespace
#     (the operator matches their namespaceSelectors against the namespaces' labels; excluded
#     namespaces never appear)
#   detector: {"env": [glob], "hosts": [glob]}: the catalog's signature of AI use (env names such as
#     OPENAI_*, provider hosts such as *.openai.azure.com), one detector for admission and the audit
#
# Three things come from here:
#   - bounds: an AIDataPolicy looser than a guardrail selecting its namespace is refused, with every
#     field out of bounds of every such guardrail (`bounds_message`);
#   - guardrail rules: a workload that a namespace policy selects must also pass every selecting
#     guardrail's rules (section 3 rule ids, policy "ClusterAIDataPolicy/<name>", always deny);
#   - unapproved AI: a workload that references AI credentials or endpoints but that no active
#     namespace policy selects fails rule `unapproved-ai` of a guardrail with unapprovedAI deny (or
#     gets a warning with warn).
package aidp.guardrails

import data.aidp.workload

# --- which guardrails -------------------------------------------------------------------------------

guardrails_of := data.aidp.guardrailsOf if {
	is_object(data.aidp.guardrailsOf)
} else := {}

detector := data.aidp.detector if {
	is_object(data.aidp.detector)
} else := {}

selecting[name] := guardrail if {
	some name in object.get(guardrails_of, workload.namespace, [])
	guardrail := data.aidp.cluster[name]
}

ref(name) := sprintf("ClusterAIDataPolicy/%s", [name])

# --- bounds of AIDataPolicy objects ---------------------------------------------------------------

policy_request if {
	workload.request.kind.group == "aidp.io"
	workload.request.kind.kind == "AIDataPolicy"
	workload.request.operation in {"CREATE", "UPDATE"}
}

spec := workload.request.object.spec if {
	is_object(workload.request.object.spec)
} else := {}

# today (UTC) as a date string and as nanoseconds at its midnight
today := sprintf("%04d-%02d-%02d", time.date(time.now_ns()))

out_of_bounds[name] := fields if {
	policy_request
	some name, guardrail in selecting
	fields := [f | some f in bound_problems(guardrail)]
	count(fields) > 0
}

bound_problems(g) := array.concat(
	array.concat(provider_bounds(g), residency_bounds(g)),
	array.concat(
		array.concat(consent_bounds(g), retention_bounds(g)),
		array.concat(category_bounds(g), review_bounds(g)),
	),
)

provider_bounds(g) := [sprintf("spec.provider: %q is not one of the providers it allows (%s)", [p, concat(", ", g.providers)])] if {
	count(g.providers) > 0
	p := object.get(spec, "provider", "")
	not p in g.providers
} else := []

residency_bounds(g) := [sprintf("spec.dataResidency: %q is not one of the residencies it allows (%s)", [r, concat(", ", g.dataResidency)])] if {
	count(g.dataResidency) > 0
	r := object.get(spec, "dataResidency", "")
	not r in g.dataResidency
} else := []

consent := object.get(spec, "consent", {})

consent_bounds(g) := array.concat(required, bases) if {
	ceiling := g.consent.allowedBases
	required := [f |
		object.get(consent, "required", true) == false
		f := "spec.consent.required: false, but its consent ceiling needs true"
	]
	outside := [b | some b in object.get(consent, "allowedBases", []); not b in ceiling]
	bases := [f |
		count(outside) > 0
		f := sprintf("spec.consent.allowedBases: %s outside its ceiling (%s)", [concat(", ", outside), concat(", ", ceiling)])
	]
} else := []

retention := object.get(spec, "retention", {})

retention_bounds(g) := array.concat(days, zdr) if {
	days := [f |
		max := g.retention.maxDays
		asked := object.get(retention, "maxDays", 0)
		asked > max
		f := sprintf("spec.retention.maxDays: %v, more than its ceiling of %d days", [asked, max])
	]
	zdr := [f |
		g.retention.requireZeroDataRetention == true
		object.get(retention, "requireZeroDataRetention", false) != true
		f := "spec.retention.requireZeroDataRetention: must be true (it requires zero data retention)"
	]
}

category_bounds(g) := [sprintf("spec.dataCategories.allowed: %s forbidden by it", [concat(", ", sort(both))])] if {
	allowed := {c | some c in object.get(object.get(spec, "dataCategories", {}), "allowed", [])}
	both := allowed & {c | some c in g.dataCategories.forbidden}
	count(both) > 0
} else := []

review := object.get(spec, "review", {})

review_bounds(g) := array.concat(missing, too_far) if {
	missing := [sprintf("spec.review.%s: required by it", [key]) |
		g.review.required == true
		some key in ["approvedBy", "expires"]
		not non_empty(object.get(review, key, ""))
	]
	too_far := [f |
		days := g.review.maxValidityDays
		expires := object.get(review, "expires", "")
		non_empty(expires)
		latest := date_after(today, days)
		expires > latest
		f := sprintf("spec.review.expires: %s, later than %d days from today (%s)", [expires, days, latest])
	]
}

non_empty(v) if {
	is_string(v)
	trim_space(v) != ""
}

# date_after(day, n): the date n days after day (YYYY-MM-DD)
date_after(day, n) := sprintf("%04d-%02d-%02d", time.date(time.add_date(time.parse_ns("2006-01-02", day), 0, 0, n)))

bounds_message := sprintf("aidp: AIDataPolicy %s/%s denied: looser than %s", [
	workload.namespace,
	workload.name,
	concat("; ", [sprintf("%s (%s)", [ref(name), concat("; ", fields)]) | some name, fields in out_of_bounds]),
]) if {
	count(out_of_bounds) > 0
}

# --- guardrail rules for workloads ------------------------------------------------------------------

# the guardrails' failures for a workload that a namespace policy selects (`selected_by_policy` is
# given by the admission module), as violations
violations(selected_by_policy) := [v |
	selected_by_policy
	some name, g in selecting
	some rule, message in guardrail_problems(g)
	v := {
		"policy": ref(name),
		"namespace": workload.namespace,
		"rule": rule,
		"enforcement": "deny",
		"message": message,
	}
]

guardrail_problems(g) := {rule: message |
	some rule in ["consent-basis", "retention-days", "zero-data-retention", "data-categories"]
	message := guardrail_problem(g, rule)
}

guardrail_problem(g, "consent-basis") := sprintf("annotation aidp.io/consent-basis %s; the cluster's ceiling: %s", [described(basis), concat(", ", g.consent.allowedBases)]) if {
	basis := lower(annotation("aidp.io/consent-basis"))
	not basis in g.consent.allowedBases
}

guardrail_problem(g, "retention-days") := sprintf("annotation aidp.io/retention-days %s; the cluster allows at most %d days", [described(raw), g.retention.maxDays]) if {
	max := g.retention.maxDays
	raw := annotation("aidp.io/retention-days")
	not within_days(raw, max)
}

guardrail_problem(g, "zero-data-retention") := "the cluster requires provider-side zero data retention: annotation aidp.io/zero-data-retention must be \"true\"" if {
	g.retention.requireZeroDataRetention == true
	lower(annotation("aidp.io/zero-data-retention")) != "true"
}

guardrail_problem(g, "data-categories") := sprintf("annotation aidp.io/data-categories is longer than %d characters", [admission_max]) if {
	count(g.dataCategories.forbidden) > 0
	count(annotation("aidp.io/data-categories")) > admission_max
}

guardrail_problem(g, "data-categories") := sprintf("categories forbidden in this cluster declared: %s", [concat(", ", sort(forbidden))]) if {
	count(annotation("aidp.io/data-categories")) <= admission_max
	declared := {c |
		some item in split(annotation("aidp.io/data-categories"), ",")
		c := lower(trim_space(item))
		c != ""
	}
	forbidden := declared & {c | some c in g.dataCategories.forbidden}
	count(forbidden) > 0
}

# the longest value aidp reads (data.aidp.admission.max_value_length; not imported: admission imports
# this package)
admission_max := 1024

# annotation(key): the trimmed annotation value, "" when missing or not a string
annotation(key) := trim_space(workload.annotations[key]) if {
	is_string(workload.annotations[key])
} else := ""

described("") := "is missing"

described(raw) := sprintf("is %q", [raw]) if raw != ""

# within_days(raw, max): raw is a decimal number of days (leading zeros are fine, as in the
# namespace policies' rule) of at most max; longer than the readable length, or past 15
# significant digits, it is not
within_days(raw, max) if {
	count(raw) <= admission_max
	regex.match(`^0*[0-9]{1,15}$`, raw)
	to_number(significant(raw)) <= max
}

significant(raw) := digits if {
	digits := trim_left(raw, "0")
	digits != ""
} else := "0"

# --- unapproved AI ----------------------------------------------------------------------------------

# the workload's references to AI credentials or endpoints (env names, env values, args, commands)
ai_references contains sprintf("env %s", [e.name]) if {
	some e in env_vars
	is_string(e.name)
	some pattern in object.get(detector, "env", [])
	glob.match(pattern, [], e.name)
}

ai_references contains sprintf("host %s", [host]) if {
	texts_length <= max_texts_length
	some text in texts
	some host in regex.find_n(`[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+`, lower(text), -1)
	some pattern in object.get(detector, "hosts", [])
	glob.match(pattern, ["."], host)
}

# Env values, args and commands longer than this in all are not searched for hosts: they count as
# a reference themselves (fail closed). The vap engine has the same bound: searching more would
# exceed kube-apiserver's CEL cost budget (docs/admission-engines.md).
max_texts_length := 16384

texts_length := sum([count(t) | some t in texts])

ai_references contains sprintf("env values, args and commands longer than %d characters (not read)", [max_texts_length]) if {
	texts_length > max_texts_length
}

containers := [c |
	some field in ["initContainers", "containers", "ephemeralContainers"]
	some c in object.get(workload.template_spec, field, [])
	is_object(c)
]

env_vars := [e | some c in containers; some e in object.get(c, "env", []); is_object(e)]

texts := array.concat(
	[e.value | some e in env_vars; is_string(e.value)],
	[t | some c in containers; some key in ["args", "command"]; some t in object.get(c, key, []); is_string(t)],
)

# violations for a workload no active namespace policy selects (`unselected` from the admission
# module): deny and warn guardrails only (audit leaves it to the audit's shadow-ai findings)
unapproved(unselected) := [v |
	unselected
	count(ai_references) > 0
	some name, g in selecting
	g.unapprovedAI in {"deny", "warn"}
	v := {
		"policy": ref(name),
		"namespace": workload.namespace,
		"rule": "unapproved-ai",
		"enforcement": g.unapprovedAI,
		"message": sprintf("the pod references an AI provider (%s) but no active AIDataPolicy selects it; write one (within the cluster's guardrails) or remove the reference", [concat(", ", sort(ai_references))]),
	}
]
