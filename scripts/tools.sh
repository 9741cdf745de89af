#!/usr/bin/env bash
# Builds the local test infrastructure from published Go modules into $ATO_CACHE/bin:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm; and
# ripgrep (with cargo), an anchor of scripts/bench.sh.
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

build_ripgrep() {
  built rg "$RIPGREP_VERSION" && return
  log "building ripgrep $RIPGREP_VERSION"
  CARGO_TARGET_DIR="$ATO_CACHE/src/ripgrep-target" cargo install --locked --quiet \
    --root "$ATO_CACHE/src/ripgrep" "ripgrep@$RIPGREP_VERSION"
  cp "$ATO_CACHE/src/ripgrep/bin/rg" "$ATO_BIN/rg"
  stamp rg "$RIPGREP_VERSION"
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube kwok helm ripgrep)
for t in "${want[@]}"; do "build_$t"; done
log "tools ready in $ATO_BIN"
