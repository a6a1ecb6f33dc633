# OPA management API authorization (loaded at OPA start with --authorization=basic; never pushed).
#
# Anonymous callers, which include the kube-apiserver calling the admission webhook, may only
# evaluate the admission decision (POST /, which returns data.system.main) and read /health.
# Everything else (policies, data, queries, config, status, metrics) needs the management bearer
# token, which OPA receives through its environment (AIDP_OPA_TOKEN, from a Secret in a cluster).
package system.authz

default allow := false

# the webhook call: POST / evaluates the default decision data.system.main
allow if {
	input.method == "POST"
	input.path == [""]
}

allow if {
	input.method == "GET"
	input.path == ["health"]
}

# The token is compared in constant time: crypto.hmac.equal is Go's hmac.Equal (a constant-time
# comparison of equal-length inputs), applied to the SHA-256 digests of the presented and the
# configured token, so neither how many leading characters match nor the token's length shows in
# the response time. (`==` on the strings stops at the first difference.)
allow if {
	token := object.get(opa.runtime().env, "AIDP_OPA_TOKEN", "")
	count(token) >= 32
	is_string(input.identity)
	crypto.hmac.equal(crypto.sha256(input.identity), crypto.sha256(token))
}
