package aidp.audit_test

import data.aidp.audit

pod(name, annotations) := {"request": {
	"uid": name,
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"namespace": "team",
	"operation": "CREATE",
	"object": {
		"apiVersion": "v1",
		"kind": "Pod",
		"metadata": {"name": name, "namespace": "team", "labels": {"app": "bot"}, "annotations": annotations},
		"spec": {"containers": []},
	},
}}

policy := {
	"name": "p",
	"namespace": "team",
	"workloadSelector": {"matchLabels": {"app": "bot"}, "matchExpressions": []},
	"serviceAccountNames": [],
	"consent": {"required": false, "allowedBases": []},
	"retention": {"maxDays": 30, "requireZeroDataRetention": false},
	"dataCategories": {"allowed": [], "forbidden": []},
	"enforcement": "deny",
	"review": {"expires": null},
}

test_one_decision_per_review_in_order if {
	good := pod("good", {"aidp.io/retention-days": "3", "aidp.io/data-categories": "internal"})
	bad := pod("bad", {})
	decisions := audit.decisions with input as {"reviews": [good, bad]}
		with data.aidp_policies as {"team": {"p": policy}}
		with data.aidp.revision as "r"
		with data.aidp.config as {"excludedNamespaces": []}
	count(decisions) == 2
	decisions[0].allowed
	not decisions[1].allowed
}

test_no_reviews_no_decisions if {
	audit.decisions == [] with input as {"reviews": []}
}

test_decisions_carry_the_detectors_references if {
	review := {"request": {
		"uid": "u",
		"kind": {"group": "", "version": "v1", "kind": "Pod"},
		"namespace": "x",
		"name": "p",
		"operation": "CREATE",
		"object": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "env": [{"name": "OPENAI_API_KEY", "value": "k"}, {"name": "U", "value": "https://eu.api.openai.com"}]}]}},
	}}
	[d] := audit.decisions with input as {"reviews": [review]}
		with data.aidp.revision as "r"
		with data.aidp.config as {"excludedNamespaces": []}
		with data.aidp_policies as {}
		with data.aidp.detector as {"env": ["OPENAI_*"], "hosts": ["*.api.openai.com"]}
	d.allowed
	d.aiReferences == ["env OPENAI_API_KEY", "host eu.api.openai.com"]
}
