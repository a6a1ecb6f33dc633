"""The in-cluster audit: every --audit-interval, a report per namespace and policy status figures."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from aidp import kube, metrics
from aidp.audit import changes, crs, records
from aidp.audit.collect import audit_cluster
from aidp.audit.evaluate import replica_evaluator
from aidp.audit.report import FINDING_TYPES, SEVERITIES
from aidp.config import MANAGED_BY, OperatorConfig
from aidp.controller.egress import resource_for
from aidp.controller.resources import AIDataPolicy, list_all, to_dict
from aidp.opa_loader import Replica

log = logging.getLogger("aidp.audit")


class AuditLoop:
    def __init__(
        self, config: OperatorConfig, client: AsyncClient, replicas: Callable[[], Awaitable[list[Replica]]]
    ) -> None:
        self.config = config
        self.client = client
        self.replicas = replicas
        group, version, kind, plural = crs.KINDS[config.report_kind]
        self.report_resource = resource_for(group, version, plural, kind)
        self._wake = asyncio.Event()
        self.runs = 0

    def trigger(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await asyncio.sleep(self.config.audit_first_delay_seconds)
        while True:
            started = time.monotonic()
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.AUDIT_ERRORS.inc()
                log.exception("audit failed")
            # wait for the interval, or a trigger (policy change) but not sooner than the minimum
            # gap, nor than twice the audit's own duration since it ended: an audit of 10,000
            # policies takes a minute, in a thread of this process, and must not take every other
            # minute from the reconciler while policies change
            took = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.audit_interval_seconds)
            self._wake.clear()
            gap = max(self.config.audit_min_gap_seconds, 3 * took) - (time.monotonic() - started)
            if gap > 0:
                await asyncio.sleep(gap)

    async def once(self) -> None:
        reps = await self.replicas()
        if not reps:
            log.info("audit skipped: no OPA replica")
            return
        t0 = time.monotonic()
        sync_client = kube.client(self.config.kubeconfig)
        report, auditor, policy_objs = await asyncio.to_thread(
            audit_cluster, sync_client, replica_evaluator(reps[0])
        )
        metrics.AUDIT_DURATION.observe(time.monotonic() - t0)
        for skipped in report.skipped:
            log.warning("audit: %s: %s", skipped.analysis, skipped.reason)
        records.finalise(report, policy_objs, self.config.admission_engine)
        diff = changes.compare(report, policy_objs, await self._previous())
        if diff.since:
            log.info("audit: changes since %s: %s", diff.since, diff.counts())
        try:
            await self._write_reports(report)
        except Exception as err:  # whatever it is, the status figures and metrics still follow
            metrics.AUDIT_ERRORS.inc()
            log.warning("audit reports not written: %s", self._report_error(err))
        await self._policy_status(auditor.per_policy, policy_objs)
        metrics.AUDIT_LAST_RUN.set(time.time())
        metrics.AUDIT_WORKLOADS.labels("all").set(report.workloads)
        metrics.AUDIT_WORKLOADS.labels("approved").set(report.approved)
        metrics.AUDIT_WORKLOADS.labels("violating").set(report.violating)
        counts: dict[tuple[str, str], int] = {}
        for f in report.findings:
            counts[(f.type, f.severity)] = counts.get((f.type, f.severity), 0) + 1
        for t in FINDING_TYPES:
            for s in SEVERITIES:
                metrics.AUDIT_FINDINGS.labels(t, s).set(counts.get((t, s), 0))
        self.runs += 1
        log.info(
            "audit: %d workloads, %d approved, %d violating, %d findings in %.1fs",
            report.workloads,
            report.approved,
            report.violating,
            len(report.findings),
            time.monotonic() - t0,
        )

    def _report_error(self, err: Exception) -> str:
        """What went wrong writing reports; a missing CRD is named with what to do about it."""
        if kube.error_code(err) == 404:
            group, version, kind, _ = crs.KINDS[self.config.report_kind]
            return (
                f"the {kind} CRD ({group}/{version}) is not installed: install it, or choose the other "
                "kind with --report-kind (openreports | policyreport)"
            )
        return kube.error_text(err)

    async def _previous(self) -> changes.Summary | None:
        """The previous audit's summary, from the report objects it wrote (None: none readable)."""
        try:
            objs = [
                to_dict(o) async for o in list_all(self.client, self.report_resource, labels=dict(MANAGED_BY))
            ]
        except ApiError as err:
            log.info("audit: no previous reports to compare with: %s", err.status.message)
            return None
        except Exception as err:  # the audit itself stands: it just cannot say what changed
            log.warning("audit: previous reports not read: %s", kube.error_text(err))
            return None
        return crs.previous_summary(objs)

    async def _write_reports(self, report: Any) -> None:
        wanted = crs.render(report, self.config.report_kind)
        names = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in wanted}
        for obj in wanted:
            try:
                await self.client.apply(self.report_resource.from_dict(obj), field_manager="aidp", force=True)
            except ApiError as err:
                # a namespace deleted (or terminating) since it was audited; a missing report CRD
                log.warning(
                    "cannot write %s for namespace %s: %s",
                    obj["kind"],
                    obj["metadata"]["namespace"],
                    err.status.message,
                )
        try:
            async for old in list_all(self.client, self.report_resource, labels=dict(MANAGED_BY)):
                meta = to_dict(old)["metadata"]
                if (meta["namespace"], meta["name"]) not in names:
                    await self.client.delete(self.report_resource, meta["name"], namespace=meta["namespace"])
        except ApiError as err:
            log.warning("cannot prune %s reports: %s", self.config.report_kind, err.status.message)

    async def _policy_status(
        self, per_policy: dict[tuple[str, str], dict[str, int]], objs: list[Any]
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for obj in objs:
            meta = obj["metadata"]
            tally = per_policy.get((meta["namespace"], meta["name"]), {"matched": 0, "violating": 0})
            patch = {
                "matchedWorkloads": tally["matched"],
                "violations": tally["violating"],
                "lastAuditTime": stamp,
            }
            if not audit_status_due(obj.get("status") or {}, patch, now, self.config.audit_interval_seconds):
                continue
            try:
                await self.client.patch(
                    AIDataPolicy.Status,
                    meta["name"],
                    {"status": patch},
                    namespace=meta["namespace"],
                    patch_type=PatchType.MERGE,
                )
            except ApiError as err:
                if err.status.code != 404:
                    raise


def audit_status_due(
    current: Mapping[str, Any], want: Mapping[str, Any], now: dt.datetime, interval: float
) -> bool:
    """Whether a policy's audit figures are written: when they changed, or when the
    lastAuditTime shown is older than the audit interval. Writing every policy at every audit
    (audits follow policy changes) would make each change cost a status write per policy in the
    cluster; lastAuditTime stays within one interval of the last audit that counted them."""
    if any(current.get(k) != want[k] for k in ("matchedWorkloads", "violations")):
        return True
    try:
        shown = dt.datetime.strptime(str(current.get("lastAuditTime")), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC
        )
    except ValueError:
        return True
    return (now - shown).total_seconds() >= interval
