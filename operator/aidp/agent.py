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

With `--bundle-port` the agent also serves the durable bundle to its OPA on the loopback, as an OPA
bundle service (`BundleServer`): OPA, configured to pull it, activates modules and data in one
transaction, and the agent never loads OPA through its REST API.

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

from aidp.bundle import (
    HEAD_KEY,
    KEY,
    OPA_BUNDLE_MEDIA_TYPE,
    REVISION_ANNOTATION,
    Bundle,
    DurableUnreadable,
    decode_durable,
)
from aidp.opa_loader import OpaLoadError, Replica, load, revision_of

log = logging.getLogger("aidp.agent")
# Secret key -> file, in the order they are written: tls.crt last, so a reader that sees tls.crt
# (OPA's startup, the tests) finds the key and the CA beside it.
TLS_FILES = {"ca-bundle.crt": "ca.crt", "tls.key": "tls.key", "tls.crt": "tls.crt"}
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
        self,
        client: Client,
        kind: type[Secret] | type[ConfigMap],
        name: str,
        namespace: str,
        changed: threading.Event | None = None,
    ) -> None:
        self.client, self.kind, self.name, self.namespace = client, kind, name, namespace
        self.obj: Any = None
        self.synced = threading.Event()  # the first GET answered (the object or its absence)
        self.changed = changed or threading.Event()  # set on every change (may be shared)
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


class BundleServer:
    """The durable bundle for this pod's OPA, served on the loopback as an OPA bundle service.

    OPA's bundle plugin (configured with this service and long polling) downloads the bundle and
    activates modules and data in one storage transaction, so OPA never holds a mix of two
    revisions. `GET /bundles/aidp.tar.gz` answers 200 with the bundle and its revision as ETag, 304
    when OPA's If-None-Match already names the current revision (after waiting up to the `Prefer:
    wait=N` seconds OPA asks for, so a new revision is delivered the moment it is published), and
    404 while there is no durable bundle yet (OPA retries).
    """

    PATH = "/bundles/aidp.tar.gz"

    def __init__(self, host: str, port: int) -> None:
        self._cond = threading.Condition()
        self._blob: bytes | None = None
        self._etag: str | None = None
        self.served = 0  # 200 answers: bundles handed to OPA
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="bundle-server", daemon=True).start()

    @property
    def revision(self) -> str | None:
        return self._etag.strip('"') if self._etag else None

    def publish(self, bundle: Bundle) -> None:
        etag = f'"{bundle.revision}"'
        if etag == self._etag:
            return
        blob = bundle.opa_bundle()
        with self._cond:
            self._blob, self._etag = blob, etag
            self._cond.notify_all()
        log.info("serving bundle revision %s to OPA", bundle.revision)

    def _current(self, known: str, wait: float) -> tuple[bytes | None, str | None]:
        with self._cond:
            if wait > 0 and self._etag is not None and self._etag in known:
                self._cond.wait_for(lambda: self._etag is None or self._etag not in known, timeout=wait)
            return self._blob, self._etag

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != server.PATH:
                    self.send_response(404)
                    self.end_headers()
                    return
                known = self.headers.get("If-None-Match") or ""
                blob, etag = server._current(known, _prefer_wait(self.headers.get("Prefer") or ""))
                if blob is None or etag is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if etag in known:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Type", OPA_BUNDLE_MEDIA_TYPE)  # long polling supported
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Type", OPA_BUNDLE_MEDIA_TYPE)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)
                server.served += 1

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _prefer_wait(prefer: str) -> float:
    """The `wait=N` of OPA's Prefer header (long polling), capped at 5 minutes; 0 without one."""
    for part in prefer.replace(",", ";").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "wait" and value.isdigit():
            return min(float(value), 300.0)
    return 0.0


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
    # OPA pulls the bundle from this agent (`--bundle-port`) instead of being loaded through its
    # REST API: one activation for modules and data
    bundles: BundleServer | None = None
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
        return self._read_configmap()

    def _read_configmap(self) -> ConfigMap | None:
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
        values = {
            filename: data.get(key) or (data.get(CA_FALLBACK) if key == "ca-bundle.crt" else None)
            for key, filename in TLS_FILES.items()
        }
        if not all(values.values()):
            return False  # an incomplete Secret writes nothing: no half-updated pair on disk
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        for filename, value in values.items():
            _write_atomic(self.tls_dir / filename, base64.b64decode(value or ""))
        return True

    def ca_file(self) -> Path | None:
        if self.opa_ca_file is not None:
            return self.opa_ca_file
        return self.tls_dir / "ca.crt" if self.tls_dir else None

    def _durable(self, cm: ConfigMap | None) -> Bundle | None:
        """The durable bundle the head ConfigMap `cm` stands for, with its shards read (either
        format, aidp.bundle); None when there is none or it cannot be decoded."""
        if cm is None:
            return None

        def read_shard(name: str) -> tuple[dict[str, str], dict[str, str]] | None:
            got = _get_or_none(self.client, ConfigMap, name, self.namespace)
            if got is None:
                return None
            return dict(got.binaryData or {}), dict((got.metadata and got.metadata.annotations) or {})

        try:
            bundle, problems = decode_durable(cm.binaryData or {}, read_shard)
        except DurableUnreadable:
            return None
        except (ValueError, OSError) as exc:
            log.warning("the durable bundle cannot be decoded: %s", exc)
            return None
        if problems:
            log.warning("durable bundle shards not at the head's revision (loaded as they are): %s", problems)
        return bundle

    def _load_durable(self, replica: Replica, cm: ConfigMap | None) -> str | None:
        bundle = self._durable(cm)
        if bundle is None:
            return None
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
        if self.bundles is not None and durable is not None and durable != self.bundles.revision:
            durable_bundle = self._durable(cm)
            if durable_bundle is not None:
                self.bundles.publish(durable_bundle)
        held = revision_of(replica)
        if held is None:
            self._was_current = False
            if self.bundles is None:
                # the head read again, not the watch's copy: the restore reads its shards with GETs
                # anyway, and a watch that lags behind a write would restore an older revision,
                # which the agent then leaves alone (OPA holds a revision: the operator's business)
                held = self._load_durable(replica, self._read_configmap())
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
        changed = threading.Event()  # either object changed: act at once, not at the next interval
        self._cm_watch = Watched(self.client, ConfigMap, self.configmap, self.namespace, changed).start()
        if self.tls_dir is not None:
            self._secret_watch = Watched(self.client, Secret, self.secret, self.namespace, changed).start()
        if health is not None:
            serve_health(self, *health)
        for w in (self._cm_watch, self._secret_watch):
            if w is not None:
                w.synced.wait(timeout=30)
        while True:
            changed.clear()
            self._pass()
            changed.wait(self.interval)

    def _pass(self) -> None:
        try:
            self.step()
        except Exception as exc:
            log.exception("agent iteration failed")
            self._ready(False, f"agent iteration failed: {exc}")


def _get_or_none(client: Client, kind: type[Any], name: str, namespace: str) -> Any:
    try:
        return client.get(kind, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def _revision_annotation(cm: ConfigMap | None) -> str | None:
    if cm is None or cm.metadata is None or not any((cm.binaryData or {}).get(k) for k in (HEAD_KEY, KEY)):
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
