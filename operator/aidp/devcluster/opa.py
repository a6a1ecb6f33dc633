"""A real OPA server: TLS, management API protected by a bearer token, health-checked start."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aidp import pki
from aidp.devcluster.procs import Process, free_port, https_context, wait_http_ok
from aidp.paths import policies_dir, testbin_dir

if TYPE_CHECKING:
    from opa_client import OpaClient

HOST = "127.0.0.1"


def new_token() -> str:
    """A management API token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass
class OpaServer:
    """`opa run --server` with TLS and `--authentication=token --authorization=basic`.

    The authorization policy (policies/system/authz.rego) is loaded from a file at start, so no
    API call can replace it; `preload` names extra files or directories (for example the durable
    policy bundle) that OPA loads at start, before anyone pushes anything.
    """

    state_dir: Path
    token: str
    bin_dir: Path = field(default_factory=testbin_dir)
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    preload: tuple[Path, ...] = ()
    port: int = 0
    diagnostic_port: int = 0
    # OPA logs every HTTP request at info level; on the webhook's hot path that costs real time
    log_level: str = "error"
    # the chart's defaults (values opa.gogc, opa.goMemLimit): less GC work per admission request
    gogc: int = 400
    go_mem_limit: str = "400MiB"
    proc: Process | None = None

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def _ensure_tls(self) -> None:
        if self.cert_file and self.key_file and self.ca_file:
            return
        tls = self.state_dir / "tls"
        if not (tls / "serving.crt").is_file():
            ca = pki.new_ca("aidp-opa-ca")
            ca.write(tls, "ca")
            pki.issue(ca, "opa", dns_names=("localhost",), ip_addresses=(HOST,), server=True).write(
                tls, "serving"
            )
        self.ca_file, self.cert_file, self.key_file = tls / "ca.crt", tls / "serving.crt", tls / "serving.key"

    def argv(self) -> list[str]:
        return [
            str(self.bin_dir / "opa"),
            "run",
            "--server",
            f"--addr={HOST}:{self.port}",
            f"--diagnostic-addr={HOST}:{self.diagnostic_port}",
            f"--tls-cert-file={self.cert_file}",
            f"--tls-private-key-file={self.key_file}",
            "--tls-cert-refresh-period=2s",
            "--authentication=token",
            "--authorization=basic",
            f"--log-level={self.log_level}",
            "--log-format=json",
            str(policies_dir() / "system" / "authz.rego"),
            *map(str, self.preload),
        ]

    def start(self) -> OpaServer:
        from aidp.devcluster.cluster import require_binaries

        require_binaries(self.bin_dir, ("opa",))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_tls()
        self.port = self.port or free_port()
        self.diagnostic_port = self.diagnostic_port or free_port()
        self.proc = Process(
            "opa",
            self.argv(),
            self.state_dir / "opa.log",
            env={"AIDP_OPA_TOKEN": self.token, "GOGC": str(self.gogc), "GOMEMLIMIT": self.go_mem_limit},
        )
        self.proc.start()
        wait_http_ok(self.proc, f"{self.url}/health", https_context(self.ca_file), timeout=30)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def client(self, *, token: str | None = None) -> OpaClient:
        """An opa-python-client client for this server (the management token unless given)."""
        from aidp.opa_loader import make_client

        return make_client(self.url, self.token if token is None else token, self.ca_file, timeout=5)
