"""The in-cluster audit runs in a process of its own (aidp.audit.worker), a child of the operator:
it is there during an audit and gone after it, its summary reaches the operator's metrics, and an
audit process that dies (SIGKILL, as the OOM killer does) is an audit error the operator logs,
counts and goes on after. That the audit writes the reports and the policies' audit figures is
tests/integration/test_audit.py::test_in_cluster_audit_writes_reports_and_policy_status."""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest

from aidp.devcluster.stack import AidpStack
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # the local operator's process, log and metrics port


def audit_processes(operator_pid: int) -> list[int]:
    """The operator's children running the audit."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == operator_pid and b"aidp.audit.worker" in cmdline:
            out.append(int(entry.name))
    return out


def metric(stack: AidpStack, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def operator_log(stack: AidpStack) -> str:
    return (stack.state_dir / "logs" / "aidp-operator.log").read_text(errors="replace")


def test_each_audit_is_a_child_process_whose_summary_reaches_the_metrics(aidp_stack: AidpStack) -> None:
    assert aidp_stack.operator is not None and aidp_stack.operator.pid is not None
    pid = aidp_stack.operator.pid
    token = aidp_stack.token_file.read_text().strip().encode()
    cmdlines = wait_for(
        lambda: [Path(f"/proc/{child}/cmdline").read_bytes() for child in audit_processes(pid)],
        timeout=60,
        interval=0.05,
        what="an audit process of the operator",
    )
    assert all(token not in c for c in cmdlines)  # the token goes on its stdin, never its command line
    wait_for(
        lambda: metric(aidp_stack, "aidp_audit_peak_rss_bytes") > 10 * 2**20,
        timeout=60,
        what="the audit process's peak RSS in the operator's metrics",
    )
    assert re.search(r"audit: \d+ workloads, .*audit process peak RSS \d+ MB\)", operator_log(aidp_stack))


def test_a_killed_audit_process_is_an_error_and_the_next_audit_runs(aidp_stack: AidpStack) -> None:
    assert aidp_stack.operator is not None and aidp_stack.operator.pid is not None
    pid = aidp_stack.operator.pid
    errors = metric(aidp_stack, "aidp_audit_errors_total")
    seen = len(operator_log(aidp_stack))

    def kill_one() -> bool:
        for child in audit_processes(pid):
            try:
                os.kill(child, signal.SIGKILL)
                return True
            except ProcessLookupError:
                continue
        return False

    wait_for(kill_one, timeout=60, interval=0.02, what="an audit process to kill")
    failed = wait_for(
        lambda: re.search(
            r"audit failed: the audit process was killed by SIGKILL[^\n]*", operator_log(aidp_stack)[seen:]
        ),
        timeout=30,
        what="the operator's log line for the killed audit",
    )
    assert "out of memory?" in failed.group(0)
    assert metric(aidp_stack, "aidp_audit_errors_total") >= errors + 1
    after = seen + failed.end()
    wait_for(
        lambda: re.search(r"audit: \d+ workloads", operator_log(aidp_stack)[after:]),
        timeout=60,
        what="the next audit after the killed one",
    )
    assert aidp_stack.operator.alive()
