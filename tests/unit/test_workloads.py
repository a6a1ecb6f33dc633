"""aidp.workloads: pod templates of the checked kinds, top-level workloads, and selector counts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from aidp import model, workloads
from aidp.model import LabelSelector, LabelSelectorRequirement

POD_META = {"labels": {"app": "support-bot", "tier": "api"}, "annotations": {"aidp.io/retention-days": "30"}}
POD_SPEC = {"serviceAccountName": "support-bot", "containers": [{"name": "bot", "image": "bot:1"}]}


def template() -> dict[str, Any]:
    return {"metadata": copy.deepcopy(POD_META), "spec": copy.deepcopy(POD_SPEC)}


def pod() -> dict[str, Any]:
    tpl = template()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", **tpl["metadata"]},
        "spec": tpl["spec"],
    }


def controller(kind: str, api_version: str) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        return {
            "apiVersion": api_version,
            "kind": kind,
            # the controller's own labels differ from its pod template's: the template counts
            "metadata": {"name": kind.lower(), "labels": {"app": "not-the-template"}},
            "spec": {"selector": {"matchLabels": {"app": "support-bot"}}, "template": template()},
        }

    return make


def cronjob() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "labels": {"app": "not-the-template"}},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template()}}},
    }


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "Pod": pod,
    "Deployment": controller("Deployment", "apps/v1"),
    "ReplicaSet": controller("ReplicaSet", "apps/v1"),
    "StatefulSet": controller("StatefulSet", "apps/v1"),
    "DaemonSet": controller("DaemonSet", "apps/v1"),
    "Job": controller("Job", "batch/v1"),
    "CronJob": cronjob,
}


def owned_by(obj: dict[str, Any], *, controller: bool | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-1"}
    if controller is not None:
        ref["controller"] = controller
    obj["metadata"]["ownerReferences"] = [ref]
    return obj


def selector(**labels: str) -> LabelSelector:
    return LabelSelector(match_labels=tuple(sorted(labels.items())))


# --- pod_template --------------------------------------------------------------------------------


def test_every_checked_kind_has_a_builder() -> None:
    assert set(BUILDERS) == {k.kind for k in model.CHECKED_KINDS}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_pod_template_of_every_checked_kind(kind: str) -> None:
    tpl = workloads.pod_template(BUILDERS[kind]())
    assert tpl is not None
    assert tpl.labels == POD_META["labels"]
    assert tpl.annotations == POD_META["annotations"]
    assert tpl.service_account == "support-bot"
    assert tpl.spec["containers"] == POD_SPEC["containers"]


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_pod_template_without_api_version(kind: str) -> None:
    # objects listed from the API server can come without apiVersion; the kind is enough
    obj = BUILDERS[kind]()
    del obj["apiVersion"]
    tpl = workloads.pod_template(obj)
    assert tpl is not None and tpl.labels == POD_META["labels"]


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_default_service_account(kind: str) -> None:
    obj = BUILDERS[kind]()
    del pod_spec(obj)["serviceAccountName"]
    tpl = workloads.pod_template(obj)
    assert tpl is not None and tpl.service_account == "default"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of an object built above (the same dict, for editing)."""
    spec: dict[str, Any] = obj["spec"]
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def test_deprecated_service_account_field() -> None:
    obj = pod()
    obj["spec"] = {"serviceAccount": "legacy", "containers": []}
    tpl = workloads.pod_template(obj)
    assert tpl is not None and tpl.service_account == "legacy"
    # serviceAccountName wins when both are set
    obj["spec"] = {"serviceAccount": "legacy", "serviceAccountName": "current", "containers": []}
    tpl = workloads.pod_template(obj)
    assert tpl is not None and tpl.service_account == "current"
    # also inside a template
    dep = BUILDERS["Deployment"]()
    del pod_spec(dep)["serviceAccountName"]
    pod_spec(dep)["serviceAccount"] = "legacy"
    tpl = workloads.pod_template(dep)
    assert tpl is not None and tpl.service_account == "legacy"


@pytest.mark.parametrize("kind", ["Service", "ConfigMap", "ReplicationController", None])
def test_pod_template_of_an_unchecked_kind_is_none(kind: str | None) -> None:
    obj = controller("X", "v1")()
    obj["kind"] = kind
    assert workloads.pod_template(obj) is None


def test_pod_template_of_a_sparse_object() -> None:
    tpl = workloads.pod_template({"kind": "Deployment", "spec": {"template": {"spec": None}}})
    assert tpl is not None
    assert (dict(tpl.labels), dict(tpl.annotations), tpl.service_account) == ({}, {}, "default")
    tpl = workloads.pod_template({"kind": "CronJob", "spec": {"jobTemplate": "nonsense"}})
    assert tpl is not None and tpl.labels == {}


def test_pod_template_label_values_are_strings() -> None:
    obj = pod()
    obj["metadata"]["labels"] = {"version": 2, "canary": True}
    tpl = workloads.pod_template(obj)
    assert tpl is not None and tpl.labels == {"version": "2", "canary": "True"}


# --- is_top_level --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Pod", "ReplicaSet", "Job"])
def test_owned_pods_replicasets_and_jobs_are_not_top_level(kind: str) -> None:
    assert workloads.is_top_level(BUILDERS[kind]())
    assert not workloads.is_top_level(owned_by(BUILDERS[kind](), controller=True))
    # an owner that is not the controller (e.g. garbage-collection only) does not count
    assert workloads.is_top_level(owned_by(BUILDERS[kind](), controller=False))
    assert workloads.is_top_level(owned_by(BUILDERS[kind](), controller=None))


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "CronJob"])
def test_controllers_are_always_top_level(kind: str) -> None:
    assert workloads.is_top_level(BUILDERS[kind]())
    assert workloads.is_top_level(owned_by(BUILDERS[kind](), controller=True))


# --- count_selected ------------------------------------------------------------------------------


def cluster() -> list[dict[str, Any]]:
    """A Deployment with its ReplicaSet and Pod, a CronJob with its Job, a bare Pod, a stranger."""
    dep = BUILDERS["Deployment"]()
    rs = owned_by(BUILDERS["ReplicaSet"](), controller=True)
    p = owned_by(BUILDERS["Pod"](), controller=True)
    cj = BUILDERS["CronJob"]()
    job = owned_by(BUILDERS["Job"](), controller=True)
    bare = BUILDERS["Pod"]()
    bare["metadata"]["labels"] = {"app": "support-bot", "tier": "batch"}
    stranger = BUILDERS["StatefulSet"]()
    pod_spec(stranger).clear()
    stranger["spec"]["template"]["metadata"]["labels"] = {"app": "db"}
    service = {"kind": "Service", "metadata": {"labels": {"app": "support-bot"}}, "spec": {}}
    return [dep, rs, p, cj, job, bare, stranger, service]


def test_count_selected_counts_top_level_workloads_by_their_pod_template() -> None:
    objs = cluster()
    assert workloads.count_selected(selector(app="support-bot"), objs) == 3  # dep, cronjob, bare pod
    assert workloads.count_selected(selector(app="support-bot", tier="api"), objs) == 2
    assert workloads.count_selected(selector(app="db"), objs) == 1
    assert workloads.count_selected(selector(app="not-the-template"), objs) == 0
    assert workloads.count_selected(selector(app="nothing"), objs) == 0
    assert workloads.count_selected(selector(app="support-bot"), []) == 0


def test_count_selected_with_expressions() -> None:
    objs = cluster()
    tier_batch = LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "In", ("batch",)),))
    no_tier = LabelSelector(match_expressions=(LabelSelectorRequirement("tier", "DoesNotExist"),))
    not_api = LabelSelector(
        match_labels=(("app", "support-bot"),),
        match_expressions=(LabelSelectorRequirement("tier", "NotIn", ("api",)),),
    )
    has_app = LabelSelector(match_expressions=(LabelSelectorRequirement("app", "Exists"),))
    assert workloads.count_selected(tier_batch, objs) == 1
    assert workloads.count_selected(no_tier, objs) == 1  # the StatefulSet
    assert workloads.count_selected(not_api, objs) == 1  # the bare pod
    assert workloads.count_selected(has_app, objs) == 4


def test_count_selected_empty_selector_selects_nothing() -> None:
    assert workloads.count_selected(LabelSelector(), cluster()) == 0


def test_count_selected_with_a_parsed_policy_selector() -> None:
    obj = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": "p", "namespace": "support"},
        "spec": {
            "provider": "openai",
            "workloadSelector": {
                "matchLabels": {"app": "support-bot"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "web"]}],
            },
            "purpose": "x",
            "consent": {"allowedBases": ["consent"]},
            "retention": {"maxDays": 1},
        },
    }
    policy = model.Policy.from_object(obj)
    assert workloads.count_selected(policy.spec.workload_selector, cluster()) == 2
