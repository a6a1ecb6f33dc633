"""The in-cluster audit: every --audit-interval, a report per namespace and policy status figures.

Each audit runs in a process of its own (aidp.audit.worker, started by aidp.audit.runner): the
memory an audit of a large cluster takes is given back when that process ends, instead of staying
with the operator for good. This loop decides when to audit, hands the process the replica and
settings, and turns its summary into metrics and log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aidp import catalog, metrics
from aidp.audit import runner
from aidp.audit.protocol import CatalogSpec, ReplicaSpec, Request, Summary
from aidp.config import OperatorConfig
from aidp.opa_loader import Replica

__all__ = ["AuditLoop", "audit_timeout", "request_for"]

log = logging.getLogger("aidp.audit")


def audit_timeout(config: OperatorConfig) -> float:
    """Seconds an audit process may run: --audit-timeout, else ten audit intervals (at least 600)."""
    if config.audit_timeout_seconds > 0:
        return config.audit_timeout_seconds
    return max(600.0, 10 * config.audit_interval_seconds)


def request_for(config: OperatorConfig, replica: Replica, cat: catalog.Catalog, log_level: int) -> Request:
    """What the audit process is told: the cluster, the replica (its token goes on stdin, never on a
    command line), the report kind, the engine, the interval, and the catalog when not the built-in."""
    return Request(
        replica=ReplicaSpec(
            replica.url,
            replica.token,
            str(replica.ca_file) if replica.ca_file is not None else None,
            replica.server_hostname,
        ),
        report_kind=config.report_kind,
        admission_engine=config.admission_engine,
        audit_interval_seconds=config.audit_interval_seconds,
        kubeconfig=str(config.kubeconfig) if config.kubeconfig is not None else None,
        catalog=None if cat is catalog.builtin() else CatalogSpec(cat.text, cat.source),
        log_level=log_level,
    )


class AuditLoop:
    def __init__(
        self,
        config: OperatorConfig,
        replicas: Callable[[], Awaitable[list[Replica]]],
        *,
        command: tuple[str, ...] = runner.COMMAND,
    ) -> None:
        self.config = config
        self.replicas = replicas
        self.command = command
        self._wake = asyncio.Event()
        self.runs = 0
        self.last: Summary | None = None

    def trigger(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await asyncio.sleep(self.config.audit_first_delay_seconds)
        while True:
            started = time.monotonic()
            await self.guarded_once()
            # wait for the interval, or a trigger (policy change) but not sooner than the minimum
            # gap, nor than three times the audit's own duration since it started: an audit of
            # 10,000 policies takes a minute of the machine's CPU and of the API server, and must
            # not take every other minute from the reconciler while policies change
            took = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.audit_interval_seconds)
            self._wake.clear()
            gap = max(self.config.audit_min_gap_seconds, 3 * took) - (time.monotonic() - started)
            if gap > 0:
                await asyncio.sleep(gap)

    async def guarded_once(self) -> bool:
        """One audit; a failure is logged and counted, never raised (the loop goes on)."""
        try:
            await self.once()
        except asyncio.CancelledError:
            raise
        except runner.WorkerError as err:
            metrics.AUDIT_ERRORS.inc()
            log.error("audit failed: %s", err)
            return False
        except Exception:
            metrics.AUDIT_ERRORS.inc()
            log.exception("audit failed")
            return False
        return True

    async def once(self) -> None:
        reps = await self.replicas()
        if not reps:
            log.info("audit skipped: no OPA replica")
            return
        t0 = time.monotonic()
        request = request_for(self.config, reps[0], catalog.current(), log.getEffectiveLevel())
        summary = await runner.run(request, audit_timeout(self.config), command=self.command)
        self.record(summary, time.monotonic() - t0)

    def record(self, summary: Summary, took: float) -> None:
        """The metrics and log lines of a finished audit."""
        self.last = summary
        metrics.AUDIT_DURATION.observe(summary.audit_seconds)
        for skipped in summary.skipped:
            log.warning("audit: %s: %s", skipped.analysis, skipped.reason)
        if summary.changes_since:
            log.info("audit: changes since %s: %s", summary.changes_since, summary.changes)
        if summary.errors:
            metrics.AUDIT_ERRORS.inc(summary.errors)
        metrics.AUDIT_LAST_RUN.set(time.time())
        metrics.AUDIT_WORKLOADS.labels("all").set(summary.workloads)
        metrics.AUDIT_WORKLOADS.labels("approved").set(summary.approved)
        metrics.AUDIT_WORKLOADS.labels("violating").set(summary.violating)
        for (t, s), n in summary.finding_counts().items():
            metrics.AUDIT_FINDINGS.labels(t, s).set(n)
        metrics.AUDIT_PEAK_RSS.set(summary.peak_rss_bytes)
        self.runs += 1
        log.info(
            "audit: %d workloads, %d approved, %d violating, %d findings in %.1fs (%d policies, "
            "%d status writes; audit process peak RSS %.0f MB)",
            summary.workloads,
            summary.approved,
            summary.violating,
            summary.finding_total,
            took,
            summary.policies,
            summary.status_writes,
            summary.peak_rss_bytes / 2**20,
        )
