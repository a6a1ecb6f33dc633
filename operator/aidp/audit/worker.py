"""The operator's in-cluster audit, run in a short-lived process of its own.

`aidp run` starts `python -m aidp.audit.worker` for each audit (controller/auditloop.py) and writes
a `Request` (JSON) to its stdin: the kubeconfig (or none: the in-cluster service account, as the
operator), the OPA replica to evaluate with, its management token and CA file, the report kind and
the provider catalog in use. Secrets never appear on a command line. The process reads the
cluster, has the replica judge every workload (audit_cluster), completes the records, compares
with the previous reports, writes the report objects and the policies' audit figures, and prints
one `Summary` (JSON, one line) on stdout for the operator's metrics and log. Its log records go to
stderr as JSON lines (`log_line`), which the operator logs as its own (`parse_log_line`).

Why a process: an audit of a large cluster reads every policy and workload; Python keeps most of
the memory it once used, so in the operator's process each audit's peak stayed resident for good.
A process that ends gives it all back, and the operator's resident size no longer follows the
cluster's size between audits.
"""

from __future__ import annotations

import datetime as dt
import logging
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from aidp import catalog, kube
from aidp.audit import changes, crs, records
from aidp.audit.collect import AIDataPolicy, audit_cluster
from aidp.audit.evaluate import replica_evaluator
from aidp.audit.protocol import (
    JsonLines,
    Request,
    Summary,
    decode_request,
    encode_summary,
    summarise,
)
from aidp.audit.report import AuditReport
from aidp.config import MANAGED_BY
from aidp.controller.resources import PAGE, to_dict
from aidp.opa_loader import Replica

log = logging.getLogger("aidp.audit")

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# ---- what the process does -----------------------------------------------------------------------


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
        shown = dt.datetime.strptime(str(current.get("lastAuditTime")), STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return True
    return (now - shown).total_seconds() >= interval


def status_patches(
    per_policy: Mapping[tuple[str, str], Mapping[str, int]],
    policy_objects: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    interval: float,
) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, status patch) of every policy whose audit figures are due (audit_status_due)."""
    stamp = now.strftime(STAMP_FORMAT)
    out = []
    for obj in policy_objects:
        meta = obj["metadata"]
        tally = per_policy.get((meta["namespace"], meta["name"]), {"matched": 0, "violating": 0})
        patch = {
            "matchedWorkloads": tally["matched"],
            "violations": tally["violating"],
            "lastAuditTime": stamp,
        }
        if audit_status_due(obj.get("status") or {}, patch, now, interval):
            out.append((meta["namespace"], meta["name"], patch))
    return out


def report_error(err: Exception, report_kind: str) -> str:
    """What went wrong writing reports; a missing CRD is named with what to do about it."""
    if kube.error_code(err) == 404:
        group, version, kind, _ = crs.KINDS[report_kind]
        return (
            f"the {kind} CRD ({group}/{version}) is not installed: install it, or choose the other "
            "kind with --report-kind (openreports | policyreport)"
        )
    return kube.error_text(err)


def peak_rss_bytes(status: Path = Path("/proc/self/status")) -> int:
    """This process's peak resident size so far: VmHWM, the high-water mark of its own memory.
    Not ru_maxrss: Linux carries that over exec from the memory the process started in, and the
    operator starts it with vfork, so it would be the operator's own high-water mark."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class _Writer:
    """The audit's writes through one synchronous client: report objects and policy status."""

    def __init__(self, client: Client, report_kind: str) -> None:
        self.client = client
        self.report_kind = report_kind
        group, version, kind, plural = crs.KINDS[report_kind]
        self.report_resource = create_namespaced_resource(group, version, kind, plural)

    def _managed_reports(self) -> list[dict[str, Any]]:
        return [
            to_dict(o)
            for o in self.client.list(
                self.report_resource, namespace="*", labels=dict(MANAGED_BY), chunk_size=PAGE
            )
        ]

    def previous(self) -> changes.Summary | None:
        """The previous audit's summary, from the report objects it wrote (None: none readable)."""
        try:
            objs = self._managed_reports()
        except kube.KUBE_ERRORS as err:
            log.info("audit: no previous reports to compare with: %s", kube.error_text(err))
            return None
        except Exception as err:  # the audit itself stands: it just cannot say what changed
            log.warning("audit: previous reports not read: %s", kube.error_text(err))
            return None
        return crs.previous_summary(objs)

    def reports(self, report: AuditReport) -> int:
        """Apply one report object per namespace and delete the managed ones no longer needed;
        the objects written."""
        wanted = crs.render(report, self.report_kind)
        names = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in wanted}
        written = 0
        for obj in wanted:
            try:
                self.client.apply(self.report_resource.from_dict(obj), field_manager="aidp", force=True)
                written += 1
            except ApiError as err:
                # a namespace deleted (or terminating) since it was audited; a missing report CRD
                log.warning(
                    "cannot write %s for namespace %s: %s",
                    obj["kind"],
                    obj["metadata"]["namespace"],
                    err.status.message,
                )
        try:
            for old in self._managed_reports():
                meta = old["metadata"]
                if (meta["namespace"], meta["name"]) not in names:
                    self.client.delete(self.report_resource, meta["name"], namespace=meta["namespace"])
        except ApiError as err:
            log.warning("cannot prune %s reports: %s", self.report_kind, err.status.message)
        return written

    def status(self, patches: Sequence[tuple[str, str, dict[str, Any]]]) -> int:
        """Merge-patch each policy's audit figures (a policy deleted meanwhile is passed over)."""
        done = 0
        for namespace, name, patch in patches:
            try:
                self.client.patch(
                    AIDataPolicy.Status,
                    name,
                    {"status": patch},
                    namespace=namespace,
                    patch_type=PatchType.MERGE,
                )
                done += 1
            except ApiError as err:
                if err.status.code != 404:
                    raise
        return done


def run(request: Request) -> Summary:
    """One audit: read and judge (audit_cluster with the replica), complete the records, compare
    with the previous reports, write the reports and the policies' audit figures."""
    t0 = time.monotonic()
    if request.catalog is not None:
        catalog.use(catalog.parse(request.catalog.text, request.catalog.source))
    spec = request.replica
    replica = Replica(
        spec.url, spec.token, Path(spec.ca_file) if spec.ca_file else None, spec.server_hostname
    )
    client = kube.client(Path(request.kubeconfig) if request.kubeconfig else None)
    report, auditor, policy_objs = audit_cluster(client, replica_evaluator(replica))
    audit_seconds = time.monotonic() - t0
    records.finalise(report, policy_objs, request.admission_engine)
    writer = _Writer(client, request.report_kind)
    changes.compare(report, policy_objs, writer.previous())
    errors, written = 0, 0
    try:
        written = writer.reports(report)
    except Exception as err:  # whatever it is, the status figures and the summary still follow
        errors += 1
        log.warning("audit reports not written: %s", report_error(err, request.report_kind))
    patches = status_patches(
        auditor.per_policy, policy_objs, dt.datetime.now(dt.UTC), request.audit_interval_seconds
    )
    status_writes = writer.status(patches)
    return summarise(
        report,
        audit_seconds=audit_seconds,
        seconds=time.monotonic() - t0,
        policies=len(policy_objs),
        reports_written=written,
        status_writes=status_writes,
        errors=errors,
        peak_rss_bytes=peak_rss_bytes(),
    )


def main() -> int:
    """The process: a Request on stdin, log records on stderr, the Summary on stdout. Exit codes:
    0 done, 1 the audit failed, 2 no valid request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        request = decode_request(sys.stdin.buffer.read())
    except ValueError as err:
        log.error("%s", err)
        return 2
    logging.getLogger().setLevel(request.log_level)
    try:
        summary = run(request)
    except Exception:
        log.exception("the audit stopped")
        return 1
    sys.stdout.buffer.write(encode_summary(summary) + b"\n")
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
