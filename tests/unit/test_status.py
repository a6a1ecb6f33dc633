"""aidp.status: phase and conditions of an AIDataPolicy, and the status patch."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from aidp import model, status
from aidp.status import Observation

NOW = dt.datetime(2030, 5, 1, 8, 30, 15, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=7)


def conditions(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conds = {c["type"]: c for c in s["conditions"]}
    assert len(conds) == len(s["conditions"])  # one condition per type
    return conds


# --- is_expired ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "today", "expired"),
    [
        ("2030-06-30", dt.date(2030, 6, 29), False),
        ("2030-06-30", dt.date(2030, 6, 30), False),  # valid through its own day
        ("2030-06-30", dt.date(2030, 7, 1), True),  # expired the day after
        ("2030-06-30", dt.date(2031, 1, 1), True),
        ("2030-12-31", dt.date(2031, 1, 1), True),  # across a year boundary
        ("2028-02-29", dt.date(2028, 2, 29), False),
        ("2028-02-29", dt.date(2028, 3, 1), True),
        (None, dt.date(2030, 1, 1), False),
        ("", dt.date(2030, 1, 1), False),
        ("not-a-date", dt.date(2030, 1, 1), False),
    ],
)
def test_is_expired_boundary(expires: str | None, today: dt.date, expired: bool) -> None:
    assert status.is_expired(expires, today) is expired


def test_is_expired_agrees_with_the_model_review() -> None:
    expires = dt.date(2030, 6, 30)
    for days in range(-3, 4):
        today = expires + dt.timedelta(days=days)
        assert status.is_expired(expires.isoformat(), today) == model.Review(expires=expires).expired(today)


# --- desired -------------------------------------------------------------------------------------


def test_desired_active() -> None:
    obs = Observation(generation=4, revision="abc123", replicas=2, matched_workloads=3)
    want = status.desired(obs)
    assert want["phase"] == "Active"
    assert want["observedGeneration"] == 4
    assert want["revision"] == "abc123"
    assert want["matchedWorkloads"] == 3
    conds = conditions(want)
    assert [c["type"] for c in want["conditions"]] == ["Ready", "AdmissionEnforced", "EgressEnforced"]
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "Enforced")
    assert (conds["AdmissionEnforced"]["status"], conds["AdmissionEnforced"]["reason"]) == ("True", "Loaded")
    assert "2/2" in conds["AdmissionEnforced"]["message"]
    assert "abc123" in conds["AdmissionEnforced"]["message"]
    assert (conds["EgressEnforced"]["status"], conds["EgressEnforced"]["reason"]) == (
        "Unknown",
        "NoEgressBackend",
    )
    assert all(c["observedGeneration"] == 4 for c in want["conditions"])
    assert all("lastTransitionTime" not in c for c in want["conditions"])


def test_desired_without_matched_workloads_leaves_the_field_out() -> None:
    assert "matchedWorkloads" not in status.desired(Observation(generation=1, revision="r", replicas=1))
    assert (
        status.desired(Observation(generation=1, revision="r", replicas=1, matched_workloads=0))[
            "matchedWorkloads"
        ]
        == 0
    )


def test_desired_expired() -> None:
    obs = Observation(generation=2, revision="r", replicas=1, expired=True, expires="2030-04-30")
    want = status.desired(obs)
    assert want["phase"] == "Expired"
    ready = conditions(want)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Expired")
    assert "2030-04-30" in ready["message"]
    # the rules themselves are loaded (they deny the selected workloads)
    assert conditions(want)["AdmissionEnforced"]["status"] == "True"


def test_desired_degraded_invalid_spec() -> None:
    err = "AIDataPolicy ns/p: spec.provider: is required"
    want = status.desired(Observation(generation=1, revision="r", replicas=2, invalid=err))
    assert want["phase"] == "Degraded"
    conds = conditions(want)
    assert (conds["AdmissionEnforced"]["status"], conds["AdmissionEnforced"]["reason"]) == (
        "False",
        "InvalidSpec",
    )
    assert conds["AdmissionEnforced"]["message"] == err
    assert (conds["Ready"]["status"], conds["Ready"]["reason"], conds["Ready"]["message"]) == (
        "False",
        "InvalidSpec",
        err,
    )


def test_desired_degraded_load_errors() -> None:
    obs = Observation(
        generation=1,
        revision="r",
        replicas=3,
        load_errors=("https://opa-1: timeout", "https://opa-2: 500"),
    )
    want = status.desired(obs)
    assert want["phase"] == "Degraded"
    adm = conditions(want)["AdmissionEnforced"]
    assert (adm["status"], adm["reason"]) == ("False", "OPALoadFailed")
    assert "1/3" in adm["message"]
    assert "https://opa-1: timeout" in adm["message"] and "https://opa-2: 500" in adm["message"]
    assert conditions(want)["Ready"]["reason"] == "OPALoadFailed"


def test_desired_degraded_no_replicas() -> None:
    want = status.desired(Observation(generation=1, revision="r", replicas=0))
    assert want["phase"] == "Degraded"
    assert conditions(want)["AdmissionEnforced"]["reason"] == "NoOPAReplicas"
    assert conditions(want)["Ready"]["status"] == "False"


def test_desired_invalid_wins_over_load_errors() -> None:
    obs = Observation(generation=1, revision="r", replicas=1, invalid="bad", load_errors=("u: x",))
    assert conditions(status.desired(obs))["AdmissionEnforced"]["reason"] == "InvalidSpec"


def test_desired_egress_condition_from_observation() -> None:
    obs = Observation(generation=1, revision="r", replicas=1, egress=("True", "Applied", "3 NetworkPolicies"))
    egress = conditions(status.desired(obs))["EgressEnforced"]
    assert (egress["status"], egress["reason"], egress["message"]) == ("True", "Applied", "3 NetworkPolicies")


# --- patch ---------------------------------------------------------------------------------------


ACTIVE = Observation(generation=1, revision="r1", replicas=1, matched_workloads=1)
DEGRADED = Observation(generation=1, revision="r1", replicas=0, matched_workloads=1)


def test_patch_from_nothing_stamps_every_condition() -> None:
    new = status.patch(None, status.desired(ACTIVE), NOW)
    assert new is not None
    assert new["phase"] == "Active"
    assert {c["lastTransitionTime"] for c in new["conditions"]} == {"2030-05-01T08:30:15Z"}
    assert status.patch({}, status.desired(ACTIVE), NOW) == new


def test_patch_none_when_nothing_changed() -> None:
    current = status.patch(None, status.desired(ACTIVE), NOW)
    assert current is not None
    assert status.patch(copy.deepcopy(current), status.desired(ACTIVE), LATER) is None


def test_patch_keeps_transition_time_when_status_unchanged() -> None:
    current = status.patch(None, status.desired(ACTIVE), NOW)
    assert current is not None
    # a new revision changes the message of AdmissionEnforced, not its status
    new = status.patch(current, status.desired(Observation(generation=2, revision="r2", replicas=1)), LATER)
    assert new is not None
    assert new["revision"] == "r2"
    conds = conditions(new)
    assert "r2" in conds["AdmissionEnforced"]["message"]
    assert all(c["lastTransitionTime"] == "2030-05-01T08:30:15Z" for c in new["conditions"])


def test_patch_sets_transition_time_when_status_changed() -> None:
    current = status.patch(None, status.desired(ACTIVE), NOW)
    assert current is not None
    new = status.patch(current, status.desired(DEGRADED), LATER)
    assert new is not None
    assert new["phase"] == "Degraded"
    conds = conditions(new)
    assert conds["Ready"]["lastTransitionTime"] == "2030-05-01T08:37:15Z"
    assert conds["AdmissionEnforced"]["lastTransitionTime"] == "2030-05-01T08:37:15Z"
    assert conds["EgressEnforced"]["lastTransitionTime"] == "2030-05-01T08:30:15Z"  # still Unknown
    # and back: a new transition
    back = status.patch(new, status.desired(ACTIVE), LATER + dt.timedelta(hours=1))
    assert back is not None
    assert conditions(back)["Ready"]["lastTransitionTime"] == "2030-05-01T09:37:15Z"


def test_patch_detects_a_change_outside_the_conditions() -> None:
    current = status.patch(None, status.desired(ACTIVE), NOW)
    assert current is not None
    new = status.patch(current, status.desired(Observation(1, "r1", replicas=1, matched_workloads=5)), LATER)
    assert new is not None
    assert new["matchedWorkloads"] == 5
    assert new["conditions"] == current["conditions"]


def test_patch_stamps_a_condition_without_a_transition_time() -> None:
    want = status.desired(ACTIVE)
    current = {**want, "conditions": [dict(c) for c in want["conditions"]]}  # same, but never stamped
    new = status.patch(current, want, NOW)
    assert new is not None
    assert {c["lastTransitionTime"] for c in new["conditions"]} == {"2030-05-01T08:30:15Z"}


def test_patch_ignores_unknown_and_malformed_current_conditions() -> None:
    current = {"phase": "Active", "conditions": ["garbage", {"type": "Other", "status": "True"}]}
    new = status.patch(current, status.desired(ACTIVE), NOW)
    assert new is not None
    assert [c["type"] for c in new["conditions"]] == ["Ready", "AdmissionEnforced", "EgressEnforced"]


def test_patch_replaces_malformed_conditions_when_everything_else_is_equal() -> None:
    current = status.patch(None, status.desired(ACTIVE), NOW)
    assert current is not None
    damaged = {**current, "conditions": [*current["conditions"], "garbage"]}
    new = status.patch(damaged, status.desired(ACTIVE), LATER)
    assert new == current
