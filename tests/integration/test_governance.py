"""Cluster governance on the real control plane: ClusterAIDataPolicy (contract section 6).

Every guardrail here selects namespaces by a label unique to its test, and is deleted afterwards, so
the rest of the suite never sees it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp.config import GOVERNED_LABEL, GUARDRAILED_LABEL
from aidp.controller.governance import ClusterAIDataPolicy
from tests.integration import helpers
from tests.integration.conftest import Env
from tests.integration.helpers import COMPLIANT, create, workload
from tests.waiting import wait_for

BASELINE = "aidp-egress-baseline"


def guardrail_object(name: str, selector_value: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"aidp-test/guardrail": selector_value}},
        "providers": ["openai"],
        "retention": {"maxDays": 30},
        "dataCategories": {"forbidden": ["health"]},
        "unapprovedAI": "deny",
    }
    body.update(spec)
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": body,
    }


@pytest.fixture
def guardrail(env: Env) -> Iterator[Callable[..., str]]:
    """Create a ClusterAIDataPolicy selecting `env`'s namespace (labelled for it); deleted after."""
    yield from _guardrails(env)


@pytest.fixture(params=["opa", "vap"])
def engine_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A namespace on the control plane where the engine admits: the session's stack (`opa`) or
    the shared vap stack (tests/integration/vapstack.py)."""
    if request.param == "opa":
        yield request.getfixturevalue("env")
        return
    from tests.conftest import EXTERNAL_KUBECONFIG

    if EXTERNAL_KUBECONFIG:
        pytest.skip("the vap engine is tested on a private local control plane")
    from aidp import kube
    from tests.integration.conftest import drop_env, make_env
    from tests.integration.vapstack import vap_stack

    cp, _ = vap_stack(tmp_path_factory, request)
    client = kube.client(cp.kubeconfig)
    e = make_env(client, cp.kubeconfig)
    yield e
    drop_env(client, e)


@pytest.fixture
def engine_guardrail(engine_env: Env) -> Iterator[Callable[..., str]]:
    yield from _guardrails(engine_env)


def _guardrails(env: Env) -> Iterator[Callable[..., str]]:
    made: list[str] = []
    value = secrets.token_hex(4)
    env.client.patch(
        Namespace,
        env.ns,
        {"metadata": {"labels": {"aidp-test/guardrail": value}}},
        patch_type=PatchType.MERGE,
    )

    def make(**spec: Any) -> str:
        name = f"g-{secrets.token_hex(3)}"
        env.client.create(from_dict(guardrail_object(name, value, **spec)))
        made.append(name)
        wait_for(
            lambda: _labels(env.client, env.ns).get(GUARDRAILED_LABEL) == "true",
            timeout=30,
            what="guardrailed",
        )
        return name

    yield make
    for name in made:
        try:
            env.client.delete(ClusterAIDataPolicy, name)
        except ApiError as err:
            if err.status.code != 404:
                raise


def _labels(client: Client, ns: str) -> dict[str, str]:
    return dict(client.get(Namespace, ns).metadata.labels or {})  # type: ignore[union-attr]


def _exists(client: Client, res: Any, name: str, namespace: str | None = None) -> bool:
    try:
        client.get(res, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


def _has(client: Client, ns: str, name: str) -> bool:
    return _exists(client, NetworkPolicy, name, ns)


def test_a_guardrail_governs_a_namespace_without_policies(env: Env, guardrail: Callable[..., str]) -> None:
    guardrail()
    wait_for(lambda: _labels(env.client, env.ns).get(GOVERNED_LABEL) == "true", timeout=30, what="governed")
    wait_for(lambda: _has(env.client, env.ns, BASELINE), timeout=30, what="the baseline")
    base = env.client.get(NetworkPolicy, BASELINE, namespace=env.ns)
    assert (
        base.spec is not None and base.spec.podSelector.matchExpressions[0].key == "aidp.io/egress-isolated"
    )
    blocks = [p.ipBlock for rule in base.spec.egress or [] for p in rule.to or [] if p.ipBlock]
    cut = {c for b in blocks for c in (b.except_ or [])}
    assert "203.0.113.10/32" in cut  # api.openai.com (the test bed's address): no pod reaches it
    # deselect the namespace: it returns to what it was
    env.client.patch(
        Namespace, env.ns, {"metadata": {"labels": {"aidp-test/guardrail": None}}}, patch_type=PatchType.MERGE
    )
    wait_for(lambda: not _has(env.client, env.ns, BASELINE), timeout=30, what="the baseline removed")
    wait_for(
        lambda: not {GOVERNED_LABEL, GUARDRAILED_LABEL} & set(_labels(env.client, env.ns)),
        timeout=30,
        what="labels removed",
    )


SEEN_WITHIN = 15.0  # seconds; the own stack's full resync is 600 s away


@pytest.fixture(scope="module")
def slow_resync(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """aidp on a control plane of its own whose full resync is 10 minutes away: what it does
    within seconds it did on a watch event."""
    from aidp import kube
    from tests.integration.conftest import make_env

    for cp, _stack in helpers.own_stack(
        tmp_path_factory.mktemp("governance"), "--audit-interval", "0", "--resync-seconds", "600"
    ):
        yield make_env(kube.client(cp.kubeconfig), cp.kubeconfig)


def test_a_namespace_made_after_the_guardrail_is_governed_at_once(slow_resync: Env) -> None:
    """The operator keeps which namespaces each guardrail selects between syncs (it lists all
    namespaces only when that can have changed): a namespace created, relabelled into the
    selection or deleted after the guardrail exists is still seen at once, not at the next
    full resync."""
    env = slow_resync
    name = next(_guardrails(env))()  # the stack is the test's own: nothing to clean up
    value = _labels(env.client, env.ns)["aidp-test/guardrail"]

    def governed_count() -> int:
        status = env.client.get(ClusterAIDataPolicy, name).to_dict().get("status") or {}
        return int(status.get("governedNamespaces") or 0)

    wait_for(lambda: governed_count() == 1, timeout=SEEN_WITHIN, what="the guardrail governs one namespace")
    born, relabelled = f"{env.ns}-new", f"{env.ns}-later"
    env.client.create(Namespace(metadata=ObjectMeta(name=born, labels={"aidp-test/guardrail": value})))
    env.client.create(Namespace(metadata=ObjectMeta(name=relabelled)))
    wait_for(
        lambda: _has(env.client, born, BASELINE), timeout=SEEN_WITHIN, what="the new namespace's baseline"
    )
    assert _labels(env.client, born).get(GUARDRAILED_LABEL) == "true"
    wait_for(lambda: governed_count() == 2, timeout=SEEN_WITHIN, what="the guardrail governs two")
    assert not _has(env.client, relabelled, BASELINE)
    env.client.patch(
        Namespace,
        relabelled,
        {"metadata": {"labels": {"aidp-test/guardrail": value}}},
        patch_type=PatchType.MERGE,
    )
    wait_for(
        lambda: _has(env.client, relabelled, BASELINE),
        timeout=SEEN_WITHIN,
        what="the relabelled one's baseline",
    )
    wait_for(lambda: governed_count() == 3, timeout=SEEN_WITHIN, what="the guardrail governs three")
    # deleted (the namespace controller empties them first): the guardrail's status says so
    for ns in (born, relabelled):
        env.client.delete(Namespace, ns)

    wait_for(
        lambda: not _exists(env.client, Namespace, born) and not _exists(env.client, Namespace, relabelled),
        timeout=90,
        what="the namespaces deleted",
    )
    wait_for(lambda: governed_count() == 1, timeout=SEEN_WITHIN, what="the guardrail governs one again")


def test_bounds_at_admission_and_out_of_bounds_later(env: Env, guardrail: Callable[..., str]) -> None:
    name = guardrail()
    # looser than the guardrail: refused, naming it and each field
    looser = helpers.policy("loose", env.ns, retention={"maxDays": 90}, provider="anthropic")
    with pytest.raises(ApiError) as err:
        env.client.create(helpers.AIDataPolicy(looser))
    message = str(err.value.status.message)
    assert f"ClusterAIDataPolicy/{name}" in message, message
    assert "spec.retention.maxDays: 90" in message and "spec.provider" in message, message
    # within: admitted and enforced
    env.policy("bots")
    # the guardrail tightened afterwards: the policy is out of bounds, both rule sets apply
    env.client.patch(
        ClusterAIDataPolicy, name, {"spec": {"retention": {"maxDays": 10}}}, patch_type=PatchType.MERGE
    )

    def out_of_bounds() -> dict[str, Any] | None:
        obj = env.client.get(helpers.AIDataPolicy, "bots", namespace=env.ns).to_dict()
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        c = conds.get("WithinBounds")
        return c if c and c["status"] == "False" else None

    cond = wait_for(out_of_bounds, timeout=30, what="WithinBounds=False")
    assert cond["reason"] == "OutOfBounds" and "spec.retention.maxDays" in cond["message"], cond
    status = env.client.get(ClusterAIDataPolicy, name).to_dict().get("status") or {}
    wait_for(
        lambda: (
            f"{env.ns}/bots"
            in (
                (env.client.get(ClusterAIDataPolicy, name).to_dict().get("status") or {}).get("outOfBounds")
                or []
            )
        ),
        timeout=30,
        what="the guardrail's status lists the policy",
    )
    del status
    # a workload that passes the namespace policy (20 <= 30) but not the guardrail (20 > 10)
    obj = workload("Deployment", "bot", env.ns, annotations={**COMPLIANT, "aidp.io/retention-days": "20"})
    denied = create(env.client, obj)
    assert denied is not None and f"ClusterAIDataPolicy/{name}: [retention-days]" in denied, denied


@pytest.mark.parametrize("mode", ["deny", "warn", "audit"])
def test_unapproved_ai(engine_env: Env, engine_guardrail: Callable[..., str], mode: str) -> None:
    """With each engine: the vap engine's aidp-unapproved-ai-* and its NamespaceAdmission param
    decide as the Rego does (docs/admission-engines.md#unapproved-ai)."""
    env = engine_env
    name = engine_guardrail(unapprovedAI=mode)
    env.policy("bots")  # selects app=bot only
    obj = workload("Deployment", f"shadow-{mode}", env.ns, labels={"app": "shadow"}, annotations={})
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "OPENAI_API_KEY", "value": "x"}]
    manifest = json.dumps(obj)
    expected = (
        f"ClusterAIDataPolicy/{name}: [unapproved-ai]"
        if mode == "deny"
        else f"ClusterAIDataPolicy/{name} [unapproved-ai]"
    )
    if mode != "audit":  # until the engine has the guardrail (and, for vap, its param)
        wait_for(
            lambda: expected in env.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest).stderr,
            timeout=30,
            what=f"unapproved-ai {mode} in force",
        )
    result = env.kubectl("apply", "-f", "-", stdin=manifest)
    if mode == "deny":
        assert result.returncode != 0, result.stdout
        assert expected in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert ("[unapproved-ai]" in result.stderr) == (mode == "warn"), result.stderr
        if mode == "warn":
            assert expected in result.stderr, result.stderr
    # the policy's own workload (app=bot) is approved: no unapproved-ai
    approved = workload("Deployment", f"approved-{mode}", env.ns)
    approved["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "OPENAI_API_KEY", "value": "x"}]
    result = env.kubectl("apply", "-f", "-", stdin=json.dumps(approved))
    assert result.returncode == 0 and "[unapproved-ai]" not in result.stderr, result.stderr
