"""`aidp dev up` is idempotent and `aidp dev down` leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aidp.devcluster.procs import pid_alive

pytestmark = pytest.mark.local_only  # starts, kills or reconfigures processes


def _aidp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def test_dev_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    first = _aidp("dev", "up", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    kubeconfig = Path(first.stdout.strip().splitlines()[-1])
    assert kubeconfig.is_file()
    assert "started" in first.stderr
    pids = json.loads((state / "controlplane.json").read_text())["pids"]
    aidp_pids = json.loads((state / "aidp-processes.json").read_text())
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert set(aidp_pids) == {"aidp-operator", "aidp-opa-agent", "opa"}
    everything = [*pids.values(), *aidp_pids.values()]
    assert all(pid_alive(p) for p in everything)

    second = _aidp("dev", "up", "--state-dir", str(state))
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert Path(second.stdout.strip().splitlines()[-1]) == kubeconfig
    assert json.loads((state / "controlplane.json").read_text())["pids"] == pids
    assert json.loads((state / "aidp-processes.json").read_text()) == aidp_pids

    down = _aidp("dev", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not [p for p in everything if pid_alive(p)]
    assert _processes_mentioning(str(state)) == []

    again = _aidp("dev", "down", "--state-dir", str(state))
    assert again.returncode == 0
    assert "nothing" in again.stdout
