"""Admission through the live engines, per docs/policy-contract.md section 3: every test runs with
the `opa` engine (kube-apiserver -> the OPA webhook, the session's stack) and the `vap` engine
(ValidatingAdmissionPolicy objects inside kube-apiserver, a private stack: tests/integration/vapstack.py)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from tests.integration import helpers
from tests.integration.conftest import Env
from tests.integration.helpers import KINDS, VIOLATIONS, create, violating, workload
from tests.waiting import wait_for

RULES = [*VIOLATIONS, "review-expired"]


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _rules_in(message: str) -> set[str]:
    return {r for r in RULES if f"[{r}]" in message}


@pytest.fixture(scope="module", params=["opa", "vap"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def engine_client(
    engine: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Client, Path]:
    """The API client and kubeconfig of the control plane where `engine` admits."""
    if engine == "opa":
        stack = request.getfixturevalue("aidp_stack")
        return request.getfixturevalue("kube_client"), stack.cp.kubeconfig
    from tests.conftest import EXTERNAL_KUBECONFIG

    if EXTERNAL_KUBECONFIG:
        pytest.skip("the vap engine is tested on a private local control plane")
    from aidp import kube
    from tests.integration.vapstack import vap_stack

    cp, _ = vap_stack(tmp_path_factory, request)
    return kube.client(cp.kubeconfig), cp.kubeconfig


@pytest.fixture(scope="module")
def module_env(engine_client: tuple[Client, Path]) -> Iterator[Env]:
    from tests.integration.conftest import drop_env, make_env

    e = make_env(*engine_client)
    yield e
    drop_env(engine_client[0], e)


@pytest.fixture
def env(engine_client: tuple[Client, Path]) -> Iterator[Env]:
    from tests.integration.conftest import drop_env, make_env

    e = make_env(*engine_client)
    yield e
    drop_env(engine_client[0], e)


@pytest.fixture(scope="module")
def governed(module_env: Env) -> Env:
    module_env.policy("bots")
    return module_env


@pytest.fixture(scope="module")
def expired_env(engine_client: tuple[Client, Path]) -> Iterator[Env]:
    from tests.integration.conftest import drop_env, make_env

    e = make_env(*engine_client)
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    e.policy("stale", review={"approvedBy": "dpo@example.com", "expires": yesterday})
    yield e
    drop_env(engine_client[0], e)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", list(VIOLATIONS))
def test_violating_only_one_rule_is_denied_and_the_compliant_twin_admitted(
    governed: Env, kind: str, rule: str
) -> None:
    msg = create(governed.client, violating(kind, _name("bad"), governed.ns, rule))
    assert msg is not None, f"{kind} violating {rule} was admitted"
    assert "aidp:" in msg and "AIDataPolicy bots" in msg
    assert _rules_in(msg) == {rule}, msg
    assert create(governed.client, workload(kind, _name("good"), governed.ns)) is None


@pytest.mark.parametrize("kind", KINDS)
def test_expired_review_denies_compliant_workloads(expired_env: Env, kind: str) -> None:
    msg = create(expired_env.client, workload(kind, _name("w"), expired_env.ns))
    assert msg is not None
    assert "AIDataPolicy stale" in msg and _rules_in(msg) == {"review-expired"}, msg


def test_expired_policy_reports_phase_expired(expired_env: Env) -> None:
    obj = expired_env.client.get(helpers.AIDataPolicy, "stale", namespace=expired_env.ns)
    status = obj.get("status") or {}
    assert status["phase"] == "Expired"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Expired")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", list(VIOLATIONS))
def test_server_side_dry_run_is_checked(governed: Env, kind: str, rule: str) -> None:
    name = _name("dry")
    msg = create(governed.client, violating(kind, name, governed.ns, rule), dry_run=True)
    assert msg is not None and _rules_in(msg) == {rule}, msg
    assert create(governed.client, workload(kind, name, governed.ns), dry_run=True) is None


def _template_patch(kind: str, rule: str) -> dict[str, Any]:
    change = VIOLATIONS[rule]
    meta = {"annotations": change.get("annotations", {})}
    spec = {"serviceAccountName": change["sa"]} if "sa" in change else {}
    if kind == "Pod":
        return {"metadata": meta, **({"spec": spec} if spec else {})}
    template = {"metadata": meta, **({"spec": spec} if spec else {})}
    if kind == "CronJob":
        return {"spec": {"jobTemplate": {"spec": {"template": template}}}}
    return {"spec": {"template": template}}


# A Job's pod template is immutable and so is a Pod's service account: the API server refuses
# those updates itself, so they cannot be used to slip past the rules.
UPDATABLE = [
    (kind, rule)
    for kind in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "CronJob")
    for rule in VIOLATIONS
    if not (kind == "Pod" and rule == "service-account")
]


@pytest.mark.parametrize(("kind", "rule"), UPDATABLE)
def test_update_into_violation_is_denied(governed: Env, kind: str, rule: str) -> None:
    name = _name("upd")
    obj = workload(kind, name, governed.ns)
    assert create(governed.client, obj) is None
    res = type(from_dict(obj))
    with pytest.raises(ApiError) as err:
        governed.client.patch(
            res, name, _template_patch(kind, rule), namespace=governed.ns, patch_type=PatchType.MERGE
        )
    assert _rules_in(err.value.status.message) == {rule}, err.value.status.message


def test_copied_labels_grant_nothing(governed: Env) -> None:
    """A pod with an approved workload's labels but no declarations (default SA) is denied."""
    pod = workload("Pod", _name("copy"), governed.ns, annotations={}, sa="default")
    msg = create(governed.client, pod)
    assert msg is not None
    assert _rules_in(msg) == {
        "service-account",
        "consent-basis",
        "retention-days",
        "zero-data-retention",
        "data-categories",
    }, msg


def test_unselected_workloads_are_admitted_unchanged(governed: Env) -> None:
    obj = workload("Deployment", _name("other"), governed.ns, labels={"app": "report"}, annotations={})
    assert create(governed.client, obj) is None


def test_two_policies_selecting_one_pod_must_both_pass(env: Env) -> None:
    env.policy("loose", retention={"maxDays": 90})
    env.policy("strict", retention={"maxDays": 7, "requireZeroDataRetention": True})
    msg = create(env.client, workload("Pod", _name("p"), env.ns))  # declares 14 days
    assert msg is not None
    assert "AIDataPolicy strict" in msg and "AIDataPolicy loose" not in msg, msg
    ok = workload("Pod", _name("p"), env.ns, annotations={**helpers.COMPLIANT, "aidp.io/retention-days": "7"})
    assert create(env.client, ok) is None


# how each engine's warnings start (kube-apiserver prefixes a ValidatingAdmissionPolicy's message)
WARNING_PREFIX = {
    "opa": "Warning: aidp:",
    "vap": "Warning: Validation failed for ValidatingAdmissionPolicy 'aidp-workloads-warn' with binding "
    "'aidp-workloads-warn': aidp:",
}


def test_warn_admits_with_one_warning_per_failing_rule(env: Env, engine: str) -> None:
    env.policy("advisory", enforcement="warn")
    bad = violating("Deployment", "warned", env.ns, "retention-days")
    bad["spec"]["template"]["metadata"]["annotations"]["aidp.io/data-categories"] = "health"
    import yaml

    out = env.kubectl("create", "-f", "-", stdin=yaml.safe_dump(bad))
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith(WARNING_PREFIX[engine])]
    assert len(warnings) == 2, out.stderr
    assert any("[retention-days]" in w for w in warnings) and any("[data-categories]" in w for w in warnings)


def test_dryrun_admits_silently(env: Env) -> None:
    env.policy("observe", enforcement="dryrun")
    import yaml

    out = env.kubectl(
        "create", "-f", "-", stdin=yaml.safe_dump(violating("Pod", "quiet", env.ns, "consent-basis"))
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr


def test_tightening_then_deleting_a_policy(env: Env) -> None:
    env.policy("limits")
    obj = workload("Deployment", "bot", env.ns)
    assert create(env.client, obj, dry_run=True) is None
    env.client.patch(
        helpers.AIDataPolicy,
        "limits",
        {"spec": {"retention": {"maxDays": 7}}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    msg = wait_for(
        lambda: create(env.client, obj, dry_run=True), timeout=10, what="tightened policy enforced"
    )
    assert _rules_in(msg) == {"retention-days"}
    env.client.delete(helpers.AIDataPolicy, "limits", namespace=env.ns)
    wait_for(
        lambda: create(env.client, violating("Pod", "any", env.ns, "consent-basis"), dry_run=True) is None,
        timeout=10,
        what="deleted policy lifted",
    )


def test_governed_label_is_restored(env: Env) -> None:
    from lightkube.resources.core_v1 import Namespace

    kube_client = env.client

    env.policy("labelled")
    kube_client.patch(
        Namespace, env.ns, {"metadata": {"labels": {"aidp.io/governed": None}}}, patch_type=PatchType.MERGE
    )
    wait_for(
        lambda: (kube_client.get(Namespace, env.ns).metadata.labels or {}).get("aidp.io/governed") == "true",
        timeout=10,
        what="operator to restore the governed label",
    )
