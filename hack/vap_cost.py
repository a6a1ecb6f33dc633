"""What the vap engine's ValidatingAdmissionPolicies cost kube-apiserver per Deployment create
(issue #15; docs/admission-engines.md#what-each-policy-costs).

Starts its own control plane (etcd and kube-apiserver, profiling on, no controller manager: no
ReplicaSets, so a Deployment create is one admission), one governed namespace with AIDataPolicies,
and for each variant (`none`: no policies; `name=path/to/policies.py`: the objects that module's
`render()` gives) in interleaved rounds:

- kube-apiserver CPU seconds (utime+stime of /proc/<pid>/stat) per 1,000 Deployment creates;
- per policy, kube-apiserver's apiserver_validating_admission_policy_check_duration_seconds (sum
  and count over the load) and how many checks a Deployment and a Pod create cause;
- create latency p50 / p99 at 1 client;
- with --profile, a CPU profile of kube-apiserver (/debug/pprof/profile) during extra load.

    .venv/bin/python hack/vap_cost.py --variant old=/tmp/old_policies.py \
        --variant new=operator/aidp/vap/policies.py --creates 1000 --rounds 2 --profile

The old module: `git show <commit>:operator/aidp/vap/policies.py > /tmp/old_policies.py`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.util
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightkube.codecs import from_dict  # noqa: E402
from lightkube.models.meta_v1 import ObjectMeta  # noqa: E402
from lightkube.resources.admissionregistration_v1 import (  # noqa: E402
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.core_v1 import Namespace, ServiceAccount  # noqa: E402

from aidp import kube  # noqa: E402
from aidp.devcluster import ControlPlane  # noqa: E402
from aidp.paths import crds_dir  # noqa: E402

NS = "vap-cost"
OPERATOR = "system:serviceaccount:aidp-system:aidp"
MARK = {"aidp-cost": "1"}
METRIC = "apiserver_validating_admission_policy_check_duration_seconds"
COMPLIANT = {
    "aidp.io/consent-basis": "contract",
    "aidp.io/retention-days": "14",
    "aidp.io/zero-data-retention": "true",
    "aidp.io/data-categories": "internal,pseudonymised",
}


class ProfiledControlPlane(ControlPlane):
    def _apiserver_argv(self) -> list[str]:
        return [("--profiling=true" if a == "--profiling=false" else a) for a in super()._apiserver_argv()]


def policy(name: str, enforcement: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        # what --label-selected bindings select (the policies above read spec.enforcement itself)
        "metadata": {"name": name, "namespace": NS, "labels": {"aidp.io/enforcement": enforcement}},
        "spec": {
            "provider": "openai",
            "workloadSelector": {"matchLabels": {"app": app}},
            "serviceAccountNames": ["bot"],
            "purpose": "Summarise support tickets",
            "consent": {"required": True, "allowedBases": ["consent", "contract"]},
            "retention": {"maxDays": 30, "requireZeroDataRetention": True},
            "dataCategories": {"allowed": ["public", "internal", "pseudonymised"], "forbidden": ["health"]},
            "enforcement": enforcement,
            "review": {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": "2099-12-31"},
        },
    }


# five policies, as a governed namespace may have: three select the workload (two deny, one warn),
# two select other apps (one dryrun, one deny)
POLICIES = [
    policy("bots", "deny", "bot"),
    policy("bots-strict", "deny", "bot"),
    policy("bots-advisory", "warn", "bot"),
    policy("web", "dryrun", "web"),
    policy("batch", "deny", "batch"),
]


def deployment(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": "bot"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": dict(COMPLIANT if annotations is None else annotations),
                },
                "spec": {
                    "serviceAccountName": "bot",
                    "containers": [{"name": "c", "image": "registry.example.com/bot:1.0"}],
                },
            },
        },
    }


def pod(name: str) -> dict[str, Any]:
    d = deployment(name)["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, **d["metadata"]},
        "spec": d["spec"],
    }


def load_render(path: str) -> Callable[..., list[dict[str, Any]]]:
    spec = importlib.util.spec_from_file_location(f"vap_variant_{abs(hash(path))}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    render: Callable[..., list[dict[str, Any]]] = mod.render
    return render


class Driver:
    def __init__(self, cp: ControlPlane, dry_run: bool) -> None:
        self.cp = cp
        self.client = kube.client(cp.kubeconfig)
        self.http = self.client._client._client
        self.dry_run = dry_run
        self.seq = 0

    def post(self, obj: dict[str, Any], *, dry_run: bool | None = None) -> tuple[int, str]:
        base = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
        plural = obj["kind"].lower() + "s"
        params = {"dryRun": "All"} if (self.dry_run if dry_run is None else dry_run) else {}
        resp = self.http.post(f"{base}/namespaces/{NS}/{plural}", json=obj, params=params)
        return resp.status_code, "" if resp.status_code < 300 else str(resp.json().get("message", ""))

    def creates(self, n: int, make: Callable[[str], dict[str, Any]] = deployment) -> list[float]:
        lat = []
        for _ in range(n):
            self.seq += 1
            obj = make(f"d-{self.seq}")
            t0 = time.perf_counter()
            code, msg = self.post(obj)
            lat.append(time.perf_counter() - t0)
            if code >= 300:
                raise RuntimeError(f"create refused: {code} {msg}")
        return lat

    def apply(self, objs: list[dict[str, Any]]) -> None:
        marked: dict[str, Any] = dict(MARK)
        for res in (ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicy):
            for live in self.client.list(res, labels=marked):
                name = live.metadata.name  # type: ignore[attr-defined]
                self.client.delete(res, name)
        for obj in objs:
            o = json.loads(json.dumps(obj))
            o["metadata"].setdefault("labels", {}).update(MARK)
            self.client.create(from_dict(o))
        # enforced: a violating create is refused (with the deny policy) or admitted (none)
        names = {o["metadata"]["name"] for o in objs}
        if names and "aidp-workloads-deny" not in names:
            time.sleep(3)  # kube-apiserver compiles new policies about once a second
            return
        want = bool(objs)
        bad = deployment("probe", {**COMPLIANT, "aidp.io/retention-days": "31"})
        deadline = time.monotonic() + 60
        while (self.post(bad, dry_run=True)[0] >= 300) != want:
            if time.monotonic() > deadline:
                raise TimeoutError("policies not in force")
            time.sleep(0.2)
        time.sleep(2)  # let every policy compile (they are compiled one by one)
        self.post(bad, dry_run=True)

    def cpu(self) -> float:
        pid = self.cp.procs["kube-apiserver"].pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, tuple[float, float]]:
        """(sum seconds, count) of kube-apiserver's admission histograms: `plugin` (the
        ValidatingAdmissionPolicy admission plugin, all policies of a request), `check:<policy>`
        (recorded for failed checks only: denied, warned, audited or errors) and
        `skipped:<policy>` (match conditions evaluated to false)."""
        text = self.http.get("/metrics").text
        out: dict[str, list[float]] = {}
        for line in text.splitlines():
            m = re.match(r"(\w+)_(sum|count)\{(.*)\} (\S+)$", line)
            if not m:
                continue
            family, kind, raw, value = m.groups()
            labels = dict(re.findall(r'(\w+)="([^"]*)"', raw))
            if family == "apiserver_admission_controller_admission_duration_seconds":
                if labels.get("name") != "ValidatingAdmissionPolicy":
                    continue
                key = "plugin"
            elif family == METRIC:
                key = f"check:{labels.get('policy')}"
            elif family == "apiserver_admission_match_condition_evaluation_seconds":
                if labels.get("kind") != "policy":
                    continue
                key = f"skipped:{labels.get('name')}"
            else:
                continue
            acc = out.setdefault(key, [0.0, 0.0])
            acc[0 if kind == "sum" else 1] += float(value)
        return {k: (v[0], v[1]) for k, v in out.items()}

    def profile(self, seconds: int, path: Path, load: Callable[[], object]) -> None:
        result: dict[str, bytes] = {}

        def fetch() -> None:
            r = self.http.get("/debug/pprof/profile", params={"seconds": seconds}, timeout=seconds + 30)
            result["data"] = r.content

        t = threading.Thread(target=fetch)
        t.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            load()
        t.join()
        path.write_bytes(result["data"])


def delta(
    after: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    out = {}
    for k, (s, c) in after.items():
        s0, c0 = before.get(k, (0.0, 0.0))
        if c - c0 > 0:
            out[k] = (s - s0, c - c0)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variant", action="append", default=[], help="name=path/to/policies.py (none is always first)"
    )
    ap.add_argument("--creates", type=int, default=1000)
    ap.add_argument(
        "--policies", type=int, default=len(POLICIES), help="the first N AIDataPolicies (1: the bench's)"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true", help="dry-run creates (no etcd write)")
    ap.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="profile each variant once")
    ap.add_argument(
        "--per-policy",
        action="append",
        default=[],
        metavar="VARIANT",
        help="also measure each policy of VARIANT alone (with its binding)",
    )
    ap.add_argument(
        "--label-selected",
        action="append",
        default=[],
        metavar="VARIANT",
        help="also VARIANT with the warn and dryrun bindings selecting their params by the label "
        "aidp.io/enforcement (a design not adopted: the label would be the operator's to keep)",
    )
    ap.add_argument("--out", default="/tmp/vap-cost")  # noqa: S108 - a developer's tool
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    # a SIGTERM unwinds through `finally`, which stops the control plane
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    today = dt.datetime.now(dt.UTC).date()
    variants: dict[str, list[dict[str, Any]]] = {"none": []}
    for v in args.variant:
        name, path = v.split("=", 1)
        variants[name] = load_render(path)(("kube-system",), [OPERATOR], today)
    for name in args.label_selected:
        objs = json.loads(json.dumps(variants[name]))
        for o in objs:
            mode = o["metadata"]["name"].removeprefix("aidp-workloads-")
            if o["kind"] == "ValidatingAdmissionPolicyBinding" and mode in ("warn", "dryrun"):
                o["spec"]["paramRef"]["selector"] = {"matchLabels": {"aidp.io/enforcement": mode}}
        variants[f"{name}+labels"] = objs
    for name in args.per_policy:
        objs = variants[name]
        for pol in (o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"):
            pname = pol["metadata"]["name"]
            variants[f"{name}:{pname}"] = [
                o for o in objs if o["metadata"]["name"] == pname or o["spec"].get("policyName") == pname
            ]

    with tempfile.TemporaryDirectory(prefix="vap-cost-") as tmp:
        cp = ProfiledControlPlane(Path(tmp), controller_manager=False).start()
        try:
            d = Driver(cp, args.dry_run)
            kube.install_crds(d.client, crds_dir())
            d.client.create(Namespace(metadata=ObjectMeta(name=NS, labels={"aidp.io/governed": "true"})))
            d.client.create(ServiceAccount(metadata=ObjectMeta(name="bot", namespace=NS)))
            from lightkube.generic_resource import create_namespaced_resource

            adp = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")
            for p in POLICIES[: args.policies]:
                d.client.create(adp.from_dict(p))
            results: dict[str, dict[str, list[Any]]] = {
                n: {"cpu": [], "p50": [], "p99": [], "checks": []} for n in variants
            }
            for r in range(args.rounds):
                names = list(variants)
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    d.apply(variants[name])
                    d.creates(50)  # warm-up
                    m0, c0 = d.metrics(), d.cpu()
                    lat = d.creates(args.creates)
                    c1, m1 = d.cpu(), d.metrics()
                    dep = delta(m1, m0)
                    pods0 = d.metrics()
                    d.creates(20, pod) if not args.dry_run else None
                    pod_checks = delta(d.metrics(), pods0)
                    res = results[name]
                    res["cpu"].append((c1 - c0) * 1000 / args.creates)
                    res["p50"].append(statistics.median(lat))
                    res["p99"].append(pct(lat, 0.99))
                    res["checks"].append(
                        {
                            k: {
                                "ms_per_check": 1000 * s / c,
                                "checks_per_deployment": c / args.creates,
                                "ms_per_deployment": 1000 * s / args.creates,
                            }
                            for k, (s, c) in sorted(dep.items())
                        }
                        | {f"pod:{k}": {"checks_per_pod": c / 20} for k, (s, c) in sorted(pod_checks.items())}
                    )
                    print(
                        f"round {r} {name:>8}: apiserver CPU {res['cpu'][-1]:.2f} s/1000 creates, "
                        f"p50 {res['p50'][-1] * 1000:.2f} ms, p99 {res['p99'][-1] * 1000:.2f} ms",
                        flush=True,
                    )
                    for k, v in res["checks"][-1].items():
                        print(f"    {k}: {v}", flush=True)
            if args.profile:
                for name, objs in variants.items():
                    d.apply(objs)
                    d.creates(50)
                    d.profile(args.profile, out / f"{name}.pprof", functools.partial(d.creates, 20))
                    print(f"profile {name}: {out / f'{name}.pprof'}", flush=True)
            summary = {n: {k: v for k, v in res.items()} for n, res in results.items()}
            if args.json:
                Path(args.json).write_text(json.dumps(summary, indent=1))
        finally:
            cp.stop()


if __name__ == "__main__":
    main()
