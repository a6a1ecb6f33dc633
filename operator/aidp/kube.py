"""Small helpers around lightkube shared by the CLI, the dev environment and tests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

FIELD_MANAGER = "aidp"


def client(kubeconfig: Path | None = None, *, field_manager: str = FIELD_MANAGER) -> Client:
    """A synchronous client from `kubeconfig`, or from the usual places (KUBECONFIG, in-cluster)."""
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else None
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


def api_error_message(err: ApiError) -> str:
    status = err.status
    return f"{status.code} {status.reason}: {status.message}"
