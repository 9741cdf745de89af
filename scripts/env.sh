# Shared settings for the project's scripts; sourced, not executed.
# Everything built or downloaded lives outside the repository, under ATO_CACHE.
ATO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ATO_CACHE="${ATO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-triage-operator}"

KUBE_VERSION="v1.36.3"
ETCD_VERSION="v3.6.8"
KWOK_VERSION="v0.8.0"
HELM_VERSION="v3.22.0"
RIPGREP_VERSION="14.1.1"

ATO_BIN="$ATO_CACHE/bin"
# The simulated cluster's state: kubeconfig, PKI, pids and component logs.
ATO_CLUSTER_DIR="${ATO_CLUSTER_DIR:-$ATO_CACHE/cluster}"
ATO_KUBECONFIG="$ATO_CLUSTER_DIR/kubeconfig"

export PATH="$ATO_BIN:$PATH"
# Cargo's build output also stays outside the repository so a fresh clone reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ATO_CACHE/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
