#!/usr/bin/env bash
# make kind-e2e: aidp from the Helm chart on a real cluster, then the integration suite against it.
#
# Creates a kind cluster, builds the image and loads it into the cluster, installs the chart into a
# namespace that enforces Pod Security `restricted` (default values, except the timings and the
# static provider addresses the integration tests expect), waits until every pod is ready, checks
# admission with the examples through the real Service, TLS and OPA pods, and runs
# `make test-integration` against the cluster (KUBECONFIG and AIDP_TEST_KUBECONFIG).
# Needs docker and kind. Environment: IMAGE (default aidp:e2e), KIND_CLUSTER (aidp-e2e),
# KIND_NODE_IMAGE (kind's default), AIDP_NAMESPACE (aidp-system), KIND_STATE (.dev/kind: the
# kubeconfig and values), KEEP_CLUSTER=1 to keep the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-aidp-e2e}
IMAGE=${IMAGE:-aidp:e2e}
NS=${AIDP_NAMESPACE:-aidp-system}
STATE=${KIND_STATE:-$PWD/.dev/kind}  # .dev/ is git-ignored
HELM=$PWD/.testbin/bin/helm
KUBECTL=$PWD/.testbin/bin/kubectl
export KUBECONFIG=$STATE/kubeconfig

for tool in docker kind "$HELM" "$KUBECTL"; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is missing" >&2; exit 2; }
done
mkdir -p "$STATE"

step() { echo "==> $*" >&2; }

if ! kind get clusters | grep -qx "$CLUSTER"; then
  step "kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
if [ -z "${KEEP_CLUSTER:-}" ]; then
  trap 'kind delete cluster --name "$CLUSTER"' EXIT
fi
kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"

step "image $IMAGE"
make --no-print-directory image IMAGE="$IMAGE"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "chart into namespace $NS (Pod Security restricted)"
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" label namespace "$NS" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
# the audit writes OpenReports Reports: the same upstream CRD the tests use
"$KUBECTL" apply --server-side -f tests/upstream-crds/openreports-reports.yaml
# the timings and the static provider addresses (TEST-NET) the integration tests expect, as their
# local stack runs the operator (tests/integration/conftest.py, aidp.devcluster.stack)
.venv/bin/python - "$STATE/values.yaml" <<'PY'
import sys, yaml
from aidp.devcluster.stack import DEMO_ADDRESSES
values = {
    "operator": {"resyncSeconds": 5, "opaCheckSeconds": 0.5},
    "audit": {"intervalSeconds": 5, "minGapSeconds": 2},
    "egress": {"addresses": yaml.safe_load(DEMO_ADDRESSES)},
}
open(sys.argv[1], "w").write(yaml.safe_dump(values))
PY
"$HELM" upgrade --install aidp charts/aidp -n "$NS" -f "$STATE/values.yaml" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --wait --timeout 5m
"$KUBECTL" -n "$NS" rollout status deployment/aidp-operator deployment/aidp-opa --timeout=180s

step "admission through the cluster's webhook"
"$KUBECTL" apply -f examples/00-namespace.yaml -f examples/10-policy.yaml -f examples/20-serviceaccount.yaml
"$KUBECTL" -n support wait aidp/support-summaries --for=condition=Ready --timeout=120s
"$KUBECTL" apply -f examples/30-compliant-deployment.yaml
if out=$("$KUBECTL" apply -f examples/40-noncompliant-retention.yaml 2>&1); then
  echo "kind-e2e: the non-compliant Deployment was admitted" >&2
  exit 1
fi
grep -q 'denied the request: aidp:' <<<"$out" || { echo "$out" >&2; exit 1; }
# while the operator runs (Kopf's finalizer on the policy)
"$KUBECTL" delete -f examples/ --ignore-not-found --wait --timeout=120s

step "RBAC: no forbidden in the logs"
if "$KUBECTL" -n "$NS" logs -l app.kubernetes.io/instance=aidp --all-containers --prefix --tail=-1 \
  | grep -i forbidden; then
  echo "kind-e2e: permission errors in the logs above" >&2
  exit 1
fi

step "integration tests against the cluster"
# an explicit opt-in: a KUBECONFIG alone (often a real cluster) never makes the suite use it
AIDP_TEST_KUBECONFIG=$KUBECONFIG AIDP_NAMESPACE=$NS make --no-print-directory test-integration
