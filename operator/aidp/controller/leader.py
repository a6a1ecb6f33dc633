"""Leader election with a coordination.k8s.io Lease: several operator replicas, one reconciler.

Every replica watches (Kopf handlers only trigger work); only the holder of the Lease runs the
reconcilers. The holder renews every `renew_seconds`; the others take over once the Lease has not
been renewed for `lease_seconds`. Writes use the Lease's resourceVersion, so two replicas can never
both believe they won the same round.

"Not renewed for `lease_seconds`" is judged on this replica's own monotonic clock, as client-go's
leaderelection does: a replica remembers when *it* last saw the Lease's record (holder, renewTime,
acquireTime, leaseTransitions, duration) change, and considers the Lease expired only once
`leaseDurationSeconds` have passed locally since then. The renewTime written by the holder is never
compared with this replica's wall clock, so a holder whose clock is behind is not deposed while it
keeps renewing, and one whose clock is ahead does not keep the Lease after it stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger("aidp.leader")


def identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Record = tuple[Any, ...]


def record_of(spec: LeaseSpec | None) -> Record:
    """What a renewal changes: any write by a live holder changes at least renewTime."""
    spec = spec or LeaseSpec()
    return (
        spec.holderIdentity,
        spec.renewTime,
        spec.acquireTime,
        spec.leaseTransitions,
        spec.leaseDurationSeconds,
    )


class LeaseObserver:
    """When this replica last saw the Lease's record change, on its own monotonic clock."""

    def __init__(self) -> None:
        self._record: Record | None = None
        self._seen_at = 0.0

    def observe(self, record: Record, now: float) -> None:
        if record != self._record:
            self._record, self._seen_at = record, now

    def expired(self, duration: float, now: float) -> bool:
        """True once `duration` seconds have passed locally since the record last changed (a record
        seen for the first time counts as just renewed)."""
        return self._record is None or now - self._seen_at > duration


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str = "aidp-operator",
        *,
        lease_seconds: float = 10.0,
        renew_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity()
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.leading = False
        self.rounds = 0  # completed acquire-or-renew rounds (tests wait on it)
        self._renewed_at = -1e18
        self._monotonic = monotonic
        self._observer = LeaseObserver()

    async def _try(self) -> bool:
        """One acquire-or-renew round; True when this replica holds the Lease afterwards."""
        now = _now()  # written into the Lease for humans; never compared with another replica's
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            spec = LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=int(self.lease_seconds),
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            )
            try:
                created = await self.client.create(
                    Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
                )
            except ApiError as exc:
                if exc.status.code == 409:
                    return False
                raise
            self._observer.observe(record_of(created.spec), self._monotonic())
            return True
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity
        duration = spec.leaseDurationSeconds or int(self.lease_seconds)
        seen = self._monotonic()
        self._observer.observe(record_of(spec), seen)
        expired = not holder or self._observer.expired(duration, seen)
        if holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            log.info("taking over the lease from %s", holder)
        spec.holderIdentity = self.identity
        spec.renewTime = now
        spec.leaseDurationSeconds = int(self.lease_seconds)
        lease.spec = spec
        try:
            # carries resourceVersion: a concurrent writer gets 409
            written = await self.client.replace(lease)
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
        self._observer.observe(record_of(written.spec), self._monotonic())
        return True

    async def run(
        self, on_start: Callable[[], Awaitable[None]], on_stop: Callable[[], Awaitable[None]]
    ) -> None:
        while True:
            try:
                held = await self._try()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease round failed: %s", exc)
                # keep leading only while the last renewal is surely still valid for the others
                held = self.leading and self._monotonic() - self._renewed_at < self.lease_seconds * 0.7
            self.rounds += 1
            if held:
                self._renewed_at = self._monotonic()
            if held and not self.leading:
                log.info("became the leader (%s)", self.identity)
                self.leading = True
                await on_start()
            elif not held and self.leading:
                log.warning("lost the leadership (%s)", self.identity)
                self.leading = False
                await on_stop()
            await asyncio.sleep(self.renew_seconds)

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown so another replica takes over at once."""
        if not self.leading:
            return
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.renewTime = None
                await self.client.replace(lease)
        except ApiError as exc:
            log.info("could not release the lease: %s", exc.status.message)
