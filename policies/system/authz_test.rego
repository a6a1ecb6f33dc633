package system.authz_test

import data.system.authz

token := "0123456789abcdef0123456789abcdef-token"

runtime := {"env": {"AIDP_OPA_TOKEN": token}}

test_webhook_call_is_anonymous if {
	authz.allow with input as {"method": "POST", "path": [""]}
		with opa.runtime as runtime
}

test_health_is_anonymous if {
	authz.allow with input as {"method": "GET", "path": ["health"]}
		with opa.runtime as runtime
}

test_data_read_needs_token if {
	not authz.allow with input as {"method": "GET", "path": ["v1", "data"]}
		with opa.runtime as runtime
}

test_policy_write_with_token if {
	authz.allow with input as {"method": "PUT", "path": ["v1", "policies", "x"], "identity": token}
		with opa.runtime as runtime
}

test_wrong_token_refused if {
	not authz.allow with input as {"method": "PUT", "path": ["v1", "policies", "x"], "identity": "nope"}
		with opa.runtime as runtime
}

test_short_configured_token_refused if {
	not authz.allow with input as {"method": "PUT", "path": ["v1", "data"], "identity": "short"}
		with opa.runtime as {"env": {"AIDP_OPA_TOKEN": "short"}}
}

test_no_configured_token_refuses_everyone if {
	not authz.allow with input as {"method": "PUT", "path": ["v1", "data"], "identity": ""}
		with opa.runtime as {"env": {}}
}
