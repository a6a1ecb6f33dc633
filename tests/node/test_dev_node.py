"""`aidp dev up --node` twice is idempotent, a pod runs on it, and `aidp dev down` leaves nothing.

Runs before the other node tests (file order): the session's node bed is started only when a test
asks for it, and one node runs per machine.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aidp import paths
from aidp.devcluster import node as nodemod
from tests.node.conftest import PROBE, require_node_machine
from tests.waiting import wait_for

pytestmark = pytest.mark.node


def aidp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def host_snapshot() -> dict[str, list[str]]:
    """What of the host a node changes: chains, ipsets, links, namespaces."""
    return {
        "chains": [f"{c}/{t}/{n}" for c, t, n in nodemod._chains()],
        "ipsets": nodemod._ipsets(),
        "links": nodemod._links(),
        "netns": nodemod._netns(),
        "sysctl": [(Path("/proc/sys") / k).read_text().strip() for k in nodemod.SYSCTLS],
    }


def test_dev_up_node_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    require_node_machine()
    state = tmp_path / "dev"
    before = host_snapshot()
    kubectl = [str(paths.testbin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig")]
    try:
        first = aidp("dev", "up", "--node", "--state-dir", str(state))
        assert first.returncode == 0, first.stderr
        assert "started" in first.stderr and "aidp-node" in first.stderr
        pids = json.loads((state / "node" / "node.json").read_text())["pids"]
        assert set(pids) == set(nodemod.COMPONENTS)

        second = aidp("dev", "up", "--node", "--state-dir", str(state))
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert json.loads((state / "node" / "node.json").read_text())["pids"] == pids

        run = subprocess.run(
            [*kubectl, "run", "p", f"--image={PROBE}", "--image-pull-policy=Never", "--restart=Never",
             "--", "sleep", "3600"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        ready = subprocess.run(
            [*kubectl, "wait", "--for=condition=Ready", "pod/p", "--timeout=90s"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert ready.returncode == 0, ready.stderr
        logs = subprocess.run(
            [*kubectl, "logs", "p"], capture_output=True, text=True, timeout=60, check=False
        )
        assert logs.returncode == 0, logs.stderr  # the API server reaches the kubelet
        # the pod's processes, its sandbox's mounts and its veth are there now
        assert nodemod._cgroup_pids()
        assert nodemod._mounts_under(state / "node")
        assert len(nodemod._links()) >= 3
    finally:
        down = aidp("dev", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr + down.stdout
    assert nodemod.leftovers(state / "node") == []
    wait_for(lambda: host_snapshot() == before, timeout=10, what="the host as it was before `dev up --node`")
    for name, pid in pids.items():
        assert not nodemod.pid_alive(int(pid)), name


def kill_everything(state: Path) -> None:
    """What the end of a session does to a node left running: every process SIGKILLed, no teardown."""
    import os
    import signal

    pids = [int(p) for p in json.loads((state / "node" / "node.json").read_text())["pids"].values()]
    pids += [int(p) for p in json.loads((state / "controlplane.json").read_text())["pids"].values()]
    pids += [int(p) for p in json.loads((state / "aidp-processes.json").read_text()).values()]
    pids += nodemod._shims(state / "node" / "run" / "containerd.sock") + sorted(nodemod._cgroup_pids())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(nodemod.pid_alive(p) for p in pids), timeout=30, what="the processes gone")


def test_a_node_killed_without_teardown_is_cleaned_up_by_the_next_start(tmp_path: Path) -> None:
    require_node_machine()
    first, second = tmp_path / "first", tmp_path / "second"
    before = host_snapshot()
    try:
        assert aidp("dev", "up", "--node", "--state-dir", str(first)).returncode == 0
        kill_everything(first)
        assert nodemod._links() and nodemod._chains()  # the killed node's network is still there
        up = aidp("dev", "up", "--node", "--state-dir", str(second))
        assert up.returncode == 0, up.stderr
        # the first node's mounts went with it (its network is the second's now)
        assert nodemod._mounts_under(first / "node") == []
    finally:
        for state in (second, first):
            down = aidp("dev", "down", "--state-dir", str(state))
            assert down.returncode == 0, down.stderr + down.stdout
    assert nodemod.leftovers(second / "node") == []
    wait_for(lambda: host_snapshot() == before, timeout=10, what="the host as it was before")
