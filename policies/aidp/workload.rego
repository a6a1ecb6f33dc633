# The workload an AdmissionReview request is about: its pod template's labels, annotations and
# service account.
#
# Checked kinds are Pod (the object is its own template), Deployment, ReplicaSet, StatefulSet,
# DaemonSet and Job (spec.template) and CronJob (spec.jobTemplate.spec.template). A Pod's
# subresources that can write its labels, annotations or spec (`status`, `ephemeralcontainers`,
# `resize`) are checked like the Pod; the other kinds' subresources (deployments/scale,
# jobs/status, ...) cannot change the pod template and are not checked.
package aidp.workload

# kind -> API group and the path of the pod template inside the object.
checked_kinds := {
	"Pod": {"group": "", "template": []},
	"Deployment": {"group": "apps", "template": ["spec", "template"]},
	"ReplicaSet": {"group": "apps", "template": ["spec", "template"]},
	"StatefulSet": {"group": "apps", "template": ["spec", "template"]},
	"DaemonSet": {"group": "apps", "template": ["spec", "template"]},
	"Job": {"group": "batch", "template": ["spec", "template"]},
	"CronJob": {"group": "batch", "template": ["spec", "jobTemplate", "spec", "template"]},
}

request := input.request

kind := request.kind.kind

# True when the request is about one of the checked kinds (whatever the operation).
checked if {
	checked_kinds[kind].group == object.get(request.kind, "group", "")
	subresource_checked
}

# Note: not f(x) with an undefined x is undefined (the argument is evaluated outside the negation).
subresource_checked if object.get(request, "subResource", "") == ""

subresource_checked if {
	kind == "Pod"
	request.subResource in pod_subresources
}

# the Pod subresources whose writes can change the pod's labels, annotations or spec (the API
# server's status strategy keeps the spec but takes the submitted metadata)
pod_subresources := {"status", "ephemeralcontainers", "resize"}

object_metadata := request.object.metadata if {
	is_object(request.object.metadata)
} else := {}

namespace := request.namespace if {
	non_empty_string(request.namespace)
} else := object_metadata.namespace if {
	non_empty_string(object_metadata.namespace)
} else := "default"

# The object's name; for a CREATE with metadata.generateName (no name yet) the generateName.
name := request.name if {
	non_empty_string(request.name)
} else := object_metadata.name if {
	non_empty_string(object_metadata.name)
} else := object_metadata.generateName if {
	non_empty_string(object_metadata.generateName)
} else := ""

template := object.get(request.object, checked_kinds[kind].template, {})

template_metadata := template.metadata if {
	is_object(template.metadata)
} else := {}

template_spec := template.spec if {
	is_object(template.spec)
} else := {}

labels := template_metadata.labels if {
	is_object(template_metadata.labels)
} else := {}

annotations := template_metadata.annotations if {
	is_object(template_metadata.annotations)
} else := {}

# The label that marks a pod approved for its policies' egress (contract section 4): set and
# removed by the aidp operator alone, after it judged the running pod.
approval_label := "aidp.io/approved"

# The label that marks a pod that user NetworkPolicies isolate for egress: aidp's baseline leaves
# such pods out, so that it never loosens a namespace's own egress isolation. Set and removed by
# the operator alone.
isolation_label := "aidp.io/egress-isolated"

operator_labels := [approval_label, isolation_label]

# What the verdict reads of a pod template: labels (but the operator's labels, which the verdict
# does not read), annotations and spec.
verdict_view(t) := {
	"labels": object.remove(object_or_empty(object.get(t, "metadata", {}), "labels"), operator_labels),
	"annotations": object_or_empty(object.get(t, "metadata", {}), "annotations"),
	"spec": object_or_empty(t, "spec"),
}

object_or_empty(obj, key) := obj[key] if {
	is_object(obj)
	is_object(obj[key])
} else := {}

# An UPDATE that leaves the pod template as it was (a scale, a status write, a finalizer removal, an
# adoption): nothing the verdict reads has changed.
template_unchanged if {
	request.operation == "UPDATE"
	is_object(request.oldObject)
	verdict_view(template) == verdict_view(old_template)
}

# The operator's labels on the template that differ before and after (absent counts as "").
changed_operator_labels := [key |
	some key in operator_labels
	object.get(labels, key, "") != object.get(old_labels, key, "")
]

host_network if template_spec.hostNetwork == true

# The user who sent the request.
username := object.get(object.get(request, "userInfo", {}), "username", "")

# The template's labels and annotations before an UPDATE (request.oldObject); empty for other
# operations and when there is no old object.
old_object := request.oldObject if {
	request.operation == "UPDATE"
	is_object(request.oldObject)
} else := {}

old_template := object.get(old_object, checked_kinds[kind].template, {})

old_template_metadata := old_template.metadata if {
	is_object(old_template.metadata)
} else := {}

old_labels := old_template_metadata.labels if {
	is_object(old_template_metadata.labels)
} else := {}

old_annotations := old_template_metadata.annotations if {
	is_object(old_template_metadata.annotations)
} else := {}

# The pod's service account: spec.serviceAccountName, else the deprecated spec.serviceAccount,
# else "default" (what the API server fills in).
service_account := template_spec.serviceAccountName if {
	non_empty_string(template_spec.serviceAccountName)
} else := template_spec.serviceAccount if {
	non_empty_string(template_spec.serviceAccount)
} else := "default"

non_empty_string(value) if {
	is_string(value)
	value != ""
}
