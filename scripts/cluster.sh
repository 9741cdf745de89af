#!/usr/bin/env bash
# The local simulated cluster the integration tests and the demo run on: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler as plain local processes, plus kwok simulating the
# nodes, the pod lifecycle and the kubelet's log endpoint. No containers. See docs/cluster.md.
#
#   scripts/cluster.sh up [--real-node]       start (idempotent: a healthy cluster is left alone);
#                                             --real-node (or ATO_REAL_NODE=1) adds a real node:
#                                             containerd, runc and a kubelet (root; docs/cluster.md)
#   scripts/cluster.sh down                   stop everything `up` started, drop etcd's data
#   scripts/cluster.sh status                 what is running, where; exits 0 only if healthy
#   scripts/cluster.sh user NAME [GROUP...]   mint a client-certificate kubeconfig for a user
#   scripts/cluster.sh env                    print the paths and address (KEY=VALUE lines)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# Every listener is on loopback. Ports can be overridden from the environment.
APISERVER_PORT="${ATO_APISERVER_PORT:-16443}"
ETCD_PORT="${ATO_ETCD_PORT:-16379}"
ETCD_PEER_PORT="${ATO_ETCD_PEER_PORT:-16380}"
KCM_PORT="${ATO_KCM_PORT:-16257}"
SCHEDULER_PORT="${ATO_SCHEDULER_PORT:-16259}"
KWOK_PORT="${ATO_KWOK_PORT:-16250}"
NODE_COUNT="${ATO_KWOK_NODES:-2}"
# etcd keeps its data on tmpfs: fast, and gone after `down` (every `up` is a fresh cluster).
ETCD_DATA_DIR="${ATO_ETCD_DATA_DIR:-/dev/shm/alert-triage-operator-etcd-$(id -u)}"
STOP_GRACE="${ATO_STOP_GRACE:-10}"

HOST=127.0.0.1
SERVER="https://$HOST:$APISERVER_PORT"
PKI="$ATO_CLUSTER_DIR/pki"
LOGS="$ATO_CLUSTER_DIR/logs"
PIDS="$ATO_CLUSTER_DIR/pids"
CONF="$ATO_CLUSTER_DIR/conf"
USERS="$ATO_CLUSTER_DIR/users"
PODLOGS="$ATO_CLUSTER_DIR/podlogs"
KWOK_ASSETS="$ATO_CACHE/share/kwok-$KWOK_VERSION"
# Start order.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
# Users every `up` provides (tests grant them RBAC themselves): name:group[,group...]
DEFAULT_USERS=(alice:triage-approvers bob:triage-viewers)

kc() { kubectl --kubeconfig "$ATO_KUBECONFIG" "$@"; }

# ---------------------------------------------------------------------------------------------
# processes

binary_of() { # component -> binary path
  case $1 in
    apiserver-proxy) command -v socat || echo /usr/bin/socat ;;
    *) echo "$ATO_BIN/$1" ;;
  esac
}
LAUNCH=()

pid_of() { # component -> pid if the component we started is alive, else fails
  local f="$PIDS/$1.pid" pid exe
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # A rebuilt binary shows as "<path> (deleted)"; a recycled pid runs something else.
  [ "${exe% (deleted)}" = "$(binary_of "$1")" ] || return 1
  echo "$pid"
}

start() { # component args...
  local name=$1 bin
  shift
  bin=$(binary_of "$name")
  [ -x "$bin" ] || die "$bin not found: build it with scripts/tools.sh"
  rm -f "$PIDS/$name.pid"
  [ -f "$LOGS/$name.log" ] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.prev"
  # setsid: the cluster outlives the shell (or test run) that started it and ignores its ^C.
  # The wrapper writes its own pid, which `exec` hands on to the component.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  # LAUNCH (an array, usually empty) runs first and execs the component: same pid throughout.
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$PIDS/$name.pid" "${LAUNCH[@]}" "$bin" "$@" \
    </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
  local i
  for i in $(seq 50); do
    pid_of "$name" >/dev/null && return 0
    [ ! -s "$PIDS/$name.pid" ] || [ -e "/proc/$(cat "$PIDS/$name.pid")" ] || fail "$name" "exited right after starting"
    sleep 0.1
  done
  fail "$name" "did not start"
}

fail() { # component message
  if [ -f "$LOGS/$1.log" ]; then
    printf -- '----- last lines of %s -----\n' "$LOGS/$1.log" >&2
    tail -n 40 "$LOGS/$1.log" >&2
    printf -- '-----\n' >&2
  fi
  printf 'error: %s %s (log: %s)\n' "$1" "$2" "$LOGS/$1.log" >&2
  if [ "${UP_IN_PROGRESS:-}" = 1 ]; then
    UP_IN_PROGRESS=0
    log "cluster up failed: stopping what was started (logs stay in $LOGS)"
    cmd_down 2>&1 | sed 's/^/  /' >&2 || true
  elif [ "${UP_IN_PROGRESS:-}" = node ]; then
    UP_IN_PROGRESS=0
    log "real node failed to start: stopping it (logs stay in $LOGS)"
    node_down 2>&1 | sed 's/^/  /' >&2 || true
  fi
  exit 1
}

wait_for() { # component what timeout-seconds command...
  local name=$1 what=$2 timeout=$3 start=$SECONDS
  shift 3
  until "$@" >/dev/null 2>&1; do
    pid_of "$name" >/dev/null || fail "$name" "exited while waiting for: $what"
    [ $((SECONDS - start)) -lt "$timeout" ] || fail "$name" "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}

stop() { # component... : SIGTERM them together, wait, SIGKILL whatever outlives the grace period
  local name pid i alive=() names=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      alive+=("$pid") names+=("$name")
    else
      rm -f "$PIDS/$name.pid"
    fi
  done
  [ ${#alive[@]} -gt 0 ] || return 0
  for i in $(seq $((STOP_GRACE * 10))); do
    gone "${alive[@]}" && break
    sleep 0.1
  done
  for i in "${!alive[@]}"; do
    if [ -e "/proc/${alive[$i]}" ]; then
      log "  ${names[$i]} (pid ${alive[$i]}) ignored SIGTERM for ${STOP_GRACE}s: SIGKILL"
      kill -KILL "${alive[$i]}" 2>/dev/null || true
    fi
  done
  for i in $(seq 50); do gone "${alive[@]}" && break; sleep 0.1; done
  for i in "${!alive[@]}"; do
    [ ! -e "/proc/${alive[$i]}" ] || die "could not stop ${names[$i]} (pid ${alive[$i]})"
    rm -f "$PIDS/${names[$i]}.pid"
    log "  stopped ${names[$i]} (pid ${alive[$i]})"
  done
}

gone() { # pid... : none of them exists any more
  local p
  for p in "$@"; do [ ! -e "/proc/$p" ] || return 1; done
}

# ---------------------------------------------------------------------------------------------
# health

curl_admin() { # path
  curl -fsS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$SERVER$1"
}
etcd_healthy() { curl -fsS --max-time 3 "http://$HOST:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { [ "$(curl_admin /readyz)" = ok ]; }
healthz_ok() { # port
  [ "$(curl -fsS --max-time 3 --cacert "$PKI/ca.crt" "https://$HOST:$1/healthz")" = ok ]
}

healthy() { # quiet check of the whole cluster
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
  [ -f "$ATO_KUBECONFIG" ] && apiserver_ready && healthz_ok "$KWOK_PORT" || return 1
  # kwok-node-0.. are Ready (one call; jsonpath prints "name=status" per node)
  local ready
  ready=$(kc get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null) || return 1
  [ "$(grep -c '=True$' <<<"$ready")" -ge "$NODE_COUNT" ]
}

# ---------------------------------------------------------------------------------------------
# PKI: one CA signs every serving and client certificate. Kept across down/up.

new_key() { # file [rsa]
  if [ "${2:-}" = rsa ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  fi
  chmod 600 "$1"
}

new_cert() { # name subject usage(server|client|both) [subjectAltName]
  local name=$1 subj=$2 usage=$3 san=${4:-} eku ext
  case $usage in
    server) eku=serverAuth ;; client) eku=clientAuth ;; both) eku=serverAuth,clientAuth ;;
  esac
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku"
  [ -z "$san" ] || ext+=$'\n'"subjectAltName=$san"
  new_key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null |
    openssl x509 -req -CA "$PKI/${CA:-ca}.crt" -CAkey "$PKI/${CA:-ca}.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 3650 -extfile <(echo "$ext") -out "$PKI/$name.crt" 2>/dev/null
  [ -s "$PKI/$name.crt" ] || die "could not issue certificate $name"
}

ensure_pki() {
  if [ ! -f "$PKI/ca.crt" ] || [ ! -f "$PKI/ca.key" ]; then
    log "generating PKI in $PKI"
    rm -rf "$PKI"
    mkdir -p "$PKI"
    new_key "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=alert-triage-operator-cluster-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  # Each certificate is issued once, when missing.
  local loopback="DNS:localhost,IP:127.0.0.1"
  issue() { [ -f "$PKI/$1.crt" ] || new_cert "$@"; }
  issue apiserver "/CN=kube-apiserver" server \
    "$loopback,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
  issue apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" client
  issue admin "/CN=kubernetes-admin/O=system:masters" client
  issue kube-controller-manager "/CN=system:kube-controller-manager" client
  issue kube-controller-manager-serving "/CN=kube-controller-manager" server "$loopback"
  issue kube-scheduler "/CN=system:kube-scheduler" client
  issue kube-scheduler-serving "/CN=kube-scheduler" server "$loopback"
  # kwok manages nodes, pods, leases and its own CRDs: it gets admin rights, like kwokctl's.
  issue kwok "/CN=kwok-controller/O=system:masters" client
  # The simulated kubelet endpoint the API server proxies `logs` to (https://localhost:KWOK_PORT).
  issue kwok-serving "/CN=kwok-kubelet" server "$loopback"
  # Aggregation layer (requestheader authentication) gets its own CA, as kubeadm does.
  if [ ! -f "$PKI/front-proxy-ca.crt" ]; then
    new_key "$PKI/front-proxy-ca.key"
    openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=alert-triage-operator-front-proxy-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/front-proxy-ca.crt" 2>/dev/null
    rm -f "$PKI/front-proxy-client.crt"
  fi
  [ -f "$PKI/front-proxy-client.crt" ] || CA=front-proxy-ca new_cert front-proxy-client "/CN=front-proxy-client" client
  if [ ! -f "$PKI/sa.pub" ]; then
    new_key "$PKI/sa.key" rsa
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
}

write_kubeconfig() { # file user cert-name
  local tmp="$1.tmp.$$"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ato
  cluster:
    server: $SERVER
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$3.crt")
    client-key-data: $(base64 -w0 "$PKI/$3.key")
contexts:
- name: $2@ato
  context:
    cluster: ato
    user: $2
    namespace: default
current-context: $2@ato
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$1"
}

ensure_user() { # name group...
  local name=$1 subj="/CN=$1" g
  shift
  [[ $name =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "user name must be lowercase alphanumeric, '-' or '.': $name"
  for g in "$@"; do subj+="/O=$g"; done
  mkdir -p "$USERS"
  # Re-issue only if the groups changed.
  if [ "$(cat "$PKI/user-$name.subj" 2>/dev/null)" != "$subj" ] || [ ! -f "$PKI/user-$name.crt" ]; then
    new_cert "user-$name" "$subj" client
    echo "$subj" >"$PKI/user-$name.subj"
  fi
  write_kubeconfig "$USERS/$name.kubeconfig" "$name" "user-$name"
}

write_kubeconfigs() { # (ports may have changed since the PKI was made)
  mkdir -p "$CONF"
  write_kubeconfig "$ATO_KUBECONFIG" kubernetes-admin admin
  local c
  for c in kube-controller-manager kube-scheduler kwok; do
    write_kubeconfig "$CONF/$c.kubeconfig" "$c" "$c"
  done
  local u
  for u in "${DEFAULT_USERS[@]}"; do
    # shellcheck disable=SC2046
    ensure_user "${u%%:*}" $(tr , ' ' <<<"${u#*:}")
  done
}

# ---------------------------------------------------------------------------------------------
# kwok's stages and CRDs, taken from the pinned kwok release's own module source.

ensure_kwok_assets() {
  [ -f "$KWOK_ASSETS/.complete" ] && return
  command -v go >/dev/null || die "go is needed once to fetch kwok $KWOK_VERSION's stage and CRD files"
  local src
  src=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$src/kustomize" ] || die "could not download sigs.k8s.io/kwok@$KWOK_VERSION"
  rm -rf "$KWOK_ASSETS"
  mkdir -p "$KWOK_ASSETS/stages" "$KWOK_ASSETS/crds"
  # The default stage set kwokctl uses: fast node init, heartbeat with leases, fast pod lifecycle.
  cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
    "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$src/kustomize/stage/pod/fast/pod-ready.yaml" \
    "$src/kustomize/stage/pod/fast/pod-complete.yaml" \
    "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$KWOK_ASSETS/stages/"
  cp "$src/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" \
    "$src/kustomize/crd/bases/kwok.x-k8s.io_clusterlogs.yaml" "$KWOK_ASSETS/crds/"
  chmod -R u+w "$KWOK_ASSETS"
  touch "$KWOK_ASSETS/.complete"
}

# ---------------------------------------------------------------------------------------------

node_manifest() { # index
  local i=$1
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
spec:
  podCIDR: 10.244.$i.0/24
  podCIDRs: [10.244.$i.0/24]
status:
  addresses:
  - type: InternalIP
    address: 10.1.0.$((i + 1))
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo: {architecture: amd64, operatingSystem: linux}
---
EOF
}

# ---------------------------------------------------------------------------------------------
# The real node (up --real-node): containerd, runc and a kubelet beside the kwok nodes, for
# workloads that must really run (the operator's own image, the end-to-end test). One per
# machine, as root. See docs/cluster.md, "The real node".
#
# What it changes on the machine, and how `down` undoes it:
# - containerd, its shims and the kubelet run in a private mount namespace: their mounts (pod
#   volumes, container root filesystems, network namespace handles) and the fixed paths they
#   write (NODE_PRIVATE_DIRS, each a tmpfs there) vanish with their last process.
# - containers run in cgroups under /NODE_CGROUP in every hierarchy; `down` kills what is left
#   there and removes the cgroups.
# - pods are on the bridge NODE_BRIDGE, which only this machine's host side joins; pods have no
#   default route, so pod traffic never leaves the machine. The bridge also holds SERVICE_IP, the
#   `kubernetes` Service's address, where socat forwards to the API server on loopback.
# - the kubelet sets a few kernel sysctls (NODE_SYSCTLS): saved before, restored by `down`.

NODE_NAME=localhost # the API server dials a node by its Hostname address: this one resolves.
KUBELET_PORT="${ATO_KUBELET_PORT:-16252}"
NODE_BRIDGE=ato0
NODE_SUBNET=10.244.128.0/24
NODE_GATEWAY=10.244.128.1
SERVICE_IP=10.96.0.1
NODE_CGROUP=alert-triage-operator
NODE_TAINT=alert-triage-operator/real-node
NODE_PRIVATE_DIRS=(/run/containerd /run/netns /var/lib/cni /var/lib/kubelet /var/log/containers)
NODE_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
NODE_COMPONENTS=(containerd apiserver-proxy kubelet)
NODE="$ATO_NODE_DIR"
# Which cluster's node holds this machine's node resources (bridge, service address, cgroups).
NODE_OWNER=/run/alert-triage-operator-real-node

ctr_node() { "$ATO_BIN/ctr" --address "$ATO_CONTAINERD_SOCKET" --namespace k8s.io "$@"; }

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

node_healthy() {
  local c
  for c in "${NODE_COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
  node_ready
}

node_any_running() {
  local c
  for c in "${NODE_COMPONENTS[@]}"; do pid_of "$c" >/dev/null && return 0; done
  [ -s "$NODE/mntns" ] && [ -n "$(node_ns_pids)" ]
}

node_ns_pids() { # every process in the node's mount namespace (containerd, shims, kubelet)
  local ns p
  ns=$(cat "$NODE/mntns" 2>/dev/null) || return 0
  [ -n "$ns" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

node_cgroup_pids() { # every process in the node's cgroups (containers, sandboxes)
  local roots
  roots=$(compgen -G "/sys/fs/cgroup/*/$NODE_CGROUP") || return 0
  # shellcheck disable=SC2086 # one path per line, none with spaces
  find $roots -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

node_check() {
  [ "$(id -u)" = 0 ] || die "the real node needs root (containerd, runc and the kubelet run as root)"
  local c
  for c in kubelet containerd ctr containerd-shim-runc-v2 cni/bridge cni/loopback cni/host-local; do
    [ -x "$ATO_BIN/$c" ] || die "$ATO_BIN/$c missing: run scripts/tools.sh node"
  done
  for c in runc socat ip nsenter unshare; do
    command -v "$c" >/dev/null || die "$c is missing: run scripts/tools.sh node"
  done
  for c in pause log-writer kubectl; do
    [ -f "$ATO_IMAGES/$c.oci.tar" ] || die "$ATO_IMAGES/$c.oci.tar missing: run scripts/tools.sh node"
  done
  # Under 256 MiB free the kubelet reports DiskPressure and reclaims images; ask for room above that.
  local free_kib
  free_kib=$(df -Pk "$ATO_CLUSTER_DIR" | awk 'NR == 2 {print $4}')
  [ "$free_kib" -ge $((2 * 1024 * 1024)) ] ||
    die "only $((free_kib / 1024)) MiB free on the disk of $ATO_CLUSTER_DIR: the real node needs 2 GiB (its images, containers and logs)"
  if [ -f "$NODE_OWNER" ] && [ "$(cat "$NODE_OWNER")" != "$ATO_CLUSTER_DIR" ]; then
    die "the real node of the cluster in $(cat "$NODE_OWNER") holds $NODE_BRIDGE and $SERVICE_IP on this machine: stop it first (ATO_CLUSTER_DIR=$(cat "$NODE_OWNER") scripts/cluster.sh down)"
  fi
}

node_pki() {
  # The Node authorizer knows a kubelet by its certificate: system:node:<node name>.
  [ -f "$PKI/kubelet-client.crt" ] || new_cert kubelet-client "/CN=system:node:$NODE_NAME/O=system:nodes" client
  # The API server verifies the kubelet it dials at https://localhost:KUBELET_PORT.
  [ -f "$PKI/kubelet-serving.crt" ] || new_cert kubelet-serving "/CN=$NODE_NAME" server "DNS:localhost,IP:127.0.0.1"
  write_kubeconfig "$NODE/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
}

node_network() {
  # The bridge has its address before any pod starts: the bridge plugin (isGateway false) then
  # never makes one up, and a pod's traffic has nowhere to go but this bridge.
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip addr replace "$NODE_GATEWAY/${NODE_SUBNET#*/}" dev "$NODE_BRIDGE"
  ip addr replace "$SERVICE_IP/32" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  mkdir -p "$NODE/cni"
  cat >"$NODE/cni/10-ato.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ato",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$NODE_GATEWAY"}]],
        "routes": [{"dst": "$SERVICE_IP/32", "gw": "$NODE_GATEWAY"}],
        "dataDir": "$NODE/cni-ipam"
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

node_containerd_config() {
  cat >"$NODE/containerd.toml" <<EOF
version = 4
root = "$NODE/containerd"
state = "$NODE/run/state"

[plugins.'io.containerd.server.v1.grpc']
  address = "$ATO_CONTAINERD_SOCKET"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$ATO_CONTAINERD_SOCKET.ttrpc"

[plugins.'io.containerd.grpc.v1.cri']
  # exec, attach and port-forward streams, proxied by the kubelet: loopback only.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine's root may not lower oom_score_adj (no CAP_SYS_RESOURCE): without this, every
  # sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$ATO_BIN/cni"]
    conf_dir = "$NODE/cni"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
EOF
}

node_kubelet_config() {
  cat >"$NODE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$ATO_CONTAINERD_SOCKET
podLogsDir: $NODE/pod-logs
# This machine mounts cgroup v1 (hybrid); the kubelet refuses v1 unless told not to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
# No CAP_SYS_RESOURCE here: the kubelet could not lower its own OOM score.
oomScoreAdj: 0
failSwapOn: false
registerWithTaints:
- {key: $NODE_TAINT, value: "true", effect: NoSchedule}
maxPods: 30
# A shared development machine's disk and memory are not this node's to guard. Its images are
# imported, never pulled: a removed one is gone for good (ErrImageNeverPull), so image garbage
# collection is off (a high threshold of 100), and disk pressure counts only when the disk is
# truly full (absolute amounts: 1% of a 252 GiB disk is 2.5 GiB, more than a busy machine keeps).
evictionHard: {memory.available: 64Mi, nodefs.available: 256Mi, imagefs.available: 256Mi}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

# unshare's child: a tmpfs on each fixed path the node writes, then exec the component.
# shellcheck disable=SC2016 # expanded by the inner shell
NODE_NS_SETUP='while [ "$1" != -- ]; do mount -t tmpfs -o mode=0755 ato-node "$1" || exit 1; shift; done; shift; exec "$@"'

cmd_up_node() {
  local t0=$SECONDS
  if node_healthy; then
    log "real node $NODE_NAME already up and Ready"
    return 0
  fi
  node_check
  if node_any_running; then
    log "real node is not healthy: restarting it"
    node_down
  fi
  UP_IN_PROGRESS=node
  mkdir -p "$NODE/run" "$NODE/pod-logs"
  echo "$ATO_CLUSTER_DIR" >"$NODE_OWNER"
  local d
  for d in "${NODE_PRIVATE_DIRS[@]}"; do
    if [ ! -d "$d" ]; then
      mkdir -p "$d"
      echo "$d" >>"$NODE/created-dirs"
    fi
  done
  if [ ! -f "$NODE/sysctls" ]; then
    for d in "${NODE_SYSCTLS[@]}"; do echo "$d $(cat "/proc/sys/$d")"; done >"$NODE/sysctls.tmp"
    mv "$NODE/sysctls.tmp" "$NODE/sysctls"
  fi
  node_pki
  node_network
  node_containerd_config
  node_kubelet_config

  log "starting containerd (socket $ATO_CONTAINERD_SOCKET) in a private mount namespace"
  LAUNCH=(unshare --mount --propagation private -- bash -c "$NODE_NS_SETUP" node-ns "${NODE_PRIVATE_DIRS[@]}" --)
  start containerd --config "$NODE/containerd.toml"
  LAUNCH=()
  readlink "/proc/$(pid_of containerd)/ns/mnt" >"$NODE/mntns"
  wait_for containerd "containerd's socket" 60 ctr_node version
  local image
  for image in pause log-writer kubectl; do
    # ctr warns about cgroup v1 on every run: its output is shown only if the import fails.
    if ! ctr_node images import --local "$ATO_IMAGES/$image.oci.tar" >"$NODE/import.log" 2>&1; then
      cat "$NODE/import.log" >&2
      fail containerd "could not import $ATO_IMAGES/$image.oci.tar"
    fi
  done

  log "forwarding https://$SERVICE_IP:443 (the kubernetes Service) to the API server"
  start apiserver-proxy "TCP-LISTEN:443,bind=$SERVICE_IP,reuseaddr,fork" "TCP:$HOST:$APISERVER_PORT"

  log "starting the kubelet (node $NODE_NAME, https://localhost:$KUBELET_PORT)"
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -f "$h/cgroup.procs" ] && mkdir -p "$h$NODE_CGROUP"
  done
  LAUNCH=(nsenter --mount="/proc/$(pid_of containerd)/ns/mnt" --)
  start kubelet --config="$NODE/kubelet.yaml" --kubeconfig="$NODE/kubelet.kubeconfig" \
    --root-dir="$NODE/kubelet" --hostname-override="$NODE_NAME" --node-labels=type=real --v=1
  LAUNCH=()
  wait_for kubelet "node $NODE_NAME Ready" 120 node_ready
  UP_IN_PROGRESS=0
  log "real node $NODE_NAME Ready in $((SECONDS - t0))s (taint $NODE_TAINT=true:NoSchedule, label type=real)"
}

node_down() {
  [ -d "$NODE" ] || return 0
  # The machine-wide parts (cgroups, bridge) may belong to another cluster's node: never touch them.
  if [ -f "$NODE_OWNER" ] && [ "$(cat "$NODE_OWNER")" != "$ATO_CLUSTER_DIR" ]; then
    log "the real node on this machine belongs to the cluster in $(cat "$NODE_OWNER"): leaving it alone"
    return 0
  fi
  log "stopping the real node"
  stop kubelet
  # Containers next: whatever the kubelet left runs in the node's cgroups.
  local i pids
  for i in $(seq 50); do
    pids=$(node_cgroup_pids)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  stop containerd apiserver-proxy
  # Shims (and anything else) still in the node's mount namespace: once they are gone, so are its
  # mounts, its network namespaces and their veths.
  for i in $(seq 50); do
    pids=$(node_ns_pids)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  [ -z "$(node_ns_pids)" ] || die "processes of the real node survived SIGKILL: $(node_ns_pids)"
  local h
  for i in $(seq 50); do
    for h in /sys/fs/cgroup/*/"$NODE_CGROUP"; do
      [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    compgen -G "/sys/fs/cgroup/*/$NODE_CGROUP" >/dev/null || break
    sleep 0.1
  done
  ! compgen -G "/sys/fs/cgroup/*/$NODE_CGROUP" >/dev/null || log "  could not remove cgroups: $(echo /sys/fs/cgroup/*/"$NODE_CGROUP")"
  local veth
  for veth in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if [ -f "$NODE/sysctls" ]; then
    local key value
    while read -r key value; do echo "$value" >"/proc/sys/$key"; done <"$NODE/sysctls"
  fi
  if [ -f "$NODE/created-dirs" ]; then
    local d
    while read -r d; do rmdir "$d" 2>/dev/null || log "  left $d (not empty)"; done <"$NODE/created-dirs"
  fi
  if apiserver_up; then kc delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true; fi
  # Nothing may still be mounted below the node's folder before it is removed.
  if grep -q " $NODE[/ ]" /proc/self/mountinfo; then
    die "mounts left below $NODE: $(grep " $NODE[/ ]" /proc/self/mountinfo | cut -d' ' -f5 | tr '\n' ' ')"
  fi
  rm -rf "$NODE"
  rm -f "$NODE_OWNER"
  log "  real node stopped and cleaned up"
}

apiserver_up() { [ -f "$PKI/admin.crt" ] && apiserver_ready 2>/dev/null; }

cmd_up() { # [--real-node]
  local t0=$SECONDS real_node=${ATO_REAL_NODE:-}
  case ${1:-} in
    --real-node) real_node=1 ;;
    "") ;;
    *) die "usage: $0 up [--real-node]" ;;
  esac
  [ "$real_node" != 0 ] || real_node=""
  if healthy; then
    log "cluster already up and healthy ($SERVER, kubeconfig $ATO_KUBECONFIG)"
    [ -z "$real_node" ] || cmd_up_node
    return 0
  fi
  local c running=()
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && running+=("$c"); done
  if [ ${#running[@]} -gt 0 ]; then
    log "cluster is not healthy (running: ${running[*]}): restarting it from scratch"
    cmd_down
  fi

  UP_IN_PROGRESS=1
  for c in "${COMPONENTS[@]}"; do [ -x "$(binary_of "$c")" ] || die "$(binary_of "$c") missing: run scripts/tools.sh"; done
  rm -rf "$PODLOGS" # a fresh cluster has no pods
  mkdir -p "$LOGS" "$PIDS" "$CONF" "$PODLOGS"
  ensure_pki
  ensure_kwok_assets
  write_kubeconfigs

  log "starting etcd on $HOST:$ETCD_PORT (data on tmpfs: $ETCD_DATA_DIR)"
  rm -rf "$ETCD_DATA_DIR"
  start etcd --name=ato --data-dir="$ETCD_DATA_DIR" \
    --listen-client-urls="http://$HOST:$ETCD_PORT" --advertise-client-urls="http://$HOST:$ETCD_PORT" \
    --listen-peer-urls="http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster="ato=http://$HOST:$ETCD_PEER_PORT" --initial-cluster-state=new \
    --unsafe-no-fsync --auto-compaction-retention=1 --quota-backend-bytes=4294967296 --log-level=warn
  wait_for etcd "etcd /health" 30 etcd_healthy

  log "starting kube-apiserver on $SERVER"
  # --endpoint-reconciler-type=none: the advertised address is loopback, which the `kubernetes`
  # Service's endpoints may not hold (nothing in this cluster dials it anyway).
  start kube-apiserver \
    --etcd-servers="http://$HOST:$ETCD_PORT" \
    --bind-address=$HOST --advertise-address=$HOST --secure-port="$APISERVER_PORT" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=Hostname,InternalIP \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --allow-privileged=true --profiling=false
  wait_for kube-apiserver "kube-apiserver /readyz" 90 apiserver_ready

  log "installing kwok's Logs and ClusterLogs CRDs"
  kc apply --server-side -f "$KWOK_ASSETS/crds/" >/dev/null || fail kube-apiserver "rejected kwok's CRDs"
  kc wait --for=condition=Established --timeout=30s crd/logs.kwok.x-k8s.io crd/clusterlogs.kwok.x-k8s.io >/dev/null ||
    fail kube-apiserver "did not establish kwok's CRDs"

  log "starting kube-controller-manager and kube-scheduler"
  local kcm="$CONF/kube-controller-manager.kubeconfig" sched="$CONF/kube-scheduler.kubeconfig"
  start kube-controller-manager \
    --kubeconfig="$kcm" --authentication-kubeconfig="$kcm" --authorization-kubeconfig="$kcm" \
    --bind-address=$HOST --secure-port="$KCM_PORT" \
    --tls-cert-file="$PKI/kube-controller-manager-serving.crt" --tls-private-key-file="$PKI/kube-controller-manager-serving.key" \
    --leader-elect=false --controllers='*' --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --kube-api-qps=200 --kube-api-burst=400 --profiling=false
  start kube-scheduler \
    --kubeconfig="$sched" --authentication-kubeconfig="$sched" --authorization-kubeconfig="$sched" \
    --bind-address=$HOST --secure-port="$SCHEDULER_PORT" \
    --tls-cert-file="$PKI/kube-scheduler-serving.crt" --tls-private-key-file="$PKI/kube-scheduler-serving.key" \
    --leader-elect=false --profiling=false

  log "starting kwok (kubelet endpoint https://localhost:$KWOK_PORT) and $NODE_COUNT nodes"
  local stage_flags=() s
  for s in "$KWOK_ASSETS"/stages/*.yaml; do stage_flags+=("--config=$s"); done
  # Every node's Hostname address is "localhost" and its kubelet port KWOK_PORT, so the API
  # server reaches kwok's kubelet API (logs) at https://localhost:KWOK_PORT, verified by our CA.
  start kwok "${stage_flags[@]}" \
    --kubeconfig="$CONF/kwok.kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --enable-crds=Logs,ClusterLogs \
    --node-name=localhost --node-port="$KWOK_PORT" --server-address="$HOST:$KWOK_PORT" \
    --tls-cert-file="$PKI/kwok-serving.crt" --tls-private-key-file="$PKI/kwok-serving.key" \
    --node-lease-duration-seconds=40 --cidr=10.0.0.0/16

  local i manifest=""
  for ((i = 0; i < NODE_COUNT; i++)); do manifest+=$(node_manifest "$i")$'\n'; done
  kc apply -f - >/dev/null <<<"$manifest" || fail kube-apiserver "rejected the nodes"

  wait_for kube-controller-manager "kube-controller-manager /healthz" 60 healthz_ok "$KCM_PORT"
  wait_for kube-scheduler "kube-scheduler /healthz" 60 healthz_ok "$SCHEDULER_PORT"
  wait_for kwok "kwok /healthz" 60 healthz_ok "$KWOK_PORT"
  wait_for kwok "$NODE_COUNT Ready nodes" 60 nodes_ready
  wait_for kube-controller-manager "ServiceAccount default/default" 60 kc get serviceaccount default -n default
  UP_IN_PROGRESS=0
  log "cluster up in $((SECONDS - t0))s: export KUBECONFIG=$ATO_KUBECONFIG"
  [ -z "$real_node" ] || cmd_up_node
}

nodes_ready() {
  local i
  for ((i = 0; i < NODE_COUNT; i++)); do
    [ "$(kc get node "kwok-node-$i" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] || return 1
  done
}

cmd_down() {
  log "stopping the cluster"
  # The real node first: it deletes its Node while the API server still answers.
  node_down
  # Clients of the API server first (together), then the API server, then etcd.
  stop kwok kube-scheduler kube-controller-manager
  stop kube-apiserver
  stop etcd
  rm -rf "$ETCD_DATA_DIR" "$PODLOGS"
  log "cluster down"
}

cmd_status() { # exits 0 only when the cluster is up and healthy
  local c pid any=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then
      printf '%-24s running  pid %-8s log %s\n' "$c" "$pid" "$LOGS/$c.log"
      any=1
    else
      printf '%-24s stopped\n' "$c"
    fi
  done
  if [ -d "$NODE" ]; then
    for c in "${NODE_COMPONENTS[@]}"; do
      if pid=$(pid_of "$c"); then
        printf '%-24s running  pid %-8s log %s\n' "$c" "$pid" "$LOGS/$c.log"
      else
        printf '%-24s stopped\n' "$c"
      fi
    done
  fi
  [ $any = 1 ] || return 1
  printf '%-24s %s\n' "api server" "$SERVER" "admin kubeconfig" "$ATO_KUBECONFIG" \
    "user kubeconfigs" "$USERS/<name>.kubeconfig" "pod log files" "$PODLOGS"
  local ok=0
  if healthy; then echo "healthy: yes"; else echo "healthy: no"; ok=1; fi
  if [ -d "$NODE" ]; then
    if node_healthy; then echo "real node: $NODE_NAME Ready"; else echo "real node: not healthy"; ok=1; fi
  fi
  kc get nodes 2>/dev/null || true
  return $ok
}

cmd_user() { # name group...
  [ $# -ge 1 ] || die "usage: $0 user NAME [GROUP...]"
  ensure_pki
  ensure_user "$@"
  echo "$USERS/$1.kubeconfig"
}

cmd_env() {
  printf '%s\n' "ATO_KUBECONFIG=$ATO_KUBECONFIG" "ATO_CLUSTER_DIR=$ATO_CLUSTER_DIR" "ATO_BIN=$ATO_BIN" \
    "ATO_USERS_DIR=$USERS" "ATO_PODLOGS_DIR=$PODLOGS" "ATO_LOGS_DIR=$LOGS" "ATO_APISERVER=$SERVER" \
    "ATO_NODE_DIR=$NODE" "ATO_CONTAINERD_SOCKET=$ATO_CONTAINERD_SOCKET" "ATO_REAL_NODE_NAME=$NODE_NAME" \
    "ATO_REAL_NODE_TAINT=$NODE_TAINT" "ATO_LOG_WRITER_IMAGE=$LOG_WRITER_IMAGE"
}

# `up`, `down` and `user` take a lock so concurrent callers (two test binaries) do not race.
locked() {
  mkdir -p "$ATO_CLUSTER_DIR"
  exec 9>"$ATO_CLUSTER_DIR/.lock"
  flock 9
  "$@"
}

case "${1:-}" in
  up) shift; locked cmd_up "$@" ;;
  down) locked cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  user) shift; locked cmd_user "$@" ;;
  *) die "usage: $0 up [--real-node]|down|status|env|user NAME [GROUP...]" ;;
esac
