#!/usr/bin/env bash
# Build OPA Gatekeeper's manager (the admission webhook the bench compares aidp with) from the Go
# module proxy into a per-user cache keyed by the pinned version and the Go toolchain, and point
# .testbin-gatekeeper/ in the checkout at it. Same pattern as hack/testbin.sh (a wrapper module,
# GOTOOLCHAIN=local, CGO_ENABLED=0, the version checked, a marker); a target of its own so that
# `make testbin` (and `make test`) do not pay for it: only `make bench` needs it. Beside the binary,
# the module's own CRDs (charts/gatekeeper/crds) and manager RBAC (config/rbac/role.yaml) of the
# same version, which bench/gatekeeper.py installs.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
versions_file="$here/hack/testbin-gatekeeper.versions"
# shellcheck disable=SC1090
source <(grep -E '^[A-Z_]+=' "$versions_file")

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
gover=$(go env GOVERSION)
key=$( (grep -E '^[A-Z_]+=' "$versions_file"; echo "$gover"; go env GOOS GOARCH) | sha256sum | cut -c1-16)
cache_root=${AIDP_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aidp/testbin}
dest="$cache_root/gatekeeper-$key"
bindir="$dest/bin"
mod=github.com/open-policy-agent/gatekeeper/v3
mkdir -p "$bindir"

if [ -x "$bindir/gatekeeper" ] && [ -f "$bindir/.gatekeeper.ok" ] && [ -f "$dest/.files.ok" ]; then
  ln -sfn "$dest" "$here/.testbin-gatekeeper"
  echo "testbin-gatekeeper: complete in $dest (nothing to build)"
  exit 0
fi

w="$dest/src"
rm -rf "$w"; mkdir -p "$w"
# a wrapper module: `go install pkg@version` refuses modules whose go.mod has replace directives
ok=""
for try in 1 2 3; do
  if (cd "$w" && { [ -f go.mod ] || go mod init aidp.local/testbin-gatekeeper >/dev/null 2>&1; } \
        && GOFLAGS=-mod=mod go get "$mod@$GATEKEEPER_VERSION" >/dev/null); then
    ok=1; break
  fi
  echo "testbin-gatekeeper: go get $mod@$GATEKEEPER_VERSION failed (try $try)" >&2
  sleep $(( try * 5 ))
done
[ -n "$ok" ] || exit 1

if ! { [ -x "$bindir/gatekeeper" ] && [ -f "$bindir/.gatekeeper.ok" ]; }; then
  t0=$(date +%s)
  echo "testbin-gatekeeper: building $mod@$GATEKEEPER_VERSION with $gover into $dest"
  (cd "$w" && GOFLAGS=-mod=mod go build -trimpath \
     -ldflags "-s -w -X $mod/pkg/version.Version=$GATEKEEPER_VERSION" -o "$bindir/gatekeeper" "$mod")
  echo "testbin-gatekeeper: built gatekeeper in $(( $(date +%s) - t0 ))s"
  # the manager has no --version flag: the module version the binary was built from
  info=$(go version -m "$bindir/gatekeeper")
  if ! grep -qE "^\s+mod\s+$mod\s+$GATEKEEPER_VERSION\s" <<<"$info"; then
    echo "testbin-gatekeeper: $bindir/gatekeeper is not built from $mod $GATEKEEPER_VERSION:" >&2
    head -n 5 <<<"$info" >&2
    exit 1
  fi
  echo "testbin-gatekeeper:   gatekeeper: $mod $GATEKEEPER_VERSION"
  echo "$mod $GATEKEEPER_VERSION" > "$bindir/.gatekeeper.ok"
fi

# the CRDs and RBAC of the same module version, from the module cache the build populated
moddir=$(cd "$w" && go list -m -f '{{.Dir}}' "$mod")
rm -rf "$dest/crds" "$dest/rbac"; mkdir -p "$dest/crds" "$dest/rbac"
cp "$moddir"/charts/gatekeeper/crds/*.yaml "$dest/crds/"
cp "$moddir/config/rbac/role.yaml" "$dest/rbac/role.yaml"
chmod -R u+w "$dest/crds" "$dest/rbac"
echo "$mod $GATEKEEPER_VERSION: crds/ from charts/gatekeeper/crds, rbac/ from config/rbac" > "$dest/.files.ok"

rm -rf "$w"
ln -sfn "$dest" "$here/.testbin-gatekeeper"
echo "testbin-gatekeeper: complete in $dest ($(du -sh "$dest" | cut -f1) on disk)"
