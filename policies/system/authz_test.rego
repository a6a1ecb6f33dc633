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

test_token_prefix_refused if {
	not authz.allow with input as {"method": "GET", "path": ["v1", "data"], "identity": substring(token, 0, 32)}
		with opa.runtime as runtime
}

test_token_with_one_more_character_refused if {
	not authz.allow with input as {"method": "GET", "path": ["v1", "data"], "identity": concat("", [token, "x"])}
		with opa.runtime as runtime
}

test_token_differing_in_the_last_character_refused if {
	last := substring(token, count(token) - 1, 1)
	other := concat("", [substring(token, 0, count(token) - 1), "Z"])
	last != "Z"
	not authz.allow with input as {"method": "GET", "path": ["v1", "data"], "identity": other}
		with opa.runtime as runtime
}

test_non_string_identity_refused if {
	not authz.allow with input as {"method": "GET", "path": ["v1", "data"], "identity": ["x"]}
		with opa.runtime as runtime
}

test_missing_identity_refused if {
	not authz.allow with input as {"method": "GET", "path": ["v1", "data"]}
		with opa.runtime as runtime
}

test_right_token_reads_data if {
	authz.allow with input as {"method": "GET", "path": ["v1", "data"], "identity": token}
		with opa.runtime as runtime
}
