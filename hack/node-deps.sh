#!/usr/bin/env bash
# `make node-deps`: the Debian packages the node test bed needs (as root, like `make chromium`):
# containerd and runc (the container runtime), containernetworking-plugins (bridge, host-local,
# loopback, portmap), iptables, ipset and conntrack (kube-proxy, kube-router), iproute2 (network
# namespaces, veth, bridge) and umoci (`make images`). Idempotent: installed packages are left alone.
set -euo pipefail

pkgs=(containerd runc containernetworking-plugins iptables ipset conntrack iproute2 umoci mmdebstrap)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "node-deps: ${missing[*]} missing; installing Debian packages needs root" >&2
    exit 1
  fi
  echo "node-deps: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

check() {  # name expected-substring command...
  local name=$1 want=$2; shift 2
  local out
  out=$("$@" 2>&1 | head -n 1)
  grep -qF -- "$want" <<<"$out" || { echo "node-deps: $name: unexpected version: $out" >&2; exit 1; }
  echo "node-deps:   $name: $out"
}
check containerd "containerd" containerd --version
check runc "runc version" runc --version
check iptables "iptables v" iptables --version
check ipset "ipset v" ipset --version
check umoci "umoci version" umoci --version
for plugin in bridge host-local loopback portmap; do
  [ -x "/usr/lib/cni/$plugin" ] || { echo "node-deps: CNI plugin $plugin missing in /usr/lib/cni" >&2; exit 1; }
done
echo "node-deps:   CNI plugins: $(/usr/lib/cni/bridge --version 2>&1 | head -n 1)"
