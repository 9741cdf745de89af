#!/usr/bin/env bash
# Builds the local test infrastructure from published Go modules into $ATO_CACHE/bin:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm and promtool;
# and lua5.1 from apt-get when missing.
# Idempotent: a tool whose stamp matches its pinned version is not rebuilt.
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

build_kube() {
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl) todo=() c
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

# Argo CD runs health checks in Lua 5.1; the tests run ours with Debian's interpreter.
build_lua() {
  command -v lua5.1 >/dev/null && return
  command -v apt-get >/dev/null || die "lua5.1 is needed (Argo CD health check tests) and there is no apt-get to install it"
  log "installing lua5.1 with apt-get"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq lua5.1 >/dev/null
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube kwok helm promtool lua)
for t in "${want[@]}"; do "build_$t"; done
log "tools ready in $ATO_BIN"
