package aidp.admission_test

import data.aidp.admission

# --- fixtures ------------------------------------------------------------------------------------

# "today" in these tests is 2027-06-30 (UTC).
now := time.parse_rfc3339_ns("2027-06-30T12:00:00Z")

policy := {
	"name": "support-summaries",
	"namespace": "support",
	"uid": "uid-1",
	"generation": 1,
	"provider": "openai",
	"dataResidency": "eu",
	"endpoints": [{"host": "eu.api.openai.com", "port": 443}],
	"workloadSelector": {"matchLabels": {"app": "bot"}, "matchExpressions": []},
	"serviceAccountNames": [],
	"purpose": "Summarise support tickets",
	"consent": {"required": true, "allowedBases": ["consent", "contract"]},
	"retention": {"maxDays": 30, "requireZeroDataRetention": false},
	"dataCategories": {"allowed": ["public", "internal"], "forbidden": ["health", "biometric"]},
	"enforcement": "deny",
	"review": {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": "2027-12-31"},
}

compliant := {
	"aidp.io/consent-basis": "consent",
	"aidp.io/retention-days": "30",
	"aidp.io/data-categories": "internal",
}

pod_with(annotations) := {
	"apiVersion": "v1",
	"kind": "Pod",
	"metadata": {"name": "bot", "namespace": "support", "labels": {"app": "bot"}, "annotations": annotations},
	"spec": {"containers": [{"name": "c", "image": "x"}]},
}

create(obj) := {
	"uid": "req-1",
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"resource": {"group": "", "version": "v1", "resource": "pods"},
	"namespace": "support",
	"name": "bot",
	"operation": "CREATE",
	"object": obj,
}

# policy with some top-level fields replaced (not merged).
patched(override) := object.union(object.remove(policy, object.keys(override)), override)

namespaced(policies) := {"support": {p.name: p | some p in policies}}

decide(request, policies) := decide_at(request, policies, now)

decide_at(request, policies, now_ns) := d if {
	d := admission.decision with input as {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
		with data.aidp.revision as "0123456789abcdef"
		with data.aidp.config as {"excludedNamespaces": ["kube-system", "aidp-system"]}
		with data.aidp_policies as namespaced(policies)
		with time.now_ns as now_ns
}

# Decision for a Pod with the given annotations under one policy.
pod_decision(annotations, p) := decide(create(pod_with(annotations)), [p])

# The (rule, message) pairs of a decision.
failures(d) := [[v.rule, v.message] | some v in d.violations]

one_failure(annotations, p) := f if {
	d := pod_decision(annotations, p)
	[f] := failures(d)
}

# --- compliant and unselected ------------------------------------------------------------------

test_compliant_pod_is_allowed if {
	d := pod_decision(compliant, policy)
	d == {"allowed": true, "message": "", "violations": [], "warnings": []}
}

test_unselected_workload_is_allowed if {
	d := pod_decision({}, patched({"workloadSelector": {"matchLabels": {"app": "other"}, "matchExpressions": []}}))
	d == {"allowed": true, "message": "", "violations": [], "warnings": []}
}

test_policies_of_other_namespaces_do_not_apply if {
	d := admission.decision with input as {"request": create(pod_with({}))}
		with data.aidp.revision as "r"
		with data.aidp.config as {"excludedNamespaces": []}
		with data.aidp_policies as {"elsewhere": {"p": policy}}
		with time.now_ns as now
	d.allowed
	d.violations == []
}

test_empty_selector_selects_nothing if {
	d := pod_decision({}, patched({"workloadSelector": {"matchLabels": {}, "matchExpressions": []}}))
	d.allowed
	d.violations == []
}

test_match_expressions_select if {
	p := patched({"workloadSelector": {"matchLabels": {}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["bot"]}]}})
	not pod_decision({}, p).allowed
	q := patched({"workloadSelector": {"matchLabels": {}, "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["bot"]}]}})
	pod_decision({}, q).allowed
}

# --- review-expired ----------------------------------------------------------------------------

test_review_expired_before_today if {
	f := one_failure(compliant, patched({"review": {"expires": "2027-06-29"}}))
	f == ["review-expired", "the policy review expired on 2027-06-29 (UTC); renew spec.review.expires after a new review"]
}

test_review_valid_on_its_expiry_day if {
	pod_decision(compliant, patched({"review": {"expires": "2027-06-30"}})).allowed
	last_ns := time.parse_rfc3339_ns("2027-06-30T23:59:59.999Z")
	d := decide_at(create(pod_with(compliant)), [patched({"review": {"expires": "2027-06-30"}})], last_ns)
	d.allowed
}

test_review_expires_at_midnight_utc if {
	midnight_ns := time.parse_rfc3339_ns("2027-07-01T00:00:00Z")
	d := decide_at(create(pod_with(compliant)), [patched({"review": {"expires": "2027-06-30"}})], midnight_ns)
	not d.allowed
	failures(d) == [["review-expired", "the policy review expired on 2027-06-30 (UTC); renew spec.review.expires after a new review"]]
}

test_review_without_expiry_never_expires if {
	pod_decision(compliant, patched({"review": {"approvedBy": null, "ticket": null, "expires": null}})).allowed
	pod_decision(compliant, patched({"review": {}})).allowed
}

# --- service-account -----------------------------------------------------------------------------

test_service_account_not_listed if {
	p := patched({"serviceAccountNames": ["support-bot", "batch"]})
	f := one_failure(compliant, p)
	f == ["service-account", "service account \"default\" is not one of the allowed service accounts: support-bot, batch"]
}

test_service_account_listed if {
	p := patched({"serviceAccountNames": ["support-bot"]})
	obj := json.patch(pod_with(compliant), [{"op": "add", "path": "/spec/serviceAccountName", "value": "support-bot"}])
	decide(create(obj), [p]).allowed
	old := json.patch(pod_with(compliant), [{"op": "add", "path": "/spec/serviceAccount", "value": "support-bot"}])
	decide(create(old), [p]).allowed
}

test_service_account_default_when_listed if {
	pod_decision(compliant, patched({"serviceAccountNames": ["default"]})).allowed
}

# --- consent-basis -------------------------------------------------------------------------------

test_consent_basis_missing if {
	f := one_failure(object.remove(compliant, ["aidp.io/consent-basis"]), policy)
	f == ["consent-basis", "annotation aidp.io/consent-basis is missing; allowed bases: consent, contract"]
}

test_consent_basis_blank if {
	f := one_failure(object.union(compliant, {"aidp.io/consent-basis": "  "}), policy)
	f == ["consent-basis", "annotation aidp.io/consent-basis is empty; allowed bases: consent, contract"]
}

test_consent_basis_not_allowed if {
	f := one_failure(object.union(compliant, {"aidp.io/consent-basis": "legitimate-interests"}), policy)
	f == ["consent-basis", "annotation aidp.io/consent-basis \"legitimate-interests\" is not an allowed basis; allowed bases: consent, contract"]
}

test_consent_basis_is_one_basis_not_a_list if {
	f := one_failure(object.union(compliant, {"aidp.io/consent-basis": "consent,contract"}), policy)
	f[0] == "consent-basis"
}

test_consent_basis_normalised if {
	pod_decision(object.union(compliant, {"aidp.io/consent-basis": " Contract\t"}), policy).allowed
	pod_decision(object.union(compliant, {"aidp.io/consent-basis": "CONSENT"}), policy).allowed
}

test_consent_basis_not_a_string_is_missing if {
	f := one_failure(object.union(compliant, {"aidp.io/consent-basis": 1}), policy)
	f == ["consent-basis", "annotation aidp.io/consent-basis is missing; allowed bases: consent, contract"]
}

test_consent_not_required if {
	p := patched({"consent": {"required": false, "allowedBases": []}})
	pod_decision(object.remove(compliant, ["aidp.io/consent-basis"]), p).allowed
	pod_decision(object.union(compliant, {"aidp.io/consent-basis": "whatever"}), p).allowed
}

test_consent_required_without_bases if {
	p := patched({"consent": {"required": true, "allowedBases": []}})
	f := one_failure(compliant, p)
	f == ["consent-basis", "annotation aidp.io/consent-basis \"consent\" is not an allowed basis; allowed bases: (none)"]
}

# --- retention-days ------------------------------------------------------------------------------

retention(value) := one_failure(object.union(compliant, {"aidp.io/retention-days": value}), policy)

test_retention_days_missing if {
	f := one_failure(object.remove(compliant, ["aidp.io/retention-days"]), policy)
	f == ["retention-days", "annotation aidp.io/retention-days is missing; the policy allows at most 30 days"]
}

test_retention_days_blank if {
	retention(" ") == ["retention-days", "annotation aidp.io/retention-days is empty; the policy allows at most 30 days"]
}

test_retention_days_not_a_non_negative_integer if {
	retention("-3") == ["retention-days", "annotation aidp.io/retention-days \"-3\" is not a non-negative integer"]
	retention("1.5") == ["retention-days", "annotation aidp.io/retention-days \"1.5\" is not a non-negative integer"]
	retention("ten") == ["retention-days", "annotation aidp.io/retention-days \"ten\" is not a non-negative integer"]
	retention("+3") == ["retention-days", "annotation aidp.io/retention-days \"+3\" is not a non-negative integer"]
	retention("1e2") == ["retention-days", "annotation aidp.io/retention-days \"1e2\" is not a non-negative integer"]
	retention("3 0") == ["retention-days", "annotation aidp.io/retention-days \"3 0\" is not a non-negative integer"]
}

test_retention_days_too_many if {
	retention("31") == ["retention-days", "annotation aidp.io/retention-days declares 31 days, more than the 30 days the policy allows"]
	retention("99999999999999999999") == ["retention-days", "annotation aidp.io/retention-days declares 99999999999999999999 days, more than the 30 days the policy allows"]
}

# beyond float64's range to_number is undefined: such a number must still fail, not pass
test_retention_days_beyond_float_range if {
	huge := sprintf("1%0400d", [0])
	count(huge) == 401
	retention(huge) == ["retention-days", sprintf("annotation aidp.io/retention-days declares %s days, more than the 30 days the policy allows", [huge])]
	retention(concat("", [sprintf("%0400d", [0]), "31"]))[1] == "annotation aidp.io/retention-days declares 31 days, more than the 30 days the policy allows"
	pod_decision(object.union(compliant, {"aidp.io/retention-days": concat("", [sprintf("%0400d", [0]), "30"])}), policy).allowed
}

test_retention_days_normalised if {
	pod_decision(object.union(compliant, {"aidp.io/retention-days": " 30 "}), policy).allowed
	pod_decision(object.union(compliant, {"aidp.io/retention-days": "007"}), policy).allowed
	pod_decision(object.union(compliant, {"aidp.io/retention-days": "0"}), policy).allowed
}

test_retention_zero_days_policy if {
	p := patched({"retention": {"maxDays": 0, "requireZeroDataRetention": false}})
	pod_decision(object.union(compliant, {"aidp.io/retention-days": "0"}), p).allowed
	f := one_failure(object.union(compliant, {"aidp.io/retention-days": "1"}), p)
	f == ["retention-days", "annotation aidp.io/retention-days declares 1 days, more than the 0 days the policy allows"]
}

# --- zero-data-retention -------------------------------------------------------------------------

zdr_policy := patched({"retention": {"maxDays": 30, "requireZeroDataRetention": true}})

test_zero_data_retention_missing if {
	f := one_failure(compliant, zdr_policy)
	f == ["zero-data-retention", "the policy requires provider-side zero data retention, but annotation aidp.io/zero-data-retention is missing"]
}

test_zero_data_retention_not_true if {
	f := one_failure(object.union(compliant, {"aidp.io/zero-data-retention": "yes"}), zdr_policy)
	f == ["zero-data-retention", "the policy requires provider-side zero data retention, but annotation aidp.io/zero-data-retention is \"yes\", not \"true\""]
	g := one_failure(object.union(compliant, {"aidp.io/zero-data-retention": ""}), zdr_policy)
	g == ["zero-data-retention", "the policy requires provider-side zero data retention, but annotation aidp.io/zero-data-retention is empty"]
}

test_zero_data_retention_normalised if {
	pod_decision(object.union(compliant, {"aidp.io/zero-data-retention": " TRUE "}), zdr_policy).allowed
	pod_decision(object.union(compliant, {"aidp.io/zero-data-retention": "true"}), zdr_policy).allowed
}

test_zero_data_retention_not_required if {
	pod_decision(object.union(compliant, {"aidp.io/zero-data-retention": "false"}), policy).allowed
}

# --- data-categories -----------------------------------------------------------------------------

categories(value) := one_failure(object.union(compliant, {"aidp.io/data-categories": value}), policy)

test_data_categories_missing if {
	f := one_failure(object.remove(compliant, ["aidp.io/data-categories"]), policy)
	f == ["data-categories", "annotation aidp.io/data-categories is missing"]
}

test_data_categories_empty if {
	categories("") == ["data-categories", "annotation aidp.io/data-categories is empty"]
	categories("   ") == ["data-categories", "annotation aidp.io/data-categories is empty"]
	categories(" , ,") == ["data-categories", "annotation aidp.io/data-categories names no category"]
}

test_data_categories_outside_allowed if {
	categories("internal,secret,Customer-Data") == ["data-categories", "categories not in the allowed list: customer-data, secret (allowed: public, internal)"]
}

test_data_categories_forbidden if {
	p := patched({"dataCategories": {"allowed": [], "forbidden": ["health"]}})
	f := one_failure(object.union(compliant, {"aidp.io/data-categories": "internal, Health"}), p)
	f == ["data-categories", "forbidden categories declared: health"]
}

test_data_categories_outside_allowed_and_forbidden if {
	categories("health,internal") == ["data-categories", "categories not in the allowed list: health (allowed: public, internal); forbidden categories declared: health"]
}

test_data_categories_normalised if {
	pod_decision(object.union(compliant, {"aidp.io/data-categories": " Internal , ,PUBLIC,"}), policy).allowed
}

test_data_categories_anything_when_allowed_empty if {
	p := patched({"dataCategories": {"allowed": [], "forbidden": []}})
	pod_decision(object.union(compliant, {"aidp.io/data-categories": "whatever,else"}), p).allowed
	f := one_failure(object.remove(compliant, ["aidp.io/data-categories"]), p)
	f[0] == "data-categories"
}

# --- deny message, ordering, modes ---------------------------------------------------------------

test_deny_message_names_object_policy_and_rules if {
	d := pod_decision({"aidp.io/retention-days": "-3"}, policy)
	not d.allowed
	d.message == concat("", [
		"aidp: Pod support/bot denied by AIDataPolicy support-summaries: ",
		"[consent-basis] annotation aidp.io/consent-basis is missing; allowed bases: consent, contract; ",
		"[retention-days] annotation aidp.io/retention-days \"-3\" is not a non-negative integer; ",
		"[data-categories] annotation aidp.io/data-categories is missing",
	])
	d.warnings == []
	d.violations == [
		{"policy": "support-summaries", "namespace": "support", "rule": "consent-basis", "enforcement": "deny", "message": "annotation aidp.io/consent-basis is missing; allowed bases: consent, contract"},
		{"policy": "support-summaries", "namespace": "support", "rule": "retention-days", "enforcement": "deny", "message": "annotation aidp.io/retention-days \"-3\" is not a non-negative integer"},
		{"policy": "support-summaries", "namespace": "support", "rule": "data-categories", "enforcement": "deny", "message": "annotation aidp.io/data-categories is missing"},
	]
}

test_all_rules_fail_in_contract_order if {
	p := patched({
		"serviceAccountNames": ["support-bot"],
		"retention": {"maxDays": 30, "requireZeroDataRetention": true},
		"review": {"expires": "2020-01-01"},
	})
	d := pod_decision({}, p)
	[rule | some v in d.violations; rule := v.rule] == [
		"review-expired",
		"service-account",
		"consent-basis",
		"retention-days",
		"zero-data-retention",
		"data-categories",
	]
}

test_warn_mode_admits_with_one_warning_per_rule if {
	d := pod_decision({"aidp.io/retention-days": "90"}, patched({"enforcement": "warn"}))
	d.allowed
	d.message == ""
	d.warnings == [
		"aidp: Pod support/bot: AIDataPolicy support-summaries [consent-basis] annotation aidp.io/consent-basis is missing; allowed bases: consent, contract",
		"aidp: Pod support/bot: AIDataPolicy support-summaries [retention-days] annotation aidp.io/retention-days declares 90 days, more than the 30 days the policy allows",
		"aidp: Pod support/bot: AIDataPolicy support-summaries [data-categories] annotation aidp.io/data-categories is missing",
	]
	count(d.violations) == 3
	every v in d.violations {
		v.enforcement == "warn"
	}
}

test_dryrun_mode_admits_silently if {
	d := pod_decision({}, patched({"enforcement": "dryrun"}))
	d.allowed
	d.message == ""
	d.warnings == []
	[v.rule | some v in d.violations] == ["consent-basis", "retention-days", "data-categories"]
	every v in d.violations {
		v.enforcement == "dryrun"
	}
}

test_unknown_enforcement_blocks if {
	d := pod_decision({}, patched({"enforcement": "audit"}))
	not d.allowed
	startswith(d.message, "aidp: Pod support/bot denied by AIDataPolicy support-summaries: ")
}

test_missing_enforcement_blocks if {
	d := pod_decision({}, object.remove(policy, ["enforcement"]))
	not d.allowed
	d.violations[0].enforcement == "deny"
}

test_two_policies_both_must_pass if {
	strict := patched({"name": "a-strict", "retention": {"maxDays": 7, "requireZeroDataRetention": false}})
	lenient := patched({"name": "b-lenient", "enforcement": "warn", "dataCategories": {"allowed": [], "forbidden": ["internal"]}})
	d := decide(create(pod_with(compliant)), [lenient, strict])
	not d.allowed
	d.message == concat("", [
		"aidp: Pod support/bot denied by AIDataPolicy a-strict: ",
		"[retention-days] annotation aidp.io/retention-days declares 30 days, more than the 7 days the policy allows",
	])
	d.warnings == ["aidp: Pod support/bot: AIDataPolicy b-lenient [data-categories] forbidden categories declared: internal"]
	[[v.policy, v.rule] | some v in d.violations] == [["a-strict", "retention-days"], ["b-lenient", "data-categories"]]
}

test_two_denying_policies_are_both_named if {
	a := patched({"name": "a"})
	b := patched({"name": "b", "consent": {"required": false, "allowedBases": []}})
	d := decide(create(pod_with({"aidp.io/consent-basis": "consent", "aidp.io/data-categories": "internal"})), [b, a])
	d.message == concat("", [
		"aidp: Pod support/bot denied by AIDataPolicy a: ",
		"[retention-days] annotation aidp.io/retention-days is missing; the policy allows at most 30 days; ",
		"AIDataPolicy b: [retention-days] annotation aidp.io/retention-days is missing; the policy allows at most 30 days",
	])
}

test_two_policies_one_passing if {
	a := patched({"name": "a"})
	b := patched({"name": "b", "workloadSelector": {"matchLabels": {"app": "bot"}, "matchExpressions": [{"key": "tier", "operator": "Exists", "values": []}]}})
	d := decide(create(pod_with(compliant)), [a, b])
	d.allowed
	d.violations == []
}

# --- which requests are checked ------------------------------------------------------------------

workload_kinds := {
	"Deployment": {"group": "apps", "template": {"spec": {"template": {"metadata": {"labels": {"app": "bot"}}}}}},
	"ReplicaSet": {"group": "apps", "template": {"spec": {"template": {"metadata": {"labels": {"app": "bot"}}}}}},
	"StatefulSet": {"group": "apps", "template": {"spec": {"template": {"metadata": {"labels": {"app": "bot"}}}}}},
	"DaemonSet": {"group": "apps", "template": {"spec": {"template": {"metadata": {"labels": {"app": "bot"}}}}}},
	"Job": {"group": "batch", "template": {"spec": {"template": {"metadata": {"labels": {"app": "bot"}}}}}},
	"CronJob": {"group": "batch", "template": {"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "bot"}}}}}}}},
}

test_every_checked_kind_is_denied if {
	every kind, info in workload_kinds {
		request := {
			"uid": "u",
			"kind": {"group": info.group, "version": "v1", "kind": kind},
			"namespace": "support",
			"name": "",
			"operation": "CREATE",
			"object": object.union({"metadata": {"generateName": "bot-", "namespace": "support"}}, info.template),
		}
		d := decide(request, [policy])
		not d.allowed
		startswith(d.message, sprintf("aidp: %s support/bot- denied by AIDataPolicy support-summaries: [consent-basis]", [kind]))
	}
}

test_every_checked_kind_compliant_is_allowed if {
	every kind, info in workload_kinds {
		template := json.patch(info.template, [{"op": "add", "path": concat("", [template_path(kind), "/metadata/annotations"]), "value": compliant}])
		request := {"kind": {"group": info.group, "version": "v1", "kind": kind}, "namespace": "support", "name": "x", "operation": "CREATE", "object": template}
		decide(request, [policy]).allowed
	}
}

template_path("CronJob") := "/spec/jobTemplate/spec/template"

template_path(kind) := "/spec/template" if kind != "CronJob"

test_update_is_checked if {
	request := object.union(create(pod_with({})), {"operation": "UPDATE", "oldObject": pod_with(compliant)})
	not decide(request, [policy]).allowed
}

test_update_of_object_being_deleted_is_allowed if {
	# a finalizer removal: labels and annotations unchanged
	obj := json.patch(pod_with({}), [{"op": "add", "path": "/metadata/deletionTimestamp", "value": "2027-06-30T00:00:00Z"}])
	old := json.patch(obj, [{"op": "add", "path": "/metadata/finalizers", "value": ["example.com/hold"]}])
	request := object.union(create(obj), {"operation": "UPDATE", "oldObject": old})
	decide(request, [policy]).allowed
}

test_relabelling_an_object_being_deleted_is_checked if {
	# a terminating pod (still running for its grace period) relabelled into a policy's selector
	obj := json.patch(pod_with({}), [{"op": "add", "path": "/metadata/deletionTimestamp", "value": "2027-06-30T00:00:00Z"}])
	old := json.patch(obj, [{"op": "replace", "path": "/metadata/labels", "value": {"app": "other"}}])
	request := object.union(create(obj), {"operation": "UPDATE", "oldObject": old})
	not decide(request, [policy]).allowed

	# its declarations changed while it is being deleted: checked too
	old_declared := json.patch(obj, [{"op": "replace", "path": "/metadata/annotations", "value": compliant}])
	not decide(object.union(create(obj), {"operation": "UPDATE", "oldObject": old_declared}), [policy]).allowed

	# no old object to compare with: checked (fail closed)
	not decide(object.union(create(obj), {"operation": "UPDATE"}), [policy]).allowed
}

test_dry_run_requests_are_checked if {
	not decide(object.union(create(pod_with({})), {"dryRun": true}), [policy]).allowed
}

test_delete_and_connect_pass_through if {
	d := decide(object.union(create(pod_with({})), {"operation": "DELETE", "object": null, "oldObject": pod_with({})}), [policy])
	d == {"allowed": true, "message": "", "violations": [], "warnings": []}
	decide(object.union(create(pod_with({})), {"operation": "CONNECT"}), [policy]).allowed
}

test_unchecked_kinds_pass_through if {
	cm := object.union(create(pod_with({})), {"kind": {"group": "", "version": "v1", "kind": "ConfigMap"}})
	decide(cm, [policy]).allowed
	scale := object.union(create(pod_with({})), {"kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "subResource": "scale"})
	decide(scale, [policy]).allowed
}

test_pod_subresources if {
	# a status write that changes nothing the verdict reads: admitted, whatever the verdict
	status := object.union(create(pod_with({})), {"operation": "UPDATE", "subResource": "status", "oldObject": pod_with({})})
	decide(status, [policy]).allowed

	# pods/status carrying new labels (the API server keeps them): judged like the Pod
	unselected := json.patch(pod_with({}), [{"op": "replace", "path": "/metadata/labels", "value": {"app": "other"}}])
	relabel := object.union(create(pod_with({})), {"operation": "UPDATE", "subResource": "status", "oldObject": unselected})
	d := decide(relabel, [policy])
	not d.allowed
	contains(d.message, "[consent-basis]")

	# ephemeral containers change the spec: judged
	debug := json.patch(pod_with({}), [{"op": "add", "path": "/spec/ephemeralContainers", "value": [{"name": "dbg", "image": "x"}]}])
	ephemeral := object.union(create(debug), {"operation": "UPDATE", "subResource": "ephemeralcontainers", "oldObject": pod_with({})})
	not decide(ephemeral, [policy]).allowed
	resize := object.union(create(pod_with({})), {"operation": "UPDATE", "subResource": "resize"})
	not decide(resize, [policy]).allowed
}

# --- UPDATEs that change nothing the verdict reads ------------------------------------------------

replicaset(annotations, replicas) := {
	"apiVersion": "apps/v1",
	"kind": "ReplicaSet",
	"metadata": {"name": "bot-1", "namespace": "support", "annotations": {"deployment.kubernetes.io/revision": "1"}},
	"spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "bot"}, "annotations": annotations}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
}

rs_update(new, old) := {
	"uid": "req-2",
	"kind": {"group": "apps", "version": "v1", "kind": "ReplicaSet"},
	"namespace": "support",
	"name": "bot-1",
	"operation": "UPDATE",
	"userInfo": {"username": "system:serviceaccount:kube-system:deployment-controller"},
	"object": new,
	"oldObject": old,
}

tightened := patched({"retention": {"maxDays": 10, "requireZeroDataRetention": false}})

test_scale_down_under_a_tightened_policy_is_admitted if {
	declared := object.union(compliant, {"aidp.io/retention-days": "20"})
	d := decide(rs_update(replicaset(declared, 0), replicaset(declared, 2)), [tightened])
	d == {"allowed": true, "message": "", "violations": [], "warnings": []}

	# the same template judged afresh fails the tightened policy
	not decide(object.union(rs_update(replicaset(declared, 0), replicaset(declared, 2)), {"operation": "CREATE"}), [tightened]).allowed
}

test_unchanged_update_is_admitted_after_expiry_and_before_data_is_loaded if {
	old := patched({"review": {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": "2027-01-01"}})
	decide(rs_update(replicaset(compliant, 0), replicaset(compliant, 3)), [old]).allowed

	# finalizer removal, adoption (ownerReferences) and status: metadata outside the template
	adopted := json.patch(replicaset(compliant, 3), [{"op": "add", "path": "/metadata/ownerReferences", "value": [{"kind": "Deployment", "name": "bot"}]}])
	decide(rs_update(adopted, replicaset(compliant, 3)), [old]).allowed
	d := admission.decision with input as {"request": rs_update(replicaset({}, 0), replicaset({}, 1))}
	d.allowed
}

test_template_changes_are_judged if {
	declared := object.union(compliant, {"aidp.io/retention-days": "20"})

	# a rollout restart stamps the template: judged, and fails the tightened policy
	restarted := object.union(declared, {"kubectl.kubernetes.io/restartedAt": "2027-06-30T12:00:00Z"})
	d := decide(rs_update(replicaset(restarted, 2), replicaset(declared, 2)), [tightened])
	not d.allowed
	contains(d.message, "[retention-days]")

	# hostNetwork added to a running workload's template: judged
	host := json.patch(replicaset(compliant, 2), [{"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true}])
	h := decide(rs_update(host, replicaset(compliant, 2)), [policy])
	not h.allowed
	contains(h.message, "[host-network]")
}

# --- host-network ----------------------------------------------------------------------------

test_host_network_pod_is_denied if {
	obj := json.patch(pod_with(compliant), [{"op": "add", "path": "/spec/hostNetwork", "value": true}])
	d := decide(create(obj), [policy])
	not d.allowed
	failures(d) == [["host-network", "the pod runs with hostNetwork: true, which escapes every egress rule; AI workloads must use the pod network"]]

	# unselected: admitted (the audit reports it as egress-bypass in governed namespaces)
	other := json.patch(obj, [{"op": "replace", "path": "/metadata/labels", "value": {"app": "other"}}])
	decide(create(other), [policy]).allowed
}

# --- the approval label ------------------------------------------------------------------------

operator := "system:serviceaccount:aidp-system:aidp-operator"

decide_as(request, user, policies) := decide_config(
	object.union(request, {"userInfo": {"username": user}}),
	policies,
	{"excludedNamespaces": ["kube-system", "aidp-system"], "operatorUsers": [operator]},
)

decide_config(request, policies, config) := d if {
	d := admission.decision with input as {"request": request}
		with data.aidp.revision as "0123456789abcdef"
		with data.aidp.config as config
		with data.aidp_policies as namespaced(policies)
		with time.now_ns as now
}

approved_pod := json.patch(pod_with(compliant), [{"op": "add", "path": "/metadata/labels/aidp.io~1approved", "value": "true"}])

test_approval_label_at_create_is_refused if {
	# a compliant pod created with the label by anyone else: refused (it would skip the judgement)
	d := decide_as(create(approved_pod), "alice", [policy])
	not d.allowed
	startswith(d.message, "aidp: Pod support/bot denied: the label aidp.io/approved is set and removed by the aidp operator only")
	not decide_as(create(approved_pod), "system:serviceaccount:kube-system:replicaset-controller", [policy]).allowed
}

test_approval_label_on_a_template_is_refused if {
	rs := json.patch(replicaset(compliant, 1), [{"op": "add", "path": "/spec/template/metadata/labels/aidp.io~1approved", "value": "true"}])
	r := decide_as(object.union(rs_update(rs, rs), {"operation": "CREATE"}), "alice", [policy])
	not r.allowed
	contains(r.message, "remove it from the pod template's labels")
}

test_approval_label_changes_by_others_are_refused if {
	not decide_as(object.union(create(pod_with(compliant)), {"operation": "UPDATE", "oldObject": approved_pod}), "alice", [policy]).allowed
	not decide_as(object.union(create(approved_pod), {"operation": "UPDATE", "subResource": "status", "oldObject": pod_with(compliant)}), "alice", [policy]).allowed
}

test_approval_label_set_and_removed_by_the_operator if {
	# the operator judged the pod itself: its label-only updates are admitted
	decide_as(object.union(create(approved_pod), {"operation": "UPDATE", "oldObject": pod_with(compliant)}), operator, [policy]).allowed
	labelled := json.patch(pod_with({}), [{"op": "add", "path": "/metadata/labels/aidp.io~1approved", "value": "true"}])
	decide_as(object.union(create(pod_with({})), {"operation": "UPDATE", "oldObject": labelled}), operator, [policy]).allowed
}

test_approval_label_unchanged_is_no_problem if {
	decide_as(object.union(create(approved_pod), {"operation": "UPDATE", "oldObject": approved_pod}), "alice", [policy]).allowed
}

test_approval_label_before_data_is_loaded if {
	# nobody is the operator yet: refused (fail closed)
	a := admission.decision with input as {"request": object.union(create(approved_pod), {"userInfo": {"username": operator}})}
	not a.allowed
}

# --- the governed label of namespaces ----------------------------------------------------------

namespace_update(new_labels, old_labels) := {
	"uid": "req-ns",
	"kind": {"group": "", "version": "v1", "kind": "Namespace"},
	"resource": {"group": "", "version": "v1", "resource": "namespaces"},
	"name": "shop",
	"operation": "UPDATE",
	"object": {"metadata": {"name": "shop", "labels": new_labels}},
	"oldObject": {"metadata": {"name": "shop", "labels": old_labels}},
}

test_governed_label_is_the_operators_alone if {
	governed := {"aidp.io/governed": "true", "team": "shop"}
	d := decide_as(namespace_update({"team": "shop"}, governed), "shop-admin", [policy])
	not d.allowed
	startswith(d.message, "aidp: Namespace shop denied: the label aidp.io/governed is managed by the aidp operator")
	not decide_as(namespace_update({"aidp.io/governed": "false", "team": "shop"}, governed), "shop-admin", [policy]).allowed

	# other labels: free
	decide_as(namespace_update({"aidp.io/governed": "true", "team": "web"}, governed), "shop-admin", [policy]).allowed

	# the operator labels and unlabels
	decide_as(namespace_update({"team": "shop"}, governed), operator, [policy]).allowed
	decide_as(namespace_update(governed, {"team": "shop"}), operator, [policy]).allowed

	# not loaded: nobody is the operator
	not admission.decision.allowed with input as {"request": namespace_update({}, governed)}
	admission.decision.allowed with input as {"request": namespace_update(governed, governed)}
}

test_excluded_namespace_always_allowed if {
	obj := json.patch(pod_with({}), [{"op": "replace", "path": "/metadata/namespace", "value": "kube-system"}])
	request := object.union(create(obj), {"namespace": "kube-system"})
	d := admission.decision with input as {"request": request}
		with data.aidp.revision as "r"
		with data.aidp.config as {"excludedNamespaces": ["kube-system"]}
		with data.aidp_policies as {"kube-system": {"p": policy}}
	d == {"allowed": true, "message": "", "violations": [], "warnings": []}
}

test_no_input_is_allowed if {
	admission.decision.allowed with input as {}
}

# --- fail closed ---------------------------------------------------------------------------------

not_loaded := {"allowed": false, "message": "aidp: policies not loaded into OPA yet (fail closed)", "violations": [], "warnings": []}

test_not_loaded_denies_checked_requests if {
	d := admission.decision with input as {"request": create(pod_with(compliant))}
	d == not_loaded
}

test_not_loaded_even_with_config if {
	d := admission.decision with input as {"request": create(pod_with(compliant))}
		with data.aidp.config as {"excludedNamespaces": []}
		with data.aidp_policies as namespaced([policy])
	d == not_loaded
}

test_not_loaded_still_respects_exclusions if {
	request := object.union(create(pod_with({})), {"namespace": "kube-system"})
	admission.decision.allowed with input as {"request": request}
	custom := object.union(create(pod_with({})), {"namespace": "tools"})
	admission.decision.allowed with input as {"request": custom} with data.aidp.config as {"excludedNamespaces": ["tools"]}
}

test_not_loaded_ignores_unchecked_requests if {
	admission.decision.allowed with input as {"request": object.union(create(pod_with({})), {"operation": "DELETE"})}
	admission.decision.allowed with input as {"request": object.union(create(pod_with({})), {"kind": {"group": "", "version": "v1", "kind": "Secret"}})}
}

test_loaded_with_no_policies_allows if {
	d := admission.decision with input as {"request": create(pod_with({}))}
		with data.aidp.revision as "r"
		with data.aidp.config as {"excludedNamespaces": []}
		with data.aidp_policies as {}
	d.allowed
}

test_guardrailed_label_is_the_operators_alone if {
	labelled := {"aidp.io/governed": "true", "aidp.io/guardrailed": "true"}
	d := decide_as(namespace_update({"aidp.io/governed": "true"}, labelled), "shop-admin", [policy])
	not d.allowed
	contains(d.message, "the label aidp.io/guardrailed is managed by the aidp operator")
	decide_as(namespace_update({"aidp.io/governed": "true"}, labelled), operator, [policy]).allowed
}

test_isolation_label_is_the_operators_alone if {
	isolated := json.patch(pod_with(compliant), [{"op": "add", "path": "/metadata/labels/aidp.io~1egress-isolated", "value": "true"}])
	d := decide_as(create(isolated), "alice", [policy])
	not d.allowed
	contains(d.message, "the label aidp.io/egress-isolated is set and removed by the aidp operator only")
	decide_as(object.union(create(isolated), {"operation": "UPDATE", "oldObject": pod_with(compliant)}), operator, [policy]).allowed
}

test_annotation_values_longer_than_the_bound_fail_their_rule if {
	long_days := concat("", [concat("", ["0" | some _ in numbers.range(1, 1100)]), "7"])
	[[rule, message]] := failures(pod_decision(object.union(compliant, {"aidp.io/retention-days": long_days}), policy))
	rule == "retention-days"
	message == "annotation aidp.io/retention-days is longer than 1024 characters"
	many := concat(",", ["internal" | some _ in numbers.range(1, 200)])
	[[rule2, message2]] := failures(pod_decision(object.union(compliant, {"aidp.io/data-categories": many}), policy))
	rule2 == "data-categories"
	message2 == "annotation aidp.io/data-categories is longer than 1024 characters"

	# at the bound: read as usual
	fits := concat("", [concat("", ["0" | some _ in numbers.range(1, 1022)]), "7"])
	count(fits) == 1023
	pod_decision(object.union(compliant, {"aidp.io/retention-days": fits}), policy).allowed
}
