"""Admission benchmarks (issue: AIDataPolicy API, operator and OPA admission).

(a) Deployment create latency in a governed namespace (the webhook is called and OPA evaluates
    every rule) vs the same create in an ungoverned namespace (the webhook's namespaceSelector
    skips it), at concurrency 1 and 50, in interleaved rounds of one run (one HTTP/2 client per
    concurrency, warmed up: no sample pays for a connection; at concurrency 1 the namespaces take
    turns create by create, at 50 in batches of one namespace). A control runs in the
    same rounds: a third namespace served by a no-op webhook (a second OPA server started exactly
    like aidp's, TLS, token and authorization policy, whose decision allows everything without
    looking), so the results show how much of the overhead any OPA webhook costs on this machine.
    The vap engine runs in the same rounds: a fourth namespace, which aidp's webhook excludes
    (`--exclude-namespace bench-vap`), admitted by copies of the vap engine's workload policies
    bound to that namespace alone (CEL inside kube-apiserver, no webhook call).
    The peer runs in the same rounds when bench/run.py started it: OPA Gatekeeper as a webhook with
    aidp's rules ported to a ConstraintTemplate (bench/gatekeeper.py), in a fifth namespace.
(b) Reconcile latency: patch an AIDataPolicy (tighten maxDays) -> the next violating create is
    denied, with 1, 100 and 1,000 policies present.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.types import PatchType
from prometheus_client.parser import text_string_to_metric_families
from tests.integration import helpers

from aidp import vap
from aidp.config import OperatorConfig
from aidp.devcluster.opa import OpaServer, new_token
from aidp.devcluster.procs import https_context
from bench import gatekeeper
from bench.common import summary

NOOP_DECISION = """package system

main := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": {"uid": input.request.uid, "allowed": true},
}
"""


def _deployment(ns: str, name: str) -> dict[str, Any]:
    obj = helpers.workload("Deployment", name, ns)
    obj["spec"]["replicas"] = 0
    return obj


def _ensure_ns(client: Client, name: str, labels: dict[str, str] | None = None) -> None:
    try:
        client.create(Namespace(metadata=ObjectMeta(name=name, labels=labels)))
    except ApiError as err:
        if err.status.code != 409:
            raise
    for _ in range(300):
        try:
            client.get(ServiceAccount, "default", namespace=name)
            break
        except ApiError:
            time.sleep(0.05)
    try:
        client.create(ServiceAccount(metadata=ObjectMeta(name=helpers.SA, namespace=name)))
    except ApiError as err:
        if err.status.code != 409:
            raise


def _client(kubeconfig: str) -> AsyncClient:
    """The bench's one client for a concurrency level: HTTP/2 (client-go's default: one connection
    for every concurrent request), opened once and warmed up, so that no measured create pays for a
    connection or a TLS handshake (a new client per batch put 50 handshakes into every 50-client
    batch's samples)."""
    return AsyncClient(config=KubeConfig.from_file(kubeconfig), trust_env=False, http2=True)


async def _create(client: AsyncClient, ns: str, name: str) -> float:
    obj = from_dict(_deployment(ns, name))
    t0 = time.perf_counter()
    await client.create(obj)
    return time.perf_counter() - t0


async def _creates(client: AsyncClient, ns: str, prefix: str, n: int, concurrency: int) -> list[float]:
    """n creates in `ns` by `concurrency` workers: the latency of each."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            latencies.append(await _create(client, ns, f"{prefix}-{i}"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _rotated(namespaces: list[str], turn: int) -> list[str]:
    """The namespaces starting at the turn's one: each leads as often as the others."""
    k = turn % len(namespaces)
    return namespaces[k:] + namespaces[:k]


async def _interleaved(
    client: AsyncClient, namespaces: list[str], prefix: str, n: int
) -> dict[str, list[float]]:
    """One client, one create at a time, taking the namespaces in turn (the first one rotating), n
    creates in each: whatever slows the machine for a moment (a compaction, a GC, a background
    write) falls on every namespace alike, which batches of one namespace at a time do not give at
    concurrency 1, where a p99 is a handful of samples."""
    samples: dict[str, list[float]] = {ns: [] for ns in namespaces}
    for i in range(n):
        for ns in _rotated(namespaces, i):
            samples[ns].append(await _create(client, ns, f"{prefix}-{i}"))
    return samples


async def _rounds(
    kubeconfig: str, namespaces: list[str], conc: int, rounds: int, per_round: int
) -> dict[str, list[float]]:
    """The measured creates at one concurrency, after a warm-up of every namespace: at concurrency
    1 interleaved create by create; at 50, batches of `per_round` creates in one namespace (the load
    that namespace's admission puts on the machine is part of what is measured), the namespaces in
    a rotating order, `rounds` times."""
    client = _client(kubeconfig)
    try:
        for ns in namespaces:  # warm-up: the connection, caches, OPA's compiled policy
            await _creates(client, ns, f"warm-c{conc}", 20, conc)
        if conc == 1:
            return await _interleaved(client, namespaces, "c1", rounds * per_round)
        samples: dict[str, list[float]] = {ns: [] for ns in namespaces}
        for r in range(rounds):
            for ns in _rotated(namespaces, r):
                samples[ns] += await _creates(client, ns, f"c{conc}-r{r}", per_round, conc)
        return samples
    finally:
        await client.close()


@contextlib.contextmanager
def noop_webhook(client: Client, namespace: str) -> Iterator[OpaServer]:
    """A no-op OPA webhook for `namespace`, with aidp's webhook settings (rules, timeout, failure
    policy), for the duration of the block."""
    aidp = client.get(ValidatingWebhookConfiguration, OperatorConfig().webhook_name).to_dict()
    with tempfile.TemporaryDirectory(prefix="aidp-bench-noop-") as tmp:
        decision = Path(tmp) / "noop.rego"
        decision.write_text(NOOP_DECISION)
        server = OpaServer(Path(tmp) / "opa", new_token(), preload=(decision,)).start()
        try:
            assert server.ca_file is not None
            hook = copy.deepcopy(aidp["webhooks"][0])
            hook["name"] = "noop.bench.aidp.io"
            hook["clientConfig"] = {
                "url": f"{server.url}/",
                "caBundle": base64.b64encode(server.ca_file.read_bytes()).decode(),
            }
            hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            hook.pop("objectSelector", None)
            name = "aidp-bench-noop"
            client.create(
                from_dict(
                    {
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "ValidatingWebhookConfiguration",
                        "metadata": {"name": name},
                        "webhooks": [hook],
                    }
                )
            )
            try:
                yield server
            finally:
                client.delete(ValidatingWebhookConfiguration, name)
        finally:
            server.stop()


VAP_NAMESPACE = "bench-vap"  # bench/run.py excludes it from aidp's webhook


@contextlib.contextmanager
def vap_engine(client: Client, namespace: str) -> Iterator[None]:
    """The vap engine's workload policies (aidp.vap.render) for `namespace` only, named
    aidp-bench-* and unlabelled (the operator, running `opa`, leaves them alone)."""
    names = []
    for obj in vap.render((), ["aidp-bench"]):
        name = obj["metadata"]["name"]
        if not name.startswith("aidp-workloads-"):
            continue
        copy_ = copy.deepcopy(obj)
        copy_["metadata"] = {"name": name.replace("aidp-workloads-", "aidp-bench-vap-")}
        if copy_["kind"] == "ValidatingAdmissionPolicy":
            copy_["spec"]["matchConstraints"]["namespaceSelector"] = {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            }
        else:
            copy_["spec"]["policyName"] = copy_["metadata"]["name"]
        client.create(from_dict(copy_))
        names.append((type(from_dict(copy_)), copy_["metadata"]["name"]))
    try:
        yield
    finally:
        for res, name in reversed(names):
            client.delete(res, name)


def _wait_vap(
    client: Client, ns: str, timeout: float = 30.0, what: str = "the vap engine's policies"
) -> None:
    """Until kube-apiserver enforces the copies (it compiles new policies about once a second), or
    `what` enforces the namespace's policy."""
    bad = helpers.violating("Deployment", "vap-probe", ns, "retention-days")
    deadline = time.monotonic() + timeout
    while not _denied(client, bad):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} are not enforced")
        time.sleep(0.1)


def _reviews(server: OpaServer) -> tuple[float, float]:
    """OPA's own time answering AdmissionReviews (POST /, the "index" handler of its
    http_request_duration_seconds): (seconds in all, reviews answered), from its /metrics."""
    headers = {"Authorization": f"Bearer {server.token}"}
    resp = httpx2.get(
        f"{server.url}/metrics", headers=headers, verify=https_context(server.ca_file), timeout=10
    )
    resp.raise_for_status()
    totals = {"_sum": 0.0, "_count": 0.0}
    for family in text_string_to_metric_families(resp.text):
        if family.name != "http_request_duration_seconds":
            continue
        for sample in family.samples:
            suffix = sample.name.removeprefix(family.name)
            if suffix in totals and sample.labels.get("handler") == "index":
                totals[suffix] += sample.value
    return totals["_sum"], totals["_count"]


def admission_overhead(
    client: Client,
    kubeconfig: str,
    *,
    rounds: int = 4,
    per_round: int = 100,
    peer: bool = False,
    opa: OpaServer | None = None,
) -> dict[str, float]:
    """With `peer`, Gatekeeper (started by the caller: bench.gatekeeper.running) in the rounds too.
    With `opa` (aidp's OPA server), OPA's own time per review, aidp's and the no-op's, is measured
    in the same rounds: how much of the webhook's cost is the decision and how much the call."""
    governed, plain, noop, cel = "bench-governed", "bench-plain", "bench-noop", VAP_NAMESPACE
    namespaces = [governed, plain, noop, cel]
    for ns in namespaces:
        _ensure_ns(client, ns)
    client.create(helpers.AIDataPolicy(helpers.policy("bots", governed)))
    helpers.wait_enforced(client, governed, "bots")
    client.create(helpers.AIDataPolicy(helpers.policy("bots", cel)))
    gk, gkv = gatekeeper.BENCH_NAMESPACE, gatekeeper.VAP_NAMESPACE
    if peer:
        gatekeeper.scope(client, gk)
        _ensure_ns(client, gk)
        _ensure_ns(client, gkv)
        gatekeeper.add_policy(client, helpers.policy("bots", gk), vap=False)
        gatekeeper.add_policy(client, helpers.policy("bots", gkv), vap=True)
        namespaces += [gk, gkv]
    figures: dict[str, float] = {}
    with noop_webhook(client, noop) as noop_opa, vap_engine(client, cel):
        _wait_vap(client, cel)
        if peer:
            _wait_vap(client, gk, what="Gatekeeper's constraints")
            _wait_vap(client, gkv, timeout=90.0, what="Gatekeeper's generated ValidatingAdmissionPolicies")
        for conc in (1, 50):
            servers = {"aidp": opa, "noop": noop_opa} if opa is not None else {}
            before = {k: _reviews(srv) for k, srv in servers.items()}
            samples = asyncio.run(_rounds(kubeconfig, namespaces, conc, rounds, per_round))
            for k, srv in servers.items():
                took, answered = (a - b for a, b in zip(_reviews(srv), before[k], strict=True))
                if answered:
                    each = took / answered * 1000
                    figures[f"admission_opa_server_ms_per_review_{k}_c{conc}"] = each
                    print(f"  c{conc}: {k} OPA answered {answered:.0f} reviews, {each:.2f} ms each")
            g, p, n = summary(samples[governed]), summary(samples[plain]), summary(samples[noop])
            v = summary(samples[cel])
            figures[f"admission_create_p50_seconds_vap_c{conc}"] = v["p50"]
            figures[f"admission_create_p99_seconds_vap_c{conc}"] = v["p99"]
            figures[f"admission_vap_overhead_p50_ratio_c{conc}"] = v["p50"] / p["p50"]
            figures[f"admission_vap_overhead_p99_ratio_c{conc}"] = v["p99"] / p["p99"]
            figures[f"admission_create_p50_seconds_webhook_c{conc}"] = g["p50"]
            figures[f"admission_create_p99_seconds_webhook_c{conc}"] = g["p99"]
            figures[f"admission_create_p50_seconds_no_webhook_c{conc}"] = p["p50"]
            figures[f"admission_create_p99_seconds_no_webhook_c{conc}"] = p["p99"]
            figures[f"admission_create_p50_seconds_noop_webhook_c{conc}"] = n["p50"]
            figures[f"admission_create_p99_seconds_noop_webhook_c{conc}"] = n["p99"]
            figures[f"admission_overhead_p50_ratio_c{conc}"] = g["p50"] / p["p50"]
            figures[f"admission_overhead_p99_ratio_c{conc}"] = g["p99"] / p["p99"]
            figures[f"admission_overhead_p50_ratio_c{conc}_noop_webhook"] = n["p50"] / p["p50"]
            figures[f"admission_overhead_p99_ratio_c{conc}_noop_webhook"] = n["p99"] / p["p99"]
            figures[f"admission_opa_vs_noop_p99_ratio_c{conc}"] = g["p99"] / n["p99"]
            if peer:
                figures |= _peer_figures(conc, summary(samples[gk]), g, p, v, n)
                figures |= _peer_figures(conc, summary(samples[gkv]), g, p, v, n, engine="gatekeeper_vap")
            print(
                f"  c{conc}: webhook p50 {g['p50'] * 1000:.1f} ms p99 {g['p99'] * 1000:.1f} ms; "
                f"no webhook p50 {p['p50'] * 1000:.1f} ms p99 {p['p99'] * 1000:.1f} ms; "
                f"no-op webhook p50 {n['p50'] * 1000:.1f} ms p99 {n['p99'] * 1000:.1f} ms; "
                f"vap p50 {v['p50'] * 1000:.1f} ms p99 {v['p99'] * 1000:.1f} ms "
                f"(n={int(g['n'])}+{int(p['n'])}+{int(n['n'])}+{int(v['n'])})"
            )
    for ns in namespaces:
        client.delete(Namespace, ns)
    wait_gone(client, namespaces)
    return figures


def wait_gone(client: Client, namespaces: list[str], timeout: float = 900.0) -> None:
    """Until the namespaces are deleted: the namespace controller empties them (thousands of
    Deployments, ReplicaSets and Pods after the admission rounds) in the background, and what is
    measured next must not share the two cores with that."""
    t0 = time.monotonic()
    left = set(namespaces)
    while left:
        left = {ns for ns in left if _exists(client, ns)}
        if not left:
            break
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"namespaces not deleted in {timeout:.0f} s: {sorted(left)}")
        time.sleep(1.0)
    print(f"  the rounds' {len(namespaces)} namespaces deleted in {time.monotonic() - t0:.0f} s")


def _exists(client: Client, ns: str) -> bool:
    try:
        client.get(Namespace, ns)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


def _peer_figures(
    conc: int,
    k: dict[str, float],
    opa: dict[str, float],
    plain: dict[str, float],
    cel: dict[str, float],
    noop: dict[str, float],
    engine: str = "gatekeeper",
) -> dict[str, float]:
    """Gatekeeper's latencies (`engine`: its webhook, or gatekeeper_vap: the ValidatingAdmissionPolicy
    it generates), its overhead, and aidp's engines relative to it; and the controls' ratios to it,
    measured in the same rounds: the no-op webhook's (the best any webhook can do here) and no
    admission's (the best anything can do)."""
    print(
        f"  c{conc}: {engine} p50 {k['p50'] * 1000:.1f} ms p99 {k['p99'] * 1000:.1f} ms "
        f"(n={int(k['n'])}); aidp opa/{engine} p99 {opa['p99'] / k['p99']:.2f}, "
        f"aidp vap/{engine} p99 {cel['p99'] / k['p99']:.2f}"
    )
    return {
        f"admission_create_p50_seconds_{engine}_c{conc}": k["p50"],
        f"admission_create_p99_seconds_{engine}_c{conc}": k["p99"],
        f"admission_{engine}_overhead_p50_ratio_c{conc}": k["p50"] / plain["p50"],
        f"admission_{engine}_overhead_p99_ratio_c{conc}": k["p99"] / plain["p99"],
        f"admission_opa_vs_{engine}_p99_ratio_c{conc}": opa["p99"] / k["p99"],
        f"admission_vap_vs_{engine}_p99_ratio_c{conc}": cel["p99"] / k["p99"],
        f"admission_noop_webhook_vs_{engine}_p99_ratio_c{conc}": noop["p99"] / k["p99"],
        f"admission_no_admission_vs_{engine}_p99_ratio_c{conc}": plain["p99"] / k["p99"],
    }


def _denied(client: Client, obj: dict[str, Any]) -> bool:
    try:
        client.create(from_dict(copy.deepcopy(obj)), dry_run=True)
    except ApiError as err:
        if "[retention-days]" not in err.status.message:
            raise
        return True
    return False


def _fill_policies(client: Client, total: int, per_ns: int = 10) -> None:
    """Background policies in their own namespaces, so that `total` policies exist in all."""
    existing = sum(
        1 for p in client.list(helpers.AIDataPolicy, namespace="*") if p.metadata.name.startswith("bg-")
    )
    i = existing
    while i < total:
        ns = f"bench-bg-{i // per_ns:04d}"
        if i % per_ns == 0 or i == existing:
            _ensure_ns(client, ns)
        obj = helpers.policy(f"bg-{i:05d}", ns, workloadSelector={"matchLabels": {"app": f"svc-{i}"}})
        client.create(helpers.AIDataPolicy(obj))
        i += 1


def _quiescent(client: Client, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [
            p
            for p in client.list(helpers.AIDataPolicy, namespace="*")
            if (p.get("status") or {}).get("observedGeneration") != p.metadata.generation
        ]
        if not pending:
            return
        time.sleep(0.5)
    raise TimeoutError("operator did not catch up with the policies")


def reconcile_latency(
    client: Client, counts: tuple[int, ...] = (1, 100, 1000), iterations: int = 25, guardrailed: int = 100
) -> dict[str, float]:
    """Policy change -> the next violating create denied, with `counts` policies in the cluster;
    then once more at the largest count with `guardrailed` namespaces a ClusterAIDataPolicy governs
    (each sync then also reads the guardrails and the namespaces, labels and cuts those namespaces)."""
    ns = "bench-reconcile"
    _ensure_ns(client, ns)
    client.create(helpers.AIDataPolicy(helpers.policy("target", ns)))
    helpers.wait_enforced(client, ns, "target")
    probe = helpers.workload("Deployment", "probe", ns)  # declares 14 retention days
    figures: dict[str, float] = {}
    for count in counts:
        _fill_policies(client, count)
        _quiescent(client)
        s = _reconcile_samples(client, ns, probe, iterations)
        figures[f"reconcile_p50_seconds_{count}_policies"] = s["p50"]
        figures[f"reconcile_p99_seconds_{count}_policies"] = s["p99"]
        print(
            f"  {count} policies: p50 {s['p50'] * 1000:.0f} ms p99 {s['p99'] * 1000:.0f} ms (n={int(s['n'])})"
        )
    if guardrailed:
        _guardrail_namespaces(client, guardrailed)
        _quiescent(client)
        s = _reconcile_samples(client, ns, probe, iterations)
        key = f"{counts[-1]}_policies_{guardrailed}_guardrailed_namespaces"
        figures[f"reconcile_p50_seconds_{key}"] = s["p50"]
        figures[f"reconcile_p99_seconds_{key}"] = s["p99"]
        print(
            f"  {counts[-1]} policies + {guardrailed} guardrail-governed namespaces: "
            f"p50 {s['p50'] * 1000:.0f} ms p99 {s['p99'] * 1000:.0f} ms (n={int(s['n'])})"
        )
    return figures


def _reconcile_samples(client: Client, ns: str, probe: dict[str, Any], iterations: int) -> dict[str, float]:
    samples = []
    for _ in range(iterations):
        client.patch(
            helpers.AIDataPolicy,
            "target",
            {"spec": {"retention": {"maxDays": 30}}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        while _denied(client, probe):
            pass
        helpers.wait_enforced(client, ns, "target")
        t0 = time.perf_counter()
        client.patch(
            helpers.AIDataPolicy,
            "target",
            {"spec": {"retention": {"maxDays": 7}}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )
        while not _denied(client, probe):
            if time.perf_counter() - t0 > 30:
                raise TimeoutError("tightened policy not enforced within 30 s")
        samples.append(time.perf_counter() - t0)
    return summary(samples)


def _guardrail_namespaces(client: Client, count: int) -> None:
    """`count` namespaces with no AIDataPolicy, governed by one ClusterAIDataPolicy; waits until
    the operator reports it governs them all."""
    from lightkube.generic_resource import create_global_resource

    guardrails = create_global_resource("aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies")
    for i in range(count):
        _ensure_ns(client, f"bench-guarded-{i}", labels={"aidp-bench/guardrail": "yes"})
    client.create(
        guardrails.from_dict(
            {
                "apiVersion": "aidp.io/v1alpha1",
                "kind": "ClusterAIDataPolicy",
                "metadata": {"name": "bench-guardrail"},
                "spec": {"namespaceSelector": {"matchLabels": {"aidp-bench/guardrail": "yes"}}},
            }
        )
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = client.get(guardrails, "bench-guardrail").to_dict().get("status") or {}
        if st.get("governedNamespaces") == count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the guardrail did not govern {count} namespaces within 120 s")
