"""Cluster governance proven by packets (contract sections 4 and 6, issues 12 and 13).

A namespace that a ClusterAIDataPolicy selects is governed even with no AIDataPolicy: the baseline
the operator renders there cuts every pod off the provider's addresses, and deselecting the
namespace gives the pods their egress back. Deleting a namespace's last AIDataPolicy makes it
ungoverned again, unless a guardrail still governs it. Every check is a TCP connection attempt
from inside a probe pod on the node (`nc -z`), through the rules kube-router enforces.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from aidp.config import GOVERNED_LABEL
from aidp.controller.governance import ClusterAIDataPolicy
from aidp.devcluster.node import OUTSIDE_HOST
from tests.integration import helpers
from tests.node.conftest import NodeBed
from tests.waiting import wait_for

pytestmark = pytest.mark.node

API = "api.openai.com"
EU = "eu.api.openai.com"
CONVERGE = 90
SELECTOR_LABEL = "aidp-test/guardrail"
AI_ENV = [{"name": "OPENAI_API_KEY", "value": "not-a-real-key"}]


def _label_namespace(bed: NodeBed, ns: str, value: str | None) -> None:
    bed.client.patch(
        Namespace, ns, {"metadata": {"labels": {SELECTOR_LABEL: value}}}, patch_type=PatchType.MERGE
    )


def _governed(bed: NodeBed, ns: str) -> bool:
    meta = bed.client.get(Namespace, ns).metadata
    return bool(meta and (meta.labels or {}).get(GOVERNED_LABEL) == "true")


@pytest.fixture(scope="module")
def guardrail(node_bed: NodeBed) -> Iterator[str]:
    """A ClusterAIDataPolicy selecting namespaces labelled `aidp-test/guardrail=<value>`; yields
    the value. `unapprovedAI: audit`, so AI pods nothing approves are admitted and the network has
    to stop them."""
    value = secrets.token_hex(4)
    name = f"g-{value}"
    obj: dict[str, Any] = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {SELECTOR_LABEL: value}},
            "providers": ["openai"],
            "retention": {"maxDays": 30},
            "unapprovedAI": "audit",
        },
    }
    node_bed.client.create(from_dict(obj))
    yield value
    try:
        node_bed.client.delete(ClusterAIDataPolicy, name)
    except ApiError as err:
        if err.status.code != 404:
            raise


def test_a_guardrail_only_namespace_reaches_no_provider_until_deselected(
    node_bed: NodeBed, guardrail: str
) -> None:
    ns = node_bed.namespace()
    try:
        # pods first, while the namespace is ungoverned: both reach the provider
        bot = node_bed.probe_pod(ns, "bot")
        bot["spec"]["containers"][0]["env"] = AI_ENV
        bot_pod = node_bed.run_pod(bot)
        other = node_bed.run_pod(
            node_bed.probe_pod(ns, "other", labels={"app": "other"}, annotations={}, sa="default")
        )
        node_bed.until_connects(ns, bot_pod, API, True, timeout=CONVERGE)

        _label_namespace(node_bed, ns, guardrail)
        wait_for(lambda: _governed(node_bed, ns), timeout=CONVERGE, what=f"{ns} governed by the guardrail")
        # no AIDataPolicy approves anything here: every pod is cut off every provider address,
        # the compliant-looking AI pod included; other egress stays
        node_bed.until_connects(ns, bot_pod, API, False, timeout=CONVERGE)
        node_bed.until_connects(ns, other, API, False, timeout=CONVERGE)
        for pod in (bot_pod, other):
            node_bed.expect(ns, pod, EU, False)
            for address in ("203.0.113.10", "203.0.113.11"):
                node_bed.expect(ns, pod, address, False)
            node_bed.expect(ns, pod, OUTSIDE_HOST, True)
        # a pod started while the guardrail governs is refused from its first attempt
        late = node_bed.probe_pod(ns, "late")
        late["spec"]["containers"][0]["env"] = AI_ENV
        late_pod = node_bed.run_pod(late)
        node_bed.expect(ns, late_pod, API, False)

        # deselect: the namespace is ungoverned again and the pods reach the provider
        _label_namespace(node_bed, ns, None)
        wait_for(lambda: not _governed(node_bed, ns), timeout=CONVERGE, what=f"{ns} ungoverned")
        for pod in (bot_pod, other, late_pod):
            node_bed.until_connects(ns, pod, API, True, timeout=CONVERGE)
    finally:
        node_bed.drop_namespace(ns)


def test_deleting_the_last_policy_ungoverns_a_namespace(node_bed: NodeBed) -> None:
    ns = node_bed.namespace()
    try:
        node_bed.policy(ns, "bots")
        approved = node_bed.run_pod(node_bed.probe_pod(ns, "approved"))
        unapproved = node_bed.run_pod(
            node_bed.probe_pod(ns, "unapproved", labels={"app": "other"}, annotations={}, sa="default")
        )
        node_bed.until_connects(ns, unapproved, API, False, timeout=CONVERGE)  # the baseline first,
        node_bed.until_connects(ns, approved, API, True, timeout=CONVERGE)  # then the approved pod's rule

        node_bed.client.delete(helpers.AIDataPolicy, "bots", namespace=ns)
        wait_for(lambda: not _governed(node_bed, ns), timeout=CONVERGE, what=f"{ns} ungoverned")
        # contract section 4: no policy, no guardrail -> ungoverned, every pod as before aidp
        node_bed.until_connects(ns, unapproved, API, True, timeout=CONVERGE)
        node_bed.expect(ns, approved, API, True)
    finally:
        node_bed.drop_namespace(ns)


def test_deleting_the_last_policy_of_a_guardrailed_namespace_cuts_its_pods(
    node_bed: NodeBed, guardrail: str
) -> None:
    ns = node_bed.namespace()
    try:
        _label_namespace(node_bed, ns, guardrail)
        node_bed.policy(ns, "bots")
        approved = node_bed.run_pod(node_bed.probe_pod(ns, "approved"))
        node_bed.until_connects(ns, approved, API, True, timeout=CONVERGE)

        node_bed.client.delete(helpers.AIDataPolicy, "bots", namespace=ns)
        # the guardrail still governs it: the pod that was approved loses the provider
        cut = node_bed.until_connects(ns, approved, API, False, timeout=CONVERGE)
        assert _governed(node_bed, ns)
        node_bed.expect(ns, approved, OUTSIDE_HOST, True)
        print(f"approved pod cut {cut:.2f} s after its namespace's last policy was deleted")
    finally:
        node_bed.drop_namespace(ns)
