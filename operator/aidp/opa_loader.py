"""Loading the aidp bundle into OPA replicas through opa-python-client (blocking; run in threads)."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter

from aidp.bundle import Bundle
from aidp.render import POLICIES_PATH, opa_documents

if TYPE_CHECKING:  # opa_client imports aiohttp (~0.15 s): only when a client is made
    from opa_client import OpaClient

    from aidp.opadata import Delta

MODULE_PREFIX = "aidp/"
DATA_PATH = "aidp"


class OpaLoadError(RuntimeError):
    """A replica refused or could not take the bundle."""


class InsecureOpaUrl(ValueError):
    """An http:// OPA URL without `--allow-insecure-opa`: the management token would travel in clear."""


class _Transport:
    insecure_http = False  # set for the whole process by `--allow-insecure-opa`


def permit_insecure_http(allowed: bool = True) -> None:
    """Accept http:// OPA URLs in this process (`--allow-insecure-opa`)."""
    _Transport.insecure_http = allowed


def check_url(url: str, *, allow_insecure: bool | None = None) -> str:
    """`url` if it is an https:// URL, or an http:// one while insecure URLs are allowed."""
    scheme = urlsplit(url).scheme
    allowed = _Transport.insecure_http if allow_insecure is None else allow_insecure
    if scheme == "https" or (scheme == "http" and allowed):
        return url
    if scheme == "http":
        raise InsecureOpaUrl(
            f"refusing the OPA URL {url}: http:// sends the management token in clear "
            "(use https://, or --allow-insecure-opa)"
        )
    raise InsecureOpaUrl(
        f"refusing the OPA URL {url}: only https:// (or, with --allow-insecure-opa, http://)"
    )


def make_client(
    url: str, token: str, ca_file: Path | None, timeout: float = 10.0, server_hostname: str | None = None
) -> OpaClient:
    """An opa-python-client client for `url` that trusts `ca_file` (and nothing from the environment:
    requests would otherwise let REQUESTS_CA_BUNDLE replace the CA given here). With
    `server_hostname`, a pod address is reached but the certificate is checked for that name."""
    parts = urlsplit(check_url(url))
    https = parts.scheme == "https"
    client: OpaClient = _client_class()(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (443 if https else 80),
        ssl=(str(ca_file) if ca_file else True) if https else False,
        token=token or None,
        timeout=timeout,
        retries=0,
        server_hostname=server_hostname,
    )
    return client


@functools.lru_cache(maxsize=1)
def _client_class() -> Any:
    """opa-python-client's OpaClient, with the session it builds (its `_init_session` hook for
    subclasses) ignoring the environment and, given `server_hostname`, checking the certificate
    for that name. Imported lazily: opa-python-client pulls in aiohttp."""
    from opa_client import OpaClient as Base

    class AidpOpaClient(Base):  # type: ignore[misc]
        def __init__(self, *args: Any, server_hostname: str | None = None, **kwargs: Any) -> None:
            self._aidp_server_hostname = server_hostname
            super().__init__(*args, **kwargs)

        def _init_session(self) -> Any:
            session = super()._init_session()
            session.trust_env = False
            if self._aidp_server_hostname:
                session.mount("https://", _HostnameAdapter(self._aidp_server_hostname))
            return session

    return AidpOpaClient


class _HostnameAdapter(HTTPAdapter):
    """Verify the server certificate for a fixed DNS name (and send it as SNI), whatever address
    the connection goes to: OPA pods are reached by IP, their certificate names the Service."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_hostname"] = self.hostname
        kwargs["server_hostname"] = self.hostname
        super().init_poolmanager(*args, **kwargs)


@dataclass(frozen=True)
class Replica:
    """One OPA server, reached over TLS with the management token."""

    url: str
    token: str
    ca_file: Path | None
    server_hostname: str | None = None

    def client(self, timeout: float = 10.0) -> OpaClient:
        return make_client(self.url, self.token, self.ca_file, timeout, self.server_hostname)


# a value only aidp's modules define: present exactly when the modules are loaded
MODULES_PROBE = "aidp/admission/rule_ids"


def _modules_loaded(client: OpaClient) -> bool:
    got = client.get_data(MODULES_PROBE)
    return isinstance(got, dict) and bool(got.get("result"))


def revision_of(replica: Replica) -> str | None:
    """The bundle revision a replica holds, or None (nothing or only part of it loaded, or
    unreachable). The revision lives in the data document, so the modules are checked as well:
    an OPA that restarted and got only the data back holds no usable bundle."""
    try:
        with replica.client(timeout=2.0) as client:
            got = client.get_data(f"{DATA_PATH}/revision")
            value = got.get("result") if isinstance(got, dict) else None
            if not isinstance(value, str) or not _modules_loaded(client):
                return None
    except Exception:
        return None
    return value


# how long a replica that pulls its bundle (below) may take to activate a newly written revision
PULL_TIMEOUT = 15.0


def load(replica: Replica, bundle: Bundle, *, data_only: bool = False) -> None:
    """Put every module and the data document into one replica; drop modules aidp no longer ships.

    `data_only`: the replica is known to hold these very modules (it confirmed a revision made
    with them), so only the data document is replaced; recompiling the modules costs OPA time.

    A replica whose bundle plugin owns data.aidp (the Helm chart: OPA pulls the durable bundle
    from its agent and activates modules and data in one transaction) refuses these writes; the
    durable ConfigMap, written beside this call, reaches it through the agent, so `load` waits
    until the replica reports the revision instead.
    """
    try:
        _push(replica, bundle, data_only=data_only)
    except OpaLoadError as exc:
        if "owned by bundle" not in str(exc):
            raise
        _await_revision(replica, bundle.revision)


def _await_revision(replica: Replica, revision: str, timeout: float = PULL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while (held := revision_of(replica)) != revision:
        if time.monotonic() > deadline:
            raise OpaLoadError(
                f"{replica.url}: pulls its bundle and still holds revision {held} after {timeout:.0f}s, "
                f"not {revision} (is its agent serving the durable bundle?)"
            )
        time.sleep(0.05)


def _push(replica: Replica, bundle: Bundle, *, data_only: bool) -> None:
    try:
        with replica.client() as client:
            if data_only and not _modules_loaded(client):
                data_only = False  # the replica lost its modules (a restart since it confirmed)
            if not data_only:
                present = set(client.get_policies_list())
                _put_modules(client, bundle.modules)
                for stale in sorted(
                    p for p in present if p.startswith(MODULE_PREFIX) and p not in bundle.modules
                ):
                    client.delete_policy(stale)
            # the policies first, data.aidp (with the revision) last (aidp.render.opa_documents)
            docs = opa_documents(bundle.data)
            client.update_or_create_data(docs[POLICIES_PATH], POLICIES_PATH)
            client.update_or_create_data(docs[DATA_PATH], DATA_PATH)
    except Exception as exc:
        raise OpaLoadError(f"{replica.url}: {exc}") from exc


def _put_modules(client: OpaClient, modules: dict[str, str]) -> None:
    """PUT every module. OPA compiles each PUT against what it already holds, so a module whose
    imports are not loaded yet is refused: retry those after the others (dependency order found by
    trial, whatever order the bundle lists them in)."""
    pending = list(modules)
    while pending:
        failed: list[str] = []
        last: Exception | None = None
        for module_id in pending:
            try:
                client.update_policy_from_string(modules[module_id], module_id, rego_compat=False)
            except Exception as exc:
                if "owned by bundle" in str(exc):
                    raise  # the replica pulls its bundle: nothing may be pushed (see `load`)
                failed.append(module_id)
                last = exc
        if len(failed) == len(pending):
            raise last or OpaLoadError("no module could be loaded")
        pending = failed


def patch(replica: Replica, bundle: Bundle, delta: Delta) -> None:
    """Take a replica that holds the previous revision to `bundle` (aidp.opadata.delta): PUT each
    changed namespace at data.aidp_policies[namespace], DELETE the namespaces gone, then one JSON
    Patch on data.aidp (its other changed keys and the revision, in one OPA transaction). The
    revision comes last, so a replica that fails half-way still shows the old one and is reloaded.
    Should any step fail (the replica lost what it held meanwhile), the whole bundle is loaded
    instead; a replica that pulls its bundle is waited for, as in `load`."""
    try:
        with replica.client() as client:
            for ns, doc in delta.put.items():
                client.update_or_create_data(dict(doc), f"{POLICIES_PATH}/{ns}")
            for ns in delta.remove:
                client.delete_data(f"{POLICIES_PATH}/{ns}")
            client.patch_data(DATA_PATH, delta.top)
        return
    except Exception as exc:
        if "owned by bundle" in str(exc):
            _await_revision(replica, bundle.revision)
            return
    load(replica, bundle)


async def load_all(
    replicas: list[Replica],
    bundle: Bundle,
    data_only: frozenset[str] = frozenset(),
    delta: Delta | None = None,
    patch_only: frozenset[str] = frozenset(),
) -> dict[str, str | None]:
    """Load `bundle` into every replica concurrently; map URL -> error message (None when loaded).
    Replicas whose URL is in `data_only` get the data document only; those in `patch_only` (they
    hold the revision `delta` starts from) get `delta` only."""

    async def one(rep: Replica) -> str | None:
        try:
            if delta is not None and rep.url in patch_only:
                await asyncio.to_thread(patch, rep, bundle, delta)
            else:
                await asyncio.to_thread(load, rep, bundle, data_only=rep.url in data_only)
        except OpaLoadError as exc:
            return str(exc)
        return None

    results = await asyncio.gather(*(one(r) for r in replicas))
    return {r.url: res for r, res in zip(replicas, results, strict=True)}


async def revisions(replicas: list[Replica]) -> dict[str, str | None]:
    got = await asyncio.gather(*(asyncio.to_thread(revision_of, r) for r in replicas))
    return {r.url: g for r, g in zip(replicas, got, strict=True)}
