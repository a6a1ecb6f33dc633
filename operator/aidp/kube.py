"""Small helpers around lightkube shared by the CLI, the dev environment and tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import Client, KubeConfig, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

FIELD_MANAGER = "aidp"


def client(kubeconfig: Path | None = None, *, field_manager: str = FIELD_MANAGER) -> Client:
    """A synchronous client from `kubeconfig`, or from the usual places: in a pod the service
    account (KUBERNETES_SERVICE_HOST and the mounted token), else KUBECONFIG, else ~/.kube/config.

    The configuration is loaded here, not by lightkube: with `trust_env=False` (no proxy variables
    for the API connection) lightkube would read only ~/.kube/config.
    """
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    return Client(config=config, field_manager=field_manager, trust_env=False)


def load_yaml_files(paths: Iterable[Path]) -> list[Any]:
    """All objects in the given YAML files, as lightkube resources (CRDs become generic types)."""
    objs: list[Any] = []
    for path in paths:
        with path.open() as fh:
            objs.extend(codecs.load_all_yaml(fh, create_resources_for_crds=True))
    return objs


def apply_all(kube: Client, objs: Iterable[Any], *, force: bool = True) -> None:
    """Server-side apply every object (idempotent)."""
    for obj in objs:
        kube.apply(obj, force=force)


def install_crds(kube: Client, crds_dir: Path, *, timeout: float = 30.0) -> list[str]:
    """Apply every CRD in `crds_dir` and wait until each is Established; return their names."""
    return install_crd_files(kube, sorted(crds_dir.glob("*.yaml")), timeout=timeout)


def install_crd_files(kube: Client, files: list[Path], *, timeout: float = 30.0) -> list[str]:
    """Apply the CRDs in `files` and wait until each is Established; return their names."""
    objs = load_yaml_files(files)
    apply_all(kube, objs)
    names = [
        o.metadata.name
        for o in objs
        if isinstance(o, CustomResourceDefinition) and o.metadata and o.metadata.name
    ]
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = kube.get(CustomResourceDefinition, name)
            conds = crd.status.conditions if crd.status and crd.status.conditions else []
            if any(c.type == "Established" and c.status == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
            time.sleep(0.05)
    return names


# What a Kubernetes call can fail with: lightkube raises ApiError when the API server answers with a
# Status object, and its HTTP client's HTTPStatusError otherwise (a 404 for an API group the server
# does not serve, because its CRD is not installed, comes as plain text).
KUBE_ERRORS: tuple[type[Exception], ...] = (ApiError, httpx2.HTTPStatusError)


def error_code(err: Exception) -> int | None:
    """The HTTP status of a KUBE_ERRORS error (None for anything else)."""
    if isinstance(err, ApiError):
        return err.status.code
    if isinstance(err, httpx2.HTTPStatusError):
        return err.response.status_code
    return None


def error_text(err: Exception) -> str:
    """A KUBE_ERRORS error in one line; a 404 without a Status body says the API is not served."""
    if isinstance(err, ApiError):
        return err.status.message or str(err)
    if isinstance(err, httpx2.HTTPStatusError):
        code, path = err.response.status_code, err.request.url.path
        if code == 404:
            return f"the API server does not serve {path} (404): is its CRD installed?"
        return f"HTTP {code} from the API server for {path}"
    return str(err)


# What an API server answers while it cannot serve a resource yet (a CRD's storage (re)initializing
# after it was created or changed, throttling): worth asking again shortly, as client-go does.
TRANSIENT_CODES = frozenset({429, 503})
T = TypeVar("T")


def transient(err: Exception) -> bool:
    return error_code(err) in TRANSIENT_CODES


def with_retries(call: Callable[[], T], *, within: float = 30.0) -> T:
    """`call()`, asked again with back-off while the API server answers 429 or 503, for at most
    `within` seconds; any other error, or a transient one past the deadline, is raised."""
    deadline, delay = time.monotonic() + within, 0.2
    while True:
        try:
            return call()
        except KUBE_ERRORS as err:
            if not transient(err) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


async def with_retries_async(call: Callable[[], Awaitable[T]], *, within: float = 30.0) -> T:
    """with_retries for coroutines."""
    deadline, delay = time.monotonic() + within, 0.2
    while True:
        try:
            return await call()
        except KUBE_ERRORS as err:
            if not transient(err) or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
