"""`make run`: the main job on the local control plane.

Brings up etcd, kube-apiserver, kube-controller-manager, OPA, the OPA agent and the aidp operator
(`aidp dev up`), applies examples/ in order, shows which objects the live admission webhook
admitted and why the others were denied, compares that with the offline `aidp check`, and prints
each AIDataPolicy's status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource

from aidp import kube
from aidp.audit import collect, evaluate, formats
from aidp.check import check_manifests, find_opa
from aidp.devcluster import dev
from aidp.render import load_manifests

ROOT = Path(__file__).resolve().parents[1]
AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")


def apply_examples(client: Client, files: list[Path]) -> list[dict[str, Any]]:
    outcomes = []
    for path in files:
        for obj in kube.load_yaml_files([path]):
            kind, meta = obj.kind, obj.metadata
            name = f"{kind} {meta.namespace + '/' if meta.namespace else ''}{meta.name}"
            try:
                client.apply(obj, force=True)
                outcomes.append(
                    {
                        "object": name,
                        "kind": kind,
                        "namespace": meta.namespace,
                        "name": meta.name,
                        "admitted": True,
                        "message": "",
                    }
                )
            except ApiError as err:
                outcomes.append(
                    {
                        "object": name,
                        "kind": kind,
                        "namespace": meta.namespace,
                        "name": meta.name,
                        "admitted": False,
                        "message": err.status.message,
                    }
                )
            if kind == "AIDataPolicy":
                wait_enforced(client, meta.namespace, meta.name)
    return outcomes


def wait_enforced(client: Client, namespace: str, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = client.get(AIDataPolicy, name, namespace=namespace)
        st = obj.get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        if (
            st.get("observedGeneration") == obj.metadata.generation
            and conds.get("AdmissionEnforced", {}).get("status") == "True"
        ):
            return
        time.sleep(0.1)
    raise SystemExit(f"AIDataPolicy {namespace}/{name} not enforced after {timeout:.0f}s")


def wait_audited(client: Client, since: str, timeout: float = 45.0) -> list[Any]:
    """The AIDataPolicies once the operator's audit has reported on them (lastAuditTime at or after
    `since`); as they are after `timeout` seconds otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        policies = list(client.list(AIDataPolicy, namespace="*"))
        stamps = [(p.get("status") or {}).get("lastAuditTime") or "" for p in policies]
        if all(stamp >= since for stamp in stamps) or time.monotonic() > deadline:
            return policies
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".dev")
    parser.add_argument("--examples", type=Path, default=ROOT / "examples")
    args = parser.parse_args()

    print("==> aidp dev up (etcd, kube-apiserver, kube-controller-manager, OPA, OPA agent, operator)")
    t0 = time.monotonic()
    st = dev.up(args.state_dir.resolve())
    print(
        f"    {'started' if st.started else 'already running'} in {time.monotonic() - t0:.1f}s; "
        f"KUBECONFIG={st.kubeconfig}"
    )
    client = kube.client(st.kubeconfig)
    files = sorted(args.examples.glob("*.yaml"))

    print(
        f"\n==> applying {len(files)} files from {args.examples.relative_to(ROOT)}/ through the live webhook"
    )
    applied_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    outcomes = apply_examples(client, files)
    for o in outcomes:
        verdict = "ADMITTED" if o["admitted"] else "DENIED  "
        print(f"    {verdict} {o['object']}")
        if o["message"]:
            print(f"             {o['message']}")

    print("\n==> aidp check (offline, same Rego evaluated by the opa binary)")
    offline = {(r.kind, r.namespace, r.name): r for r in check_manifests(load_manifests([args.examples]))}
    agree = True
    for o in outcomes:
        r = offline.get((o["kind"], o["namespace"], o["name"]))
        if r is None:
            continue
        same = r.allowed == o["admitted"]
        agree &= same
        verdict = "allowed" if r.allowed else "denied"
        print(f"    {'agrees   ' if same else 'DISAGREES'} {o['object']}: offline {verdict}")

    print("\n==> AIDataPolicy status (after the operator's next in-cluster audit)")
    policies = wait_audited(client, applied_at)
    for p in policies:
        s = p.get("status") or {}
        conds = ", ".join(f"{c['type']}={c['status']} ({c['reason']})" for c in s.get("conditions") or [])
        print(
            f"    {p.metadata.namespace}/{p.metadata.name}: phase={s.get('phase')} "
            f"matchedWorkloads={s.get('matchedWorkloads')} violations={s.get('violations')} "
            f"lastAuditTime={s.get('lastAuditTime')} revision={s.get('revision')}\n      {conds}"
        )

    print("\n==> aidp audit (the same Rego, evaluated by OPA, on the workloads as they exist)")
    policy_objs = collect.list_policies(client, None)
    with evaluate.local_opa(policy_objs, find_opa()) as ev:
        audit, _, _ = collect.audit_cluster(client, ev, policy_objects=policy_objs)
    for f in audit.sorted_findings():
        print(f"    {f.severity:8} {f.type:20} {f.kind} {f.namespace}/{f.name}: {f.message[:100]}")
    for r in audit.records:
        print(
            f"    record   {r.kind} {r.namespace}/{r.name} -> {', '.join(r.endpoints)} ({r.consentBasis}, "
            f"{r.retentionDays} days, {', '.join(r.dataCategories)})"
        )
    html = args.state_dir / "audit-report.html"
    html.write_text(formats.render(audit, "html"), encoding="utf-8")
    audit_json = args.state_dir / "audit-report.json"
    audit_json.write_text(formats.render(audit, "json"), encoding="utf-8")

    report = args.state_dir / "run-report.json"
    report.write_text(json.dumps({"admission": outcomes, "audit": audit.to_dict()}, indent=2))
    print(f"\n==> reports written: {report}, {audit_json}, {html} (open it in a browser)")
    print(f"    the environment keeps running: export KUBECONFIG={st.kubeconfig}; stop it with `make down`")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
