"""`make testbin` on a complete cache does nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_testbin_is_a_noop_when_complete() -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "testbin.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "nothing to build" in out.stdout
    assert "building" not in out.stdout
