"""The real OPA server: policies and data loaded through opa-python-client; the API is guarded."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from opa_client.errors import RegoParseError

from aidp.devcluster import OpaServer

POLICY = """
package smoke.decision

default allow := false

allow if input.user in data.smoke.admins
"""


def test_load_policy_and_data_then_decide(opa_server: OpaServer) -> None:
    client = opa_server.client()
    assert client.update_policy_from_string(POLICY, "smoke/decision")
    assert client.update_or_create_data({"admins": ["alice"]}, "smoke")
    allowed = client.query_rule({"user": "alice"}, "smoke/decision", "allow")
    denied = client.query_rule({"user": "mallory"}, "smoke/decision", "allow")
    assert allowed["result"] is True
    assert denied["result"] is False


def _request(
    opa: OpaServer, method: str, path: str, body: object | None = None, token: str | None = None
) -> int:
    ctx = ssl.create_default_context(cafile=str(opa.ca_file))
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{opa.url}{path}", data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/policies/evil", None),
        ("PUT", "/v1/data/aidp", {"policies": {}}),
        ("GET", "/v1/data", None),
        ("GET", "/v1/policies", None),
        ("POST", "/v1/data/smoke/decision/allow", {"input": {"user": "alice"}}),
        ("DELETE", "/v1/policies/smoke/decision", None),
        ("GET", "/v1/config", None),
    ],
)
def test_management_api_refuses_requests_without_the_token(
    opa_server: OpaServer, method: str, path: str, body: object | None
) -> None:
    assert _request(opa_server, method, path, body) == 401
    assert _request(opa_server, method, path, body, token="not-the-token-" + "x" * 32) == 401


def test_client_without_token_cannot_write_policies(opa_server: OpaServer) -> None:
    anonymous = opa_server.client(token="")
    with pytest.raises(RegoParseError) as err:
        anonymous.update_policy_from_string(POLICY.replace("smoke.decision", "evil.p"), "evil/p")
    assert "unauthorized" in str(err.value).lower()
    assert not any("evil" in p for p in opa_server.client().get_policies_list())


def test_webhook_path_and_health_stay_open(opa_server: OpaServer) -> None:
    """The kube-apiserver calls POST / anonymously; that and /health must not need the token."""
    assert _request(opa_server, "GET", "/health") == 200
    status = _request(opa_server, "POST", "/", {"request": {"uid": "1"}})
    assert status != 401
