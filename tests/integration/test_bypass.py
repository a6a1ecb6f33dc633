"""Bypass attempts against the live stack: each one must fail.

A workload author who wants a pod to reach the AI provider without declaring compliant terms, or
to switch enforcement off, tries: copied labels, relabelling after creation (also while the pod
is terminating), an ephemeral container, controllers that create the pods later (Job, CronJob,
a ReplicaSet scaled through its unchecked `scale` subresource, a suspended Job), OPA's
management API without the token, editing the generated NetworkPolicies, and an excluded
namespace. See docs/security.md for the threat model.
"""

from __future__ import annotations

import copy
import json
import secrets
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Event, Namespace, Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp import catalog
from aidp.config import GOVERNED_LABEL
from aidp.devcluster.stack import AidpStack
from aidp.egress.model import AddressBook
from aidp.egress.resolver import load_overrides
from aidp.model import RULE_IDS
from tests.integration import helpers
from tests.integration.conftest import Env
from tests.integration.helpers import COMPLIANT, create, workload
from tests.waiting import wait_for

DECLARATIONS = {"consent-basis", "retention-days", "zero-data-retention", "data-categories"}
UNDECLARED = DECLARATIONS | {"service-account"}  # no declarations and the default service account
RESYNC_SECONDS = 5  # the test stack runs the operator with --resync-seconds 5
RESTORE_TIMEOUT = 3 * RESYNC_SECONDS  # a loaded machine gets some slack over one resync
BASELINE = "aidp-egress-baseline"
DEBUG_CONTAINER = {"name": "debug", "image": "example.com/debug:1", "command": ["sh"], "stdin": True}


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _rules_in(message: str) -> set[str]:
    return {r for r in RULE_IDS if f"[{r}]" in message}


def _denied_by(message: str | None, policy: str) -> str:
    assert message is not None, "admitted"
    assert 'admission webhook "validate.aidp.io" denied the request: aidp: ' in message, message
    assert f"AIDataPolicy {policy}: " in message, message
    return message


@pytest.fixture(scope="module")
def governed(module_env: Env) -> Env:
    """A namespace where AIDataPolicy `bots` approves app=bot (and nothing selects app=other)."""
    module_env.policy("bots")
    return module_env


def _selecting(env: Env, labels: dict[str, str]) -> str:
    """A new policy in `env` that selects `labels`, enforced."""
    name = _name("late")
    env.policy(name, workloadSelector={"matchLabels": labels})
    return name


def _exists(client: Client, res: Any, name: str, ns: str) -> bool:
    try:
        client.get(res, name, namespace=ns)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


# ---- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Pod", "Deployment"])
def test_copying_an_approved_workloads_labels_grants_nothing(governed: Env, kind: str) -> None:
    obj = workload(kind, _name("copy"), governed.ns, labels={"app": "bot"}, annotations={}, sa="default")
    msg = _denied_by(create(governed.client, obj), "bots")
    assert _rules_in(msg) == UNDECLARED, msg


def test_relabelling_a_pod_into_a_selector_is_denied(governed: Env) -> None:
    client, ns, name = governed.client, governed.ns, _name("other")
    assert create(client, workload("Pod", name, ns, labels={"app": "other"}, annotations={})) is None
    for patch_type in (PatchType.MERGE, PatchType.STRATEGIC, PatchType.JSON):
        patch: Any = {"metadata": {"labels": {"app": "bot"}}}
        if patch_type == PatchType.JSON:
            patch = [{"op": "replace", "path": "/metadata/labels/app", "value": "bot"}]
        with pytest.raises(ApiError) as err:
            client.patch(Pod, name, patch, namespace=ns, patch_type=patch_type)
        assert _rules_in(_denied_by(err.value.status.message, "bots")) == DECLARATIONS
    # a full replace (PUT) and a server-side apply are UPDATEs too
    pod = client.get(Pod, name, namespace=ns)
    assert pod.metadata is not None
    pod.metadata.labels = {"app": "bot"}
    with pytest.raises(ApiError) as err:
        client.replace(pod)
    _denied_by(err.value.status.message, "bots")
    applied = from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "bot"}},
        }
    )
    with pytest.raises(ApiError) as err:
        client.apply(applied, field_manager="someone", force=True)
    _denied_by(err.value.status.message, "bots")
    live = client.get(Pod, name, namespace=ns)
    assert live.metadata is not None and live.metadata.labels == {"app": "other"}


def test_dropping_the_declarations_of_a_selected_pod_is_denied(governed: Env) -> None:
    client, ns, name = governed.client, governed.ns, _name("good")
    assert create(client, workload("Pod", name, ns)) is None
    with pytest.raises(ApiError) as err:
        client.patch(
            Pod,
            name,
            {"metadata": {"annotations": {"aidp.io/retention-days": None}}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
    assert _rules_in(_denied_by(err.value.status.message, "bots")) == {"retention-days"}


def test_relabelling_a_terminating_pod_into_a_selector_is_denied(governed: Env) -> None:
    """A terminating pod runs on for its grace period (which its author chooses). UPDATEs of objects
    being deleted pass unchecked so that finalizers can be removed, but relabelling one into a
    policy's selector would give it the policy's egress without any declaration."""
    client, ns, name = governed.client, governed.ns, _name("term")
    pod = workload("Pod", name, ns, labels={"app": "other"}, annotations={})
    pod["metadata"]["finalizers"] = ["example.com/hold"]
    pod["spec"]["terminationGracePeriodSeconds"] = 86400
    assert create(client, pod) is None
    client.delete(Pod, name, namespace=ns)
    live = client.get(Pod, name, namespace=ns)
    assert live.metadata is not None and live.metadata.deletionTimestamp is not None
    with pytest.raises(ApiError) as err:
        client.patch(
            Pod, name, {"metadata": {"labels": {"app": "bot"}}}, namespace=ns, patch_type=PatchType.MERGE
        )
    assert _rules_in(_denied_by(err.value.status.message, "bots")) == DECLARATIONS
    # what the exemption is for still works: the finalizer can be removed, and the pod goes away
    client.patch(Pod, name, {"metadata": {"finalizers": None}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_for(lambda: not _exists(client, Pod, name, ns), timeout=30, what=f"pod {name} deleted")


# ---- ephemeral containers -----------------------------------------------------------------------


def test_ephemeral_containers_are_checked(governed: Env) -> None:
    """The webhook covers pods/ephemeralcontainers: on a compliant pod a debug container is
    admitted; on a pod that violates a policy created after the pod, it is denied."""
    client, ns = governed.client, governed.ns
    debug = {"spec": {"ephemeralContainers": [DEBUG_CONTAINER]}}

    good = _name("good")
    assert create(client, workload("Pod", good, ns)) is None
    patched = client.patch(Pod.Ephemeralcontainers, good, debug, namespace=ns, patch_type=PatchType.STRATEGIC)
    assert [c.name for c in patched.spec.ephemeralContainers or []] == ["debug"]

    labels = {"app": _name("late")}
    late = _name("late")
    assert (
        create(client, workload("Pod", late, ns, labels=labels, annotations={})) is None
    )  # not selected yet
    policy = _selecting(governed, labels)
    with pytest.raises(ApiError) as err:
        client.patch(Pod.Ephemeralcontainers, late, debug, namespace=ns, patch_type=PatchType.STRATEGIC)
    msg = _denied_by(err.value.status.message, policy)
    assert f"Pod {ns}/{late}" in msg and _rules_in(msg) == DECLARATIONS, msg
    # the subresource's PUT is checked the same way
    body = client.get(Pod.Ephemeralcontainers, late, namespace=ns).to_dict()
    body["spec"]["ephemeralContainers"] = [DEBUG_CONTAINER]
    with pytest.raises(ApiError) as err:
        client.replace(Pod.Ephemeralcontainers.from_dict(body), late, namespace=ns)
    _denied_by(err.value.status.message, policy)
    live = client.get(Pod, late, namespace=ns)
    assert not (live.spec and live.spec.ephemeralContainers)


# ---- controllers that create the pods later ----------------------------------------------------


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_violating_job_and_cronjob_templates_are_denied_at_the_controller_object(
    governed: Env, kind: str
) -> None:
    client, ns, name = governed.client, governed.ns, _name(kind.lower())
    obj = workload(
        kind, name, ns, annotations={k: v for k, v in COMPLIANT.items() if k != "aidp.io/retention-days"}
    )
    msg = _denied_by(create(client, obj), "bots")
    assert f"{kind} {ns}/{name}" in msg and _rules_in(msg) == {"retention-days"}, msg
    assert not _exists(client, Job if kind == "Job" else CronJob, name, ns)
    assert not [
        p for p in client.list(Pod, namespace=ns) if ((p.metadata and p.metadata.name) or "").startswith(name)
    ]


def test_a_replicaset_scaled_up_after_the_policy_gets_no_pods(governed: Env) -> None:
    """`replicasets/scale` is not checked, but every pod the controller then creates is."""
    client, ns = governed.client, governed.ns
    labels = {"app": _name("late")}
    rs = workload("ReplicaSet", _name("rs"), ns, labels=labels, annotations={})
    rs["spec"]["replicas"] = 0
    assert create(client, rs) is None  # not selected yet
    policy = _selecting(governed, labels)
    name = rs["metadata"]["name"]
    client.patch(ReplicaSet.Scale, name, {"spec": {"replicas": 2}}, namespace=ns, patch_type=PatchType.MERGE)

    def failure() -> str | None:
        status = client.get(ReplicaSet, name, namespace=ns).status
        for cond in (status.conditions if status else None) or []:
            if cond.type == "ReplicaFailure" and cond.reason == "FailedCreate":
                return cond.message
        return None

    msg = wait_for(failure, timeout=30, what="the ReplicaSet controller's FailedCreate")
    assert f"Pod {ns}/{name}-" in _denied_by(msg, policy), msg
    pods = [p for p in client.list(Pod, namespace=ns, labels=labels)]
    assert pods == []


def test_unsuspending_a_job_created_before_the_policy_runs_no_pod(governed: Env) -> None:
    """Unsuspending leaves the template as it was, so the UPDATE itself is admitted (a verdict change
    never blocks the controllers, contract section 3); the pods the job controller then creates are
    judged, and refused."""
    client, ns = governed.client, governed.ns
    labels = {"app": _name("late")}
    job = workload("Job", _name("job"), ns, labels=labels, annotations={})
    job["spec"]["suspend"] = True
    assert create(client, job) is None  # not selected yet
    policy = _selecting(governed, labels)
    name = job["metadata"]["name"]
    client.patch(Job, name, {"spec": {"suspend": False}}, namespace=ns, patch_type=PatchType.MERGE)

    def refused() -> str | None:
        for ev in client.list(Event, namespace=ns, fields={"involvedObject.name": name}):
            if ev.reason == "FailedCreate" and ev.message and "aidp:" in ev.message:
                return ev.message
        return None

    _denied_by(wait_for(refused, timeout=30, what="the job controller's pod refused"), policy)
    assert list(client.list(Pod, namespace=ns, labels=labels)) == []


# ---- OPA's management API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opa_http(aidp_stack: AidpStack) -> Iterator[httpx.Client]:
    ctx = ssl.create_default_context(cafile=str(aidp_stack.tls_dir / "ca.crt"))
    with httpx.Client(base_url=aidp_stack.opa_url, verify=ctx, trust_env=False, timeout=10.0) as http:
        yield http


def _modules(http: httpx.Client, stack: AidpStack) -> list[str]:
    token = stack.token_file.read_text().strip()
    res = http.get("/v1/policies", headers={"Authorization": f"Bearer {token}"})
    res.raise_for_status()
    return sorted(p["id"] for p in res.json()["result"])


ALLOW_ALL = (
    "package aidp.admission\n\n"
    'decision := {"allowed": true, "message": "", "violations": [], "warnings": []}\n'
)
OPA_WRITES = [
    ("PUT", "/v1/policies/aidp/admission.rego", ALLOW_ALL, "text/plain"),
    ("PUT", "/v1/policies/evil.rego", "package evil\n\nx := 1\n", "text/plain"),
    ("DELETE", "/v1/policies/system/main.rego", None, None),
    (
        "PUT",
        "/v1/data/aidp",
        json.dumps({"revision": "0000000000000000", "policies": {}}),
        "application/json",
    ),
    ("PUT", "/v1/data/aidp/policies", "{}", "application/json"),
    (
        "PATCH",
        "/v1/data/aidp",
        json.dumps([{"op": "remove", "path": "/policies"}]),
        "application/json-patch+json",
    ),
    ("DELETE", "/v1/data/aidp", None, None),
    ("PUT", "/v1/data/system/authz", "{}", "application/json"),
]


AUTHORIZATION = {
    "no-token": None,
    "wrong-token": "Bearer " + "x" * 40,
    "bearer-without-token": "Bearer",
    "basic-auth": "Basic YWRtaW46YWRtaW4=",
}


@pytest.mark.parametrize("auth", sorted(AUTHORIZATION))
@pytest.mark.local_only  # talks to the local OPA directly
def test_opa_management_api_refuses_writes_without_the_token(
    aidp_stack: AidpStack, opa_http: httpx.Client, governed: Env, auth: str
) -> None:
    revision, modules = aidp_stack.opa_revision(), _modules(opa_http, aidp_stack)
    assert revision is not None
    value = AUTHORIZATION[auth]
    headers = {} if value is None else {"Authorization": value}
    for method, path, body, content_type in OPA_WRITES:
        h = {**headers, **({"Content-Type": content_type} if content_type else {})}
        res = opa_http.request(method, path, content=body, headers=h)
        assert res.status_code == 401, (method, path, res.status_code, res.text)
        assert res.json().get("code") == "unauthorized", res.text
    # nothing to read either: the policies and data stay private
    for path in ("/v1/data/aidp", "/v1/policies", "/v1/config", "/v1/status", "/metrics"):
        assert opa_http.get(path, headers=headers).status_code == 401, path
    assert opa_http.post("/v1/query", json={"query": "data"}, headers=headers).status_code == 401
    assert aidp_stack.opa_revision() == revision
    assert _modules(opa_http, aidp_stack) == modules
    # and admission still decides as before
    bad = workload("Pod", _name("copy"), governed.ns, annotations={})
    _denied_by(create(governed.client, bad, dry_run=True), "bots")


# ---- generated NetworkPolicies ------------------------------------------------------------------


def _generated(client: Client, ns: str) -> dict[str, dict[str, Any]]:
    nps = client.list(NetworkPolicy, namespace=ns)
    return {d["metadata"]["name"]: d for d in (np.to_dict() for np in nps)}


def _widen_to_world(spec: dict[str, Any]) -> None:
    spec["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]}]


def _select_every_pod(spec: dict[str, Any]) -> None:
    spec["podSelector"] = {}


def _open_all_ports(spec: dict[str, Any]) -> None:
    for rule in spec["egress"]:
        rule.pop("ports", None)


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "approved rule widened to 0.0.0.0/0 and ::/0": _widen_to_world,
    "approved rule selecting every pod": _select_every_pod,
    "approved rule on every port": _open_all_ports,
}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("hide", [False, True], ids=["labelled", "managed-by-label-removed"])
def test_an_edited_generated_networkpolicy_is_restored(
    edit: str, hide: bool, env: Env, kube_client: Client
) -> None:
    """Also when the editor removes the managed-by label, so that the operator's label selector no
    longer lists the object: it is re-applied under its name."""
    env.policy("chat")
    name = "aidp-egress-chat"
    before = wait_for(lambda: _generated(kube_client, env.ns).get(name), timeout=30, what=name)
    body = copy.deepcopy(before)
    EDITS[edit](body["spec"])
    if hide:
        del body["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    edited = kube_client.replace(NetworkPolicy.from_dict(body), field_manager="intruder").to_dict()
    assert edited["spec"] == body["spec"] != before["spec"]

    def restored() -> dict[str, Any] | None:
        now = _generated(kube_client, env.ns)[name]
        labels = now["metadata"].get("labels") or {}
        ok = now["spec"] == before["spec"] and labels.get("app.kubernetes.io/managed-by") == "aidp"
        return now if ok else None

    wait_for(restored, timeout=RESTORE_TIMEOUT, interval=0.1, what=f"{name} restored after: {edit}")


# ---- an excluded namespace ------------------------------------------------------------------------


def test_a_policy_in_an_excluded_namespace_still_gets_egress_rules(
    aidp_stack: AidpStack, kube_client: Client
) -> None:
    """The webhook never checks the operator's namespace, but a policy there must still cut the
    provider out of every unapproved pod's egress: admission exclusion must not open the network."""
    ns, name = aidp_stack.namespace, _name("excluded")
    static, _ = load_overrides(aidp_stack.addresses_file)
    openai = set(catalog.current()["openai"].all_hosts())  # every host of the policy's provider
    v4, v6 = AddressBook(static).split(sorted(h for h in static if h in openai))
    assert v4 and v6
    kube_client.create(helpers.AIDataPolicy(helpers.policy(name, ns)))
    try:
        # admission does not apply here: a violating pod is admitted (dry-run), and status says so
        assert (
            create(kube_client, workload("Pod", _name("p"), ns, annotations={}, sa="default"), dry_run=True)
            is None
        )

        def status() -> dict[str, Any] | None:
            st = kube_client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict().get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or []}
            done = st.get("observedGeneration") == 1 and "EgressEnforced" in conds
            return conds if done else None

        conds = wait_for(status, timeout=30, what=f"status of {ns}/{name}")
        assert (conds["AdmissionEnforced"]["status"], conds["AdmissionEnforced"]["reason"]) == (
            "False",
            "NamespaceExcluded",
        ), conds
        assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "NamespaceExcluded"), conds
        assert (conds["EgressEnforced"]["status"], conds["EgressEnforced"]["reason"]) == (
            "True",
            "Applied",
        ), conds

        nps = wait_for(
            lambda: (g := _generated(kube_client, ns)) and BASELINE in g and f"aidp-egress-{name}" in g and g,
            timeout=30,
            what=f"egress rules in {ns}",
        )
        baseline = nps[BASELINE]["spec"]
        assert baseline["podSelector"] == {
            "matchExpressions": [{"key": "aidp.io/egress-isolated", "operator": "DoesNotExist"}]
        } and baseline["policyTypes"] == ["Egress"]
        blocks = {p["ipBlock"]["cidr"]: p["ipBlock"] for p in baseline["egress"][0]["to"] if "ipBlock" in p}
        assert sorted(blocks) == ["0.0.0.0/0", "::/0"], baseline
        assert sorted(blocks["0.0.0.0/0"]["except"]) == sorted(v4), baseline
        assert sorted(blocks["::/0"]["except"]) == sorted(v6), baseline
        approved = nps[f"aidp-egress-{name}"]["spec"]
        assert approved["podSelector"] == {"matchLabels": {"app": "bot", "aidp.io/approved": "true"}}, (
            approved
        )
        # the operator's namespace is never labelled governed (the webhook must not apply there)
        labels = kube_client.get(Namespace, ns).metadata.labels or {}
        assert GOVERNED_LABEL not in labels
    finally:
        kube_client.delete(helpers.AIDataPolicy, name, namespace=ns)
    wait_for(
        lambda: BASELINE not in _generated(kube_client, ns), timeout=30, what=f"{BASELINE} removed from {ns}"
    )
