package system_test

import data.system

now := time.parse_rfc3339_ns("2027-06-30T12:00:00Z")

policy := {
	"name": "p",
	"namespace": "support",
	"uid": "uid-1",
	"generation": 1,
	"provider": "openai",
	"dataResidency": null,
	"endpoints": [{"host": "api.openai.com", "port": 443}],
	"workloadSelector": {"matchLabels": {"app": "bot"}, "matchExpressions": []},
	"serviceAccountNames": [],
	"purpose": "test",
	"consent": {"required": true, "allowedBases": ["consent"]},
	"retention": {"maxDays": 30, "requireZeroDataRetention": false},
	"dataCategories": {"allowed": [], "forbidden": []},
	"enforcement": "deny",
	"review": {"approvedBy": null, "ticket": null, "expires": null},
}

compliant := {"aidp.io/consent-basis": "consent", "aidp.io/retention-days": "1", "aidp.io/data-categories": "internal"}

review(annotations) := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"request": {
		"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
		"kind": {"group": "", "version": "v1", "kind": "Pod"},
		"resource": {"group": "", "version": "v1", "resource": "pods"},
		"namespace": "support",
		"name": "bot",
		"operation": "CREATE",
		"object": {"metadata": {"name": "bot", "labels": {"app": "bot"}, "annotations": annotations}, "spec": {}},
	},
}

main_for(annotations, enforcement) := m if {
	m := system.main with input as review(annotations)
		with data.aidp.revision as "0123456789abcdef"
		with data.aidp.config as {"excludedNamespaces": []}
		with data.aidp_policies as {"support": {"p": object.union(policy, {"enforcement": enforcement})}}
		with time.now_ns as now
}

test_allowed_response if {
	main_for(compliant, "deny") == {
		"apiVersion": "admission.k8s.io/v1",
		"kind": "AdmissionReview",
		"response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true},
	}
}

test_denied_response if {
	m := main_for(object.remove(compliant, ["aidp.io/consent-basis"]), "deny")
	m.response == {
		"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
		"allowed": false,
		"status": {
			"code": 403,
			"message": "aidp: Pod support/bot denied by AIDataPolicy p: [consent-basis] annotation aidp.io/consent-basis is missing; allowed bases: consent",
		},
		"auditAnnotations": {"violations": "p/consent-basis=deny", "revision": "0123456789abcdef"},
	}
}

test_warn_response if {
	m := main_for({}, "warn")
	m.response.allowed
	not m.response.status
	m.response.warnings == [
		"aidp: Pod support/bot: AIDataPolicy p [consent-basis] annotation aidp.io/consent-basis is missing; allowed bases: consent",
		"aidp: Pod support/bot: AIDataPolicy p [retention-days] annotation aidp.io/retention-days is missing; the policy allows at most 30 days",
		"aidp: Pod support/bot: AIDataPolicy p [data-categories] annotation aidp.io/data-categories is missing",
	]
	m.response.auditAnnotations.violations == "p/consent-basis=warn, p/retention-days=warn, p/data-categories=warn"
}

test_dryrun_response if {
	m := main_for({}, "dryrun")
	m.response.allowed
	not m.response.status
	not m.response.warnings
	m.response.auditAnnotations.violations == "p/consent-basis=dryrun, p/retention-days=dryrun, p/data-categories=dryrun"
}

test_not_loaded_response if {
	m := system.main with input as review(compliant)
	m.response == {
		"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
		"allowed": false,
		"status": {"code": 403, "message": "aidp: policies not loaded into OPA yet (fail closed)"},
	}
}

test_unchecked_request_response if {
	delete := json.patch(review({}), [{"op": "replace", "path": "/request/operation", "value": "DELETE"}])
	m := system.main with input as delete
	m.response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true}
}
