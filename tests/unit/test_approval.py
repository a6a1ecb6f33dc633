"""Egress follows the verdict: which pods carry the approval label, and the selectors that read it."""

from __future__ import annotations

from typing import Any

import pytest

from aidp.config import APPROVAL_LABEL
from aidp.controller import approval
from aidp.egress import model as egress_model
from aidp.model import Policy


def policy(name: str = "p", enforcement: str = "deny", labels: dict[str, str] | None = None) -> Policy:
    return Policy.from_object(
        {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "AIDataPolicy",
            "metadata": {"name": name, "namespace": "shop", "uid": f"u-{name}"},
            "spec": {
                "provider": "openai",
                "workloadSelector": {"matchLabels": labels or {"app": "bot"}},
                "purpose": "test",
                "consent": {"allowedBases": ["consent"]},
                "retention": {"maxDays": 30},
                "enforcement": enforcement,
            },
        }
    )


def pod(labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bot-1", "namespace": "shop", "labels": labels, **extra.pop("meta", {})},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        **extra,
    }


ALLOWED = {"allowed": True, "violations": []}
DENIED = {"allowed": False, "violations": [{"rule": "retention-days"}]}


@pytest.mark.parametrize(
    ("labels", "decision", "enforcement", "want"),
    [
        ({"app": "bot"}, ALLOWED, "deny", True),
        ({"app": "bot"}, DENIED, "deny", False),
        ({"app": "bot"}, None, "deny", False),  # OPA could not say: fail closed
        ({"app": "other"}, ALLOWED, "deny", False),  # not selected: the label means nothing
        ({"app": "bot"}, ALLOWED, "warn", False),  # warn/dryrun: selection suffices, no label
        ({"app": "bot"}, {"allowed": "true"}, "deny", False),  # only a real true counts
    ],
)
def test_wanted(
    labels: dict[str, str], decision: dict[str, Any] | None, enforcement: str, want: bool
) -> None:
    assert approval.wanted(pod(labels), decision, [policy(enforcement=enforcement)]) is want


def test_review_is_a_create_without_the_operators_labels_or_status() -> None:
    labels = {"app": "bot", APPROVAL_LABEL: "true", "aidp.io/egress-isolated": "true"}
    review = approval.review_for(pod(labels, status={"phase": "Running"}), 3)
    request = review["request"]
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["object"]["metadata"]["labels"] == {"app": "bot"}
    assert "status" not in request["object"]
    assert request["uid"] == "aidp-approval-3"


def test_finished_and_terminating_pods_are_not_judged() -> None:
    assert approval.judged(pod({"app": "bot"}, status={"phase": "Running"}))
    assert not approval.judged(pod({"app": "bot"}, status={"phase": "Succeeded"}))
    assert not approval.judged(pod({"app": "bot"}, meta={"deletionTimestamp": "2026-12-01T00:00:00Z"}))


def test_odd_labels_are_read_safely() -> None:
    odd = pod({})
    odd["metadata"]["labels"] = "not-a-map"
    assert approval.labels_of(odd) == {}
    assert not approval.has_label(odd)
    assert approval.has_label(pod({APPROVAL_LABEL: "true"}))
    assert not approval.has_label(pod({APPROVAL_LABEL: "yes"}))


def test_deny_policies_select_approved_pods_only() -> None:
    """The egress objects of a deny policy need the approval label; warn and dryrun do not."""
    assert egress_model.selector(policy()) == {"matchLabels": {"app": "bot", APPROVAL_LABEL: "true"}}
    assert egress_model.selector(policy(enforcement="warn")) == {"matchLabels": {"app": "bot"}}
    assert egress_model.selector(policy(enforcement="dryrun")) == {"matchLabels": {"app": "bot"}}
