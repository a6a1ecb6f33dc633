"""`make bench`: start a local control plane with aidp, run the benchmarks, write the results."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from aidp.paths import crds_dir
from bench import admission, audit, reliability
from bench.common import RESULTS, TABLE, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aidp-bench-") as tmp:
        cp = ControlPlane(Path(tmp) / "cp").start()
        # bench-vap: the vap engine's namespace in the admission rounds (bench/admission.py)
        stack = AidpStack(
            cp,
            Path(tmp) / "aidp",
            operator_args=("--resync-seconds", "300", "--exclude-namespace", admission.VAP_NAMESPACE),
        )
        try:
            stack.start()
            client = kube.client(cp.kubeconfig)
            figures: dict[str, float] = {}
            t0 = time.monotonic()
            print("admission overhead (create latency with vs without the webhook):")
            figures |= admission.admission_overhead(
                client, str(cp.kubeconfig), rounds=3 if args.quick else 6, per_round=50 if args.quick else 200
            )
            print("reconcile latency (policy change -> next violating create denied):")
            figures |= admission.reconcile_latency(
                client, counts=(1, 100) if args.quick else (1, 100, 1000), iterations=10 if args.quick else 25
            )
            figures["bench_admission_wall_seconds"] = time.monotonic() - t0
            print("recovery:")
            figures |= reliability.opa_recovery(stack)
        finally:
            stack.stop()
            cp.stop()
        figures |= reliability.operator_takeover(Path(tmp))
        print("audit at scale (separate control plane, no webhook while seeding):")
        cp = ControlPlane(Path(tmp) / "audit-cp", controller_manager=False).start()
        try:
            client = kube.client(cp.kubeconfig)
            kube.install_crds(client, crds_dir())
            small = (100, 10, 50) if args.quick else (1000, 20, 100)
            audit.seed(client, str(cp.kubeconfig), *small, prefix="a1k")
            figures |= audit.measure(cp.kubeconfig, "1k_pods")
            if not args.quick:
                audit.seed(client, str(cp.kubeconfig), 9000, 180, 900, prefix="a10k")
                figures |= audit.measure(cp.kubeconfig, "10k_pods")
        finally:
            cp.stop()
    save(figures)
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[1])} and {TABLE.relative_to(TABLE.parents[1])}")


if __name__ == "__main__":
    main()
