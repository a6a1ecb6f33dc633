"""http:// OPA URLs are refused (every call carries the management token) unless a flag allows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aidp import opa_loader
from aidp.cli.main import app


@pytest.fixture(autouse=True)
def _secure_by_default() -> object:
    opa_loader.permit_insecure_http(False)
    yield None
    opa_loader.permit_insecure_http(False)


def test_https_is_accepted_http_and_others_are_not() -> None:
    assert opa_loader.check_url("https://127.0.0.1:8181") == "https://127.0.0.1:8181"
    for url in ("http://127.0.0.1:8181", "ftp://opa", "127.0.0.1:8181", "unix:///run/opa.sock"):
        with pytest.raises(opa_loader.InsecureOpaUrl):
            opa_loader.check_url(url)
    assert opa_loader.check_url("http://127.0.0.1:8181", allow_insecure=True) == "http://127.0.0.1:8181"
    with pytest.raises(opa_loader.InsecureOpaUrl):
        opa_loader.check_url("ftp://opa", allow_insecure=True)


def test_no_client_is_made_for_an_http_url_unless_the_process_allows_it() -> None:
    with pytest.raises(opa_loader.InsecureOpaUrl, match="--allow-insecure-opa"):
        opa_loader.make_client("http://127.0.0.1:8181", "t" * 40, None)
    opa_loader.permit_insecure_http()
    client = opa_loader.make_client("http://127.0.0.1:8181", "t" * 40, None)
    assert client is not None


@pytest.mark.parametrize("command", ["run", "opa-agent"])
def test_the_commands_refuse_an_http_opa_url_before_starting(command: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 40)
    args = [command, "--opa-url", "http://127.0.0.1:8181", "--opa-token-file", str(token)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "http:// sends the management token in clear" in result.output
    assert "--allow-insecure-opa" in result.output
