#!/usr/bin/env bash
# Build the real test binaries (etcd, kube-apiserver, kube-controller-manager, kubectl, opa, helm,
# and for the node test bed kubelet, kube-proxy, kube-scheduler, CoreDNS and kube-router's
# NetworkPolicy controller) from the Go module proxy into a per-user cache keyed by the pinned versions, and point
# .testbin/ in the checkout at it. Idempotent: a complete cache is a no-op.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
versions_file="$here/hack/testbin.versions"
# shellcheck disable=SC1090
source <(grep -E '^[A-Z_]+=' "$versions_file")

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
gover=$(go env GOVERSION)
key=$( (grep -E '^[A-Z_]+=' "$versions_file"; echo "$gover"; go env GOOS GOARCH) | sha256sum | cut -c1-16)
cache_root=${AIDP_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aidp/testbin}
dest="$cache_root/$key"
bindir="$dest/bin"
mkdir -p "$bindir"

link_checkout() {
  ln -sfn "$dest" "$here/.testbin"
}

# a binary is there when its marker is; helm's marker also records the Kubernetes version it defaults
# to (builds without it defaulted to v1.20 and are redone)
have() {
  [ -x "$bindir/$1" ] && [ -f "$bindir/.$1.ok" ] && { [ "$1" != helm ] || grep -q '^kube-version ' "$bindir/.helm.ok"; }
}

check_version() {  # name expected-substring command...
  local name=$1 want=$2; shift 2
  local out
  out=$("$@" 2>&1 | head -n 5)
  if ! grep -qF -- "$want" <<<"$out"; then
    echo "testbin: $name --version does not report $want:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "testbin:   $name: $(head -n 1 <<<"$out")"
}

ts() { date +%s; }

# the path of MODULE@VERSION's go.mod in the module cache (downloaded if needed; three tries, since
# a cold download through the proxy can fail once)
gomod_of() {
  local out try
  for try in 1 2 3; do
    if out=$(GOFLAGS=-mod=mod go mod download -json "$1" 2>&1) \
       && python3 -c 'import json,sys; print(json.loads(sys.argv[1])["GoMod"])' "$out" 2>/dev/null; then
      return 0
    fi
    echo "testbin: go mod download $1 failed (try $try): $out" >&2
    sleep $(( try * 5 ))
  done
  return 1
}

k8s_all=(kube-apiserver kube-controller-manager kubectl kubelet kube-proxy kube-scheduler)
all=(etcd opa helm coredns kube-router "${k8s_all[@]}")
missing=()
for b in "${all[@]}"; do have "$b" || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  link_checkout
  echo "testbin: complete in $dest (nothing to build)"
  exit 0
fi

echo "testbin: building ${missing[*]} with $gover into $dest"
work="$dest/src"
mkdir -p "$work"

build_mod() {  # name module package version ldflags
  # Built through a throwaway wrapper module: `go install pkg@version` refuses modules whose
  # go.mod carries replace directives (etcd's does); a wrapper simply ignores them.
  local name=$1 mod=$2 pkg=$3 ver=$4 ldflags=$5 t0 w
  t0=$(ts)
  w="$work/$name"
  rm -rf "$w"; mkdir -p "$w"
  echo "testbin: building $name from $pkg@$ver"
  (cd "$w" && go mod init "aidp.local/testbin-$name" >/dev/null 2>&1 \
     && GOFLAGS=-mod=mod go get "$mod@$ver" >/dev/null \
     && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$bindir/$name" "$pkg")
  echo "testbin: built $name in $(( $(ts) - t0 ))s"
}

# ---- etcd -------------------------------------------------------------------------------
if ! have etcd; then
  build_mod etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "-s -w"
  check_version etcd "${ETCD_VERSION#v}" "$bindir/etcd" --version
  touch "$bindir/.etcd.ok"
fi

# ---- OPA --------------------------------------------------------------------------------
if ! have opa; then
  build_mod opa github.com/open-policy-agent/opa github.com/open-policy-agent/opa "$OPA_VERSION" \
    "-s -w -X github.com/open-policy-agent/opa/v1/version.Version=${OPA_VERSION#v}"
  check_version opa "Version: ${OPA_VERSION#v}" "$bindir/opa" version
  touch "$bindir/.opa.ok"
fi

# ---- helm -------------------------------------------------------------------------------
# helm's default Kubernetes version (`helm template` and `helm lint` without --kube-version) is set
# by its Makefile from the client-go it builds with; the same ldflags here, so that a chart asking
# for a recent Kubernetes renders as with a released helm.
if ! have helm; then
  helm_gomod=$(gomod_of "helm.sh/helm/v3@$HELM_VERSION")
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$helm_gomod")  # v0.<minor>.<patch>
  k8s_minor=$(cut -d. -f2 <<<"$client_go")
  [ -n "$k8s_minor" ] || { echo "testbin: no k8s.io/client-go version in $helm_gomod" >&2; exit 1; }
  helm_k8s=""
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_k8s+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  build_mod helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean$helm_k8s"
  check_version helm "$HELM_VERSION" "$bindir/helm" version --short
  echo "kube-version v1.$k8s_minor" > "$bindir/.helm.ok"
fi

# ---- CoreDNS (the node's cluster DNS) ---------------------------------------------------------
if ! have coredns; then
  build_mod coredns github.com/coredns/coredns github.com/coredns/coredns "$COREDNS_VERSION" "-s -w"
  check_version coredns "CoreDNS-${COREDNS_VERSION#v}" "$bindir/coredns" -version
  touch "$bindir/.coredns.ok"
fi

# ---- kube-router (only its NetworkPolicy controller runs: iptables + ipset) --------------------
if ! have kube-router; then
  kr=github.com/cloudnativelabs/kube-router/v2
  build_mod kube-router "$kr" "$kr/cmd/kube-router" "$KUBE_ROUTER_VERSION" \
    "-s -w -X $kr/pkg/version.Version=$KUBE_ROUTER_VERSION -X $kr/pkg/version.BuildDate=aidp-testbin"
  check_version kube-router "version $KUBE_ROUTER_VERSION" "$bindir/kube-router" --version
  touch "$bindir/.kube-router.ok"
fi

# ---- Kubernetes -------------------------------------------------------------------------
k8s_missing=()
for b in "${k8s_all[@]}"; do have "$b" || k8s_missing+=("$b"); done
if [ ${#k8s_missing[@]} -gt 0 ]; then
  kv=$KUBERNETES_VERSION
  minor_patch=${kv#v1.}
  staging_ver="v0.$minor_patch"
  kwrap="$work/k8s-wrapper"
  mkdir -p "$kwrap"
  echo "testbin: resolving k8s.io/kubernetes@$kv staging modules"
  gomod=$(cd "$kwrap" && gomod_of "k8s.io/kubernetes@$kv")
  # every `k8s.io/<staging> => ./staging/src/k8s.io/<staging>` in upstream's go.mod
  staging=$(grep -oE '^\s*k8s\.io/[A-Za-z0-9._-]+ => \./staging/src/' "$gomod" | awk '{print $1}' | sort -u)
  goline=$(grep -E '^go [0-9.]+' "$gomod" | head -n 1)
  {
    echo "module aidp.local/k8s-testbin"
    echo
    echo "$goline"
    echo
    echo "require k8s.io/kubernetes $kv"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m $staging_ver"; done
    echo ")"
  } > "$kwrap/go.mod"
  cat > "$kwrap/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  (cd "$kwrap" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  k8s_pkgs=()
  for b in "${k8s_all[@]}"; do k8s_pkgs+=("k8s.io/kubernetes/cmd/$b@$kv"); done
  (cd "$kwrap" && GOFLAGS=-mod=mod go get "${k8s_pkgs[@]}" >/dev/null)
  major=1; minor=${minor_patch%%.*}
  bdate=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$kv -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$bdate -X $p.gitCommit=0000000000000000000000000000000000000000"
  done
  for b in "${k8s_missing[@]}"; do
    t0=$(ts)
    echo "testbin: building $b $kv"
    (cd "$kwrap" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ld" -o "$bindir/$b" "k8s.io/kubernetes/cmd/$b")
    echo "testbin: built $b in $(( $(ts) - t0 ))s"
    if [ "$b" = kubectl ]; then
      check_version "$b" "$kv" "$bindir/$b" version --client
    else
      check_version "$b" "Kubernetes $kv" "$bindir/$b" --version
    fi
    touch "$bindir/.$b.ok"
  done
fi

rm -rf "$work"
link_checkout
echo "testbin: complete in $dest ($(du -sh "$dest" | cut -f1) on disk)"
