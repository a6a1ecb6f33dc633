"""What the operator and its audit process (aidp.audit.worker) say to each other.

The operator writes one `Request` (JSON) on the process's stdin; the process prints one `Summary`
(JSON, one line) on stdout and its log records on stderr as JSON lines (`log_line`), which the
operator logs as its own (`parse_log_line`). This module is all the operator imports of the audit's
side: the reading and judging (aidp.audit.collect and what it pulls in) load only in the process.
"""

from __future__ import annotations

import json
import logging

import msgspec

from aidp.audit.report import FINDING_TYPES, SEVERITIES, AuditReport

log = logging.getLogger("aidp.audit")

MODULE = "aidp.audit.worker"  # python -m MODULE: the audit process


class ReplicaSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The OPA replica the audit's batches go to (aidp.opa_loader.Replica's fields)."""

    url: str
    token: str
    ca_file: str | None = None
    server_hostname: str | None = None


class CatalogSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The provider catalog the operator uses now, as the text it parsed (None: the built-in one)."""

    text: str
    source: str


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the operator tells the audit process (on its stdin)."""

    replica: ReplicaSpec
    report_kind: str = "openreports"
    admission_engine: str = "opa"
    audit_interval_seconds: float = 300.0
    kubeconfig: str | None = None
    catalog: CatalogSpec | None = None
    log_level: int = logging.INFO


class SkippedAnalysis(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    analysis: str
    reason: str


class FindingCount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: str
    severity: str
    count: int


class Summary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the audit process tells the operator (one JSON line on its stdout)."""

    workloads: int
    approved: int
    violating: int
    findings: list[FindingCount]
    audit_seconds: float  # reading and judging (audit_cluster): aidp_audit_duration_seconds
    seconds: float = 0.0  # the whole process's work, the writes included
    policies: int = 0
    skipped: list[SkippedAnalysis] = msgspec.field(default_factory=list)
    changes_since: str | None = None
    changes: dict[str, int] = msgspec.field(default_factory=dict)
    reports_written: int = 0
    status_writes: int = 0
    errors: int = 0  # failures the audit went on after (reports not written): aidp_audit_errors_total
    peak_rss_bytes: int = 0  # the process's VmHWM

    def finding_counts(self) -> dict[tuple[str, str], int]:
        """Every (type, severity) the metric has, with its count (0 when none was found)."""
        got: dict[tuple[str, str], int] = {}
        for c in self.findings:
            got[(c.type, c.severity)] = got.get((c.type, c.severity), 0) + c.count
        return {(t, s): got.get((t, s), 0) for t in FINDING_TYPES for s in SEVERITIES}

    @property
    def finding_total(self) -> int:
        return sum(c.count for c in self.findings)


_REQUEST = msgspec.json.Decoder(Request)
_SUMMARY = msgspec.json.Decoder(Summary)


def encode_request(request: Request) -> bytes:
    return msgspec.json.encode(request)


def decode_request(data: bytes) -> Request:
    """The Request in `data`; ValueError saying what is wrong."""
    try:
        return _REQUEST.decode(data)
    except msgspec.DecodeError as err:  # ValidationError included
        raise ValueError(f"not an audit request: {err}") from None


def encode_summary(summary: Summary) -> bytes:
    return msgspec.json.encode(summary)


def decode_summary(stdout: bytes) -> Summary:
    """The Summary on the process's stdout (its last non-empty line: a library that printed
    something before it changes nothing); ValueError when there is none."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the audit process printed no summary")
    try:
        return _SUMMARY.decode(lines[-1])
    except msgspec.DecodeError as err:
        raise ValueError(f"the audit process printed no valid summary ({err}): {lines[-1][:200]!r}") from None


def summarise(
    report: AuditReport,
    *,
    audit_seconds: float,
    seconds: float,
    policies: int,
    reports_written: int = 0,
    status_writes: int = 0,
    errors: int = 0,
    peak_rss_bytes: int = 0,
) -> Summary:
    """The summary of a finished audit (its report's figures, finding counts, skipped analyses)."""
    counts: dict[tuple[str, str], int] = {}
    for f in report.findings:
        counts[(f.type, f.severity)] = counts.get((f.type, f.severity), 0) + 1
    changed = report.changes
    return Summary(
        workloads=report.workloads,
        approved=report.approved,
        violating=report.violating,
        findings=[FindingCount(t, s, n) for (t, s), n in sorted(counts.items())],
        audit_seconds=audit_seconds,
        seconds=seconds,
        policies=policies,
        skipped=[SkippedAnalysis(s.analysis, s.reason) for s in report.skipped],
        changes_since=changed.since if changed is not None else None,
        changes=changed.counts() if changed is not None and changed.since else {},
        reports_written=reports_written,
        status_writes=status_writes,
        errors=errors,
        peak_rss_bytes=peak_rss_bytes,
    )


# ---- log records between the processes ----------------------------------------------------------


class JsonLines(logging.Formatter):
    """One JSON object a record: level, logger and message (with the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        return log_line(record.levelno, record.name, super().format(record))


def log_line(level: int, name: str, message: str) -> str:
    return json.dumps({"level": level, "logger": name, "message": message})


def parse_log_line(line: str) -> tuple[int, str, str]:
    """(level, logger, message) of a line the audit process wrote on stderr. Anything else (what
    the interpreter prints when it cannot even start the audit) is a warning of `aidp.audit`."""
    text = line.rstrip("\n")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("level"), int)
        and isinstance(doc.get("logger"), str)
        and isinstance(doc.get("message"), str)
    ):
        return doc["level"], doc["logger"], doc["message"]
    return logging.WARNING, log.name, text
