# Shared settings for the project's scripts; sourced, not executed.
# Everything built or downloaded lives outside the repository, under ATO_CACHE.
ATO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ATO_CACHE="${ATO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-triage-operator}"

KUBE_VERSION="v1.36.3"
ETCD_VERSION="v3.6.8"
KWOK_VERSION="v0.8.0"
HELM_VERSION="v3.22.0"
# promtool checks and unit-tests the chart's alerting rules (v0.315.0 is Prometheus 3.x's module).
PROMTOOL_VERSION="v0.315.0"
# Real Alertmanager processes post to the intake in tests/intake.rs (amtool from the same module).
ALERTMANAGER_VERSION="v0.34.2"
# The real node (scripts/cluster.sh up --real-node): kubelet $KUBE_VERSION, containerd, CNI plugins.
CONTAINERD_VERSION="v2.4.2"
CNI_PLUGINS_VERSION="v1.9.1"

# The clock-skew tests preload Debian's libfaketime into the operator.
export ATO_FAKETIME_LIB="${ATO_FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1}"
# ripgrep is an anchor of scripts/bench.sh (built with cargo).
RIPGREP_VERSION="14.1.1"

ATO_BIN="$ATO_CACHE/bin"
# The simulated cluster's state: kubeconfig, PKI, pids and component logs.
ATO_CLUSTER_DIR="${ATO_CLUSTER_DIR:-$ATO_CACHE/cluster}"
ATO_KUBECONFIG="$ATO_CLUSTER_DIR/kubeconfig"
# The real node's state (kubelet, containerd) and the socket images are imported through.
ATO_NODE_DIR="$ATO_CLUSTER_DIR/node"
ATO_CONTAINERD_SOCKET="$ATO_NODE_DIR/run/containerd.sock"
# Image archives written by scripts/image.sh, and the names they are imported under.
ATO_IMAGES="$ATO_CACHE/images"
PAUSE_IMAGE="registry.k8s.io/pause:3.10.2"
LOG_WRITER_IMAGE="localhost/ato-log-writer:1"
KUBECTL_IMAGE="registry.k8s.io/kubectl:$KUBE_VERSION"

export PATH="$ATO_BIN:$PATH"
# Cargo's build output also stays outside the repository so a fresh clone reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ATO_CACHE/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
