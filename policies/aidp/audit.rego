# Batch evaluation for the audit: the admission decision for each AdmissionReview in
# input.reviews, exactly as the webhook would decide it now (same rules, same data), with the
# references to AI credentials or endpoints the one detector finds in it (`aiReferences`: what the
# audit's shadow-ai findings and admission's unapproved-ai rule both read).
package aidp.audit

import data.aidp.admission
import data.aidp.guardrails

decisions := [d |
	some review in input.reviews
	decision := admission.decision with input as review
	refs := sort([r | some r in guardrails.ai_references]) with input as review
	d := object.union(decision, {"aiReferences": refs})
]
