"""The in-cluster audit's process (aidp.audit.worker) and the operator's side of it
(aidp.audit.runner, controller/auditloop.py): the request and summary encodings, the log lines
between the processes, the status figures due, and how the operator handles a process that
fails, prints nonsense, hangs or outlives its caller. The processes here are real ones (small
Python scripts standing in for the audit); the audit's own path on a real cluster is
tests/integration/test_audit.py::test_in_cluster_audit_writes_reports_and_policy_status."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from aidp import catalog
from aidp.audit import protocol, runner, worker
from aidp.audit.report import FINDING_TYPES, SEVERITIES, AuditReport, Changes, Finding, Skipped
from aidp.config import OperatorConfig
from aidp.controller.auditloop import AuditLoop, audit_timeout, request_for
from aidp.opa_loader import Replica

REPLICA = Replica("https://10.0.0.7:8181", "s3cret-token", Path("/tls/ca.crt"), "aidp-opa.aidp-system.svc")


def _report() -> AuditReport:
    report = AuditReport(generated_at="2026-12-02T04:00:00Z", workloads=7, approved=4, violating=2)
    report.findings = [
        Finding("policy-violation", "high", "a", "Deployment", "x", "m"),
        Finding("policy-violation", "high", "a", "Deployment", "y", "m"),
        Finding("shadow-ai", "medium", "b", "Pod", "z", "m"),
    ]
    report.skipped = [Skipped("credential-exposure", "not analysed: forbidden")]
    report.changes = Changes(since="2026-12-02T03:55:00Z", workloads_added=["a/Deployment/y"])
    return report


def _summary(**kw: object) -> protocol.Summary:
    return protocol.summarise(_report(), audit_seconds=1.5, seconds=2.0, policies=3, **kw)  # type: ignore[arg-type]


# ---- encodings ------------------------------------------------------------------------------------


def test_the_summary_carries_the_reports_figures_and_round_trips() -> None:
    s = _summary(reports_written=2, status_writes=3, errors=1, peak_rss_bytes=123 << 20)
    assert (s.workloads, s.approved, s.violating, s.policies) == (7, 4, 2, 3)
    assert s.finding_total == 3
    assert [(c.type, c.severity, c.count) for c in s.findings] == [
        ("policy-violation", "high", 2),
        ("shadow-ai", "medium", 1),
    ]
    assert s.skipped == [protocol.SkippedAnalysis("credential-exposure", "not analysed: forbidden")]
    assert s.changes_since == "2026-12-02T03:55:00Z" and s.changes["workloadsAdded"] == 1
    assert protocol.decode_summary(protocol.encode_summary(s)) == s


def test_finding_counts_cover_every_type_and_severity_the_metric_has() -> None:
    counts = _summary().finding_counts()
    assert set(counts) == {(t, s) for t in FINDING_TYPES for s in SEVERITIES}
    assert counts[("policy-violation", "high")] == 2 and counts[("shadow-ai", "medium")] == 1
    assert sum(counts.values()) == 3


def test_without_a_previous_report_the_summary_has_no_changes() -> None:
    report = _report()
    report.changes = Changes()  # since None: nothing to compare with
    s = protocol.summarise(report, audit_seconds=0.1, seconds=0.1, policies=0)
    assert s.changes_since is None and s.changes == {}


def test_the_summary_is_the_last_line_of_stdout() -> None:
    line = protocol.encode_summary(_summary())
    assert protocol.decode_summary(b"some library said hello\n\n" + line + b"\n") == _summary()
    with pytest.raises(ValueError, match="printed no summary"):
        protocol.decode_summary(b"\n  \n")
    with pytest.raises(ValueError, match="no valid summary"):
        protocol.decode_summary(b'{"workloads": "many"}\n')


def test_the_request_round_trips_and_odd_ones_are_refused() -> None:
    req = protocol.Request(replica=protocol.ReplicaSpec("https://o:1", "t"), report_kind="policyreport")
    assert protocol.decode_request(protocol.encode_request(req)) == req
    for bad in (b"", b"[]", b'{"replica": {"url": "u"}}', b'{"replica": {"url": "u", "token": "t"}, "x": 1}'):
        with pytest.raises(ValueError, match="not an audit request"):
            protocol.decode_request(bad)


def test_the_request_names_the_replica_and_settings_and_the_catalog_only_when_not_built_in() -> None:
    config = OperatorConfig(
        kubeconfig=Path("/k/config"),
        report_kind="policyreport",
        admission_engine="both",
        audit_interval_seconds=60,
    )
    req = request_for(config, REPLICA, catalog.builtin(), logging.DEBUG)
    assert req.replica == protocol.ReplicaSpec(
        "https://10.0.0.7:8181", "s3cret-token", "/tls/ca.crt", "aidp-opa.aidp-system.svc"
    )
    assert (req.report_kind, req.admission_engine, req.audit_interval_seconds) == ("policyreport", "both", 60)
    assert req.kubeconfig == "/k/config" and req.catalog is None and req.log_level == logging.DEBUG
    assert request_for(OperatorConfig(), REPLICA, catalog.builtin(), logging.INFO).kubeconfig is None
    # a catalog from a file or a ConfigMap goes as its text; the process parses the same catalog
    text = catalog.BUILTIN_FILE.read_text()
    custom = catalog.parse(
        text.replace("displayName: OpenAI API", "displayName: OpenAI (custom)", 1),
        "ConfigMap aidp-system/cat key providers.yaml",
    )
    req = request_for(OperatorConfig(), REPLICA, custom, logging.INFO)
    assert req.catalog is not None and req.catalog.source == custom.source
    again = catalog.parse(req.catalog.text, req.catalog.source)
    assert again == custom and again.names == custom.names


def test_the_token_is_never_on_the_command_line() -> None:
    assert not any("s3cret" in part for part in runner.COMMAND)
    assert runner.COMMAND[1:] == ("-m", "aidp.audit.worker")


def test_the_timeout_is_the_flag_else_ten_intervals_and_at_least_ten_minutes() -> None:
    assert audit_timeout(OperatorConfig(audit_timeout_seconds=42)) == 42
    assert audit_timeout(OperatorConfig(audit_interval_seconds=300)) == 3000
    assert audit_timeout(OperatorConfig(audit_interval_seconds=2)) == 600


# ---- log lines between the processes --------------------------------------------------------------


def test_log_records_cross_as_json_lines_with_their_traceback() -> None:
    fmt = protocol.JsonLines()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("aidp.audit").makeRecord(
            "aidp.audit", logging.ERROR, __file__, 1, "audit of %s failed", ("x",), sys.exc_info()
        )
    level, name, message = protocol.parse_log_line(fmt.format(record) + "\n")
    assert (level, name) == (logging.ERROR, "aidp.audit")
    assert message.startswith("audit of x failed\nTraceback") and "RuntimeError: boom" in message
    # what is not one of those lines (the interpreter's own complaints) is a warning, verbatim
    assert protocol.parse_log_line("Fatal Python error: x\n") == (
        logging.WARNING,
        "aidp.audit",
        "Fatal Python error: x",
    )
    assert protocol.parse_log_line('{"level": "high"}')[0] == logging.WARNING


def test_forwarded_lines_are_logged_under_the_processs_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        line = protocol.log_line(logging.WARNING, "aidp.audit", "cannot write Report for namespace a")
        runner.forward(line)
        runner.forward("plain text")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("aidp.audit", logging.WARNING, "cannot write Report for namespace a"),
        ("aidp.audit", logging.WARNING, "plain text"),
    ]


# ---- status figures -------------------------------------------------------------------------------


def test_status_patches_only_for_changed_figures_or_an_interval_old_time() -> None:
    now = dt.datetime(2026, 12, 2, 4, 0, 0, tzinfo=dt.UTC)
    fresh = (now - dt.timedelta(seconds=10)).strftime(worker.STAMP_FORMAT)
    old = (now - dt.timedelta(seconds=400)).strftime(worker.STAMP_FORMAT)

    def policy(name: str, **status: object) -> dict[str, object]:
        return {"metadata": {"namespace": "a", "name": name}, "status": status}

    objs = [
        policy("same", matchedWorkloads=2, violations=1, lastAuditTime=fresh),
        policy("changed", matchedWorkloads=2, violations=0, lastAuditTime=fresh),
        policy("stale", matchedWorkloads=0, violations=0, lastAuditTime=old),
        policy("never"),
        policy("unmatched", matchedWorkloads=0, violations=0, lastAuditTime=fresh),
    ]
    per_policy = {
        ("a", "same"): {"matched": 2, "violating": 1},
        ("a", "changed"): {"matched": 2, "violating": 1},
    }
    got = worker.status_patches(per_policy, objs, now, 300)  # type: ignore[arg-type]
    stamp = now.strftime(worker.STAMP_FORMAT)
    assert got == [
        ("a", "changed", {"matchedWorkloads": 2, "violations": 1, "lastAuditTime": stamp}),
        ("a", "stale", {"matchedWorkloads": 0, "violations": 0, "lastAuditTime": stamp}),
        ("a", "never", {"matchedWorkloads": 0, "violations": 0, "lastAuditTime": stamp}),
    ]


def test_the_peak_is_the_processs_own_high_water_mark(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n")
    assert worker.peak_rss_bytes(status) == 50 << 20
    # this process's own: at least what it holds now (ru_maxrss would be the operator's, see there)
    now = next(
        int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS")
    )
    assert worker.peak_rss_bytes() >= now * 1024


# ---- the operator's side: real processes standing in for the audit ---------------------------------


def _script(tmp_path: Path, body: str) -> tuple[str, ...]:
    path = tmp_path / "fake_audit.py"
    path.write_text(textwrap.dedent(body))
    return (sys.executable, str(path))


GOOD = """
    import sys
    from aidp.audit import protocol
    request = protocol.decode_request(sys.stdin.buffer.read())
    print(protocol.log_line(30, "aidp.audit", "audit: guardrails: not analysed"), file=sys.stderr, flush=True)
    summary = protocol.Summary(
        workloads=5, approved=3, violating=1, audit_seconds=0.25, policies=2, errors=1,
        findings=[protocol.FindingCount("shadow-ai", "medium", 2)], peak_rss_bytes=50 << 20,
        skipped=[protocol.SkippedAnalysis("guardrails", "forbidden")],
    )
    sys.stdout.buffer.write(protocol.encode_summary(summary) + b"\\n")
    # the request arrived whole, on stdin
    assert request.replica.token == "s3cret-token", request
"""


def _request() -> protocol.Request:
    return request_for(OperatorConfig(), REPLICA, catalog.builtin(), logging.INFO)


async def test_a_finished_process_gives_its_summary_and_its_log_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    got = await runner.run(_request(), 30, command=_script(tmp_path, GOOD), on_line=lines.append)
    assert (got.workloads, got.approved, got.violating, got.policies) == (5, 3, 1, 2)
    assert [protocol.parse_log_line(line)[2] for line in lines] == ["audit: guardrails: not analysed"]


async def test_a_failing_process_is_an_error_quoting_its_last_lines(tmp_path: Path) -> None:
    command = _script(
        tmp_path,
        """
        import sys
        for i in range(40):
            print(f"line {i}", file=sys.stderr)
        sys.exit(3)
        """,
    )
    with pytest.raises(runner.WorkerError) as err:
        await runner.run(_request(), 30, command=command, on_line=lambda _: None)
    text = str(err.value)
    assert "exited with code 3" in text and "line 39" in text and "line 20" in text
    assert "line 19\n" not in text  # only the tail


async def test_a_process_killed_by_a_signal_says_so(tmp_path: Path) -> None:
    command = _script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(runner.WorkerError, match=r"killed by SIGKILL \(out of memory"):
        await runner.run(_request(), 30, command=command, on_line=lambda _: None)


async def test_a_process_that_prints_no_summary_is_an_error(tmp_path: Path) -> None:
    command = _script(tmp_path, "import sys\nsys.stdin.read()\nprint('hello')\n")
    with pytest.raises(runner.WorkerError, match="no valid summary"):
        await runner.run(_request(), 30, command=command, on_line=lambda _: None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


HANG = """
    import os, sys, time
    open(sys.argv[1], "w").write(str(os.getpid()))
    print("reading the cluster", file=sys.stderr, flush=True)
    time.sleep(600)
"""


async def test_a_hanging_process_is_killed_after_its_time(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = (*_script(tmp_path, HANG), str(pid_file))
    with pytest.raises(runner.WorkerError) as err:
        await runner.run(_request(), 1.5, command=command, on_line=lambda _: None)
    assert "ran longer than 2s and was killed" in str(err.value) and "reading the cluster" in str(err.value)
    assert not _alive(int(pid_file.read_text()))


async def test_a_cancelled_audit_kills_its_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = (*_script(tmp_path, HANG), str(pid_file))
    task = asyncio.create_task(runner.run(_request(), 600, command=command, on_line=lambda _: None))
    for _ in range(200):
        if pid_file.is_file() and pid_file.read_text():
            break
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(pid)


def _sample(name: str, **labels: str) -> float:
    return float(REGISTRY.get_sample_value(name, labels) or 0.0)


async def _no_replicas() -> list[Replica]:
    return []


async def _one_replica() -> list[Replica]:
    return [REPLICA]


async def test_the_loop_counts_and_logs_a_failed_audit_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    command = _script(tmp_path, "import sys\nprint('Traceback: it broke', file=sys.stderr)\nsys.exit(1)\n")
    loop = AuditLoop(OperatorConfig(), _one_replica, command=command)
    before = _sample("aidp_audit_errors_total")
    with caplog.at_level(logging.INFO, logger="aidp.audit"):
        assert await loop.guarded_once() is False
    assert _sample("aidp_audit_errors_total") == before + 1
    failed = [r for r in caplog.records if r.getMessage().startswith("audit failed")]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    assert "exited with code 1" in failed[0].getMessage() and "Traceback: it broke" in failed[0].getMessage()
    assert loop.runs == 0


async def test_the_loop_turns_a_summary_into_metrics_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = AuditLoop(OperatorConfig(), _one_replica, command=_script(tmp_path, GOOD))
    errors = _sample("aidp_audit_errors_total")
    with caplog.at_level(logging.INFO, logger="aidp.audit"):
        assert await loop.guarded_once() is True
    assert loop.runs == 1 and loop.last is not None and loop.last.workloads == 5
    assert _sample("aidp_audit_workloads", state="all") == 5
    assert _sample("aidp_audit_workloads", state="violating") == 1
    assert _sample("aidp_audit_findings", type="shadow-ai", severity="medium") == 2
    assert _sample("aidp_audit_findings", type="policy-violation", severity="high") == 0
    assert _sample("aidp_audit_peak_rss_bytes") == 50 << 20
    assert _sample("aidp_audit_errors_total") == errors + 1  # the reports the process could not write
    messages = [r.getMessage() for r in caplog.records]
    assert "audit: guardrails: forbidden" in messages
    assert any(m.startswith("audit: 5 workloads, 3 approved, 1 violating, 2 findings in") for m in messages)
    assert any("audit process peak RSS 50 MB" in m for m in messages)


async def test_without_a_replica_no_process_is_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    loop = AuditLoop(OperatorConfig(), _no_replicas, command=(*_script(tmp_path, HANG), str(pid_file)))
    assert await loop.guarded_once() is True
    assert not pid_file.exists() and loop.runs == 0
