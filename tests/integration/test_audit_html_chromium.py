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
import dataclasses
import os
import re
import shutil
import signal
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from aidp.audit import pdf
from aidp.audit import records as records_mod
from aidp.audit.formats import render
from aidp.audit.report import AuditReport, Changes, Finding, NamespaceTally, PolicyChange, ProcessingRecord
from aidp.model import Policy
from tests.integration import helpers

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
    # the contract section 9 fields, as the audit builds them from the policies
    policies = {
        "fraud-openai": {
            "controller": {"name": "Example Payments SE", "contact": "dpo@payments.example"},
            "dataSubjects": ["card holders"],
            "transfers": {"safeguard": "dpf"},
        },
        "chat-summaries": {
            "provider": "anthropic",
            "controller": {"name": "Example Support GmbH", "contact": "privacy@support.example"},
            "dataSubjects": ["customers", "support agents"],
            "transfers": {"safeguard": "scc"},
        },
        "search-embeddings": {"dataResidency": "eu"},
    }
    annotations = {"aidp.io/zero-data-retention": "true"}
    records = [
        dataclasses.replace(
            r,
            **records_mod.details(
                Policy.from_object(helpers.policy(r.policy, r.namespace, **policies[r.policy])),
                annotations,
                {"app": r.name},
                [
                    {
                        "metadata": {"name": "aidp-egress-baseline", "namespace": r.namespace},
                        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
                    }
                ],
            ),
        )
        for r in records
    ]
    changes = Changes(
        since="2025-02-16T09:30:00Z",
        workloads_added=["marketing/Deployment/copywriter"],
        workloads_removed=["search/Deployment/old-indexer"],
        findings_new=[findings[1]],
        findings_resolved=[
            Finding(
                "policy-violation",
                "high",
                "search",
                "Deployment",
                "old-indexer",
                "retention 40 > 30",
                "s",
                "r",
            )
        ],
        policies_changed=[PolicyChange("payments/fraud-openai", 4, 3)],
    )
    return AuditReport(
        generated_at="2025-02-17T09:30:00Z",
        workloads=sum(t.workloads for t in namespaces.values()),
        approved=sum(t.approved for t in namespaces.values()),
        violating=sum(t.violating for t in namespaces.values()),
        findings=findings,
        records=records,
        namespaces=namespaces,
        changes=changes,
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
    # what changed comes first; headings and a caption on every table for screen readers
    main = dom[dom.index("<main>") :]
    assert main.index('id="changes"') < main.index('id="summary"') < main.index('id="records"')
    assert dom.count('data-change="') == 5
    assert dom.count("<table") == dom.count("<caption>") > 5
    assert re.findall(r"<h1[ >]", dom) == ["<h1>"]
    assert dom.count('<tr class="namespace">') == 7  # the summary per namespace
    assert dom.count('class="record-items"') == 3  # each record in full
    assert "Example Support GmbH" in dom and "card holders" in dom

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


def _pages(pdf_file: Path) -> list[str]:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.fail(
            "pdftotext is not installed: run make chromium (Debian package poppler-utils)", pytrace=False
        )
    out = subprocess.run([tool, "-layout", str(pdf_file), "-"], capture_output=True, text=True, check=True)
    return [" ".join(page.split()) for page in out.stdout.split("\f") if page.strip()]


def test_the_pdf_has_a_cover_and_keeps_each_record_on_one_page(tmp_path: Path) -> None:
    """`aidp audit -o pdf`: Chromium prints the HTML with its print styles: a cover page (scope and
    time, nothing else), then the report; a record's table is never split over two pages."""
    report = sample_report()
    data = pdf.html_to_pdf(render(report, "html"))
    assert data.startswith(b"%PDF-")
    (tmp_path / "r.pdf").write_bytes(data)
    pages = _pages(tmp_path / "r.pdf")
    cover, rest = pages[0], pages[1:]
    assert "What this report covers" in cover and "Scope cluster" in cover
    assert "2025-02-17T09:30:00Z" in cover and "2025-02-16T09:30:00Z" in cover  # time, and since when
    assert "What changed" not in cover and "Summary" not in cover
    assert rest and "What changed since 2025-02-16T09:30:00Z" in rest[0]
    for r in report.records:
        caption = f"{r.namespace}/{r.name} ({r.kind}) under policy {r.policy}"
        [page] = [p for p in rest if caption in p]  # printed once, on one page ...
        tail = page[page.index(caption) :]
        assert "Controller" in tail and "Evidence" in tail and r.purpose in tail  # ... with all its rows
