"""Leader election under clock skew, against the real API server: the Lease's renewTime comes from
the holder's wall clock, so a takeover must be judged by when this replica saw it renewed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from aidp.controller.leader import LeaderElector

LEASE = 2.0  # seconds: short, so that the test waits a few lease durations in a few seconds
RENEW = 0.25
HOUR = dt.timedelta(hours=1)


@pytest.fixture
async def aclient(kubeconfig: Path) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="aidp-test", trust_env=False)
    yield client
    await client.close()


async def _write(client: AsyncClient, ns: str, holder: str, skew: dt.timedelta) -> None:
    """What a replica whose wall clock is off by `skew` writes when it renews."""
    now = dt.datetime.now(dt.UTC) + skew
    try:
        lease = await client.get(Lease, "skewed", namespace=ns)
    except ApiError as err:
        assert err.status.code == 404, err
        spec = LeaseSpec(
            holderIdentity=holder, leaseDurationSeconds=int(LEASE), acquireTime=now, renewTime=now
        )
        await client.create(Lease(metadata=ObjectMeta(name="skewed", namespace=ns), spec=spec))
        return
    assert lease.spec is not None
    lease.spec.holderIdentity, lease.spec.renewTime = holder, now
    await client.replace(lease)


async def _run(elector: LeaderElector) -> tuple[asyncio.Task[None], list[float]]:
    started: list[float] = []

    async def on_start() -> None:
        started.append(time.monotonic())

    async def on_stop() -> None:
        pass

    return asyncio.create_task(elector.run(on_start, on_stop)), started


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.02)


async def _stop(task: asyncio.Task[None], *more: Awaitable[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for aw in more:
        await aw


async def test_a_holder_whose_clock_is_an_hour_behind_keeps_the_lease_while_it_renews(
    aclient: AsyncClient, namespace: str
) -> None:
    await _write(aclient, namespace, "behind", -HOUR)
    stop = asyncio.Event()
    renewals: list[float] = []

    async def renew() -> None:
        while not stop.is_set():
            try:
                await _write(aclient, namespace, "behind", -HOUR)
                renewals.append(time.monotonic())
            except ApiError as err:  # 409: the elector wrote in between (it took over)
                assert err.status.code == 409, err
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RENEW)

    renewer = asyncio.create_task(renew())
    elector = LeaderElector(aclient, namespace, "skewed", lease_seconds=LEASE, renew_seconds=RENEW)
    task, started = await _run(elector)
    try:
        # three lease durations of renewals, each with a renewTime an hour old
        begun = time.monotonic()
        await _until(lambda: bool(renewals) and renewals[-1] - begun >= 3 * LEASE, 30, "3 lease durations")
        assert not started, "took over a Lease whose holder keeps renewing (its clock is behind)"
        assert elector.rounds >= 3 * LEASE / RENEW / 2, "the elector was not trying meanwhile"
        lease = await aclient.get(Lease, "skewed", namespace=namespace)
        assert lease.spec and lease.spec.holderIdentity == "behind"
        # the holder stops: the Lease is taken over once LEASE seconds have passed here
        stop.set()
        await renewer
        stopped = time.monotonic()
        await _until(lambda: bool(started), 10 * LEASE, "the takeover after the holder stopped")
        assert started[0] - stopped >= LEASE - 2 * RENEW  # a full lease after the last renewal seen
        lease = await aclient.get(Lease, "skewed", namespace=namespace)
        assert lease.spec and lease.spec.holderIdentity == elector.identity
    finally:
        stop.set()
        await _stop(task, renewer)


async def test_a_holder_whose_clock_is_an_hour_ahead_loses_the_lease_once_it_stops(
    aclient: AsyncClient, namespace: str
) -> None:
    await _write(aclient, namespace, "ahead", HOUR)  # its last renewal, an hour "in the future"
    elector = LeaderElector(aclient, namespace, "skewed", lease_seconds=LEASE, renew_seconds=RENEW)
    begun = time.monotonic()
    task, started = await _run(elector)
    try:
        await _until(lambda: bool(started), 10 * LEASE, "the takeover of a Lease nobody renews")
        assert started[0] - begun >= LEASE  # not before a full lease duration seen here
        lease = await aclient.get(Lease, "skewed", namespace=namespace)
        assert lease.spec and lease.spec.holderIdentity == elector.identity
        assert lease.spec.leaseTransitions == 1
    finally:
        await _stop(task)
