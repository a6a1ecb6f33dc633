"""`aidp audit -o pdf`: the HTML report printed to PDF by headless Chromium.

Chromium is the browser the HTML report is tested in (tests/integration/test_audit_html_chromium.py),
so the PDF is the page as a compliance officer sees it, with the report's print styles (a cover
page with scope and time, A4 landscape, table headers repeated on every page, rows never split).
It runs with a fresh profile in a temporary directory, without network (every host name resolves
to nothing: the report has no external references anyway), and is killed with its helper
processes when done or after `TIMEOUT` seconds.

The browser is `$AIDP_CHROMIUM`, else the first of `chromium`, `chromium-browser`,
`google-chrome` on PATH (Debian: `apt-get install chromium`, or `make chromium`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

TIMEOUT = 120.0
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
ENV = "AIDP_CHROMIUM"


class PdfError(RuntimeError):
    """The PDF could not be made; the message says why and what to do."""


def find_chromium() -> str:
    explicit = os.environ.get(ENV)
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise PdfError(f"{ENV}={explicit} is not an executable")
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    raise PdfError(
        "-o pdf needs headless Chromium, and none was found on PATH (chromium, chromium-browser, "
        f"google-chrome): install it (Debian: apt-get install chromium; in the repository: make "
        f"chromium) or set {ENV} to the browser's path; -o html writes the same report as HTML"
    )


def command(browser: str, profile: Path, page: Path, pdf: Path) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--no-pdf-header-footer",
        "--print-to-pdf-no-header",  # the same, for Chromium before 120
        f"--print-to-pdf={pdf}",
        page.as_uri(),
    ]


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def html_to_pdf(html: str, timeout: float = TIMEOUT) -> bytes:
    """The PDF of `html` (a self-contained page), as bytes; PdfError when it cannot be made."""
    browser = find_chromium()
    with tempfile.TemporaryDirectory(prefix="aidp-pdf-") as tmp:
        work = Path(tmp)
        page, pdf, profile = work / "report.html", work / "report.pdf", work / "profile"
        page.write_text(html, encoding="utf-8")
        cmd = command(browser, profile, page, pdf)
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                env={**os.environ, "HOME": str(work)},
            )
        except OSError as err:
            raise PdfError(f"cannot start {browser}: {err}") from err
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            raise PdfError(f"{browser} did not print the report in {timeout:.0f}s") from None
        _kill(proc)  # its helpers (zygote, GPU, renderer) may outlive it, in its session
        data = pdf.read_bytes() if pdf.is_file() else b""
        if proc.returncode != 0 or not data.startswith(b"%PDF-"):
            tail = "\n".join(line for line in (stderr or "").splitlines()[-15:])
            raise PdfError(f"{browser} exited {proc.returncode} without a PDF:\n{tail}")
        return data
