"""aidp's OPA client (opa_loader.make_client) against a real OPA with TLS: the certificate is
checked against the CA given (never the environment's), and with `server_hostname` for that name,
as when a pod address is reached but the certificate names the Service."""

from __future__ import annotations

import pytest

from aidp.devcluster import OpaServer
from aidp.opa_loader import make_client


def test_the_certificate_is_checked_for_the_name_given(
    opa_server: OpaServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")  # ignored: trust_env is off
    assert opa_server.ca_file is not None
    good = make_client(opa_server.url, opa_server.token, opa_server.ca_file, server_hostname="localhost")
    assert good.check_connection()
    wrong = make_client(
        opa_server.url, opa_server.token, opa_server.ca_file, server_hostname="aidp-opa.elsewhere"
    )
    with pytest.raises(Exception, match="unreachable"):
        wrong.check_connection()
    assert "did not match expected hostname: aidp-opa.elsewhere" in caplog.text
