#!/usr/bin/env bash
# The project's one test command: format, lints, unit tests and the integration tests against
# the local simulated cluster (started here if none is running, stopped again afterwards), with
# its real node (containerd and a kubelet, as root) and the operator's image for tests/real_node.rs.
# Fails loudly when anything it needs is missing: no test is skipped for want of a cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ATO_ROOT"

for tool in go cargo openssl; do
  command -v "$tool" >/dev/null || die "$tool is required but not installed"
done
for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done

"$ATO_ROOT/scripts/tools.sh"

log "cargo fmt --check"
cargo fmt --all -- --check
# Tests build the operator with its crash points (src/crash.rs); the release binary has none,
# and a test checks that against the release build made here.
FEATURES=(--features crash-points)
log "cargo clippy"
cargo clippy --all-targets --locked "${FEATURES[@]}" -- -D warnings
log "cargo build --release"
cargo build --release --locked --bin alert-triage-operator
export ATO_RELEASE_BIN="$CARGO_TARGET_DIR/release/alert-triage-operator"

if [ -n "${ATO_TEST_KUBECONFIG:-}" ]; then
  log "using the cluster in $ATO_TEST_KUBECONFIG"
else
  started_here=""
  if ! "$ATO_ROOT/scripts/cluster.sh" status >/dev/null 2>&1; then
    started_here=yes
  fi
  "$ATO_ROOT/scripts/cluster.sh" up --real-node || die "the local cluster did not start; see $ATO_CLUSTER_DIR/logs"
  if [ -n "$started_here" ]; then
    trap '"$ATO_ROOT/scripts/cluster.sh" down' EXIT
  fi
  export ATO_TEST_KUBECONFIG="$ATO_KUBECONFIG"
fi

# The operator's image for tests/real_node.rs, into the real node's containerd. A cluster given
# by ATO_TEST_KUBECONFIG without a real node here gets none, and that test fails saying so.
if [ -S "$ATO_CONTAINERD_SOCKET" ]; then
  "$ATO_ROOT/scripts/image.sh" operator
else
  log "no real node's containerd at $ATO_CONTAINERD_SOCKET: not building the operator's image"
fi

log "cargo test"
results=$(mktemp)
set +e
cargo test --all-targets --locked --no-fail-fast "${FEATURES[@]}" 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
rm -f "$results"
exit "$status"
