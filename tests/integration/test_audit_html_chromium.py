"""The HTML audit report in a real browser: headless Chromium renders it offline, without errors.

Chromium comes from the Debian package `chromium` (`make chromium`); when it is missing the tests
fail with that instruction, never skip.

What Chromium prints on stderr (`--enable-logging=stderr --v=0`) is mostly its own noise in a
container: the Debian launcher's shell warning, dbus/bluez/UPower/ScreenSaver errors, vaapi and GPU
sandbox warnings. Messages from pages are the lines tagged `CONSOLE`, e.g.
`[pid:tid:time:INFO:CONSOLE:1] "Uncaught Error: x", source: file:///.../report.html (1)`.
Chromium logs every console message at INFO, whatever its level (console.error included), so
"ERROR" on the line says nothing about the page; the report has no scripts at all, so any console
message whose source is the report fails the test. `test_console_filter_catches_page_errors`
proves that filter against a page that does log errors.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from aidp.audit.formats import render
from aidp.audit.report import AuditReport, Finding, NamespaceTally, ProcessingRecord

TIMEOUT = 120.0

# `[12:34:1129/204043.809641:INFO:CONSOLE:1] "message", source: file:///x.html (1)` (Chromium >= 12x)
# and the older `[...:INFO:CONSOLE(1)] "message", source: file:///x.html (1)`
_CONSOLE = re.compile(
    r':CONSOLE(?::\d+\]|\(\d+\)\])\s*"(?P<message>.*)", source: (?P<source>\S*) \(\d+\)\s*$'
)


@dataclass(frozen=True)
class Run:
    stdout: str
    stderr: str


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: run make chromium", pytrace=False)
    return path


def run_chromium(profile: Path, *args: str) -> Run:
    """Headless Chromium with its own profile and no network at all; its output as text."""
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        # the report must work offline: no host resolves (also silences Chromium's own update pings)
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish in {TIMEOUT:.0f}s: {' '.join(cmd)}\n{err[-4000:]}")
    finally:
        # the browser's helper processes (zygote, GPU, renderer) are in its session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {' '.join(cmd)}\n{err[-4000:]}"
    return Run(out, err)


def page_console_messages(stderr: str, url: str) -> list[str]:
    """Console messages (errors, uncaught exceptions, any level) that the page at `url` logged."""
    found = []
    for line in stderr.splitlines():
        m = _CONSOLE.search(line)
        if m is not None and (m["source"].startswith(url) or not m["source"]):
            found.append(line)
        elif m is None and "CONSOLE" in line and url in line:
            found.append(line)  # a console line in a format this parser does not know: never ignore it
    return found


def sample_report() -> AuditReport:
    findings = [
        Finding(
            "policy-violation",
            "critical",
            "payments",
            "Deployment",
            "fraud-scorer",
            "aidp.io/retention-days is 90 but the policy allows at most 30",
            "fraud-openai",
            "max-retention",
        ),
        Finding(
            "review-expired",
            "critical",
            "support",
            "AIDataPolicy",
            "chat-summaries",
            "review expired on 2025-01-31; approver <script>alert(1)</script> & co. must sign again",
            "chat-summaries",
            "review",
        ),
        Finding(
            "shadow-ai",
            "high",
            "marketing",
            "Deployment",
            "copywriter",
            "env OPENAI_API_KEY from Secret marketing/openai, but no active AIDataPolicy selects it",
        ),
        Finding(
            "credential-exposure",
            "high",
            "payments",
            "Secret",
            "openai-key",
            "ServiceAccount payments/ci-bot can get the Secret through RoleBinding ci-read-secrets",
            "fraud-openai",
        ),
        Finding(
            "egress-bypass",
            "medium",
            "marketing",
            "Pod",
            "scratch-7f9c",
            "NetworkPolicy allow-all-egress lets this unapproved pod reach the provider on 443",
        ),
        Finding(
            "review-expiring",
            "low",
            "payments",
            "AIDataPolicy",
            "fraud-openai",
            "review expires in 12 days (2025-03-01)",
            "fraud-openai",
            "review",
        ),
    ]
    records = [
        ProcessingRecord(
            "payments",
            "Deployment",
            "fraud-scorer",
            "fraud-openai",
            "Fraud scoring of card transactions",
            ["api.openai.com"],
            "legitimate-interest",
            30,
            ["transaction-metadata", "pseudonymised-ids"],
            "EU",
            "dpo@example.com",
            "2025-03-01",
        ),
        ProcessingRecord(
            "support",
            "Deployment",
            "ticket-summarizer",
            "chat-summaries",
            "Summarise support tickets for agents",
            ["api.anthropic.com"],
            "contract",
            0,
            ["support-tickets", "contact-details"],
            "EU",
            "privacy-board",
            "2025-01-31",
        ),
        ProcessingRecord(
            "search",
            "StatefulSet",
            "embedder",
            "search-embeddings",
            "Embeddings for product search",
            ["api.openai.com"],
            "legitimate-interest",
            0,
            ["product-catalogue"],
            "US",
            "dpo@example.com",
            "2025-09-30",
        ),
    ]
    namespaces = {
        "payments": NamespaceTally(12, 5, 3),
        "marketing": NamespaceTally(7, 0, 2),
        "support": NamespaceTally(4, 2, 1),
        "search": NamespaceTally(9, 3, 0),
        "data-platform": NamespaceTally(15, 0, 0),
        "recommendations": NamespaceTally(6, 2, 1),
        "kube-system": NamespaceTally(11, 0, 0),
    }
    return AuditReport(
        generated_at="2025-02-17T09:30:00Z",
        workloads=sum(t.workloads for t in namespaces.values()),
        approved=sum(t.approved for t in namespaces.values()),
        violating=sum(t.violating for t in namespaces.values()),
        findings=findings,
        records=records,
        namespaces=namespaces,
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    report = sample_report()
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    url = page.as_uri()

    png = tmp_path / "report.png"
    shot = run_chromium(tmp_path / "profile-shot", f"--screenshot={png}", "--window-size=1280,2000", url)
    assert png.is_file(), shot.stderr[-4000:]
    data = png.read_bytes()
    assert png_size(data) == (1280, 2000)
    assert len(data) > 10_000, f"screenshot is only {len(data)} bytes"

    dump = run_chromium(tmp_path / "profile-dom", "--dump-dom", url)
    dom = dump.stdout
    cards = dict(
        re.findall(r'id="card-(\w+)"><div class="label">[^<]*</div><div class="value">(\d+)</div>', dom)
    )
    assert cards == {
        "workloads": "64",
        "approved": "12",
        "violating": "7",
        "findings": "6",
        "critical": "2",
        "high": "2",
        "medium": "1",
        "low": "1",
        "info": "0",
    }
    assert "<svg" in dom
    assert dom.count('<g class="bar">') == 7
    assert "Workloads per namespace: approved, violating and other" in dom
    assert dom.count('class="finding"') == 6
    assert "<script" not in dom
    assert "approver &lt;script&gt;alert(1)&lt;/script&gt; &amp; co." in dom
    assert not re.search(r"\s(?:src|href)=", dom)

    for run in (shot, dump):
        assert page_console_messages(run.stderr, url) == [], run.stderr


def test_console_filter_catches_page_errors(tmp_path: Path) -> None:
    """The console filter above is not vacuous with the installed Chromium."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>broken</p><script>"
        'console.error("report-console-error"); throw new Error("report-uncaught");'
        "</script></body></html>",
        encoding="utf-8",
    )
    run = run_chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    messages = page_console_messages(run.stderr, page.as_uri())
    assert any("report-console-error" in m for m in messages), run.stderr
    assert any("Uncaught Error: report-uncaught" in m for m in messages), run.stderr
    assert page_console_messages(run.stderr, (tmp_path / "other.html").as_uri()) == []
