package aidp.guardrails_test

import data.aidp.admission

# "today" in these tests is 2027-06-30 (UTC).
now := time.parse_rfc3339_ns("2027-06-30T12:00:00Z")

org := {
	"name": "org",
	"uid": "g-1",
	"generation": 1,
	"namespaceSelector": {"matchLabels": {"aidp.io/guardrail": "org"}, "matchExpressions": []},
	"providers": ["openai"],
	"dataResidency": ["eu"],
	"consent": {"allowedBases": ["consent", "contract"]},
	"retention": {"maxDays": 20, "requireZeroDataRetention": false},
	"dataCategories": {"forbidden": ["health", "children"]},
	"review": {"required": true, "maxValidityDays": 365},
	"unapprovedAI": "deny",
}

loose := object.union(org, {"name": "loose", "providers": [], "dataResidency": [], "consent": {}, "retention": {"requireZeroDataRetention": true}, "dataCategories": {"forbidden": []}, "review": {"required": false}, "unapprovedAI": "warn"})

policy := {
	"name": "bots",
	"namespace": "shop",
	"provider": "openai",
	"dataResidency": "eu",
	"endpoints": [{"host": "eu.api.openai.com", "port": 443}],
	"workloadSelector": {"matchLabels": {"app": "bot"}, "matchExpressions": []},
	"serviceAccountNames": [],
	"purpose": "p",
	"consent": {"required": true, "allowedBases": ["consent"]},
	"retention": {"maxDays": 30, "requireZeroDataRetention": false},
	"dataCategories": {"allowed": [], "forbidden": []},
	"enforcement": "deny",
	"review": {"approvedBy": "dpo@example.com", "expires": "2027-12-31"},
}

decide(request, guardrails, policies) := d if {
	d := admission.decision with input as {"request": request}
		with data.aidp.revision as "r"
		with data.aidp.config as {"excludedNamespaces": ["kube-system"]}
		with data.aidp_policies as {"shop": {p.name: p | some p in policies}}
		with data.aidp.cluster as {g.name: g | some g in guardrails}
		with data.aidp.guardrailsOf as {"shop": [g.name | some g in guardrails]}
		with data.aidp.detector as {"env": ["OPENAI_*", "AZURE_OPENAI_*"], "hosts": ["api.openai.com", "*.api.openai.com", "*.openai.azure.com"]}
		with time.now_ns as now
}

policy_request(spec) := {
	"uid": "r",
	"kind": {"group": "aidp.io", "version": "v1alpha1", "kind": "AIDataPolicy"},
	"namespace": "shop",
	"name": "bots",
	"operation": "CREATE",
	"object": {"metadata": {"name": "bots", "namespace": "shop"}, "spec": spec},
}

within := {
	"provider": "openai",
	"dataResidency": "eu",
	"workloadSelector": {"matchLabels": {"app": "bot"}},
	"purpose": "p",
	"consent": {"required": true, "allowedBases": ["consent"]},
	"retention": {"maxDays": 20},
	"dataCategories": {"allowed": ["internal"]},
	"review": {"approvedBy": "dpo@example.com", "expires": "2028-01-31"},
}

# --- bounds -------------------------------------------------------------------------------------

test_a_policy_within_bounds_is_admitted if {
	decide(policy_request(within), [org], []).allowed
}

test_every_field_out_of_bounds_is_named if {
	looser := {
		"provider": "anthropic",
		"workloadSelector": {"matchLabels": {"app": "bot"}},
		"purpose": "p",
		"consent": {"required": false, "allowedBases": ["consent", "legitimate-interests"]},
		"retention": {"maxDays": 90},
		"dataCategories": {"allowed": ["internal", "health"]},
		"review": {"expires": "2029-01-01"},
	}
	d := decide(policy_request(looser), [org], [])
	not d.allowed
	startswith(d.message, "aidp: AIDataPolicy shop/bots denied: looser than ClusterAIDataPolicy/org (")
	every field in [
		"spec.provider: \"anthropic\" is not one of the providers it allows (openai)",
		"spec.dataResidency: \"\" is not one of the residencies it allows (eu)",
		"spec.consent.required: false",
		"spec.consent.allowedBases: legitimate-interests outside its ceiling (consent, contract)",
		"spec.retention.maxDays: 90, more than its ceiling of 20 days",
		"spec.dataCategories.allowed: health forbidden by it",
		"spec.review.approvedBy: required by it",
		"spec.review.expires: 2029-01-01, later than 365 days from today (2028-06-29)",
	] {
		contains(d.message, field)
	}
}

test_two_guardrails_both_apply if {
	zdr := object.union(within, {"retention": {"maxDays": 20, "requireZeroDataRetention": false}})
	d := decide(policy_request(zdr), [org, loose], [])
	not d.allowed
	contains(d.message, "ClusterAIDataPolicy/loose (spec.retention.requireZeroDataRetention: must be true")
	not contains(d.message, "ClusterAIDataPolicy/org")
}

test_updates_are_bounded_and_unselected_namespaces_free if {
	update := object.union(policy_request(object.union(within, {"retention": {"maxDays": 40}})), {"operation": "UPDATE"})
	not decide(update, [org], []).allowed
	decide(update, [], []).allowed
	delete := object.union(update, {"operation": "DELETE"})
	decide(delete, [org], []).allowed
}

# --- guardrail rules for workloads ------------------------------------------------------------

pod(labels, annotations, env) := {
	"uid": "p",
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"namespace": "shop",
	"name": "bot",
	"operation": "CREATE",
	"object": {
		"metadata": {"name": "bot", "namespace": "shop", "labels": labels, "annotations": annotations},
		"spec": {"containers": [{"name": "c", "image": "x", "env": env}]},
	},
}

declared(days) := {"aidp.io/consent-basis": "consent", "aidp.io/retention-days": days, "aidp.io/data-categories": "internal"}

test_a_workload_must_pass_the_guardrail_too if {
	# the namespace policy (30 days) admits 25 days; the guardrail (20) does not
	d := decide(pod({"app": "bot"}, declared("25"), []), [org], [policy])
	not d.allowed
	[v] := d.violations
	v.policy == "ClusterAIDataPolicy/org"
	v.rule == "retention-days"
	contains(d.message, "ClusterAIDataPolicy/org: [retention-days] annotation aidp.io/retention-days is \"25\"; the cluster allows at most 20 days")
	decide(pod({"app": "bot"}, declared("20"), []), [org], [policy]).allowed
}

test_guardrail_categories_and_consent if {
	ann := object.union(declared("10"), {"aidp.io/consent-basis": "contract", "aidp.io/data-categories": "internal, Children"})
	lax := object.union(policy, {"consent": {"required": true, "allowedBases": ["contract", "consent"]}})
	d := decide(pod({"app": "bot"}, ann, []), [org], [lax])
	[v] := d.violations
	v.rule == "data-categories"
	contains(v.message, "children")
	basis := object.union(declared("10"), {"aidp.io/consent-basis": "legitimate-interests"})
	legit := object.union(policy, {"consent": {"required": true, "allowedBases": ["legitimate-interests"]}})
	b := decide(pod({"app": "bot"}, basis, []), [org], [legit])
	[w] := b.violations
	w.rule == "consent-basis"
	w.policy == "ClusterAIDataPolicy/org"
}

test_zero_data_retention_guardrail if {
	d := decide(pod({"app": "bot"}, declared("10"), []), [loose], [policy])
	[v] := d.violations
	v.rule == "zero-data-retention"
	decide(pod({"app": "bot"}, object.union(declared("10"), {"aidp.io/zero-data-retention": "true"}), []), [loose], [policy]).allowed
}

# --- unapproved AI ------------------------------------------------------------------------------

test_unapproved_ai_deny_warn_audit if {
	request := pod({"app": "other"}, {}, [{"name": "OPENAI_API_KEY", "value": "x"}])
	d := decide(request, [org], [policy])
	not d.allowed
	[v] := d.violations
	v.rule == "unapproved-ai"
	contains(v.message, "env OPENAI_API_KEY")

	w := decide(request, [loose], [policy])
	w.allowed
	[warning] := w.warnings
	contains(warning, "ClusterAIDataPolicy/loose [unapproved-ai]")

	audit := object.union(org, {"unapprovedAI": "audit"})
	a := decide(request, [audit], [policy])
	a.allowed
	a.violations == []
}

test_the_detector_reads_values_args_and_whole_host_names if {
	base := pod({"app": "other"}, {}, [{"name": "URL", "value": "https://myres.openai.azure.com/v1"}])
	d := decide(base, [org], [])
	[v] := d.violations
	contains(v.message, "host myres.openai.azure.com")

	args := json.patch(pod({"app": "other"}, {}, []), [{"op": "add", "path": "/object/spec/containers/0/args", "value": ["--base", "https://EU.API.OPENAI.COM"]}])
	not decide(args, [org], []).allowed

	# a longer name that merely ends like a provider host is not one
	lookalike := pod({"app": "other"}, {}, [{"name": "URL", "value": "https://api.openai.com.example.org"}])
	decide(lookalike, [org], []).allowed
	plain := pod({"app": "other"}, {}, [{"name": "HOME", "value": "/root"}])
	decide(plain, [org], []).allowed
}

test_texts_longer_than_the_bound_count_as_a_reference if {
	long := concat("", ["x" | some _ in numbers.range(1, 16385)])
	d := decide(pod({"app": "other"}, {}, [{"name": "BLOB", "value": long}]), [org], [])
	[v] := d.violations
	contains(v.message, "longer than 16384 characters (not read)")
	at_bound := concat("", ["x" | some _ in numbers.range(1, 16384)])
	decide(pod({"app": "other"}, {}, [{"name": "BLOB", "value": at_bound}]), [org], []).allowed
}

test_a_selected_workload_is_not_unapproved if {
	request := pod({"app": "bot"}, declared("10"), [{"name": "OPENAI_API_KEY", "value": "x"}])
	decide(request, [org], [policy]).allowed
}

test_guardrail_retention_reads_leading_zeros_and_bounds_the_length if {
	decide(pod({"app": "bot"}, declared("0000000000000007"), []), [org], [policy]).allowed
	long := concat("", [concat("", ["0" | some _ in numbers.range(1, 1100)]), "7"])
	d := decide(pod({"app": "bot"}, declared(long), []), [org], [policy])
	not d.allowed
	some v in d.violations
	v.rule == "retention-days"
}

test_guardrail_categories_longer_than_the_bound_fail if {
	many := concat(",", ["internal" | some _ in numbers.range(1, 200)])
	d := decide(pod({"app": "bot"}, object.union(declared("10"), {"aidp.io/data-categories": many}), []), [org], [object.union(policy, {"dataCategories": {"allowed": [], "forbidden": []}})])
	rules := {[v.policy, v.rule] | some v in d.violations}
	rules == {["bots", "data-categories"], ["ClusterAIDataPolicy/org", "data-categories"]}
}
