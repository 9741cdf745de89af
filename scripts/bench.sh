#!/usr/bin/env bash
# Benchmarks, each figure printed next to its anchor measured in the same run, with the ratio.
# A benchmark, not a test: scripts/test.sh does not run it; tests/bench_script.rs runs --quick
# so that it cannot rot. The README shows one run's figures.
#
#   scripts/bench.sh           logs of 256 MiB and 1 GiB; 10 pods x 8.8 MB; 1,000 triages with
#                              5,000 pods on 50 nodes, on a cluster of its own (started and
#                              stopped here, ports 46xxx, beside the shared one)
#   scripts/bench.sh --quick   the same steps at small sizes, once each
#   scripts/bench.sh --scanner the scanner figures only (no cluster); combines with --quick
#
# Figures: scanner (replay) vs `LC_ALL=C grep -c` and `rg -c` of the signature literal on the
# same file in the page cache; apply -> Ready of one triage vs reading the same logs through the
# API in parallel (the floor) and vs a scripted `kubectl logs | grep -c` loop; operator RSS
# (VmRSS, VmHWM from /proc) idle, with many triages and pods, after a backlog; idle CPU.
# Each timing is repeated, each figure and its anchors in alternating rounds; "min/median" are
# printed.
#
# Environment:
#   ATO_BENCH_BIN          the operator binary to measure (default: `cargo build --release`)
#   ATO_BENCH_COMPARE_BIN  a second build (e.g. of main) whose scanner is timed in the same run
#   ATO_BENCH_KUBECONFIG   with --quick: run on this cluster (a namespace of its own) instead of
#                          starting one; the full run always starts its own
#   ATO_BENCH_REPEATS      repeats per timing (default 5, --quick 1)
#   ATO_BENCH_DIR          scratch folder for the generated logs (default $ATO_CACHE/bench)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ATO_ROOT"

QUICK=0 SCANNER_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --scanner) SCANNER_ONLY=1 ;;
    *) sed -n '2,25s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  LOG_SIZES=(4194304) REPEATS=${ATO_BENCH_REPEATS:-1}
  TRIAGE_PODS=2 TRIAGE_POD_BYTES=262144
  SCALE_TRIAGES=10 SCALE_PODS=20 NODES=2 IDLE_SECONDS=3
else
  LOG_SIZES=(268435456 1073741824) REPEATS=${ATO_BENCH_REPEATS:-5}
  TRIAGE_PODS=10 TRIAGE_POD_BYTES=8800000
  SCALE_TRIAGES=1000 SCALE_PODS=5000 NODES=50 IDLE_SECONDS=60
fi
WORK="${ATO_BENCH_DIR:-$ATO_CACHE/bench}"
mkdir -p "$WORK"

for tool in perl grep awk curl; do
  command -v "$tool" >/dev/null || die "$tool is required but not installed"
done
# The cluster's tools, kubectl and ripgrep (an anchor), under $ATO_BIN; idempotent.
scripts/tools.sh >/dev/null

BIN="${ATO_BENCH_BIN:-}"
if [ -z "$BIN" ]; then
  log "cargo build --release"
  cargo build --release --locked --quiet
  BIN="$CARGO_TARGET_DIR/release/alert-triage-operator"
fi
[ -x "$BIN" ] || die "no operator binary at $BIN"
COMPARE="${ATO_BENCH_COMPARE_BIN:-}"
[ -z "$COMPARE" ] || [ -x "$COMPARE" ] || die "ATO_BENCH_COMPARE_BIN=$COMPARE is not executable"

# ---------------------------------------------------------------------------------------------
# Timing and printing

# Runs the commands named (functions) in turn, REPEATS rounds of one run each, so that a busy
# spell of the machine falls on all of them alike rather than on whichever ran then; prints
# "min median" in seconds per command, one line each, in the order given. Output goes to a
# file, not /dev/null: GNU grep stops at the first match when its output is /dev/null.
timed_rounds() {
  local -A times=()
  local r f start end
  for ((r = 0; r < REPEATS; r++)); do
    for f in "$@"; do
      start=$(date +%s%N)
      "$f" >"$WORK/.timed-output"
      end=$(date +%s%N)
      times[$f]+="$((end - start)) "
    done
  done
  for f in "$@"; do
    # shellcheck disable=SC2086 # one word per run
    printf '%s\n' ${times[$f]} | sort -n |
      awk '{ t[NR] = $1 } END { printf "%.3f %.3f\n", t[1] / 1e9, t[int((NR + 1) / 2)] / 1e9 }'
  done
}

# row FIGURE VALUE ANCHOR ANCHOR_VALUE RATIO
row() { printf '%-44s %-24s %-40s %-24s %s\n' "$@"; }
# MB/s of BYTES in "min median" seconds, as "best/median"
rate() { awk -v b="$1" -v t="$2" 'BEGIN { split(t, s, " "); printf "%.0f/%.0f MB/s", b / s[1] / 1e6, b / s[2] / 1e6 }'; }
# ratio of two "min median" timings, anchor first: how many times faster the measured one is
speedup() { awk -v a="$1" -v m="$2" 'BEGIN { split(a, x, " "); split(m, y, " "); printf "%.2fx", x[2] / y[2] }'; }
# ratio of two "min median" timings as measured/anchor (lower is better)
slowdown() { awk -v a="$1" -v m="$2" 'BEGIN { split(a, x, " "); split(m, y, " "); printf "%.2fx the anchor", y[2] / x[2] }'; }
secs() { awk -v t="$1" 'BEGIN { split(t, s, " "); printf "%.2f/%.2f s", s[1], s[2] }'; }

# ---------------------------------------------------------------------------------------------
# Realistic logs: benign lines of mixed formats (JSON, klog, access logs, plain text), about one
# failure record in 5,000 lines and a few success markers. With KUBELET=1 every line starts with
# an RFC 3339 timestamp, as the operator reads them with timestamps=true.

# gen_log FILE BYTES metering|orchestrator KUBELET(0|1)
gen_log() {
  perl - "$@" <<'PERL'
use strict; use warnings;
my ($file, $bytes, $kind, $kubelet) = @ARGV;
open(my $o, ">:raw", $file) or die "cannot write $file: $!\n";
srand(16);
my ($s, $ns, $written, $prefix_s, $prefix) = (1795233600, 0, 0, -1, "");
my @out;
while ($written < $bytes) {
  $ns += 1 + int(rand(2_000_000));
  if ($ns >= 1_000_000_000) { $s += int($ns / 1_000_000_000); $ns %= 1_000_000_000; }
  my $stamp = "";
  if ($kubelet) {
    if ($s != $prefix_s) {
      my @g = gmtime($s);
      $prefix = sprintf("%04d-%02d-%02dT%02d:%02d:%02d", $g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0]);
      $prefix_s = $s;
    }
    $stamp = sprintf("%s.%09dZ ", $prefix, $ns);
  }
  my $id = int(rand(1_000_000));
  my $pick = int(rand(5000));
  my $line;
  if ($pick == 0 && $kind eq "metering") {
    my $status = (429, 401, 500)[int(rand(3))];
    $line = "ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure\n"
      . $stamp . "Wrapped Errors: [\"The IAM token exchange request failed. ($status)\"]";
  } elsif ($pick == 0) {
    $line = sprintf('{"level":"error","ts":%d.%06d,"callbackName":"DeleteClientID","reasonCode":"ErrorUnclassified","controllerID":"c0ffee%d","msg":"403 BXNIM0515E: You are not authorized to manage this Client ID."}', $s, $id, $id);
  } elsif ($pick <= 3 && $kind eq "metering") {
    $line = "Worker metering started";
  } else {
    my $k = $pick % 8;
    if ($k == 0) { $line = sprintf('{"level":"info","ts":%d.%06d,"caller":"metering/loop.go:88","msg":"metering cycle complete","clusters":%d}', $s, $id, $id % 300) }
    elsif ($k == 1) { $line = sprintf('I1121 04:00:00.%06d 1 controller.go:123] reconciling worker w-%d in cluster c%07d', $id, $id, $id) }
    elsif ($k == 2) { $line = sprintf('GET /v1/clusters/c%07d/workers 200 %d.%dms', $id, $id % 90, $id % 10) }
    elsif ($k == 3) { $line = sprintf('{"level":"debug","ts":%d.%06d,"caller":"iam/token.go:211","msg":"token refreshed","expiresIn":3600,"requestID":"r-%d"}', $s, $id, $id) }
    elsif ($k == 4) { $line = sprintf('W1121 04:00:00.%06d 1 reflector.go:561] watch of *v1.Pod ended with: an error on the server ("unable to decode an event from the watch stream") has prevented the request from succeeding', $id) }
    elsif ($k == 5) { $line = sprintf('{"level":"info","callbackName":"CreateClientID","reasonCode":"Success","controllerID":"beef%d","msg":"callback finished"}', $id) }
    elsif ($k == 6) { $line = sprintf('worker w-%d metering tick: 12 usage records queued, rate 3.1/s, ErrorCount=0', $id) }
    else { $line = sprintf('POST /v2/billing/usage 202 %dms user-agent=armada-billing/1.%d request-id=%d', $id % 400, $id % 9, $id) }
  }
  my $text = $stamp . $line . "\n";
  push @out, $text;
  $written += length $text;
  if (@out >= 4096) { print $o @out; @out = (); }
}
print $o @out;
close $o or die "cannot write $file: $!\n";
PERL
}

# ---------------------------------------------------------------------------------------------
# 1. Scanner vs grep and ripgrep

# What the scanner figures time, in rounds (timed_rounds), on scanner_bench's $dir, $file and
# $literal.
scan_ours() { "$BIN" replay --alert "$dir/alert.yaml" --logs "$dir/logs"; }
scan_before() { "$COMPARE" replay --alert "$dir/alert.yaml" --logs "$dir/logs"; }
grep_literal() { LC_ALL=C grep -c "$literal" "$file"; }
rg_literal() { rg -c "$literal" "$file"; }

scanner_bench() {
  log "scanner: generating logs"
  printf '\n'
  row "scanner (replay), same file in page cache" "min/median" "anchor" "min/median" "ratio (median)"
  local kind literal size dir alert t_scan t_grep t_rg t_cmp
  for kind in metering orchestrator; do
    case $kind in
      metering)
        literal=ErrorMeteringTokenExchangeFailure
        alert='{name: armada-cluster_error_metering_token_exchange, labels: {service: armada-cluster, region: us-south}}' ;;
      orchestrator)
        literal=ErrorUnclassified
        alert='{name: ClusterSquadOrchestratorCallbackActionTimeErrors, labels: {operation: DeleteClientID, reason_code: ErrorUnclassified, region: us-south}}' ;;
    esac
    for size in "${LOG_SIZES[@]}"; do
      dir="$WORK/replay-$kind-$size"
      mkdir -p "$dir/logs"
      printf '%s\n' "$alert" >"$dir/alert.yaml"
      [ -s "$dir/logs/$kind-0.log" ] || gen_log "$dir/logs/$kind-0.log" "$size" "$kind" 1
      local file="$dir/logs/$kind-0.log" bytes
      bytes=$(stat -c %s "$file")
      cat "$file" >/dev/null
      # A replay that fails must not pass for a fast one.
      "$BIN" replay --alert "$dir/alert.yaml" --logs "$dir/logs" -o json >"$dir/verdict.json" ||
        die "replay failed on $file"
      grep -q '"failures": [1-9]' "$dir/verdict.json" || die "replay found no failures in $file"
      local runs=(scan_ours grep_literal rg_literal) times
      [ -z "$COMPARE" ] || runs+=(scan_before)
      mapfile -t times < <(timed_rounds "${runs[@]}")
      [ "${#times[@]}" = "${#runs[@]}" ] || die "timing the scanner failed"
      t_scan=${times[0]} t_grep=${times[1]} t_rg=${times[2]} t_cmp=${times[3]:-}
      local label="$kind $((bytes / 1048576)) MiB"
      row "scanner $label" "$(rate "$bytes" "$t_scan")" "LC_ALL=C grep -c $literal" "$(rate "$bytes" "$t_grep")" "$(speedup "$t_grep" "$t_scan") grep"
      row "" "" "rg -c $literal" "$(rate "$bytes" "$t_rg")" "$(speedup "$t_rg" "$t_scan") rg"
      if [ -n "$COMPARE" ]; then
        row "" "" "scanner of $(basename "$(dirname "$(dirname "$COMPARE")")")" "$(rate "$bytes" "$t_cmp")" "$(speedup "$t_cmp" "$t_scan") before"
      fi
    done
  done
}

# ---------------------------------------------------------------------------------------------
# The cluster: our own for the full run (thousands of objects must not land on a shared one)

OWN_CLUSTER=0
start_cluster() {
  if [ "$QUICK" = 1 ] && [ -n "${ATO_BENCH_KUBECONFIG:-}" ]; then
    export KUBECONFIG="$ATO_BENCH_KUBECONFIG"
    export ATO_CLUSTER_DIR
    ATO_CLUSTER_DIR="$(dirname "$ATO_BENCH_KUBECONFIG")"
    return
  fi
  export ATO_CLUSTER_DIR="$ATO_CACHE/bench-cluster"
  export ATO_APISERVER_PORT=46443 ATO_ETCD_PORT=46379 ATO_ETCD_PEER_PORT=46380 ATO_KCM_PORT=46257
  export ATO_SCHEDULER_PORT=46259 ATO_KWOK_PORT=46250 ATO_KWOK_NODES=$NODES
  export ATO_ETCD_DATA_DIR="/dev/shm/alert-triage-operator-bench-etcd-$(id -u)"
  log "starting a cluster of its own in $ATO_CLUSTER_DIR ($NODES nodes)"
  OWN_CLUSTER=1
  trap 'stop_all' EXIT
  scripts/cluster.sh up >/dev/null
  export KUBECONFIG="$ATO_CLUSTER_DIR/kubeconfig"
}

OPERATOR_PID=""
stop_operator() {
  [ -n "$OPERATOR_PID" ] || return 0
  kill "$OPERATOR_PID" 2>/dev/null || true
  wait "$OPERATOR_PID" 2>/dev/null || true
  OPERATOR_PID=""
}
stop_all() {
  stop_operator
  kubectl delete ns "$NS" --wait=false >/dev/null 2>&1 || true
  if [ "$OWN_CLUSTER" = 1 ]; then scripts/cluster.sh down >/dev/null || true; fi
}

NS="ato-bench-$$"
# start_operator NAME: watches $NS; output in $WORK/NAME.log
start_operator() {
  "$BIN" run --namespaces "$NS" --ledger "$NS/ledger" --kubeconfig "$KUBECONFIG" \
    --http-address 127.0.0.1:0 >"$WORK/$1.log" 2>&1 &
  OPERATOR_PID=$! OPERATOR_LOG="$WORK/$1.log"
}
# proc FIELD: a /proc/PID/status field of the operator, in MB
proc_mb() { awk -v f="$1:" '$1 == f { printf "%.1f MB", $2 / 1024 }' "/proc/$OPERATOR_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$OPERATOR_PID/stat"; }

deploy() { # NAME REPLICAS
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, labels: {app: $1}}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: app, image: registry.invalid/ato/app:fake}]
YAML
}
running_pods() { # APP
  kubectl -n "$NS" get pods -l "app=$1" --field-selector=status.phase=Running -o name | wc -l
}
wait_running() { # APP N
  for _ in $(seq 600); do
    [ "$(running_pods "$1")" -ge "$2" ] && return
    sleep 1
  done
  die "$2 pods of $1 are not Running after 10 minutes"
}

triage_yaml() { # NAME APP
  cat <<YAML
---
apiVersion: triage.dev/v1alpha1
kind: AlertTriage
metadata: {name: $1}
spec:
  alert: {name: armada-cluster_error_metering_token_exchange, labels: {region: us-south}}
  target: {selector: {matchLabels: {app: $2}}}
  window: 1h
YAML
}
# The triages the operator has recorded, from its own metrics: cheap to ask, where listing a
# thousand AlertTriages every half second would take API server time from the operator.
triaged_count() {
  local address
  address=$(sed -n 's/.*serving \/metrics.* address=\([0-9.:]*\).*/\1/p' "$OPERATOR_LOG" | head -1)
  [ -n "$address" ] || { echo 0; return; }
  { curl -s "http://$address/metrics" || true; } |
    awk '/^alert_triage_triages_total/ { s += $2 } END { print s + 0 }'
}
ready_count() {
  kubectl -n "$NS" get alerttriages -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
}
wait_all_ready() { # N
  for _ in $(seq 2400); do
    [ "$(triaged_count)" -ge "$1" ] && break
    sleep 0.25
  done
  # The count moves just before each verdict is written: the objects have the last word.
  for _ in $(seq 1200); do
    [ "$(ready_count)" -ge "$1" ] && return
    sleep 0.25
  done
  die "not all $1 AlertTriages are Ready after 15 minutes"
}

# ---------------------------------------------------------------------------------------------
# 2. One triage vs the floor and the scripted loop

TRIAGE_RUN=0
one_triage() {
  TRIAGE_RUN=$((TRIAGE_RUN + 1))
  local name="timed-$TRIAGE_RUN"
  triage_yaml "$name" armada-cluster | kubectl -n "$NS" apply -f - >/dev/null
  kubectl -n "$NS" wait --for=condition=Ready "alerttriage/$name" --timeout=600s >/dev/null
}
floor_read() {
  local p
  for p in $(kubectl -n "$NS" get pods -l app=armada-cluster -o name); do
    kubectl -n "$NS" logs "$p" --timestamps --since=1h >/dev/null &
  done
  wait
}
scripted_loop() {
  local p
  for p in $(kubectl -n "$NS" get pods -l app=armada-cluster -o name); do
    kubectl -n "$NS" logs "$p" --since=1h | grep -c ErrorMeteringTokenExchangeFailure || true
  done
}

triage_bench() {
  log "triage: $TRIAGE_PODS pods x $TRIAGE_POD_BYTES bytes of log"
  deploy armada-cluster "$TRIAGE_PODS"
  wait_running armada-cluster "$TRIAGE_PODS"
  local plain="$WORK/pod-$TRIAGE_POD_BYTES.log" p
  [ -s "$plain" ] || gen_log "$plain" "$TRIAGE_POD_BYTES" metering 0
  for p in $(kubectl -n "$NS" get pods -l app=armada-cluster -o jsonpath='{.items[*].metadata.name}'); do
    KUBECONFIG_FILE="$KUBECONFIG" scripts/pod-logs.sh "$NS" "$p" app "$plain" --span 50m 2>/dev/null
  done
  start_operator triage
  local t_triage t_floor t_loop
  # A first triage warms the operator's caches and connections, as in a running operator.
  one_triage
  local times
  mapfile -t times < <(timed_rounds one_triage floor_read scripted_loop)
  [ "${#times[@]}" = 3 ] || die "timing the triage failed"
  t_triage=${times[0]} t_floor=${times[1]} t_loop=${times[2]}
  printf '\n'
  row "apply -> Ready, $TRIAGE_PODS pods x $((TRIAGE_POD_BYTES / 1000000)).$((TRIAGE_POD_BYTES % 1000000 / 100000)) MB" "$(secs "$t_triage")" "floor: the same logs read in parallel" "$(secs "$t_floor")" "$(slowdown "$t_floor" "$t_triage")"
  row "" "" "scripted kubectl logs | grep -c loop" "$(secs "$t_loop")" "$(speedup "$t_loop" "$t_triage") faster"
  stop_operator
  kubectl -n "$NS" delete alerttriages --all --wait=true >/dev/null
}

# ---------------------------------------------------------------------------------------------
# 3. Memory and CPU at scale

scale_bench() {
  log "memory: idle, then $SCALE_TRIAGES triages with $SCALE_PODS pods, then a backlog of $SCALE_TRIAGES"
  start_operator scale
  sleep "$IDLE_SECONDS"
  local idle_rss cpu0 cpu1 hz
  idle_rss=$(proc_mb VmRSS)
  hz=$(getconf CLK_TCK)
  cpu0=$(cpu_ticks)
  sleep "$IDLE_SECONDS"
  cpu1=$(cpu_ticks)
  printf '\n'
  row "idle RSS (VmRSS)" "$idle_rss" "goal (issue 16)" "15 MB" ""
  row "idle CPU over ${IDLE_SECONDS}s" "$(awk -v d="$((cpu1 - cpu0))" -v hz="$hz" 'BEGIN { printf "%.2f s", d / hz }')" "goal" "0 s" ""

  # Each triage reads the two pods of scale-target (64 KiB of log each); the other pods are
  # there to be listed past, in workloads no triage selects.
  deploy scale-target 2
  wait_running scale-target 2
  local small="$WORK/pod-65536.log" p
  [ -s "$small" ] || gen_log "$small" 65536 metering 0
  for p in $(kubectl -n "$NS" get pods -l app=scale-target -o jsonpath='{.items[*].metadata.name}'); do
    KUBECONFIG_FILE="$KUBECONFIG" scripts/pod-logs.sh "$NS" "$p" app "$small" --span 50m 2>/dev/null
  done
  local per=$((SCALE_PODS / 50 > 0 ? SCALE_PODS / 50 : 1)) i
  for ((i = 0; i < SCALE_PODS / per; i++)); do deploy "background-$i" "$per"; done
  for ((i = 0; i < SCALE_PODS / per; i++)); do wait_running "background-$i" "$per"; done
  local f="$WORK/triages-$SCALE_TRIAGES.yaml" start end
  for ((i = 0; i < SCALE_TRIAGES; i++)); do triage_yaml "running-$i" scale-target; done >"$f"
  start=$(date +%s%N)
  kubectl -n "$NS" apply -f "$f" >/dev/null
  wait_all_ready "$SCALE_TRIAGES"
  end=$(date +%s%N)
  row "peak RSS, $SCALE_TRIAGES triages applied + $SCALE_PODS pods" "$(proc_mb VmHWM)" "chart limit / goal" "128 Mi / 64 MB" "$(awk -v t="$((end - start))" 'BEGIN { printf "%.1f s to all Ready", t / 1e9 }')"
  stop_operator

  # The backlog: created while no operator runs, then a fresh operator.
  kubectl -n "$NS" delete alerttriages --all --wait=true >/dev/null
  for ((i = 0; i < SCALE_TRIAGES; i++)); do triage_yaml "backlog-$i" scale-target; done >"$f"
  kubectl -n "$NS" apply -f "$f" >/dev/null
  start=$(date +%s%N)
  start_operator backlog
  wait_all_ready "$SCALE_TRIAGES"
  end=$(date +%s%N)
  local failed
  failed=$(kubectl -n "$NS" get alerttriages -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Stalled")].status}{"\n"}{end}' | grep -c '^True$' || true)
  row "peak RSS after a backlog of $SCALE_TRIAGES" "$(proc_mb VmHWM)" "chart limit / goal" "128 Mi / 64 MB" "$(awk -v t="$((end - start))" 'BEGIN { printf "%.1f s to all Ready", t / 1e9 }'), $failed stalled"
  stop_operator
}

# ---------------------------------------------------------------------------------------------

log "operator: $BIN; $REPEATS repeat(s) per timing; scratch in $WORK"
scanner_bench
if [ "$SCANNER_ONLY" = 1 ]; then
  log "done"
  exit 0
fi
start_cluster
kubectl apply --server-side -f crds/ >/dev/null
kubectl create namespace "$NS" >/dev/null
[ "$OWN_CLUSTER" = 1 ] || trap 'stop_all' EXIT
triage_bench
scale_bench
printf '\n'
log "done"
