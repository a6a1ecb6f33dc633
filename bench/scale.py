"""Scale x10 (issue 15): 10,000 AIDataPolicies in 1,000 namespaces.

On the stack of the admission bench (its policies stay): the policy change -> next violating
create denied latency at 100 (when fewer exist yet) and 10,000 policies, the operator's memory
after a quiescent reconcile with 1,000 and 10,000 policies (VmRSS and VmHWM of its process, from
/proc; the in-cluster audit runs in a process of its own, whose peak RSS, its VmHWM, the
operator logs after each audit: `operator_audit_child_peak_rss_mb_*`), and the bytes of the
durable copy (its head and shard ConfigMaps as the API server stores them) with 10,000 policies.
Policies are created concurrently through the API server (and aidp's webhook), 10 per namespace,
like the admission bench's background policies.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace
from tests.integration import helpers

from aidp import bundle as bundle_mod
from aidp.devcluster.stack import AidpStack
from bench import admission

PER_NS = 10


async def _fill(kubeconfig: str, start: int, total: int, concurrency: int = 16) -> None:
    """Background policies bg-<start> ... bg-<total - 1> (and their namespaces), concurrently."""
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), trust_env=False)
    namespaces = sorted({f"bench-bg-{i // PER_NS:04d}" for i in range(start, total)})
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def drain(make: Any) -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await client.create(make(item))
            except ApiError as err:
                if err.status.code != 409:
                    raise

    for ns in namespaces:
        queue.put_nowait(ns)
    await asyncio.gather(
        *(drain(lambda n: Namespace(metadata=ObjectMeta(name=n))) for _ in range(concurrency))
    )
    for i in range(start, total):
        queue.put_nowait(i)

    def policy(i: int) -> Any:
        ns = f"bench-bg-{i // PER_NS:04d}"
        obj = helpers.policy(f"bg-{i:05d}", ns, workloadSelector={"matchLabels": {"app": f"svc-{i}"}})
        return helpers.AIDataPolicy(obj)

    await asyncio.gather(*(drain(policy) for _ in range(concurrency)))
    await client.close()


def fill(client: Client, kubeconfig: str, total: int) -> float:
    """`total` background policies in all (created concurrently); the seconds it took."""
    existing = sum(
        1 for p in client.list(helpers.AIDataPolicy, namespace="*") if p.metadata.name.startswith("bg-")
    )
    t0 = time.monotonic()
    if existing < total:
        asyncio.run(_fill(kubeconfig, existing, total))
    return time.monotonic() - t0


def operator_memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB (MiB)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = float(value.split()[0]) / 1024.0  # kB
    return fields["VmRSS"], fields["VmHWM"]


# the operator's line after each audit (aidp.controller.auditloop.AuditLoop.record)
AUDIT_LINE = re.compile(r"audit: \d+ workloads, .*\((\d+) policies, .*audit process peak RSS (\d+) MB\)")


def audit_peaks(log: str) -> list[tuple[int, float]]:
    """(policies audited, the audit process's peak RSS in MB) of every audit in an operator log."""
    return [(int(m.group(1)), float(m.group(2))) for m in AUDIT_LINE.finditer(log)]


def audit_child_peak_mb(stack: AidpStack, policies: int, timeout: float = 900.0) -> float | None:
    """The largest peak RSS of the operator's audit processes that read at least `policies`
    policies (waiting up to `timeout` for the first such audit; None: none came)."""
    log_file = stack.state_dir / "logs" / "aidp-operator.log"
    deadline = time.monotonic() + timeout
    while True:
        peaks = [mb for n, mb in audit_peaks(log_file.read_text(errors="replace")) if n >= policies]
        if peaks or time.monotonic() > deadline:
            return max(peaks, default=None)
        time.sleep(5.0)


SYNC_LINE = re.compile(
    r"synced \d+ policies \((?P<kind>\w+), \d+ namespaces changed\)"
    r".* in (?P<total>[\d.]+)s \((?P<steps>[^)]*)\)"
)
STEP = re.compile(r"(?P<name>[A-Za-z][A-Za-z ]*?) (?P<seconds>[\d.]+)s")


def sync_steps(log: str) -> list[dict[str, float]]:
    """Each incremental sync the operator logged: its total and each step (`read and render`,
    `OPA`, `durable copy`, `labels`, ...), in seconds."""
    out = []
    for line in log.splitlines():
        m = SYNC_LINE.search(line)
        if not m or m["kind"] != "incremental":
            continue
        steps = {s["name"]: float(s["seconds"]) for s in STEP.finditer(m["steps"])}
        out.append({"total": float(m["total"]), **steps})
    return out


def step_medians(syncs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each step over `syncs` (the steps every sync logged)."""
    if not syncs:
        return {}
    names = [n for n in syncs[0] if all(n in s for s in syncs)]
    return {n: sorted(s[n] for s in syncs)[len(syncs) // 2] for n in names}


def _samples_with_steps(
    client: Client, stack: AidpStack, ns: str, probe: dict[str, Any], iterations: int, label: str
) -> dict[str, float]:
    """The reconcile samples, and where the operator's syncs spent their time meanwhile (the
    median of each step of its sync log: `read and render` and `OPA` come before the change is
    enforced, the rest after)."""
    log_file = stack.state_dir / "logs" / "aidp-operator.log"
    start = log_file.stat().st_size
    s = admission._reconcile_samples(client, ns, probe, iterations)
    with log_file.open(errors="replace") as f:
        f.seek(start)
        syncs = sync_steps(f.read())
    medians = step_medians(syncs)
    if medians:
        print(
            f"  {label}: the operator's incremental syncs meanwhile (median of {len(syncs)}): "
            + ", ".join(f"{n} {v * 1000:.0f} ms" for n, v in medians.items())
        )
    return s


def durable_bytes(client: Client, stack: AidpStack) -> tuple[int, int]:
    """The bytes of the durable copy's ConfigMaps (head and shards), as JSON objects: in all, and
    of the largest one (each must stay under the 1 MiB object limit)."""
    base = stack.config.bundle_configmap
    names = {base, *(bundle_mod.shard_name(base, i) for i in range(bundle_mod.SHARDS))}
    sizes = [
        len(json.dumps(cm.to_dict()).encode())
        for cm in client.list(ConfigMap, namespace=stack.namespace)
        if cm.metadata and cm.metadata.name in names
    ]
    return sum(sizes), max(sizes, default=0)


def _settle(client: Client, timeout: float = 1800.0) -> None:
    """Every policy's status observed its generation (the API server, busy with the first sync of
    thousands of policies, may time a LIST out meanwhile: asked again)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pending = sum(
                1
                for p in client.list(helpers.AIDataPolicy, namespace="*", chunk_size=500)
                if (p.get("status") or {}).get("observedGeneration") != p.metadata.generation
            )
        except Exception as exc:  # a timed-out or refused LIST: ask again
            print(f"  (policies not listed now: {type(exc).__name__}; again)")
            pending = -1
        if pending == 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator did not catch up with the policies in {timeout:.0f} s")
        time.sleep(2.0)
    time.sleep(2.0)  # the sync that wrote the last status has finished its tail (egress, guardrails)


def scale(
    client: Client, stack: AidpStack, kubeconfig: str, iterations: int = 25, top: int = 10_000
) -> dict[str, float]:
    figures: dict[str, float] = {}
    if stack.operator is None or stack.operator.pid is None:
        raise RuntimeError("the stack runs no operator")
    pid = stack.operator.pid
    ns = "bench-reconcile"
    admission._ensure_ns(client, ns)
    try:
        client.create(helpers.AIDataPolicy(helpers.policy("target", ns)))
    except ApiError as err:
        if err.status.code != 409:
            raise
    helpers.wait_enforced(client, ns, "target")
    probe = helpers.workload("Deployment", "probe", ns)
    existing = sum(
        1 for p in client.list(helpers.AIDataPolicy, namespace="*") if p.metadata.name.startswith("bg-")
    )
    if existing <= 100:  # run alone: the 100-policy latency the ratio compares with
        fill(client, kubeconfig, 100)
        _settle(client)
        s = _samples_with_steps(client, stack, ns, probe, iterations, "100 policies")
        figures["reconcile_p50_seconds_100_policies"] = s["p50"]
        figures["reconcile_p99_seconds_100_policies"] = s["p99"]
        print(f"  100 policies: p50 {s['p50'] * 1000:.0f} ms p99 {s['p99'] * 1000:.0f} ms (n={int(s['n'])})")
    for count in (1000, top):
        took = fill(client, kubeconfig, count)
        _settle(client)
        rss, hwm = operator_memory_mb(pid)
        figures[f"operator_rss_mb_{count}_policies"] = rss
        figures[f"operator_hwm_mb_{count}_policies"] = hwm
        print(f"  {count} policies (filled in {took:.0f} s): operator VmRSS {rss:.0f} MB, VmHWM {hwm:.0f} MB")
        peak = audit_child_peak_mb(stack, count)
        if peak is not None:
            figures[f"operator_audit_child_peak_rss_mb_{count}_policies"] = peak
            print(f"  {count} policies: the audit process's peak RSS {peak:.0f} MB")
    s = _samples_with_steps(client, stack, ns, probe, iterations, f"{top} policies")
    figures[f"reconcile_p50_seconds_{top}_policies"] = s["p50"]
    figures[f"reconcile_p99_seconds_{top}_policies"] = s["p99"]
    print(f"  {top} policies: p50 {s['p50'] * 1000:.0f} ms p99 {s['p99'] * 1000:.0f} ms (n={int(s['n'])})")
    _settle(client)
    rss, hwm = operator_memory_mb(pid)
    figures[f"operator_rss_mb_{top}_policies"] = max(rss, figures[f"operator_rss_mb_{top}_policies"])
    figures[f"operator_hwm_mb_{top}_policies"] = hwm
    peak = audit_child_peak_mb(stack, top, timeout=0.0)  # the audits of the samples' changes too
    if peak is not None:
        figures[f"operator_audit_child_peak_rss_mb_{top}_policies"] = peak
    size, largest = durable_bytes(client, stack)
    figures[f"durable_copy_bytes_{top}_policies"] = float(size)
    figures[f"durable_copy_largest_configmap_bytes_{top}_policies"] = float(largest)
    print(
        f"  durable copy with {top} policies: {size / 1024:.0f} KiB in {bundle_mod.SHARDS + 1} ConfigMaps, "
        f"the largest {largest / 1024:.0f} KiB"
    )
    return figures


def ratios(figures: dict[str, float], top: int = 10_000) -> dict[str, float]:
    """The 10,000 / 100 policies p50 ratio, when both were measured."""
    hi, lo = (
        figures.get(f"reconcile_p50_seconds_{top}_policies"),
        figures.get("reconcile_p50_seconds_100_policies"),
    )
    if hi is None or lo is None:
        return {}
    return {f"reconcile_p50_ratio_{top}_vs_100_policies": hi / lo}
