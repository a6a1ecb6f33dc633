"""`aidp opa-agent`: runs beside each OPA server and restores it from the durable copy.

When OPA starts (or restarts) it holds no aidp policies, and the admission rules deny every checked
request in governed namespaces until policies arrive (fail closed). The agent notices an OPA without
a revision and loads the durable bundle from the ConfigMap, so enforcement returns even while the
operator is down. With `--tls-dir` it also writes the webhook serving certificate from the operator's
Secret into files for OPA (`--tls-cert-refresh-period` makes OPA pick up rotations); in a cluster a
Secret volume does that instead.

The ConfigMap and the Secret are watched (one watch each, limited to the one name), not polled: the
API server sees one long-lived request per object and replica, plus a re-list with exponential
back-off after an error. Only OPA, on the loopback, is asked for its revision every `--interval`.

Readiness (`--health-port`, `GET /readyz`): the pod may receive webhook traffic only once OPA holds
a complete bundle (modules and data) whose revision is the durable bundle's current revision. Once
it has been current, it stays ready while OPA holds a complete bundle, even at another revision:
moving replicas between revisions is the operator's job, and the operator loads only ready
endpoints, so a replica taken out of the Service for being stale would never be brought up to date.
An OPA that loses its bundle (a restart) is not ready until the agent has restored it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Secret
from lightkube.types import OnErrorAction, OnErrorResult

from aidp.bundle import KEY, REVISION_ANNOTATION, Bundle
from aidp.opa_loader import OpaLoadError, Replica, load, revision_of

log = logging.getLogger("aidp.agent")
TLS_FILES = {"tls.crt": "tls.crt", "tls.key": "tls.key", "ca-bundle.crt": "ca.crt"}
# cert-manager writes no ca-bundle.crt: its ca.crt is the bundle then
CA_FALLBACK = "ca.crt"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


class Watched:
    """The latest state of one named object, kept current by a watch in a thread of its own.

    A GET gives the state (or its absence) and a resourceVersion; a watch with a metadata.name field
    selector follows from there. Any error ends the watch; the next GET comes after an exponential
    back-off (0.5 s doubling to 30 s, back to 0.5 s once a watch delivers an event or lasts 30 s).
    """

    def __init__(
        self, client: Client, kind: type[Secret] | type[ConfigMap], name: str, namespace: str
    ) -> None:
        self.client, self.kind, self.name, self.namespace = client, kind, name, namespace
        self.obj: Any = None
        self.synced = threading.Event()  # the first GET answered (the object or its absence)
        self.changed = threading.Event()
        self.requests = 0  # GETs and watch requests sent (each re-list counts one of each)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> Watched:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _set(self, obj: Any) -> None:
        self.obj = obj
        self.changed.set()

    def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            began = time.monotonic()
            delivered = False
            try:
                delivered = self._list_and_watch()
            except Exception as exc:
                log.warning("watch of %s %s failed: %s", self.kind.__name__, self.name, exc)
            if delivered or time.monotonic() - began >= MAX_BACKOFF:
                backoff = FIRST_BACKOFF  # the watch worked: the next failure starts over
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _list_and_watch(self) -> bool:
        """GET, then watch from that version until an error; True if the watch delivered events."""
        delivered = False
        version: str | None = None
        self.requests += 1
        try:
            obj = self.client.get(self.kind, self.name, namespace=self.namespace)
            version = obj.metadata.resourceVersion if obj.metadata else None
            self._set(obj)
        except ApiError as err:
            if err.status.code != 404:
                raise
            self._set(None)
        self.synced.set()
        self.requests += 1
        for event, obj in self.client.watch(
            self.kind,
            namespace=self.namespace,
            fields={"metadata.name": self.name},
            resource_version=version,
            on_error=_stop_on_error,
        ):
            if self._stop.is_set():
                break
            self._set(None if event == "DELETED" else obj)
            delivered = True
        return delivered


def _stop_on_error(exc: Exception, count: int) -> OnErrorResult:
    log.info("watch interrupted (%s); listing again", exc)
    return OnErrorResult(OnErrorAction.STOP)


@dataclass
class Readiness:
    ready: bool = False
    reason: str = "starting"
    revision: str | None = None
    at: float = field(default_factory=time.monotonic)


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
    readiness: Readiness = field(default_factory=Readiness)
    passes: int = 0
    _was_current: bool = False  # OPA held the durable revision since it last held nothing
    _secret_watch: Watched | None = None
    _cm_watch: Watched | None = None

    # ---- the objects: watched when running, read directly for --once -----------------------------
    def _secret(self) -> Secret | None:
        if self._secret_watch is not None:
            return self._secret_watch.obj  # type: ignore[no-any-return]
        got: Secret | None = _get_or_none(self.client, Secret, self.secret, self.namespace)
        return got

    def _configmap(self) -> ConfigMap | None:
        if self._cm_watch is not None:
            return self._cm_watch.obj  # type: ignore[no-any-return]
        got: ConfigMap | None = _get_or_none(self.client, ConfigMap, self.configmap, self.namespace)
        return got

    def write_tls(self) -> bool:
        """Copy the serving certificate from the Secret into `tls_dir`; True when all files exist."""
        if self.tls_dir is None:
            return True
        secret = self._secret()
        if secret is None:
            return False
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

    def _load_durable(self, replica: Replica, cm: ConfigMap | None) -> str | None:
        blob = (cm.binaryData or {}).get(KEY) if cm is not None else None
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

    def step(self) -> Readiness:
        """One pass: certificate files, restore, readiness."""
        self.passes += 1
        if not self.write_tls():
            return self._ready(False, f"no serving certificate in Secret {self.secret} yet")
        replica = Replica(self.opa_url, self.token_file.read_text().strip(), self.ca_file())
        cm = self._configmap()
        durable = _revision_annotation(cm)
        held = revision_of(replica)
        if held is None:
            self._was_current = False
            held = self._load_durable(replica, cm)
            if held is None:
                return self._ready(False, "OPA holds no complete bundle")
        if held == durable:
            self._was_current = True
            return self._ready(True, "OPA holds the durable revision", held)
        if self._was_current:
            return self._ready(True, f"OPA holds revision {held}; the operator moves it on", held)
        return self._ready(False, f"OPA holds revision {held}, the durable bundle is at {durable}", held)

    def _ready(self, ready: bool, reason: str, revision: str | None = None) -> Readiness:
        if ready != self.readiness.ready:
            log.info("%s: %s", "ready" if ready else "not ready", reason)
        self.readiness = Readiness(ready, reason, revision)
        return self.readiness

    def run(self, *, once: bool = False, health: tuple[str, int] | None = None) -> None:
        if once:
            self._pass()
            return
        self._cm_watch = Watched(self.client, ConfigMap, self.configmap, self.namespace).start()
        if self.tls_dir is not None:
            self._secret_watch = Watched(self.client, Secret, self.secret, self.namespace).start()
        if health is not None:
            serve_health(self, *health)
        watches = [w for w in (self._cm_watch, self._secret_watch) if w is not None]
        for w in watches:
            w.synced.wait(timeout=30)
        while True:
            for w in watches:
                w.changed.clear()
            self._pass()
            _wait_any([w.changed for w in watches], self.interval)

    def _pass(self) -> None:
        try:
            self.step()
        except Exception as exc:
            log.exception("agent iteration failed")
            self._ready(False, f"agent iteration failed: {exc}")


def _wait_any(events: list[threading.Event], timeout: float) -> None:
    """Until one of `events` is set or `timeout` passes (a changed object is acted on at once)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if any(e.is_set() for e in events):
            return
        time.sleep(min(left, 0.05))


def _get_or_none(client: Client, kind: type[Any], name: str, namespace: str) -> Any:
    try:
        return client.get(kind, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def _revision_annotation(cm: ConfigMap | None) -> str | None:
    if cm is None or cm.metadata is None or not (cm.binaryData or {}).get(KEY):
        return None
    return (cm.metadata.annotations or {}).get(REVISION_ANNOTATION)


def serve_health(agent: Agent, host: str, port: int) -> ThreadingHTTPServer:
    """`GET /readyz`: 200 when the pod may take webhook traffic (see the module docstring), 503
    otherwise; `GET /healthz`: 200 while passes keep completing. Both answer a JSON document."""
    stale_after = max(10.0, 20 * agent.interval)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state = agent.readiness
            fresh = time.monotonic() - state.at < stale_after
            body: dict[str, Any] = {
                "ready": state.ready and fresh,
                "reason": state.reason if fresh else f"no pass for {stale_after:.0f}s",
                "revision": state.revision,
                "passes": agent.passes,
            }
            if self.path == "/readyz":
                code = 200 if body["ready"] else 503
            elif self.path == "/healthz":
                code = 200 if fresh else 503
            else:
                code, body = 404, {"error": "not found"}
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def _write_atomic(path: Path, content: bytes) -> None:
    if path.is_file() and path.read_bytes() == content:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    Path(tmp).replace(path)
