"""Recovery benchmarks (issue: reliability and security).

- opa_recovery_seconds: OPA SIGKILLed while the operator is down too; from the restart of OPA to
  the first request the webhook answers with aidp's decision again (the agent restores the durable
  bundle). Worst of several rounds.
- operator_takeover_seconds: two operator replicas with leader election; the leader is SIGKILLed;
  from the kill to the first enforcement of a policy created right after it.
"""

from __future__ import annotations

import time
from pathlib import Path

from lightkube import Client
from tests.integration import helpers
from tests.integration.conftest import make_env
from tests.integration.helpers import create, violating

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack


def _denied_by_aidp(client: Client, obj: dict[str, object]) -> bool:
    msg = create(client, obj, dry_run=True)  # type: ignore[arg-type]
    return msg is not None and "aidp:" in msg and "failed calling webhook" not in msg


def opa_recovery(stack: AidpStack, rounds: int = 3) -> dict[str, float]:
    client = kube.client(stack.cp.kubeconfig)
    env = make_env(client, stack.cp.kubeconfig)
    env.policy("guard")
    bad = violating("Pod", "probe", env.ns, "consent-basis")
    assert stack.operator is not None
    stack.operator.kill()
    samples = []
    for _ in range(rounds):
        assert stack.opa is not None
        stack.opa.kill()
        t0 = time.perf_counter()
        stack.start_opa()
        while not _denied_by_aidp(client, bad):
            if time.perf_counter() - t0 > 60:
                raise TimeoutError("enforcement not back within 60 s")
        samples.append(time.perf_counter() - t0)
    stack.start_operator()
    print(f"  OPA recovery (operator down): {', '.join(f'{s:.2f}s' for s in samples)}")
    return {
        "opa_recovery_seconds": max(samples),
        "opa_recovery_seconds_median": sorted(samples)[len(samples) // 2],
    }


def operator_takeover(tmp: Path) -> dict[str, float]:
    cp = ControlPlane(tmp / "le-cp").start()
    stack = AidpStack(cp, tmp / "le-aidp", operator_args=("--leader-election", "--audit-interval", "0"))
    try:
        stack.start()
        second = stack.start_operator(name="aidp-operator-2")
        client = kube.client(cp.kubeconfig)
        env = make_env(client, cp.kubeconfig)
        env.policy("first")
        time.sleep(3)  # both replicas running, one of them leading (not a measurement)
        leader = next(
            p for p in (stack.operator, second) if p and "synced" in p.log.read_text(errors="replace")
        )
        leader.kill()
        t0 = time.perf_counter()
        client.create(
            helpers.AIDataPolicy(
                helpers.policy("after", env.ns, workloadSelector={"matchLabels": {"app": "after"}})
            )
        )
        bad = violating("Pod", "probe", env.ns, "consent-basis")
        bad["metadata"]["labels"] = {"app": "after"}
        while not _denied_by_aidp(client, bad):
            if time.perf_counter() - t0 > 120:
                raise TimeoutError("no takeover within 120 s")
        took = time.perf_counter() - t0
        second.stop()
    finally:
        stack.stop()
        cp.stop()
    print(f"  operator takeover after SIGKILL of the leader: {took:.2f}s")
    return {"operator_takeover_seconds": took}
