"""`make bench`: start a local control plane with aidp, run the benchmarks, write the results."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lightkube import Client

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.opa import OpaServer
from aidp.devcluster.stack import AidpStack
from aidp.paths import crds_dir
from bench import admission, audit, egress, gatekeeper, reliability, scale, webhook_calls
from bench.common import RESULTS, TABLE, save

PARTS = ("control-plane", "admission", "scale", "audit", "egress", "webhook-calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PART[,PART...]",
        help="run only these parts (comma list, repeatable): control-plane (admission, reconcile, "
        "recovery, takeover), scale (10,000 policies: reconcile latency, operator memory, durable "
        "copy; on the control-plane's stack), audit (1k, 10k and 100k pods), egress (a real node: "
        "policy change -> packets; needs root), webhook-calls (aidp's webhook calls per Deployment "
        "create; on the control-plane's stack), admission (the admission rounds alone: no admission, "
        "no-op webhook, aidp opa and vap, Gatekeeper's webhook and VAP; part of control-plane)",
    )
    args = parser.parse_args()
    parts = {p for arg in args.only or [",".join(PARTS)] for p in arg.split(",") if p}
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts {', '.join(sorted(unknown))}: choose from {', '.join(PARTS)}")
    figures: dict[str, float] = {}
    if parts & {"control-plane", "admission", "scale", "webhook-calls"}:
        figures |= control_plane(quick=args.quick, parts=parts)
    if "audit" in parts:
        figures |= audit_at_scale(quick=args.quick)
    if "egress" in parts:
        print("egress convergence on a node (policy change -> packets follow, approve and revoke):")
        figures |= egress.egress_convergence(changes=10)
    save(figures)
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[1])} and {TABLE.relative_to(TABLE.parents[1])}")


def control_plane(*, quick: bool, parts: set[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aidp-bench-") as tmp:
        cp = ControlPlane(Path(tmp) / "cp").start()
        # bench-vap: the vap engine's namespace in the admission rounds (bench/admission.py)
        stack = AidpStack(
            cp,
            Path(tmp) / "aidp",
            operator_args=(
                "--resync-seconds",
                "300",
                "--exclude-namespace",
                admission.VAP_NAMESPACE,
                *gatekeeper.operator_args(),
            ),
        )
        try:
            stack.start()
            client = kube.client(cp.kubeconfig)
            t0 = time.monotonic()
            if parts & {"control-plane", "admission"}:
                figures |= admission_rounds(cp, client, Path(tmp), quick=quick, opa=stack.opa)
            if "control-plane" in parts:
                print("reconcile latency (policy change -> next violating create denied):")
                figures |= admission.reconcile_latency(
                    client, counts=(1, 100) if quick else (1, 100, 1000), iterations=10 if quick else 25
                )
                figures["bench_admission_wall_seconds"] = time.monotonic() - t0
                print("recovery:")
                figures |= reliability.opa_recovery(stack)
            if "webhook-calls" in parts:
                print("webhook calls per Deployment create (kube-apiserver's counter):")
                figures |= webhook_calls.webhook_calls(client, str(cp.kubeconfig))
            if "scale" in parts:
                t0 = time.monotonic()
                top = 2000 if quick else 10_000
                print(f"scale: {top} policies in {top // scale.PER_NS} namespaces:")
                figures |= scale.scale(
                    client, stack, str(cp.kubeconfig), iterations=10 if quick else 25, top=top
                )
                figures |= scale.ratios(figures, top)
                figures["bench_scale_wall_seconds"] = time.monotonic() - t0
        finally:
            stack.stop()
            cp.stop()
        if "control-plane" in parts:
            figures |= reliability.operator_takeover(Path(tmp))
    return figures


def admission_rounds(
    cp: ControlPlane, client: Client, state_dir: Path, *, quick: bool, opa: OpaServer | None = None
) -> dict[str, float]:
    """The admission rounds, with the peer: Gatekeeper started, its webhook and its generated
    ValidatingAdmissionPolicy checked against aidp on the examples (a disagreement stops the
    bench) before anything is measured."""
    with gatekeeper.running(cp, client, state_dir):
        n = gatekeeper.agreement(client)
        print(f"Gatekeeper's webhook agrees with aidp on the {n} workloads of the examples")
        n = gatekeeper.agreement(client, vap=True)
        print(f"Gatekeeper's ValidatingAdmissionPolicy agrees with aidp on the {n} workloads of the examples")
        print("admission overhead (create latency with vs without the webhook, and the peer's):")
        return admission.admission_overhead(
            client,
            str(cp.kubeconfig),
            rounds=3 if quick else 6,
            per_round=50 if quick else 200,
            peer=True,
            opa=opa,
        )


def audit_at_scale(*, quick: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aidp-bench-audit-") as tmp:
        print("audit at scale (separate control plane, no webhook while seeding):")
        cp = ControlPlane(Path(tmp) / "audit-cp", controller_manager=False).start()
        try:
            client = kube.client(cp.kubeconfig)
            kube.install_crds(client, crds_dir())
            small = (100, 10, 50) if quick else (1000, 20, 100)
            audit.seed(client, str(cp.kubeconfig), *small, prefix="a1k")
            figures |= audit.measure(cp.kubeconfig, "1k_pods")
            if not quick:
                audit.seed(client, str(cp.kubeconfig), 9000, 180, 900, prefix="a10k")
                figures |= audit.measure(cp.kubeconfig, "10k_pods")
                t0 = time.monotonic()
                audit.seed(client, str(cp.kubeconfig), 90_000, 900, 4500, prefix="a100k")
                figures["audit_seed_seconds_90k_pods"] = time.monotonic() - t0
                figures |= audit.measure(cp.kubeconfig, "100k_pods")
        finally:
            cp.stop()
    return figures


if __name__ == "__main__":
    main()
