"""`aidp opa-agent`: runs beside each OPA server and restores it from the durable copy.

When OPA starts (or restarts) it holds no aidp policies, and the admission rules deny every checked
request in governed namespaces until policies arrive (fail closed). The agent notices an OPA without
a revision and loads the durable bundle from the ConfigMap, so enforcement returns even while the
operator is down. With `--tls-dir` it also writes the webhook serving certificate from the operator's
Secret into files for OPA (`--tls-cert-refresh-period` makes OPA pick up rotations); in a cluster a
Secret volume does that instead.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Secret

from aidp.bundle import KEY, Bundle
from aidp.opa_loader import OpaLoadError, Replica, load, revision_of

log = logging.getLogger("aidp.agent")
TLS_FILES = {"tls.crt": "tls.crt", "tls.key": "tls.key", "ca-bundle.crt": "ca.crt"}
# cert-manager writes no ca-bundle.crt: its ca.crt is the bundle then
CA_FALLBACK = "ca.crt"


@dataclass
class Agent:
    client: Client
    namespace: str
    configmap: str
    secret: str
    opa_url: str
    token_file: Path
    tls_dir: Path | None = None
    interval: float = 0.5
    opa_ca_file: Path | None = None

    def write_tls(self) -> bool:
        """Copy the serving certificate from the Secret into `tls_dir`; True when all files exist."""
        if self.tls_dir is None:
            return True
        try:
            secret = self.client.get(Secret, self.secret, namespace=self.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return False
            raise
        data = secret.data or {}
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        for key, filename in TLS_FILES.items():
            value = data.get(key) or (data.get(CA_FALLBACK) if key == "ca-bundle.crt" else None)
            if not value:
                return False
            _write_atomic(self.tls_dir / filename, base64.b64decode(value))
        return True

    def ca_file(self) -> Path | None:
        if self.opa_ca_file is not None:
            return self.opa_ca_file
        return self.tls_dir / "ca.crt" if self.tls_dir else None

    def restore_if_empty(self) -> str | None:
        """Load the durable bundle into OPA when OPA holds none; return the revision loaded."""
        replica = Replica(self.opa_url, self.token_file.read_text().strip(), self.ca_file())
        if revision_of(replica) is not None:
            return None
        try:
            cm = self.client.get(ConfigMap, self.configmap, namespace=self.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        blob = (cm.binaryData or {}).get(KEY)
        if not blob:
            return None
        bundle = Bundle.decode(base64.b64decode(blob))
        try:
            load(replica, bundle)
        except OpaLoadError as exc:
            log.info("OPA not ready for the durable bundle yet: %s", exc)
            return None
        log.info("restored OPA %s from the durable bundle, revision %s", self.opa_url, bundle.revision)
        return bundle.revision

    def run(self, *, once: bool = False) -> None:
        while True:
            try:
                if self.write_tls():
                    self.restore_if_empty()
            except Exception:
                log.exception("agent iteration failed")
            if once:
                return
            time.sleep(self.interval)


def _write_atomic(path: Path, content: bytes) -> None:
    if path.is_file() and path.read_bytes() == content:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    Path(tmp).replace(path)
