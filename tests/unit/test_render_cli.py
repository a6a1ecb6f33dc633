"""`aidp render` is honest about what its rules do (issue 14: unknown addresses, bad flags, none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aidp.cli.main import app
from aidp.render import ADDRESSES_UNKNOWN

POLICY = Path(__file__).resolve().parents[2] / "examples" / "10-policy.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["render", "-f", str(POLICY), *args])
    return result.exit_code, result.stdout, result.stderr


def egress(stdout: str) -> list[dict[str, object]]:
    return [o for o in yaml.safe_load_all(stdout) if o and o.get("kind") == "NetworkPolicy"]


def test_without_addresses_the_rules_say_they_block_nothing(tmp_path: Path) -> None:
    code, out, err = run()
    assert code == 0
    assert "no addresses for api.openai.com" in err and "block nothing" in err
    objs = egress(out)
    assert objs and all(ADDRESSES_UNKNOWN in o["metadata"]["annotations"] for o in objs)  # type: ignore[index,operator]
    addresses = tmp_path / "addresses.yaml"
    addresses.write_text(
        yaml.safe_dump(
            {
                "static": {
                    h: ["203.0.113.10"]
                    for h in (
                        "api.openai.com",
                        *(f"{r}.api.openai.com" for r in ("us", "eu", "au", "in", "jp")),
                    )
                }
            }
        )
    )
    code, out, err = run("--addresses-file", str(addresses))
    assert code == 0 and "no addresses" not in err
    assert all(ADDRESSES_UNKNOWN not in (o["metadata"].get("annotations") or {}) for o in egress(out))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flag", "value"), [("--cilium-mode", "strcit"), ("--egress-mode", "loose"), ("--backend", "calico")]
)
def test_invalid_flag_values_exit_2(flag: str, value: str) -> None:
    code, _, err = run(flag, value)
    assert code == 2
    assert value in err


def test_backend_none_renders_no_egress_objects() -> None:
    code, out, _ = run("--backend", "none")
    assert code == 0
    kinds = {o["kind"] for o in yaml.safe_load_all(out) if o}
    assert kinds == {"OPAModule", "OPAData"}
