#!/usr/bin/env bash
# `make images`: the node test bed's container images, built without Docker and without a registry.
#
# Each image is a root filesystem made from Debian packages (`apt-get download` + `dpkg-deb -x`)
# or from the test binaries, turned into an OCI image by umoci, and written as an OCI archive to
# .testbin/images/NAME.tar. The node (`aidp dev up --node`) imports them into its containerd with
# `ctr -n k8s.io images import --base-name aidp.local/NAME`, so pods use them with
# imagePullPolicy Never/IfNotPresent. Cached: an image is rebuilt only when its inputs change
# (this script, its sources, the Debian package versions, the binaries it copies).
#
#   aidp.local/probe:dev  sh, sleep, nslookup, wget (busybox-static), OpenBSD nc (-z -w)
#   aidp.local/pause:dev  the pod sandbox (hack/images/pause, a static Go program)
#   aidp.local/opa:dev    the static opa binary of `make testbin`, user 65532
#   aidp.local/aidp:dev   what the Dockerfile describes: Python 3.11 (Debian's, by mmdebstrap), aidp's
#                         wheel in /opt/aidp with the pinned dependencies, user 65532, entrypoint aidp
#
# Usage: hack/images/build.sh [NAME...]   (default: all)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
out="$here/.testbin/images"
[ -d "$here/.testbin/bin" ] || { echo "images: run \`make testbin\` first" >&2; exit 1; }
for tool in umoci dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "images: $tool is missing: run \`make node-deps\` (as root)" >&2; exit 1; }
done
mkdir -p "$out"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false SOURCE_DATE_EPOCH=0

probe_debs=(busybox-static netcat-openbsd libc6 libbsd0 libmd0)
aidp_debs=(python3 python3-venv ca-certificates)

deb_versions() { apt-cache policy "$@" | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p, $2}'; }

input_key() {  # name -> a hash of everything the image is made of
  local name=$1
  (
    # contents only (relative paths): every checkout of the same sources shares the images
    cd "$here"
    sha256sum hack/images/build.sh
    case $name in
      probe) deb_versions "${probe_debs[@]}" ;;
      pause) sha256sum hack/images/pause/*; go env GOVERSION ;;
      opa) sha256sum < .testbin/bin/opa ;;
      aidp)
        deb_versions "${aidp_debs[@]}"
        find pyproject.toml constraints.txt README.md operator policies crds -type f \
          ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum ;;
    esac
  ) | sha256sum | cut -c1-16
}

# an OCI archive from a root filesystem directory: NAME ROOTFS key=value config...
oci_archive() {
  local name=$1 rootfs=$2; shift 2
  local layout="$work/$name-oci"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:dev"
  umoci insert --rootless --image "$layout:dev" "$rootfs" /
  umoci config --image "$layout:dev" --os linux --architecture amd64 --created 1970-01-01T00:00:00Z "$@"
  umoci gc --layout "$layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$out/$name.tar.new" .
  mv "$out/$name.tar.new" "$out/$name.tar"
}

base_files() {  # the few files every image has
  local root=$1
  mkdir -p "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
}

build_probe() {
  local root="$work/probe-root" debs="$work/debs"
  mkdir -p "$root" "$debs"
  # (package lists may be missing on a fresh machine: one `apt-get update`, then again)
  (cd "$debs" && { apt-get download -q "${probe_debs[@]}" >/dev/null 2>&1 \
     || { apt-get update -q >/dev/null && apt-get download -q "${probe_debs[@]}" >/dev/null; }; })
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/usr/share/lintian"
  base_files "$root"
  mkdir -p "$root/usr/bin" "$root/sbin" "$root/usr/sbin"
  # busybox applets as symlinks (what `busybox --install -s` makes), then OpenBSD's nc over busybox's
  for applet in $("$root/bin/busybox" --list-full); do
    case $applet in */nc) continue ;; esac  # OpenBSD's nc instead (-z -w)
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
  ln -sfn nc.openbsd "$root/bin/nc"
  oci_archive probe "$root" --config.cmd sleep --config.cmd infinity --config.workingdir /
}

build_pause() {
  local root="$work/pause-root"
  mkdir -p "$root"
  (cd "$here/hack/images/pause" && go build -trimpath -ldflags '-s -w' -o "$root/pause" .)
  base_files "$root"
  oci_archive pause "$root" --config.entrypoint /pause --config.user 65535:65535
}

build_opa() {
  local root="$work/opa-root"
  mkdir -p "$root"
  install -m 0755 "$here/.testbin/bin/opa" "$root/opa"
  base_files "$root"
  oci_archive opa "$root" --config.entrypoint /opa --config.cmd run --config.user 65532:65532
}

build_aidp() {
  local root="$work/aidp-root" sources
  command -v mmdebstrap >/dev/null || { echo "images: mmdebstrap is missing: run \`make node-deps\`" >&2; exit 1; }
  # aidp's wheel and its dependencies' (pinned by constraints.txt), fetched by this machine's pip as
  # configured; inside the image pip installs from them only (--no-index)
  python3 -m pip wheel --quiet -c "$here/constraints.txt" --wheel-dir "$work/wheel" "$here" >/dev/null
  # Debian's packages from the machine's own apt sources
  sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$sources" ] || sources=/etc/apt/sources.list
  mmdebstrap --quiet --variant=essential --include="$(IFS=,; echo "${aidp_debs[*]}")" \
    --customize-hook="copy-in $work/wheel /tmp" \
    --customize-hook='chroot "$1" python3 -m venv /opt/aidp' \
    --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin PIP_DISABLE_PIP_VERSION_CHECK=1 sh -c "/opt/aidp/bin/pip install --quiet --no-cache-dir --no-index --find-links /tmp/wheel /tmp/wheel/aidp-*.whl"' \
    --customize-hook='chroot "$1" /opt/aidp/bin/aidp version' \
    --customize-hook='rm -rf "$1/tmp/wheel" "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/usr/share/doc" "$1/usr/share/man" "$1/usr/share/locale"' \
    bookworm "$root" "$sources"
  base_files "$root"
  oci_archive aidp "$root" --config.entrypoint /opt/aidp/bin/aidp --config.cmd --help \
    --config.user 65532:65532 --config.workingdir / \
    --config.env PATH=/opt/aidp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(probe pause opa aidp)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in "${names[@]}"; do
  key=$(input_key "$name")
  if [ -f "$out/$name.tar" ] && [ "$(cat "$out/.$name.key" 2>/dev/null)" = "$key" ]; then
    echo "images: $name up to date ($out/$name.tar)"
    continue
  fi
  t0=$(date +%s)
  "build_$name"
  echo "$key" > "$out/.$name.key"
  echo "images: built aidp.local/$name:dev in $(( $(date +%s) - t0 ))s ($(du -h "$out/$name.tar" | cut -f1))"
done
