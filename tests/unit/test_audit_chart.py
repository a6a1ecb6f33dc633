"""The chart gives the in-cluster audit what its owner lookup reads: `get` on ReplicationControllers
(a pod of one is reported as its controller), only while the audit is on."""

from __future__ import annotations

from typing import Any

from tests.unit.test_chart import one, render


def _verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_the_audit_may_get_replication_controllers_and_nothing_more() -> None:
    rules = one(render(), "ClusterRole", "aidp-operator")["rules"]
    assert _verbs(rules, "", "replicationcontrollers") == {"get"}


def test_without_the_audit_no_replication_controllers() -> None:
    rules = one(render(("audit.intervalSeconds=0",)), "ClusterRole", "aidp-operator")["rules"]
    assert _verbs(rules, "", "replicationcontrollers") == set()


def test_the_audit_timeout_reaches_the_operator() -> None:
    """`audit.timeoutSeconds` is the operator's `--audit-timeout` (0 by default: ten intervals)."""

    def timeout(values: tuple[str, ...] = ()) -> str:
        pod = one(render(values), "Deployment", "aidp-operator")["spec"]["template"]["spec"]
        args = next(c for c in pod["containers"] if "--audit-interval" in c["args"])["args"]
        return str(args[args.index("--audit-timeout") + 1])

    assert timeout() == "0"
    assert timeout(("audit.timeoutSeconds=1200",)) == "1200"
