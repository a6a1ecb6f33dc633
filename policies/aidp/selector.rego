# Label selector matching (metav1.LabelSelector semantics).
#
# matches(selector, labels) is true when every matchLabels entry and every matchExpressions
# requirement holds for labels. Unlike Kubernetes, an empty or missing selector matches NOTHING:
# an AIDataPolicy never selects every pod of its namespace. A requirement with an unknown operator
# never matches (Kubernetes treats such a selector as invalid, selecting nothing).
package aidp.selector

matches(selector, labels) if {
	not empty(selector)
	every key, value in match_labels(selector) {
		labels[key] == value
	}
	every requirement in match_expressions(selector) {
		requirement_matches(requirement, labels)
	}
}

empty(selector) if {
	count(match_labels(selector)) == 0
	count(match_expressions(selector)) == 0
}

match_labels(selector) := selector.matchLabels if {
	is_object(selector.matchLabels)
} else := {}

match_expressions(selector) := selector.matchExpressions if {
	is_array(selector.matchExpressions)
} else := []

requirement_values(requirement) := requirement.values if {
	is_array(requirement.values)
} else := []

requirement_matches(requirement, labels) if {
	requirement.operator == "In"
	has_value(labels, requirement)
}

requirement_matches(requirement, labels) if {
	requirement.operator == "NotIn"
	not has_value(labels, requirement)
}

requirement_matches(requirement, labels) if {
	requirement.operator == "Exists"
	has_key(labels, requirement.key)
}

requirement_matches(requirement, labels) if {
	requirement.operator == "DoesNotExist"
	not has_key(labels, requirement.key)
}

has_key(labels, key) if _ = labels[key]

has_value(labels, requirement) if labels[requirement.key] in requirement_values(requirement)
