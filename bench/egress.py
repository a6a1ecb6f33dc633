"""Egress convergence on a real node: a policy change, and how long until the packets follow.

`egress_convergence_p99_seconds` (and p50): a probe pod in a governed namespace tries
`nc -z -w 1 <api.openai.com's address> 443` in a loop and logs, for each attempt, when it started
(the first field of /proc/uptime: the kernel's boot clock, which the pod and the host share) and
whether the connection opened. The bench moves the policy's `review.expires` into the past (revoke)
and back (approve), notes the boot-clock time of each change, and reads the pod's log until the
first attempt started after the change shows the new state and the next attempt agrees. The
figure is that attempt's start minus the change: operator (verdict, NetworkPolicy), API server,
kube-router (iptables/ipset) and the packet itself, measured by the packet. An attempt starts every
0.1 s in the background (a dropped SYN holds its attempt for a second, not the next one), so the
resolution is about 0.1 s.

The node test bed (aidp.devcluster.node) needs root and `make node-deps testbin images`; where the
machine cannot run it the bench says why in one line and leaves the figures out.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.types import PatchType
from tests.integration import helpers
from tests.waiting import wait_for

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.node import PROBE_IMAGE, Node, missing_prerequisites, teardown
from aidp.devcluster.stack import AidpStack
from bench.common import summary

NAMESPACE = "bench-egress"
POD = "bot"
HOST = "api.openai.com"
# an attempt starts every 0.1 s, each in the background (a dropped SYN holds one for `-w 1`, not
# the next); OpenBSD's nc by its path: busybox's sh runs its own `nc` applet (no -z) for the bare name
LOOP = (
    "while :; do (read t _ < /proc/uptime; "
    'if /bin/nc.openbsd -z -w 1 {addr} 443 2>/dev/null; then echo "$t 1"; else echo "$t 0"; fi) & '
    "sleep 0.1; done"
)
# an attempt answers within its `-w 1`: once the log has attempts this much later than a candidate,
# every attempt started before it has reported
SETTLED = 1.5


def why_not() -> str | None:
    """One line saying why this machine cannot run the node, or None."""
    why = missing_prerequisites()
    return "; ".join(why) if why else None


def _boot_clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _review(days: int) -> dict[str, str]:
    expires = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)
    return {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": expires.isoformat()}


def _probe_pod(addr: str) -> dict[str, Any]:
    obj = helpers.workload("Pod", POD, NAMESPACE)
    obj["spec"]["containers"] = [
        {
            "name": "probe",
            "image": PROBE_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", LOOP.format(addr=addr)],
            "securityContext": {"allowPrivilegeEscalation": False},
        }
    ]
    obj["spec"]["terminationGracePeriodSeconds"] = 0
    obj["spec"]["automountServiceAccountToken"] = False
    return obj


def parse_attempts(log: str) -> list[tuple[float, bool]]:
    """The probe's log lines `<boot-clock seconds> <1|0>` as (start, connected); others skipped."""
    out = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("0", "1"):
            try:
                out.append((float(parts[0]), parts[1] == "1"))
            except ValueError:
                continue
    return out


def _attempts(node: Node) -> list[tuple[float, bool]]:
    res = node.kubectl("-n", NAMESPACE, "logs", POD, "--tail=400", check=False, timeout=30)
    return parse_attempts(res.stdout)


def converged(attempts: list[tuple[float, bool]], since: float, want: bool) -> float | None:
    """Seconds from `since` to the start of the first attempt started after it that shows `want`,
    confirmed by the attempt started next; None while undecided (no such pair yet, or attempts
    started before it may still answer)."""
    after = sorted(a for a in attempts if a[0] >= since)
    for first, second in itertools.pairwise(after):
        if first[1] == want and second[1] == want:
            return max(first[0] - since, 0.0) if after[-1][0] >= first[0] + SETTLED else None
    return None


def _until(node: Node, since: float, want: bool, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        took = converged(_attempts(node), since, want)
        if took is not None:
            return took
        time.sleep(0.2)
    state = "connects" if want else "is refused"
    raise TimeoutError(f"the probe pod never {state} within {timeout:.0f}s of the policy change")


def _set_review(client: Client, days: int) -> float:
    """Patch the policy's review date; returns the boot-clock time just before the request."""
    t0 = _boot_clock()
    client.patch(
        helpers.AIDataPolicy,
        "bots",
        {"spec": {"review": _review(days)}},
        namespace=NAMESPACE,
        patch_type=PatchType.MERGE,
    )
    return t0


def measure(node: Node, client: Client, addr: str, changes: int) -> dict[str, float]:
    client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    wait_for(
        lambda: client.get(ServiceAccount, "default", namespace=NAMESPACE), timeout=30, what="default SA"
    )
    client.create(ServiceAccount(metadata=ObjectMeta(name=helpers.SA, namespace=NAMESPACE)))
    client.create(from_dict(helpers.policy("bots", NAMESPACE)))
    helpers.wait_enforced(client, NAMESPACE, "bots", timeout=120)
    client.create(from_dict(_probe_pod(addr)))
    _until(node, 0.0, True, timeout=180)  # the pod runs and its endpoint connects
    revoke: list[float] = []
    approve: list[float] = []
    for _ in range(changes):
        revoke.append(_until(node, _set_review(client, -1), False))
        approve.append(_until(node, _set_review(client, 365), True))
    both = revoke + approve
    print(
        f"  revoke  (n={len(revoke)}): {', '.join(f'{s:.2f}' for s in revoke)}\n"
        f"  approve (n={len(approve)}): {', '.join(f'{s:.2f}' for s in approve)}"
    )
    s, r, a = summary(both), summary(revoke), summary(approve)
    return {
        "egress_convergence_p50_seconds": s["p50"],
        "egress_convergence_p99_seconds": s["p99"],
        "egress_convergence_revoke_p99_seconds": r["p99"],
        "egress_convergence_approve_p99_seconds": a["p99"],
        "egress_convergence_changes": float(len(both)),
    }


def egress_convergence(changes: int = 10) -> dict[str, float]:
    """A node test bed of its own (control plane, aidp as processes, the node), `changes` revokes
    and as many approvals; {} with one line printed when the machine cannot run a node."""
    why = why_not()
    if why:
        print(f"  skipped: this machine cannot run the node test bed ({why})")
        return {}
    with tempfile.TemporaryDirectory(prefix="aidp-bench-node-") as tmp:
        cp = ControlPlane(Path(tmp) / "cp", node=True)
        stack = AidpStack(cp, Path(tmp) / "aidp", operator_args=("--audit-interval", "0"))
        node = Node(cp, stack.addresses_file, Path(tmp) / "node")
        try:
            cp.start()
            stack.start()
            node.start()
            static = yaml.safe_load(stack.addresses_file.read_text())["static"]
            addr = next(a for a in static[HOST] if ":" not in str(a))
            return measure(node, kube.client(cp.kubeconfig), str(addr), changes)
        finally:
            teardown(node.dir, quiet=True)
            stack.stop()
            cp.stop()
