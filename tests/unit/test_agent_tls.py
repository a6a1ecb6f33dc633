"""The agent's copy of the serving certificate: complete or nothing, and tls.crt last, because
OPA's start and the tests take tls.crt's presence to mean the key and the CA are there too (a
CI run once found tls.crt without ca.crt)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

import aidp.agent as agent_mod
from aidp.agent import Agent, Watched


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def agent_with(tmp_path: Path, data: dict[str, str]) -> Agent:
    watch = Watched(None, Secret, "aidp-webhook-tls", "aidp")  # type: ignore[arg-type]  # never started
    watch.obj = Secret(metadata=ObjectMeta(name="aidp-webhook-tls", namespace="aidp"), data=data)
    agent = Agent(
        None,  # type: ignore[arg-type]  # no API calls: the Secret comes from the watch
        "aidp",
        "aidp-opa-bundle",
        "aidp-webhook-tls",
        "https://127.0.0.1:1",
        tmp_path / "token",
        tmp_path / "tls",
    )
    agent._secret_watch = watch
    return agent


def test_tls_crt_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real = agent_mod._write_atomic

    def spy(path: Path, content: bytes) -> None:
        order.append(path.name)
        real(path, content)

    monkeypatch.setattr(agent_mod, "_write_atomic", spy)
    agent = agent_with(tmp_path, {"tls.crt": b64("C"), "tls.key": b64("K"), "ca-bundle.crt": b64("A")})
    assert agent.write_tls()
    assert order[-1] == "tls.crt" and sorted(order) == ["ca.crt", "tls.crt", "tls.key"]
    assert {p.name: p.read_text() for p in (tmp_path / "tls").iterdir()} == {
        "tls.crt": "C",
        "tls.key": "K",
        "ca.crt": "A",
    }


def test_cert_manager_ca_crt_stands_for_the_bundle(tmp_path: Path) -> None:
    agent = agent_with(tmp_path, {"tls.crt": b64("C"), "tls.key": b64("K"), "ca.crt": b64("CM")})
    assert agent.write_tls()
    assert (tmp_path / "tls" / "ca.crt").read_text() == "CM"


@pytest.mark.parametrize("missing", ["tls.crt", "tls.key", "ca-bundle.crt"])
def test_an_incomplete_secret_writes_nothing(tmp_path: Path, missing: str) -> None:
    data: dict[str, Any] = {"tls.crt": b64("C"), "tls.key": b64("K"), "ca-bundle.crt": b64("A")}
    del data[missing]
    agent = agent_with(tmp_path, data)
    assert not agent.write_tls()
    assert not (tmp_path / "tls").exists() or not any((tmp_path / "tls").iterdir())
