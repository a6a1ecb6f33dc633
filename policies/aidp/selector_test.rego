package aidp.selector_test

import data.aidp.selector

labels := {"app": "bot", "tier": "backend", "team": ""}

test_match_labels if {
	selector.matches({"matchLabels": {"app": "bot"}}, labels)
	selector.matches({"matchLabels": {"app": "bot", "tier": "backend"}}, labels)
	not selector.matches({"matchLabels": {"app": "other"}}, labels)
	not selector.matches({"matchLabels": {"missing": "bot"}}, labels)
	not selector.matches({"matchLabels": {"app": "bot", "tier": "frontend"}}, labels)
}

test_empty_selector_matches_nothing if {
	not selector.matches({}, labels)
	not selector.matches({"matchLabels": {}, "matchExpressions": []}, labels)
	not selector.matches({"matchLabels": null, "matchExpressions": null}, labels)
	not selector.matches(null, labels)
	not selector.matches({}, {})
}

test_in if {
	selector.matches(expr("app", "In", ["bot", "web"]), labels)
	not selector.matches(expr("app", "In", ["web"]), labels)
	not selector.matches(expr("missing", "In", ["bot"]), labels)
	not selector.matches(expr("app", "In", []), labels)
	not selector.matches({"matchExpressions": [{"key": "app", "operator": "In"}]}, labels)
}

test_not_in if {
	selector.matches(expr("app", "NotIn", ["web"]), labels)
	selector.matches(expr("missing", "NotIn", ["bot"]), labels)
	not selector.matches(expr("app", "NotIn", ["bot", "web"]), labels)
}

test_exists if {
	selector.matches(expr("app", "Exists", []), labels)
	selector.matches(expr("team", "Exists", []), labels)
	not selector.matches(expr("missing", "Exists", []), labels)
}

test_does_not_exist if {
	selector.matches(expr("missing", "DoesNotExist", []), labels)
	not selector.matches(expr("app", "DoesNotExist", []), labels)
	not selector.matches(expr("team", "DoesNotExist", []), labels)
}

test_unknown_operator_matches_nothing if {
	not selector.matches(expr("app", "Equals", ["bot"]), labels)
	not selector.matches(expr("app", "in", ["bot"]), labels)
}

test_labels_and_expressions_are_anded if {
	both := {
		"matchLabels": {"app": "bot"},
		"matchExpressions": [
			{"key": "tier", "operator": "In", "values": ["backend"]},
			{"key": "canary", "operator": "DoesNotExist"},
		],
	}
	selector.matches(both, labels)
	not selector.matches(both, object.union(labels, {"canary": "yes"}))
	not selector.matches(both, object.union(labels, {"tier": "frontend"}))
	not selector.matches(both, object.union(labels, {"app": "web"}))
}

test_only_expressions if {
	selector.matches({"matchLabels": {}, "matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
}

expr(key, operator, values) := {"matchExpressions": [{"key": key, "operator": operator, "values": values}]}
