"""`make run`: the main job on the local control plane.

Brings up etcd, kube-apiserver, kube-controller-manager, OPA, the OPA agent and the aidp operator
(`aidp dev up`), applies examples/ in order, shows which objects the live admission webhook
admitted and why the others were denied, compares that with the offline `aidp check`, and prints
each AIDataPolicy's status. Where the machine can run a real node (root, `make node-deps images`,
see docs/development.md), it does (`aidp dev up --node`) and then shows, from inside pods, which
connect to the provider stand-in and which are cut off, and why; elsewhere it says why in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource

from aidp import kube
from aidp.audit import collect, evaluate, formats
from aidp.check import check_manifests, find_opa
from aidp.devcluster import dev
from aidp.devcluster import node as nodemod
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


def alias_example_images(node: nodemod.Node, files: list[Path]) -> None:
    """The examples' images do not exist here (and the node never pulls): each name is given to the
    probe image in the node's containerd, so the admitted workloads run, as probes."""
    images = set()
    for obj in load_manifests(files):
        spec = obj.get("spec") or {}
        for pod in (
            spec.get("template"),
            (spec.get("jobTemplate") or {}).get("spec", {}).get("template"),
            obj,
        ):
            for c in ((pod or {}).get("spec") or {}).get("containers") or []:
                if c.get("image"):
                    images.add(c["image"])
    for image in sorted(images):
        name = image if "." in image.split("/")[0] and "/" in image else f"docker.io/library/{image}"
        node.ctr("images", "tag", "--force", nodemod.PROBE_IMAGE, name)


def placeholder_secrets(client: Client, files: list[Path]) -> None:
    """The Secrets the examples' containers read (API keys), with a placeholder value, so that the
    admitted pods start on the node."""
    wanted: set[tuple[str, str, str]] = set()

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and ref.get("name") and ref.get("key"):
                wanted.add((ns, ref["name"], ref["key"]))
            for v in node.values():
                walk(v, ns)
        elif isinstance(node, list):
            for v in node:
                walk(v, ns)

    for obj in load_manifests(files):
        walk(obj.get("spec"), (obj.get("metadata") or {}).get("namespace") or "default")
    for ns, name, key in sorted(wanted):
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": {key: "placeholder-not-a-key"},
        }
        with contextlib.suppress(ApiError):
            client.create(from_dict(secret))


# (namespace, pod, why, {host: expected}) of the demo's connection attempts
EGRESS_HOSTS = ("eu.api.openai.com", "api.openai.com", nodemod.OUTSIDE_HOST)


def show_packets(client: Client, node: nodemod.Node) -> list[dict[str, Any]]:
    """Connection attempts from inside pods (`nc -z -w 3 HOST 443`), with what each should do."""
    print("\n==> from inside pods on the node: nc -z -w 3 HOST 443 (kube-router enforces aidp's rules)")
    probes = [
        ("support", "demo-unapproved", {"app": "demo-probe"}, "governed namespace, selected by no policy"),
        ("marketing", "demo-shadow", {"app": "copy-writer"}, "namespace without AIDataPolicy (shadow AI)"),
    ]
    for ns, name, labels, _ in probes:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "containers": [{"name": "probe", "image": nodemod.PROBE_IMAGE, "imagePullPolicy": "Never"}],
                "terminationGracePeriodSeconds": 0,
            },
        }
        with contextlib.suppress(ApiError):
            client.create(from_dict(pod))
    bot = node.kubectl("-n", "support", "get", "pods", "-l", "app=support-bot", "-o", "name").stdout.split()
    rows: list[tuple[str, str, str, dict[str, bool]]] = []
    if bot:
        rows.append(
            ("support", bot[0].split("/", 1)[1], "approved by support/support-summaries (dataResidency: eu)",
             {"eu.api.openai.com": True, "api.openai.com": False, nodemod.OUTSIDE_HOST: True})
        )  # fmt: skip
    rows.append(
        ("support", "demo-unapproved", probes[0][3],
         {"eu.api.openai.com": False, "api.openai.com": False, nodemod.OUTSIDE_HOST: True})
    )  # fmt: skip
    rows.append(
        ("marketing", "demo-shadow", probes[1][3],
         {"eu.api.openai.com": True, "api.openai.com": True, nodemod.OUTSIDE_HOST: True})
    )  # fmt: skip
    for ns, name, _, _ in rows:
        node.kubectl(
            "-n",
            ns,
            "wait",
            "--for=condition=Ready",
            f"pod/{name}",
            "--timeout=90s",
            check=False,
            timeout=120,
        )

    def attempt(ns: str, pod: str, host: str, wait: int) -> bool:
        res = node.kubectl("-n", ns, "exec", pod, "--", "nc", "-z", "-w", str(wait), host, "443", check=False)
        return res.returncode == 0

    # the rules follow the policies within a second or two: wait until they do, then show
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(attempt(ns, pod, h, 1) == want for ns, pod, _, exp in rows for h, want in exp.items()):
            break
        time.sleep(0.5)
    out = []
    for ns, pod, why, expected in rows:
        print(f"    {ns}/{pod}: {why}")
        for host in EGRESS_HOSTS:
            got = attempt(ns, pod, host, 3)
            ok = got == expected[host]
            print(f"      {'connects' if got else 'REFUSED '} {host}:443{'' if ok else '   (UNEXPECTED)'}")
            out.append({"namespace": ns, "pod": pod, "host": host, "connects": got, "as_expected": ok})
    print(
        f"    the second CDN edge of api.openai.com ({nodemod.CDN_EDGE}), not in the addresses file: "
        f"{'connects' if attempt('support', 'demo-unapproved', nodemod.CDN_EDGE, 3) else 'refused'} from "
        "support/demo-unapproved (the documented limit of IP-based rules, docs/egress.md)"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".dev")
    parser.add_argument("--examples", type=Path, default=ROOT / "examples")
    parser.add_argument("--no-node", action="store_true", help="never start a node, even where one can run")
    args = parser.parse_args()

    why = ["--no-node"] if args.no_node else nodemod.missing_prerequisites()
    with_node = not why
    print(
        "==> aidp dev up (etcd, kube-apiserver, kube-controller-manager, OPA, OPA agent, operator"
        + (
            ", and a node: kubelet, containerd, kube-proxy, CoreDNS, kube-router, provider stand-in)"
            if with_node
            else ")"
        )
    )
    if not with_node:
        print(f"    no node, so no pods and no packets: {'; '.join(why)}")
    t0 = time.monotonic()
    try:
        st = dev.up(args.state_dir.resolve(), node=with_node)
    except nodemod.NodeError as err:  # e.g. another node runs on this machine
        print(f"    no node, so no pods and no packets: {err}")
        st = dev.up(args.state_dir.resolve())
    print(
        f"    {'started' if st.started else 'already running'} in {time.monotonic() - t0:.1f}s; "
        f"KUBECONFIG={st.kubeconfig}"
    )
    client = kube.client(st.kubeconfig)
    files = sorted(args.examples.glob("*.yaml"))
    node = dev.node_of(st.state_dir) if st.node else None
    if node is not None:
        alias_example_images(node, files)

    print(
        f"\n==> applying {len(files)} files from {args.examples.relative_to(ROOT)}/ through the live webhook"
    )
    applied_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    outcomes = apply_examples(client, files)
    if node is not None:
        placeholder_secrets(client, files)
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

    egress: list[dict[str, Any]] = []
    if node is not None:
        egress = show_packets(client, node)
        agree &= all(e["as_expected"] for e in egress)

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
    report.write_text(
        json.dumps({"admission": outcomes, "egress": egress, "audit": audit.to_dict()}, indent=2)
    )
    print(f"\n==> reports written: {report}, {audit_json}, {html} (open it in a browser)")
    print(f"    the environment keeps running: export KUBECONFIG={st.kubeconfig}; stop it with `make down`")
    if node is not None:
        print("    the node too: `kubectl get pods -A -o wide`; `make down` removes it and all it made")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
