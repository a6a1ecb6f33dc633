"""`aidp dev up/down`: the local control plane with aidp installed, as one long-lived environment.

Processes run detached (their own sessions) and are recorded in the state directory, so `up`
returns once everything is healthy and a later `down`, from any process, stops them all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from aidp.devcluster.cluster import ControlPlane
from aidp.devcluster.node import Node, NodeError, missing_prerequisites, teardown
from aidp.devcluster.procs import Process, pid_alive
from aidp.devcluster.stack import AidpStack

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "aidp-operator", "aidp-opa-agent", "opa")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "aidp" / "dev"


@dataclass(frozen=True)
class DevStatus:
    state_dir: Path
    kubeconfig: Path
    server: str
    opa_url: str
    opa_token_file: Path
    pids: dict[str, int]
    started: bool  # False when `up` found everything already running
    node: bool = False  # a real node runs (`aidp dev up --node`)


def _pids_file(state_dir: Path) -> Path:
    return state_dir / "aidp-processes.json"


def _recorded_pids(state_dir: Path) -> dict[str, int]:
    pids: dict[str, int] = {}
    cp_state = state_dir / "controlplane.json"
    if cp_state.is_file():
        pids.update(json.loads(cp_state.read_text()).get("pids", {}))
    if _pids_file(state_dir).is_file():
        pids.update(json.loads(_pids_file(state_dir).read_text()))
    return {k: int(v) for k, v in pids.items() if v}


def _stack(cp: ControlPlane, state_dir: Path) -> AidpStack:
    # a policy change brings the in-cluster audit forward after 5 s (default 30 s): the status
    # figures (matchedWorkloads, violations) follow the demo's changes quickly
    return AidpStack(cp, state_dir / "aidp", operator_args=("--audit-min-gap", "5"))


def _node_dir(state_dir: Path) -> Path:
    return state_dir / "node"


def status(state_dir: Path, *, node: bool = False) -> DevStatus | None:
    """The running environment in `state_dir`, or None if any part of it is not running (with
    `node`: also when it runs without its node)."""
    pids = _recorded_pids(state_dir)
    if set(pids) != set(COMPONENTS) or not all(pid_alive(p) for p in pids.values()):
        return None
    cp = ControlPlane.attach(state_dir)
    if not cp.healthy():
        return None
    stack = _stack(cp, state_dir)
    stack._prepare()
    has_node = (_node_dir(state_dir) / "node.json").is_file() and _node(cp, stack).healthy()
    if node and not has_node:
        return None
    return DevStatus(
        state_dir,
        cp.kubeconfig,
        cp.server,
        stack.opa_url,
        stack.token_file,
        pids,
        started=False,
        node=has_node,
    )


def _node(cp: ControlPlane, stack: AidpStack) -> Node:
    return Node(cp, stack.addresses_file, _node_dir(cp.state_dir))


def node_of(state_dir: Path) -> Node:
    """The node of the environment in `state_dir` (for kubectl/ctr helpers)."""
    cp = ControlPlane.attach(state_dir)
    return _node(cp, _stack(cp, state_dir))


def up(state_dir: Path, *, node: bool = False) -> DevStatus:
    """Start everything that is not running yet; idempotent. `node`: with a real node."""
    current = status(state_dir, node=node)
    if current is not None:
        return current
    if node:
        why = missing_prerequisites()
        if why:
            raise NodeError("--node: this machine cannot run the node: " + "; ".join(why))
    down(state_dir)  # a half-running environment is stopped before a clean start
    cp = ControlPlane(state_dir, node=node).start()
    stack = _stack(cp, state_dir)
    try:
        stack.start()
        if node:
            _node(cp, stack).start()
    except BaseException:
        if node:
            teardown(_node_dir(state_dir), quiet=True)
        stack.stop()
        cp.stop()
        raise
    procs = {name: proc.pid for name, proc in stack.processes().items() if proc.pid}
    _pids_file(state_dir).write_text(json.dumps(procs, indent=2))
    return DevStatus(
        state_dir,
        cp.kubeconfig,
        cp.server,
        stack.opa_url,
        stack.token_file,
        _recorded_pids(state_dir),
        True,
        node=node,
    )


def down(state_dir: Path) -> list[str]:
    """Stop every recorded process (SIGTERM, then SIGKILL) and remove the node, if one was
    started; return what was stopped."""
    stopped: list[str] = []
    node_error: NodeError | None = None
    if (_node_dir(state_dir) / "node.json").is_file():
        try:
            stopped += teardown(_node_dir(state_dir))
        except NodeError as err:  # the rest is stopped all the same
            node_error = err
    pids = _recorded_pids(state_dir)
    order = list(reversed(COMPONENTS))
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
    _pids_file(state_dir).unlink(missing_ok=True)
    if node_error is not None:
        raise node_error
    return stopped
