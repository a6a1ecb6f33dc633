"""Where aidp finds its shipped resources (Rego policies, CRDs) and the test binaries."""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-1]


def repo_root() -> Path | None:
    """The source checkout this package runs from, when it runs from one (editable install)."""
    root = _PKG.parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "crds").is_dir() else None


def _shipped(name: str) -> Path:
    root = repo_root()
    return _first_existing(*(([root / name] if root else []) + [_PKG / "_data" / name]))


def policies_dir() -> Path:
    """The directory holding aidp's Rego modules (`policies/` in a checkout)."""
    env = os.environ.get("AIDP_POLICY_DIR")
    return Path(env) if env else _shipped("policies")


def crds_dir() -> Path:
    """The directory holding aidp's CustomResourceDefinitions (`crds/` in a checkout)."""
    return _shipped("crds")


def testbin_dir() -> Path:
    """The directory holding etcd, kube-apiserver, kube-controller-manager, kubectl, opa and helm.

    `AIDP_TESTBIN` wins; otherwise `.testbin/bin` of the checkout (a link into the per-user cache
    that `make testbin` fills).
    """
    env = os.environ.get("AIDP_TESTBIN")
    if env:
        return Path(env)
    root = repo_root()
    if root is not None:
        return root / ".testbin" / "bin"
    return Path.home() / ".cache" / "aidp" / "testbin" / "current" / "bin"
