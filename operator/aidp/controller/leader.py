"""Leader election with a coordination.k8s.io Lease: several operator replicas, one reconciler.

Every replica watches (Kopf handlers only trigger work); only the holder of the Lease runs the
reconcilers. The holder renews every `renew_seconds`; the others take over once the Lease has not
been renewed for `lease_seconds`. Writes use the Lease's resourceVersion, so two replicas can never
both believe they won the same round.
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


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str = "aidp-operator",
        *,
        lease_seconds: float = 10.0,
        renew_seconds: float = 2.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity()
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.leading = False
        self._renewed_at = -1e18

    async def _try(self) -> bool:
        """One acquire-or-renew round; True when this replica holds the Lease afterwards."""
        now = _now()
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
                await self.client.create(
                    Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
                )
            except ApiError as exc:
                if exc.status.code == 409:
                    return False
                raise
            return True
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity
        renewed = spec.renewTime or spec.acquireTime
        duration = spec.leaseDurationSeconds or int(self.lease_seconds)
        expired = renewed is None or now > renewed + dt.timedelta(seconds=duration)
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
            await self.client.replace(lease)  # carries resourceVersion: a concurrent writer gets 409
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
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
                held = self.leading and time.monotonic() - self._renewed_at < self.lease_seconds * 0.7
            if held:
                self._renewed_at = time.monotonic()
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
