"""One private control plane with aidp running `--admission-engine vap`, shared by the session's
tests that need it (tests/integration/test_admission.py parametrised over engines,
test_vap_engine.py, test_vap_differential.py), so that the session's own stack stays `opa`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import make_env
from tests.waiting import wait_for

_STACK: dict[str, Any] = {}


def _stop() -> None:
    gen = _STACK.pop("gen", None)
    if gen is not None:
        with contextlib.suppress(StopIteration):
            next(gen)


def vap_stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[ControlPlane, AidpStack]:
    """The shared vap stack, started on first use and stopped at the end of the session."""
    if "stack" not in _STACK:
        gen: Iterator[tuple[ControlPlane, AidpStack]] = helpers.own_stack(
            tmp_path_factory.mktemp("vap"), "--admission-engine", "vap", "--resync-seconds", "5"
        )
        _STACK["gen"] = gen
        _STACK["stack"] = next(gen)
        request.session.config.add_cleanup(_stop)
        cp, _ = _STACK["stack"]
        wait_engaged(kube.client(cp.kubeconfig))
    stack: tuple[ControlPlane, AidpStack] = _STACK["stack"]
    return stack


def wait_engaged(client: Client) -> None:
    """Until kube-apiserver enforces the operator's ValidatingAdmissionPolicies (it compiles new
    policies about once a second): a probe namespace's policy refuses a violating dry-run create."""
    env = make_env(client, Path())
    try:
        client.create(helpers.AIDataPolicy(helpers.policy("probe", env.ns)))
        wait_for(
            lambda: helpers.create(
                client, helpers.violating("Pod", "p", env.ns, "consent-basis"), dry_run=True
            ),
            timeout=30,
            what="the vap engine's policies enforced",
        )
    finally:
        with contextlib.suppress(ApiError):
            client.delete(helpers.AIDataPolicy, "probe", namespace=env.ns)


def dry_run(client: Client, obj: dict[str, Any]) -> tuple[int, str, list[str]]:
    """A server-side dry-run create through the client's own HTTP connection: (status code, the
    denial message or "", the Warning headers' texts)."""
    from lightkube.codecs import from_dict

    res = type(from_dict(obj))
    api = res._api_info  # type: ignore[attr-defined]
    group = api.resource.group
    version = api.resource.version
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    path = f"{base}/namespaces/{obj['metadata']['namespace']}/{api.plural}"
    http: httpx.Client = client._client._client  # type: ignore[attr-defined]
    resp = http.post(path, json=obj, params={"dryRun": "All"})
    warnings = [_warning_text(w) for w in resp.headers.get_list("warning")]
    message = "" if resp.status_code < 300 else str(resp.json().get("message", ""))
    return resp.status_code, message, warnings


def _warning_text(header: str) -> str:
    # RFC 7234: 299 - "text" (the API server escapes " and \ in the text)
    text = header.split(" ", 2)[2] if header.startswith("299 ") else header
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text
