"""Starting, waiting for and stopping the real component processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ComponentError(RuntimeError):
    """A component failed to start or to become healthy; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # field 3 (after the parenthesised command) is the state; Z = zombie, X = dead
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


@dataclass
class Process:
    """One component process, in its own process group so that it is stopped with its children."""

    name: str
    argv: Sequence[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pid: int | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n==> {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def signal(self, sig: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, the way a crash or an OOM kill ends a process; waits until it is gone."""
        self.signal(signal.SIGKILL)
        self._reap(10.0)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns when the process is gone."""
        if self.pid is None:
            return
        self.signal(signal.SIGTERM)
        if not self._reap(grace):
            self.signal(signal.SIGKILL)
            self._reap(10.0)

    def _reap(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None:
                if self.popen.poll() is not None:
                    return True
            elif self.pid is None or not pid_alive(self.pid):
                return True
            time.sleep(0.05)
        return False

    def failure(self, what: str) -> ComponentError:
        return ComponentError(f"{self.name} {what}; log {self.log}:\n{log_tail(self.log)}")


def https_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def wait_http_ok(
    proc: Process,
    url: str,
    ctx: ssl.SSLContext | None,
    *,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    accept: Callable[[int, bytes], bool] = lambda status, _body: status == 200,
) -> None:
    """Poll `url` until it answers as `accept` wants; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    delay = 0.05
    while time.monotonic() < deadline:
        if not proc.alive():
            raise proc.failure("exited during start-up")
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - fixed loopback URL
        try:
            with urllib.request.urlopen(request, context=ctx, timeout=2) as resp:  # noqa: S310
                body = resp.read()
                if accept(resp.status, body):
                    return
                last = f"HTTP {resp.status}: {body[:200]!r}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}: {err.read()[:200]!r}"
        except (OSError, ssl.SSLError) as err:
            last = str(err)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise proc.failure(f"not healthy at {url} after {timeout:.0f}s (last: {last})")
