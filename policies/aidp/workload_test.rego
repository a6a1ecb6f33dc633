package aidp.workload_test

import data.aidp.workload

template := {
	"metadata": {"labels": {"app": "bot"}, "annotations": {"aidp.io/retention-days": "7"}},
	"spec": {"serviceAccountName": "bot-sa", "containers": [{"name": "c", "image": "x"}]},
}

objects := {
	"Pod": object.union({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}, template),
	"Deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": template}},
	"ReplicaSet": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": template}},
	"StatefulSet": {"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": template}},
	"DaemonSet": {"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": template}},
	"Job": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": template}},
	"CronJob": {"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template}}}},
}

groups := {"Pod": "", "Deployment": "apps", "ReplicaSet": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "Job": "batch", "CronJob": "batch"}

request(kind, obj) := {
	"kind": {"group": groups[kind], "version": "v1", "kind": kind},
	"namespace": "ns",
	"name": "x",
	"operation": "CREATE",
	"object": obj,
}

test_every_kind_yields_its_pod_template if {
	every kind, obj in objects {
		workload.checked with input.request as request(kind, obj)
		workload.labels == {"app": "bot"} with input.request as request(kind, obj)
		workload.annotations == {"aidp.io/retention-days": "7"} with input.request as request(kind, obj)
		workload.service_account == "bot-sa" with input.request as request(kind, obj)
		workload.kind == kind with input.request as request(kind, obj)
	}
}

test_core_group_may_be_absent if {
	workload.checked with input.request as {"kind": {"version": "v1", "kind": "Pod"}, "object": objects.Pod}
}

test_unchecked_kinds if {
	not workload.checked with input.request as {"kind": {"group": "", "version": "v1", "kind": "ConfigMap"}}
	not workload.checked with input.request as {"kind": {"group": "extensions", "version": "v1beta1", "kind": "Deployment"}}
	not workload.checked with input.request as {"kind": {"group": "apps", "version": "v1", "kind": "Pod"}}
	not workload.checked with input.request as {"kind": {"group": "example.com", "version": "v1", "kind": "CronJob"}}
	not workload.checked with input.request as {}
}

test_subresources if {
	pod := request("Pod", objects.Pod)
	workload.checked with input.request as object.union(pod, {"subResource": ""})
	workload.checked with input.request as object.union(pod, {"subResource": "ephemeralcontainers"})
	workload.checked with input.request as object.union(pod, {"subResource": "status"})
	workload.checked with input.request as object.union(pod, {"subResource": "resize"})
	not workload.checked with input.request as object.union(pod, {"subResource": "binding"})
	deployment := request("Deployment", objects.Deployment)
	not workload.checked with input.request as object.union(deployment, {"subResource": "scale"})
	not workload.checked with input.request as object.union(deployment, {"subResource": "ephemeralcontainers"})
}

test_service_account_fallbacks if {
	workload.service_account == "old-sa" with input.request as request("Pod", {"spec": {"serviceAccount": "old-sa"}})
	workload.service_account == "new-sa" with input.request as request("Pod", {"spec": {"serviceAccountName": "new-sa", "serviceAccount": "old-sa"}})
	workload.service_account == "default" with input.request as request("Pod", {"spec": {"serviceAccountName": ""}})
	workload.service_account == "default" with input.request as request("Pod", {"spec": {}})
	workload.service_account == "default" with input.request as request("Pod", {})
}

test_missing_or_odd_metadata if {
	workload.labels == {} with input.request as request("Pod", {"metadata": {"labels": null}})
	workload.annotations == {} with input.request as request("Pod", {"metadata": {"annotations": "x"}})
	workload.labels == {} with input.request as request("Deployment", {"spec": {}})
	workload.labels == {} with input.request as request("CronJob", {"spec": {"jobTemplate": {}}})
	workload.labels == {} with input.request as request("Pod", {"metadata": "x", "spec": "y"})
	workload.service_account == "default" with input.request as request("Pod", {"spec": "y"})
	workload.labels == {} with input.request as {"kind": {"group": "", "kind": "Pod"}, "operation": "DELETE", "object": null}
}

test_namespace_fallbacks if {
	workload.namespace == "ns" with input.request as request("Pod", {})
	workload.namespace == "from-object" with input.request as {"kind": {"kind": "Pod"}, "object": {"metadata": {"namespace": "from-object"}}}
	workload.namespace == "default" with input.request as {"kind": {"kind": "Pod"}, "namespace": "", "object": {}}
}

test_name_fallbacks if {
	workload.name == "x" with input.request as request("Pod", {})
	workload.name == "from-object" with input.request as {"name": "", "object": {"metadata": {"name": "from-object", "generateName": "gen-"}}}
	workload.name == "gen-" with input.request as {"name": "", "object": {"metadata": {"generateName": "gen-"}}}
	workload.name == "" with input.request as {"object": {"metadata": {}}}
	workload.name == "" with input.request as {}
}

test_verdict_view_ignores_the_approval_label_and_status if {
	a := {"metadata": {"labels": {"app": "bot", "aidp.io/approved": "true", "aidp.io/egress-isolated": "true"}, "annotations": {"x": "1"}}, "spec": {"c": 1}, "status": {"phase": "Running"}}
	b := {"metadata": {"labels": {"app": "bot"}, "annotations": {"x": "1"}, "finalizers": ["f"]}, "spec": {"c": 1}}
	workload.verdict_view(a) == workload.verdict_view(b)
	workload.verdict_view({}) == {"labels": {}, "annotations": {}, "spec": {}}
	workload.verdict_view({"metadata": {"labels": "x"}, "spec": []}) == {"labels": {}, "annotations": {}, "spec": {}}
}

test_template_unchanged_needs_an_update_with_an_old_object if {
	d := request("Deployment", objects.Deployment)
	workload.template_unchanged with input.request as object.union(d, {"operation": "UPDATE", "oldObject": objects.Deployment})
	not workload.template_unchanged with input.request as object.union(d, {"operation": "UPDATE"})
	not workload.template_unchanged with input.request as object.union(d, {"operation": "CREATE", "oldObject": objects.Deployment})
}

test_username_and_host_network if {
	workload.username == "alice" with input.request as object.union(request("Pod", objects.Pod), {"userInfo": {"username": "alice"}})
	workload.username == "" with input.request as request("Pod", objects.Pod)
	workload.host_network with input.request as request("Pod", {"spec": {"hostNetwork": true}})
	not workload.host_network with input.request as request("Pod", {"spec": {"hostNetwork": "true"}})
}
