"""Lease expiry is judged by when this replica saw the Lease change, on its monotonic clock."""

from __future__ import annotations

import datetime as dt

from lightkube.models.coordination_v1 import LeaseSpec

from aidp.controller.leader import LeaseObserver, record_of

WALL = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def renewal(holder: str, renewed: dt.datetime) -> tuple[object, ...]:
    return record_of(LeaseSpec(holderIdentity=holder, renewTime=renewed, leaseDurationSeconds=10))


def test_a_holder_an_hour_behind_is_not_expired_while_it_renews() -> None:
    seen = LeaseObserver()
    behind = WALL - dt.timedelta(hours=1)
    for step in range(100):  # renewals every 2 s, for 200 s of local time
        now = step * 2.0
        seen.observe(renewal("b", behind + dt.timedelta(seconds=now)), now)
        assert not seen.expired(10, now)
        assert not seen.expired(10, now + 9.9)


def test_a_holder_an_hour_ahead_expires_ten_seconds_after_its_last_renewal() -> None:
    seen = LeaseObserver()
    last = renewal("a", WALL + dt.timedelta(hours=1))
    seen.observe(last, 100.0)
    for now in (100.0, 105.0, 110.0):
        seen.observe(last, now)  # the same record, seen again: no renewal
        assert not seen.expired(10, now)
    seen.observe(last, 110.1)
    assert seen.expired(10, 110.1)


def test_a_lease_seen_for_the_first_time_counts_as_just_renewed() -> None:
    seen = LeaseObserver()
    assert seen.expired(10, 0.0)  # nothing observed yet
    seen.observe(renewal("x", WALL - dt.timedelta(days=30)), 500.0)
    assert not seen.expired(10, 505.0)
    assert seen.expired(10, 510.5)


def test_any_change_of_the_record_counts_as_a_renewal() -> None:
    seen = LeaseObserver()
    seen.observe(renewal("x", WALL), 0.0)
    seen.observe(record_of(LeaseSpec(holderIdentity="y", renewTime=WALL, leaseDurationSeconds=10)), 9.0)
    assert not seen.expired(10, 18.0)
