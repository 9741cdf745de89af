#!/usr/bin/env bash
# The operator's main job on the local simulated cluster: brings the cluster up, installs the
# CRD, starts the operator, deploys sample workloads whose pods carry logs for several runbook
# scenarios, applies one AlertTriage per scenario and prints the verdicts. Then the Alertmanager
# path: a real Alertmanager posts one alert (added with amtool) to the operator's intake, which
# creates the AlertTriage shown last. Safe to re-run: the demo namespace is recreated and the
# operator and Alertmanager restarted each time.
#
#   scripts/demo.sh          run the demo (cluster, operator and Alertmanager keep running afterwards)
#   scripts/demo.sh stop     stop the demo's operator and Alertmanager (scripts/cluster.sh down stops the cluster)
#
# Ports: ATO_DEMO_INTAKE_PORT (default 9094) for the intake, ATO_DEMO_ALERTMANAGER_PORT (9093).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ATO_ROOT"

NS=ato-demo
DEMO=examples/demo
PIDFILE="$ATO_CLUSTER_DIR/demo-operator.pid"
OPLOG="$ATO_CLUSTER_DIR/logs/demo-operator.log"
AMDIR="$ATO_CLUSTER_DIR/demo-alertmanager"
INTAKE_PORT="${ATO_DEMO_INTAKE_PORT:-9094}"
AM_PORT="${ATO_DEMO_ALERTMANAGER_PORT:-9093}"

stop_pidfile() {
  if [ -f "$1" ]; then
    local pid; pid=$(cat "$1")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
  fi
}
stop_operator() { stop_pidfile "$PIDFILE"; stop_pidfile "$AMDIR/pid"; }

if [ "${1:-}" = "stop" ]; then
  stop_operator
  log "demo operator and Alertmanager stopped"
  exit 0
fi

"$ATO_ROOT/scripts/tools.sh" etcd kube kwok alertmanager
"$ATO_ROOT/scripts/cluster.sh" up
export KUBECONFIG="$ATO_KUBECONFIG"

log "building the operator"
cargo build --locked --quiet
BIN="$CARGO_TARGET_DIR/debug/alert-triage-operator"

log "installing the CRDs (AlertTriage, Runbook, ClusterRunbook)"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=established crd/alerttriages.triage.dev --timeout=60s >/dev/null

log "recreating namespace $NS"
stop_operator
kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl create namespace "$NS" >/dev/null
for _ in $(seq 100); do kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

log "starting the operator with its Alertmanager intake on 127.0.0.1:$INTAKE_PORT (log: $OPLOG)"
mkdir -p "$(dirname "$OPLOG")" "$AMDIR"
# A fresh token each run; Alertmanager reads the same file.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$AMDIR/token"
"$BIN" run --namespaces "$NS" --kubeconfig "$ATO_KUBECONFIG" \
  --intake-bind-address "127.0.0.1:$INTAKE_PORT" --intake-token-file "$AMDIR/token" >"$OPLOG" 2>&1 &
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

log "the Alertmanager path: Alertmanager on 127.0.0.1:$AM_PORT (log: $AMDIR/alertmanager.log)"
cat >"$AMDIR/alertmanager.yml" <<YAML
route:
  receiver: alert-triage
  group_by: [alertname]
  group_wait: 1s
receivers:
  - name: alert-triage
    webhook_configs:
      - url: http://127.0.0.1:$INTAKE_PORT/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials_file: $AMDIR/token
YAML
rm -rf "${AMDIR:?}/data"
alertmanager --config.file="$AMDIR/alertmanager.yml" --storage.path="$AMDIR/data" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$AMDIR/alertmanager.log" 2>&1 &
echo $! >"$AMDIR/pid"
AM_URL="http://127.0.0.1:$AM_PORT"
for _ in $(seq 100); do amtool --alertmanager.url="$AM_URL" config show >/dev/null 2>&1 && break; sleep 0.2; done
log "amtool alert add: the metering alert for service metering-net, as Prometheus would send it"
amtool --alertmanager.url="$AM_URL" alert add \
  alertname=armada-cluster_error_metering_token_exchange service=metering-net namespace="$NS" region=us-south \
  --start="$(date -u -d '-2 min' +%Y-%m-%dT%H:%M:%SZ)" --annotation='summary="metering token exchange failures"'
from_am=""
for _ in $(seq 60); do
  from_am=$(kubectl -n "$NS" get alerttriage -l triage.dev/source=alertmanager \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}' | grep -vE ' (Pending|Gathering)?$' || true)
  [ -n "$from_am" ] && break
  sleep 1
done
[ -n "$from_am" ] || die "Alertmanager's alert made no triage; see $OPLOG and $AMDIR/alertmanager.log"
kubectl -n "$NS" get alerttriage -l triage.dev/source=alertmanager -L triage.dev/fingerprint
echo
echo "Look closer:   kubectl --kubeconfig $ATO_KUBECONFIG -n $NS describe alerttriage network-one-pod"
echo "From Alertmanager: kubectl --kubeconfig $ATO_KUBECONFIG -n $NS describe alerttriage ${from_am%% *}"
echo "Stop:          scripts/demo.sh stop && scripts/cluster.sh down"
