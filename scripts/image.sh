#!/usr/bin/env bash
# Container images without Docker or a registry. Each image is one layer: a root filesystem
# staged in a temporary folder and written as an OCI image layout (tar, sha256sum and a few
# lines of JSON) in one archive under $ATO_IMAGES; when the real node runs
# (scripts/cluster.sh up --real-node) it is imported into that node's containerd.
# See docs/cluster.md, "Images".
#
#   scripts/image.sh operator [--archive FILE]  the operator, from `cargo build --release --locked`,
#                                               in the Dockerfile's layout; also written to FILE
#   scripts/image.sh pause                      the real node's sandbox image, from images/pause.c
#   scripts/image.sh log-writer                 Debian's static busybox printing a log file, then idling
#   scripts/image.sh import FILE...             import archives into the real node's containerd
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64) ARCH=arm64 ;;
  *) die "no image architecture for $(uname -m)" ;;
esac

WORK=""
cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }
trap cleanup EXIT

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Same bytes for the same files: sorted entries, zero times, numeric root ownership.
reproducible_tar() { # output dir entries...
  local out=$1 dir=$2
  shift 2
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$dir" -cf "$out" "$@"
}

blob() { # file media-type -> moves it into the layout's blobs, prints its descriptor
  local digest size
  digest=$(sha256 "$1")
  size=$(stat -c %s "$1")
  mv -f "$1" "$WORK/layout/blobs/sha256/$digest"
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$digest" "$size"
}

# oci_archive ROOTFS NAME CONFIG OUT: ROOTFS as a one-layer image called NAME (a full reference,
# registry/repository:tag), with CONFIG (the image config's "config" object, JSON), in the OCI
# image layout archive OUT. The index carries the name the way `ctr images export` writes it,
# which is what `ctr images import` reads; registry tools take the tag annotation.
oci_archive() {
  local rootfs=$1 name=$2 config=$3 out=$4 diff_id layer cfg manifest
  mkdir -p "$WORK/layout/blobs/sha256"
  reproducible_tar "$WORK/layer.tar" "$rootfs" .
  diff_id=$(sha256 "$WORK/layer.tar")
  gzip -n -9 "$WORK/layer.tar"
  layer=$(blob "$WORK/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/image.sh"}]}' \
    "$ARCH" "$config" "$diff_id" >"$WORK/config.json"
  cfg=$(blob "$WORK/config.json" application/vnd.oci.image.config.v1+json)
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$cfg" "$layer" >"$WORK/manifest.json"
  manifest=$(blob "$WORK/manifest.json" application/vnd.oci.image.manifest.v1+json)
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "${manifest%\}},\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}" \
    >"$WORK/layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$WORK/layout/oci-layout"
  mkdir -p "$(dirname "$out")"
  reproducible_tar "$out.tmp" "$WORK/layout" oci-layout index.json blobs
  mv -f "$out.tmp" "$out"
  log "wrote $name to $out ($(du -h "$out" | cut -f1))"
}

new_rootfs() { # sets WORK; the image's files go in $WORK/rootfs
  cleanup
  WORK=$(mktemp -d)
  mkdir -p "$WORK/rootfs/tmp"
  chmod 1777 "$WORK/rootfs/tmp"
}

# The distroless "nonroot" user and group the Dockerfile's image runs as.
nonroot_user() { # rootfs
  mkdir -p "$1/etc"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$1/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$1/etc/group"
}

chart_app_version() {
  sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$ATO_ROOT/charts/alert-triage-operator/Chart.yaml"
}

build_operator() { # [--archive FILE]
  local archive="" version name bin rootfs lib
  while [ $# -gt 0 ]; do
    case $1 in
      --archive) [ $# -ge 2 ] || die "--archive needs a file"; archive=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  version=$(chart_app_version)
  [ -n "$version" ] || die "no appVersion in charts/alert-triage-operator/Chart.yaml"
  # The chart's default image: repository alert-triage-operator, tag appVersion.
  name="docker.io/library/alert-triage-operator:$version"
  log "cargo build --release --locked --bin alert-triage-operator"
  (cd "$ATO_ROOT" && cargo build --release --locked --bin alert-triage-operator)
  bin="$CARGO_TARGET_DIR/release/alert-triage-operator"
  new_rootfs
  rootfs=$WORK/rootfs
  install -m 0755 "$bin" "$rootfs/alert-triage-operator"
  # The binary links glibc dynamically: its libraries and loader go in at the same paths.
  while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(ldd "$bin" | sed -n 's#.*=> \(/[^ ]*\) .*#\1#p; s#^[[:space:]]*\(/[^ ]*\) (0x.*#\1#p')
  [ -n "$(find "$rootfs" -name 'ld-linux*' -o -name 'ld-musl*')" ] || die "found no dynamic loader for $bin in ldd's output"
  nonroot_user "$rootfs"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$rootfs/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  fi
  oci_archive "$rootfs" "$name" \
    '{"User":"65532:65532","Entrypoint":["/alert-triage-operator"],"Cmd":["run"],"ExposedPorts":{"8080/tcp":{}},"Env":["PATH=/usr/local/bin:/usr/bin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"WorkingDir":"/"}' \
    "$ATO_IMAGES/alert-triage-operator.oci.tar"
  [ -z "$archive" ] || cp "$ATO_IMAGES/alert-triage-operator.oci.tar" "$archive"
  import_if_node "$ATO_IMAGES/alert-triage-operator.oci.tar"
}

build_pause() {
  local rootfs
  command -v gcc >/dev/null || die "gcc is needed to build the pause image (apt-get install gcc libc6-dev)"
  new_rootfs
  rootfs=$WORK/rootfs
  gcc -static -Os -s -Wall -Wextra -Werror -o "$rootfs/pause" "$ATO_ROOT/images/pause.c" ||
    die "could not build images/pause.c statically (needs libc6-dev's libc.a)"
  oci_archive "$rootfs" "$PAUSE_IMAGE" '{"User":"65535:65535","Entrypoint":["/pause"],"WorkingDir":"/"}' \
    "$ATO_IMAGES/pause.oci.tar"
  import_if_node "$ATO_IMAGES/pause.oci.tar"
}

build_log_writer() {
  local rootfs busybox=/bin/busybox applet
  [ -x "$busybox" ] || die "$busybox is missing: apt-get install busybox-static"
  ! ldd "$busybox" >/dev/null 2>&1 || die "$busybox is dynamically linked: install busybox-static, not busybox"
  new_rootfs
  rootfs=$WORK/rootfs
  mkdir -p "$rootfs/bin"
  cp "$busybox" "$rootfs/bin/busybox"
  for applet in $("$busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
  done
  cp "$ATO_ROOT/images/log-writer.sh" "$rootfs/log-writer.sh"
  nonroot_user "$rootfs"
  oci_archive "$rootfs" "$LOG_WRITER_IMAGE" \
    '{"User":"65532:65532","Entrypoint":["/bin/sh","/log-writer.sh"],"Cmd":["/dev/null"],"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"}' \
    "$ATO_IMAGES/log-writer.oci.tar"
  import_if_node "$ATO_IMAGES/log-writer.oci.tar"
}

# The chart's `helm test` hook runs kubectl: the kubectl built here (static), under the name
# the chart's default helmTest.image gives it.
build_kubectl() {
  local rootfs
  [ -x "$ATO_BIN/kubectl" ] || die "$ATO_BIN/kubectl is missing: run scripts/tools.sh kube"
  ! ldd "$ATO_BIN/kubectl" >/dev/null 2>&1 || die "$ATO_BIN/kubectl is dynamically linked; the image needs a static one"
  new_rootfs
  rootfs=$WORK/rootfs
  mkdir -p "$rootfs/bin"
  cp "$ATO_BIN/kubectl" "$rootfs/bin/kubectl"
  nonroot_user "$rootfs"
  oci_archive "$rootfs" "$KUBECTL_IMAGE" \
    '{"User":"65532:65532","Entrypoint":["/bin/kubectl"],"Env":["PATH=/bin","HOME=/tmp"],"WorkingDir":"/"}' \
    "$ATO_IMAGES/kubectl.oci.tar"
  import_if_node "$ATO_IMAGES/kubectl.oci.tar"
}

ctr_node() { "$ATO_BIN/ctr" --address "$ATO_CONTAINERD_SOCKET" --namespace k8s.io "$@"; }

node_running() { [ -S "$ATO_CONTAINERD_SOCKET" ] && ctr_node version >/dev/null 2>&1; }

import_archives() { # file...
  node_running || die "no real node's containerd answers at $ATO_CONTAINERD_SOCKET: scripts/cluster.sh up --real-node"
  local f out
  for f in "$@"; do
    [ -f "$f" ] || die "$f: no such archive"
    # ctr warns about cgroup v1 on every run: its output is shown only if the import fails.
    if ! out=$(ctr_node images import --local "$f" 2>&1); then
      printf '%s\n' "$out" >&2
      die "containerd could not import $f"
    fi
    log "imported $f into the real node's containerd"
  done
}

import_if_node() {
  if node_running; then import_archives "$1"; fi
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
  operator) build_operator "$@" ;;
  pause) build_pause ;;
  log-writer) build_log_writer ;;
  kubectl) build_kubectl ;;
  import) [ $# -ge 1 ] || die "usage: $0 import FILE..."; import_archives "$@" ;;
  *) die "usage: $0 operator [--archive FILE] | pause | log-writer | kubectl | import FILE..." ;;
esac
