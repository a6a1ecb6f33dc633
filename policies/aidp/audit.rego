# Batch evaluation for the audit: the admission decision for each AdmissionReview in
# input.reviews, exactly as the webhook would decide it now (same rules, same data).
package aidp.audit

import data.aidp.admission

decisions := [d |
	some review in input.reviews
	d := admission.decision with input as review
]
