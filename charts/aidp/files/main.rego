# The AdmissionReview response OPA returns when the kube-apiserver POSTs an AdmissionReview to `/`
# (OPA's default decision is data.system.main).
package system

import data.aidp.admission

main := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": response,
}

response := object.union_n([
	{"uid": input.request.uid, "allowed": admission.decision.allowed},
	status,
	warnings,
	audit_annotations,
])

# status only when denied.
status := {"status": {"code": 403, "message": admission.decision.message}} if {
	not admission.decision.allowed
} else := {}

# warnings only when there are some.
warnings := {"warnings": admission.decision.warnings} if {
	count(admission.decision.warnings) > 0
} else := {}

# Audit annotations (recorded in the API server's audit log under "<webhook name>/<key>"):
# every failing rule, whatever the enforcement mode, so dryrun findings are visible there too.
audit_annotations := {"auditAnnotations": {
	"violations": concat(", ", [sprintf("%s/%s=%s", [v.policy, v.rule, v.enforcement]) |
		some v in admission.decision.violations
	]),
	"revision": data.aidp.revision,
}} if {
	count(admission.decision.violations) > 0
} else := {}
