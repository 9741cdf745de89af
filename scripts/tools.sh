#!/usr/bin/env bash
# Builds the local test infrastructure from published Go modules into $ATO_CACHE/bin:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm, promtool,
# alertmanager and amtool; ripgrep with cargo (an anchor of scripts/bench.sh); lua5.1 and
# libfaketime from apt-get when missing; and for the real node (`node`): kubelet, containerd, ctr,
# the runc shim, the CNI plugins, runc and socat from the package manager, and the pause and
# log-writer images and a kubectl image for the chart's `helm test` hook (scripts/image.sh).
# Idempotent: a tool whose stamp matches its pinned version is not rebuilt.
#   scripts/tools.sh [etcd|kube|kwok|helm|promtool|alertmanager|ripgrep|lua|faketime|node ...]   (default: all)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

command -v go >/dev/null || die "go is required to build the test cluster (https://go.dev/dl); none found on PATH"
mkdir -p "$ATO_BIN" "$ATO_CACHE/src"
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

built() { [ "$(cat "$ATO_BIN/.stamp-$1" 2>/dev/null)" = "$2" ] && [ -x "$ATO_BIN/$1" ]; }
stamp() { echo "$2" > "$ATO_BIN/.stamp-$1"; }

# A wrapper module per tool: `go install pkg@version` refuses modules whose go.mod has
# replace directives (etcd, kubernetes, kwok), so we require them from a module of our own.
wrapper() { # name module version [replace lines...]
  local dir="$ATO_CACHE/src/$1-$3" name=$1 module=$2 version=$3
  shift 3
  mkdir -p "$dir"
  {
    echo "module ato-tools/$name"
    echo
    echo "go 1.25"
    echo
    echo "require $module $version"
    if [ $# -gt 0 ]; then
      echo
      echo "replace ("
      printf '\t%s\n' "$@"
      echo ")"
    fi
  } > "$dir/go.mod"
  echo "$dir"
}

build_etcd() {
  built etcd "$ETCD_VERSION" && return
  log "building etcd $ETCD_VERSION"
  local dir; dir=$(wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION")
  (cd "$dir" && go build -o "$ATO_BIN/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
}

build_kube() { # [command...]: default, the control plane and kubectl
  local cmds=("$@") todo=() c
  [ ${#cmds[@]} -gt 0 ] || cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  for c in "${cmds[@]}"; do built "$c" "$KUBE_VERSION" || todo+=("$c"); done
  [ ${#todo[@]} -eq 0 ] && return
  log "building ${todo[*]} $KUBE_VERSION (the first build takes a while)"
  # Every staging module is pinned to the release's matching v0.x.y, generated from the
  # release's own go.mod so the list never goes stale.
  local gomod staging_version replaces=() m
  gomod=$(cd "$ATO_CACHE/src" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
  staging_version="v0.${KUBE_VERSION#v1.}"
  while read -r m; do replaces+=("$m => $m $staging_version"); done < <(
    sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/.*#\1#p' "$gomod")
  [ ${#replaces[@]} -gt 20 ] || die "found only ${#replaces[@]} staging modules in $gomod"
  local dir; dir=$(wrapper kube k8s.io/kubernetes "$KUBE_VERSION" "${replaces[@]}")
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${todo[@]}"; do
    log "  go build $c"
    (cd "$dir" && go build -ldflags "-s -w $ldflags" -o "$ATO_BIN/$c" "k8s.io/kubernetes/cmd/$c")
    stamp "$c" "$KUBE_VERSION"
  done
}

build_kwok() {
  built kwok "$KWOK_VERSION" && return
  log "building kwok $KWOK_VERSION"
  local dir; dir=$(wrapper kwok sigs.k8s.io/kwok "$KWOK_VERSION")
  (cd "$dir" && go build -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" -o "$ATO_BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
  stamp kwok "$KWOK_VERSION"
}

build_helm() {
  built helm "$HELM_VERSION" && return
  log "building helm $HELM_VERSION"
  local dir; dir=$(wrapper helm helm.sh/helm/v3 "$HELM_VERSION")
  (cd "$dir" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" -o "$ATO_BIN/helm" helm.sh/helm/v3/cmd/helm)
  stamp helm "$HELM_VERSION"
}

build_promtool() {
  built promtool "$PROMTOOL_VERSION" && return
  log "building promtool $PROMTOOL_VERSION (the first build takes about 5 minutes)"
  local gomod
  gomod=$(cd "$ATO_CACHE/src" && go mod download -json "github.com/prometheus/prometheus@$PROMTOOL_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download github.com/prometheus/prometheus@$PROMTOOL_VERSION"
  # Prometheus's go.mod has replace and exclude directives that only apply to its own module:
  # the wrapper repeats them, read from that go.mod so they never go stale.
  local replaces=() line
  while read -r line; do replaces+=("$line"); done < <(sed -n 's/^replace \(.*=>.*\)/\1/p' "$gomod")
  local dir; dir=$(wrapper promtool github.com/prometheus/prometheus "$PROMTOOL_VERSION" "${replaces[@]}")
  awk '/^exclude \(/ { block = 1; next } block && /^\)/ { block = 0; next }
       block && NF && $1 !~ /^\/\// { print "exclude " $1 " " $2 } /^exclude [^(]/ { print }' "$gomod" >> "$dir/go.mod"
  (cd "$dir" && go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMTOOL_VERSION#v}" \
    -o "$ATO_BIN/promtool" github.com/prometheus/prometheus/cmd/promtool)
  stamp promtool "$PROMTOOL_VERSION"
}

# The intake tests post alerts through real Alertmanager processes. The module leaves out the web
# UI's built files that a go:embed pattern needs, so `go install` fails: we build from a writable
# copy of the module source with a placeholder page (the API does not use the UI).
build_alertmanager() {
  built alertmanager "$ALERTMANAGER_VERSION" && built amtool "$ALERTMANAGER_VERSION" && return
  log "building alertmanager and amtool $ALERTMANAGER_VERSION"
  local moddir dir="$ATO_CACHE/src/alertmanager-$ALERTMANAGER_VERSION"
  moddir=$(cd "$ATO_CACHE/src" && go mod download -json "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$moddir" ] || die "could not download github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION"
  rm -rf "$dir" && cp -r "$moddir" "$dir" && chmod -R u+w "$dir"
  mkdir -p "$dir/ui/app/dist"
  echo '<!doctype html><title>Alertmanager</title>' > "$dir/ui/app/dist/index.html"
  local c
  for c in alertmanager amtool; do
    (cd "$dir" && go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=${ALERTMANAGER_VERSION#v}" \
      -o "$ATO_BIN/$c" "./cmd/$c")
    stamp "$c" "$ALERTMANAGER_VERSION"
  done
}

# Argo CD runs health checks in Lua 5.1; the tests run ours with Debian's interpreter.
build_lua() {
  command -v lua5.1 >/dev/null || apt_install lua5.1
}

# libfaketime runs the operator with a skewed clock in the clock-skew tests.
build_faketime() {
  [ -f "$ATO_FAKETIME_LIB" ] || apt_install libfaketime
}

# Debian packages the tests use as they come (lua5.1, and for the real node runc, socat, ...);
# installed only when missing.
apt_install() { # package...
  [ $# -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
    die "the tests need these packages: $* (install them as root)"
  log "apt-get install $*"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
    die "apt-get could not install $*"
}

build_containerd() {
  local cmds=(containerd ctr containerd-shim-runc-v2) todo=() c
  for c in "${cmds[@]}"; do built "$c" "$CONTAINERD_VERSION" || todo+=("$c"); done
  [ ${#todo[@]} -eq 0 ] && return
  log "building ${todo[*]} $CONTAINERD_VERSION"
  local dir; dir=$(wrapper containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION")
  for c in "${todo[@]}"; do
    log "  go build $c"
    # The tags leave out snapshotters that need C libraries; overlayfs is all the node uses.
    (cd "$dir" && go build -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      -o "$ATO_BIN/$c" "github.com/containerd/containerd/v2/cmd/$c")
    stamp "$c" "$CONTAINERD_VERSION"
  done
}

build_cni() {
  local plugins=(main/bridge main/loopback ipam/host-local) todo=() p
  for p in "${plugins[@]}"; do
    [ "$(cat "$ATO_BIN/cni/.stamp-${p#*/}" 2>/dev/null)" = "$CNI_PLUGINS_VERSION" ] && [ -x "$ATO_BIN/cni/${p#*/}" ] || todo+=("$p")
  done
  [ ${#todo[@]} -eq 0 ] && return
  log "building the CNI plugins ${todo[*]#*/} $CNI_PLUGINS_VERSION"
  mkdir -p "$ATO_BIN/cni"
  local dir; dir=$(wrapper cni-plugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION")
  for p in "${todo[@]}"; do
    (cd "$dir" && go build -ldflags "-s -w" -o "$ATO_BIN/cni/${p#*/}" "github.com/containernetworking/plugins/plugins/$p")
    echo "$CNI_PLUGINS_VERSION" >"$ATO_BIN/cni/.stamp-${p#*/}"
  done
}

build_node() {
  local missing=() c
  for c in runc socat gcc; do command -v "$c" >/dev/null || missing+=("$c"); done
  # The pause image is a static C program; the log-writer image is a static busybox.
  [ -n "$(gcc -print-file-name=libc.a 2>/dev/null | grep /)" ] || missing+=(libc6-dev)
  { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
  apt_install "${missing[@]}"
  build_kube kubelet
  build_containerd
  build_cni
  # Images are rebuilt only when their inputs change.
  local image input sum
  for image in pause:images/pause.c log-writer:images/log-writer.sh "kubectl:$ATO_BIN/.stamp-kubectl"; do
    input=${image#*:} image=${image%%:*}
    [ "${input#/}" != "$input" ] || input="$ATO_ROOT/$input"
    sum=$(cat "$ATO_ROOT/scripts/image.sh" "$input" | sha256sum | cut -c1-16)
    [ "$(cat "$ATO_IMAGES/.stamp-$image" 2>/dev/null)" = "$sum" ] && [ -f "$ATO_IMAGES/$image.oci.tar" ] && continue
    "$ATO_ROOT/scripts/image.sh" "$image"
    echo "$sum" >"$ATO_IMAGES/.stamp-$image"
  done
}

build_ripgrep() {
  built rg "$RIPGREP_VERSION" && return
  log "building ripgrep $RIPGREP_VERSION"
  CARGO_TARGET_DIR="$ATO_CACHE/src/ripgrep-target" cargo install --locked --quiet \
    --root "$ATO_CACHE/src/ripgrep" "ripgrep@$RIPGREP_VERSION"
  cp "$ATO_CACHE/src/ripgrep/bin/rg" "$ATO_BIN/rg"
  stamp rg "$RIPGREP_VERSION"
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube kwok helm promtool alertmanager ripgrep lua faketime node)
for t in "${want[@]}"; do "build_$t"; done
log "tools ready in $ATO_BIN"
