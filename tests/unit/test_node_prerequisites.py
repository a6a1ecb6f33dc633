"""The node tests on a machine that cannot run a node: they fail, saying why and what to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.devcluster import node


def test_without_root_the_node_tests_fail_naming_the_other_targets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.node.conftest import require_node_machine

    monkeypatch.setattr(node.os, "geteuid", lambda: 1000)
    why = node.missing_prerequisites(tmp_path / "bin", tmp_path / "images")
    assert any("root" in w for w in why)
    assert any("make testbin" in w for w in why) and any("make images" in w for w in why)
    import tests.node.conftest as conftest

    monkeypatch.setattr(conftest, "missing_prerequisites", lambda *a: why)
    with pytest.raises(pytest.fail.Exception) as failed:
        require_node_machine()
    assert "make test-unit" in str(failed.value) and "make test-integration" in str(failed.value)
    assert "root" in str(failed.value)


def test_the_node_refuses_address_ranges_the_machine_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    class Res:
        def __init__(self, out: str) -> None:
            self.stdout = out

    outputs = {
        "addr": "2: eth0    inet 198.18.0.7/16 brd 198.18.255.255 scope global eth0\n",
        "route": "default via 192.0.2.1 dev eth0\n203.0.113.0/24 dev tun0 scope link\n",
    }
    monkeypatch.setattr(node, "_run", lambda *argv, **kw: Res(outputs["addr" if "addr" in argv else "route"]))
    clash = node._ranges_in_use()
    assert "198.18.0.7/16 on eth0" in clash and "route 203.0.113.0/24 via tun0" in clash
