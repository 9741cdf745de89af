#!/usr/bin/env bash
# The operator's main job on the local simulated cluster: brings the cluster up, installs the
# CRD, starts the operator, deploys sample workloads whose pods carry logs for several runbook
# scenarios, applies one AlertTriage per scenario and prints the verdicts. Safe to re-run: the
# demo namespace is recreated and the operator restarted each time.
#
#   scripts/demo.sh          run the demo (cluster and operator keep running afterwards)
#   scripts/demo.sh stop     stop the demo's operator (scripts/cluster.sh down stops the cluster)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ATO_ROOT"

NS=ato-demo
DEMO=examples/demo
PIDFILE="$ATO_CLUSTER_DIR/demo-operator.pid"
OPLOG="$ATO_CLUSTER_DIR/logs/demo-operator.log"

stop_operator() {
  if [ -f "$PIDFILE" ]; then
    local pid; pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop_operator
  log "demo operator stopped"
  exit 0
fi

"$ATO_ROOT/scripts/tools.sh" etcd kube kwok
"$ATO_ROOT/scripts/cluster.sh" up
export KUBECONFIG="$ATO_KUBECONFIG"

log "building the operator"
cargo build --locked --quiet
BIN="$CARGO_TARGET_DIR/debug/alert-triage-operator"

log "installing the AlertTriage CRD"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=established crd/alerttriages.triage.dev --timeout=60s >/dev/null

log "recreating namespace $NS"
stop_operator
kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl create namespace "$NS" >/dev/null
for _ in $(seq 100); do kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

log "starting the operator (log: $OPLOG)"
mkdir -p "$(dirname "$OPLOG")"
"$BIN" run --namespaces "$NS" --kubeconfig "$ATO_KUBECONFIG" >"$OPLOG" 2>&1 &
echo $! > "$PIDFILE"

log "deploying sample workloads"
kubectl -n "$NS" apply -f "$DEMO/workloads.yaml" >/dev/null
kubectl -n "$NS" rollout status deployment --timeout=120s >/dev/null

pods_of() { kubectl -n "$NS" get pods -l "app=$1" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort; }
give_logs() { # app log-for-first-pod log-for-the-others
  local i=0 pod
  for pod in $(pods_of "$1"); do
    local file=$3
    [ $i -eq 0 ] && file=$2
    local out
    out=$("$ATO_ROOT/scripts/pod-logs.sh" "$NS" "$pod" app "$DEMO/logs/$file.log" --span 20m 2>&1) \
      || die "could not give $pod its log: $out"
    i=$((i + 1))
  done
}
log "giving the pods their logs"
give_logs armada-cluster rate-limited rate-limited
give_logs armada-api rate-limited rate-limited
give_logs armada-billing unauthorized unauthorized
give_logs metering-net network healthy
give_logs metering-net-all network network
give_logs armada-orchestrator client-id-not-authorized client-id-not-authorized
give_logs orchestrator-canary orchestrator-unknown orchestrator-unknown
give_logs metering-quiet healthy healthy

log "applying one AlertTriage per scenario"
kubectl -n "$NS" apply -f "$DEMO/triages.yaml" >/dev/null

want=$(grep -c '^kind: AlertTriage' "$DEMO/triages.yaml")
for _ in $(seq 120); do
  done_count=$(kubectl -n "$NS" get alerttriage -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' \
    | grep -cvE '^(|Pending|Gathering)$' || true)
  [ "$done_count" -ge "$want" ] && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "the operator exited; see $OPLOG"
  sleep 1
done
[ "$done_count" -ge "$want" ] || die "only $done_count of $want triages finished; see $OPLOG"

echo
kubectl -n "$NS" get alerttriage
echo
echo "Look closer:   kubectl --kubeconfig $ATO_KUBECONFIG -n $NS describe alerttriage network-one-pod"
echo "Stop:          scripts/demo.sh stop && scripts/cluster.sh down"
