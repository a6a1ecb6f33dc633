"""`aidp dev up/down`: the local control plane, OPA and the CRDs as one long-lived environment.

Processes run detached (their own sessions) and are recorded in the state directory, so `up`
returns once everything is healthy and a later `down`, from any process, stops them all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from aidp import kube
from aidp.devcluster.cluster import ControlPlane
from aidp.devcluster.opa import OpaServer, new_token
from aidp.devcluster.procs import Process, pid_alive
from aidp.paths import crds_dir


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "aidp" / "dev"


@dataclass(frozen=True)
class DevStatus:
    state_dir: Path
    kubeconfig: Path
    server: str
    opa_url: str
    opa_ca: Path
    opa_token_file: Path
    pids: dict[str, int]
    started: bool  # False when `up` found everything already running


def _opa_state(state_dir: Path) -> Path:
    return state_dir / "opa" / "opa.json"


def _token(state_dir: Path) -> tuple[str, Path]:
    path = state_dir / "opa" / "token"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(new_token())
    return path.read_text().strip(), path


def _recorded_pids(state_dir: Path) -> dict[str, int]:
    pids: dict[str, int] = {}
    cp_state = state_dir / "controlplane.json"
    if cp_state.is_file():
        pids.update(json.loads(cp_state.read_text()).get("pids", {}))
    opa_state = _opa_state(state_dir)
    if opa_state.is_file():
        pid = json.loads(opa_state.read_text()).get("pid")
        if pid:
            pids["opa"] = pid
    return pids


def status(state_dir: Path) -> DevStatus | None:
    """The running environment in `state_dir`, or None if any part of it is not running."""
    pids = _recorded_pids(state_dir)
    wanted = {"etcd", "kube-apiserver", "kube-controller-manager", "opa"}
    if set(pids) != wanted or not all(pid_alive(p) for p in pids.values()):
        return None
    cp = ControlPlane.attach(state_dir)
    if not cp.healthy():
        return None
    opa = json.loads(_opa_state(state_dir).read_text())
    _, token_file = _token(state_dir)
    return DevStatus(
        state_dir, cp.kubeconfig, cp.server, opa["url"], Path(opa["ca"]), token_file, pids, started=False
    )


def up(state_dir: Path) -> DevStatus:
    """Start everything that is not running yet; idempotent."""
    current = status(state_dir)
    if current is not None:
        return current
    down(state_dir)  # a half-running environment is stopped before a clean start
    cp = ControlPlane(state_dir).start()
    token, token_file = _token(state_dir)
    opa_dir = state_dir / "opa"
    prev = json.loads(_opa_state(state_dir).read_text()) if _opa_state(state_dir).is_file() else {}
    opa = OpaServer(opa_dir, token, port=prev.get("port", 0), diagnostic_port=prev.get("diagnosticPort", 0))
    try:
        opa.start()
        assert opa.proc is not None
        _opa_state(state_dir).write_text(
            json.dumps(
                {
                    "pid": opa.proc.pid,
                    "url": opa.url,
                    "port": opa.port,
                    "diagnosticPort": opa.diagnostic_port,
                    "ca": str(opa.ca_file),
                },
                indent=2,
            )
        )
        kube.install_crds(kube.client(cp.kubeconfig), crds_dir())
    except BaseException:
        opa.stop()
        cp.stop()
        raise
    pids = _recorded_pids(state_dir)
    assert opa.ca_file is not None
    return DevStatus(
        state_dir, cp.kubeconfig, cp.server, opa.url, opa.ca_file, token_file, pids, started=True
    )


def down(state_dir: Path) -> list[str]:
    """Stop every recorded process (SIGTERM, then SIGKILL); return what was stopped."""
    stopped: list[str] = []
    pids = _recorded_pids(state_dir)
    order = ["opa", "kube-controller-manager", "kube-apiserver", "etcd"]
    for name in sorted(pids, key=lambda n: order.index(n) if n in order else -1):
        proc = Process(name, [], state_dir / "logs" / f"{name}.log")
        proc.pid = pids[name]
        if pid_alive(proc.pid):
            proc.stop()
            stopped.append(name)
    left = [n for n, p in pids.items() if pid_alive(p)]
    if left:
        raise RuntimeError(f"processes survived `aidp dev down`: {', '.join(left)}")
    cp_state = state_dir / "controlplane.json"
    if cp_state.is_file():
        state = json.loads(cp_state.read_text())
        state["pids"] = {}
        cp_state.write_text(json.dumps(state, indent=2))
    if _opa_state(state_dir).is_file():
        opa_state = json.loads(_opa_state(state_dir).read_text())
        opa_state["pid"] = None
        _opa_state(state_dir).write_text(json.dumps(opa_state, indent=2))
    return stopped
