"""aidp.controller.governance.Selection: which namespaces the guardrails select, kept between
syncs, and read again (a LIST of every namespace) only when the answer can have changed.

The cluster side (a new namespace a guardrail selects is governed at once, a relabelled one is
released) is tests/integration/test_governance.py and tests/node/test_governance_packets.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from aidp.controller.governance import Selection, select, selection_key
from aidp.guardrail import ClusterPolicy


def guardrail(name: str, selector: dict[str, Any]) -> ClusterPolicy:
    return ClusterPolicy.from_object(
        {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "ClusterAIDataPolicy",
            "metadata": {"name": name, "uid": f"u-{name}", "generation": 1},
            "spec": {"namespaceSelector": selector},
        }
    )


PROD = guardrail("prod", {"matchLabels": {"env": "prod"}})
ALL = guardrail("all", {})


class Cluster:
    """The namespaces a LIST would return, and how many LISTs were made."""

    def __init__(self, namespaces: dict[str, dict[str, str]]) -> None:
        self.namespaces = namespaces
        self.lists = 0

    async def read(self) -> Mapping[str, Mapping[str, str]]:
        self.lists += 1
        return {k: dict(v) for k, v in self.namespaces.items()}


EXCLUDED = ("kube-system",)


def run(
    sel: Selection, cluster: Cluster, guardrails: list[ClusterPolicy], *, full: bool = False, read: Any = None
) -> Any:
    return asyncio.run(sel.select(guardrails, EXCLUDED, read or cluster.read, full=full))


def test_the_first_sync_reads_and_later_ones_reuse_the_selection() -> None:
    cluster = Cluster({"a": {"env": "prod"}, "b": {"env": "dev"}, "kube-system": {"env": "prod"}})
    sel = Selection()
    assert run(sel, cluster, [PROD]) == {"a": ["prod"]}
    assert run(sel, cluster, [PROD]) == {"a": ["prod"]}
    assert run(sel, cluster, [PROD]) == {"a": ["prod"]}
    assert cluster.lists == 1


def test_a_full_sync_always_reads() -> None:
    cluster = Cluster({"a": {"env": "prod"}})
    sel = Selection()
    run(sel, cluster, [PROD])
    cluster.namespaces["b"] = {"env": "prod"}  # no event seen (a missed watch event)
    assert run(sel, cluster, [PROD]) == {"a": ["prod"]}
    assert run(sel, cluster, [PROD], full=True) == {"a": ["prod"], "b": ["prod"]}
    assert cluster.lists == 2


@pytest.mark.parametrize(
    "after",
    [
        [PROD, ALL],  # a guardrail added
        [ALL],  # one removed, another added
        [guardrail("prod", {"matchLabels": {"env": "dev"}})],  # the selector edited
    ],
)
def test_a_change_of_the_guardrails_selectors_reads_again(after: list[ClusterPolicy]) -> None:
    cluster = Cluster({"a": {"env": "prod"}, "b": {"env": "dev"}})
    sel = Selection()
    run(sel, cluster, [PROD])
    assert run(sel, cluster, after) == select(after, cluster.namespaces, EXCLUDED)
    assert cluster.lists == 2


def test_a_change_beside_the_selector_does_not_read_again() -> None:
    cluster = Cluster({"a": {"env": "prod"}})
    sel = Selection()
    run(sel, cluster, [PROD])
    stricter = ClusterPolicy.from_object(
        {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "ClusterAIDataPolicy",
            "metadata": {"name": "prod", "uid": "u-prod", "generation": 2},
            "spec": {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "retention": {"maxDays": 7}},
        }
    )
    assert selection_key([stricter], ()) == selection_key([PROD], ())
    assert run(sel, cluster, [stricter]) == {"a": ["prod"]}
    assert cluster.lists == 1


def test_the_exclusions_are_part_of_the_key() -> None:
    assert selection_key([PROD], ("x",)) != selection_key([PROD], ("y",))
    assert selection_key([PROD, ALL], ()) == selection_key([ALL, PROD], ())


@pytest.mark.parametrize(
    ("name", "labels", "moved"),
    [
        ("new", {"env": "prod"}, True),  # a new namespace the guardrail selects
        ("new", {"env": "dev"}, False),  # a new namespace it does not select
        ("a", {"env": "dev"}, True),  # relabelled out of the selection
        ("a", {"env": "prod", "team": "x"}, False),  # another label changed
        ("b", {"env": "prod"}, True),  # relabelled into it
        ("a", None, True),  # a selected namespace deleted
        ("b", None, False),  # an unselected one deleted
        ("kube-system", {"env": "prod"}, False),  # excluded: never selected
    ],
)
def test_a_namespace_event_marks_the_selection_stale_only_when_it_moved(
    name: str, labels: dict[str, str] | None, moved: bool
) -> None:
    cluster = Cluster({"a": {"env": "prod"}, "b": {"env": "dev"}, "kube-system": {}})
    sel = Selection()
    run(sel, cluster, [PROD])
    assert sel.event([PROD], name, labels, EXCLUDED) is moved
    if labels is None:
        cluster.namespaces.pop(name)
    else:
        cluster.namespaces[name] = labels
    got = run(sel, cluster, [PROD])
    assert got == select([PROD], cluster.namespaces, EXCLUDED)
    assert cluster.lists == (2 if moved else 1)


def test_a_failed_read_is_tried_again_at_the_next_sync() -> None:
    cluster = Cluster({"a": {"env": "prod"}})
    sel = Selection()
    run(sel, cluster, [PROD])
    sel.event([PROD], "b", {"env": "prod"}, EXCLUDED)
    cluster.namespaces["b"] = {"env": "prod"}

    async def broken() -> Mapping[str, Mapping[str, str]]:
        raise ConnectionError("API server away")

    with pytest.raises(ConnectionError):
        run(sel, cluster, [PROD], read=broken)
    assert sel.stale
    assert run(sel, cluster, [PROD]) == {"a": ["prod"], "b": ["prod"]}


def test_an_event_during_the_read_is_not_lost() -> None:
    """The flag is cleared before the LIST: a namespace created while it is under way (and perhaps
    missing from it) marks the selection stale again."""
    cluster = Cluster({"a": {"env": "prod"}})
    sel = Selection()

    async def read_then_event() -> Mapping[str, Mapping[str, str]]:
        listed = await cluster.read()
        cluster.namespaces["late"] = {"env": "prod"}
        sel.event([PROD], "late", {"env": "prod"}, EXCLUDED)
        return listed

    run(sel, cluster, [PROD])
    sel.stale = True  # as a namespace event would
    assert run(sel, cluster, [PROD], read=read_then_event) == {"a": ["prod"]}
    assert sel.stale
    assert run(sel, cluster, [PROD]) == {"a": ["prod"], "late": ["prod"]}


def test_the_caller_gets_a_copy() -> None:
    cluster = Cluster({"a": {"env": "prod"}})
    sel = Selection()
    got = run(sel, cluster, [PROD])
    got["a"].append("mine")
    got["z"] = ["x"]
    assert run(sel, cluster, [PROD]) == {"a": ["prod"]}
