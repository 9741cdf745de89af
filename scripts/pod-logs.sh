#!/usr/bin/env bash
# Gives a simulated pod's container a log, served by kwok's kubelet endpoint behind the real API
# server, so `kubectl logs` (and any client of pods/log) returns it. See docs/cluster.md, "Pod logs".
#
#   scripts/pod-logs.sh NAMESPACE POD CONTAINER FILE [options]
#
# FILE is plain text, one log line per line ("-" reads stdin); any bytes except '\n' pass through
# untouched. Each line gets a timestamp, then the file is stored in the CRI log format kwok reads,
# under $ATO_CLUSTER_DIR/podlogs/NAMESPACE/POD/, and the pod's kwok `Logs` object is (re)applied.
#
# Options:
#   --previous FILE2     also give the container a previous instance's log (`kubectl logs --previous`)
#   --span DURATION      spread the lines evenly over DURATION ending at --end (default 10m);
#                        the previous log is spread over the DURATION before that
#   --end TIME           when the last line was written (default: now); RFC 3339 or anything `date -d` takes
#   --start TIME         instead of spreading: the first line's time; lines --interval apart
#   --interval DURATION  with --start (default 1s)
#   --stream STREAM      stdout (default) or stderr; both are returned by `kubectl logs`
#   --cri                FILE (and FILE2) are already CRI log lines ("<RFC3339Nano> stdout F <text>"):
#                        stored as they are, timestamps kept
#   --no-wait            do not wait until the API server serves the log
# DURATION: a number with unit ns, us, ms, s, m or h (e.g. 90s, 1h, 250ms).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() { sed -n '2,24s/^# \{0,1\}//p' "$0" >&2; exit 2; }
[ $# -ge 4 ] || usage
NS=$1 POD=$2 CONTAINER=$3 FILE=$4
shift 4
PREVIOUS="" SPAN=10m END="" START="" INTERVAL=1s STREAM=stdout CRI=0 WAIT=1
while [ $# -gt 0 ]; do
  case $1 in
    --previous) PREVIOUS=$2; shift 2 ;;
    --span) SPAN=$2; shift 2 ;;
    --end) END=$2; shift 2 ;;
    --start) START=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --stream) STREAM=$2; shift 2 ;;
    --cri) CRI=1; shift ;;
    --no-wait) WAIT=0; shift ;;
    *) usage ;;
  esac
done
[[ $STREAM == stdout || $STREAM == stderr ]] || die "--stream must be stdout or stderr"
[ "$PREVIOUS" != - ] || die "--previous cannot read stdin"
for n in "$NS" "$POD" "$CONTAINER"; do
  [[ $n =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die "not a valid Kubernetes name: $n"
done

KUBECONFIG_FILE="${KUBECONFIG_FILE:-$ATO_KUBECONFIG}"
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

to_ns() { # DURATION -> nanoseconds
  [[ $1 =~ ^([0-9]+)(ns|us|ms|s|m|h)$ ]] || die "bad duration: $1 (e.g. 90s, 10m, 250ms)"
  local n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    ns) echo "$n" ;; us) echo $((n * 1000)) ;; ms) echo $((n * 1000000)) ;;
    s) echo $((n * 1000000000)) ;; m) echo $((n * 60000000000)) ;; h) echo $((n * 3600000000000)) ;;
  esac
}
time_ns() { date -u -d "$1" +%s%N 2>/dev/null || die "bad time: $1"; }

# convert IN OUT MODE(spread|start) A B: MODE spread: A=end ns, B=span ns; start: A=start ns, B=interval ns
convert() {
  local in=$1 out=$2
  if [ "$CRI" = 1 ]; then cat -- "$in" >"$out"; return; fi
  perl -e '
    use strict; use warnings;
    my ($in, $out, $mode, $a, $b, $stream) = @ARGV;
    local $/; my $fh;
    if ($in eq "-") { $fh = \*STDIN } else { open($fh, "<:raw", $in) or die "cannot read $in: $!\n" }
    binmode $fh; my $data = <$fh>; $data = "" unless defined $data;
    my @lines = split /\n/, $data, -1;
    pop @lines if @lines && $lines[-1] eq "";          # the final newline does not start a line
    my $n = scalar @lines;
    open(my $o, ">:raw", $out) or die "cannot write $out: $!\n";
    for my $i (0 .. $n - 1) {
      my $t = $mode eq "spread" ? $a - $b + int($b * ($i + 1) / $n) : $a + $i * $b;
      my ($s, $ns) = (int($t / 1000000000), $t % 1000000000);
      my @g = gmtime($s);
      printf $o "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ %s F %s\n",
        $g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0], $ns, $stream, $lines[$i];
    }
    close $o or die "cannot write $out: $!\n";
  ' "$in" "$out" "$3" "$4" "$5" "$STREAM"
}

DIR="$ATO_CLUSTER_DIR/podlogs/$NS/$POD"
mkdir -p "$DIR"
if [ -n "$START" ]; then
  mode=start a=$(time_ns "$START") b=$(to_ns "$INTERVAL") pcount=0
  # the previous instance's lines end one interval before the first current line
  [ -z "$PREVIOUS" ] || pcount=$(perl -ne 'END { print $. // 0 }' -- "$PREVIOUS")
  pa=$((a - pcount * b)) pb=$b
else
  mode=spread b=$(to_ns "$SPAN")
  if [ -n "$END" ]; then a=$(time_ns "$END"); else a=$(date -u +%s%N); fi
  pa=$((a - b)) pb=$b
fi
# Write beside, then rename: kwok never reads a half-written file.
convert "$FILE" "$DIR/.$CONTAINER.log.tmp" "$mode" "$a" "$b"
mv -f "$DIR/.$CONTAINER.log.tmp" "$DIR/$CONTAINER.log"
if [ -n "$PREVIOUS" ]; then
  convert "$PREVIOUS" "$DIR/.$CONTAINER.previous.log.tmp" "$mode" "$pa" "$pb"
  mv -f "$DIR/.$CONTAINER.previous.log.tmp" "$DIR/$CONTAINER.previous.log"
else
  rm -f "$DIR/$CONTAINER.previous.log"
fi

# One kwok Logs object per pod (same name and namespace as the pod), listing every container
# that has a file in the pod's folder.
manifest="apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata:
  name: $POD
  namespace: $NS
  labels:
    ato.triage.dev/pod-logs: \"true\"
spec:
  logs:"
for f in "$DIR"/*.log; do
  case $f in *.previous.log) continue ;; esac
  c=$(basename "$f" .log)
  manifest+="
  - containers: [\"$c\"]
    logsFile: \"$f\""
  [ ! -f "$DIR/$c.previous.log" ] || manifest+="
    previousLogsFile: \"$DIR/$c.previous.log\""
done
kc apply --server-side --force-conflicts --field-manager=ato-pod-logs -f - >/dev/null <<<"$manifest"

if [ "$WAIT" = 1 ]; then
  # kwok learns about the Logs object through a watch: wait until the API server serves it.
  for i in $(seq 150); do
    if kc logs -n "$NS" "$POD" -c "$CONTAINER" --tail=1 >/dev/null 2>&1 &&
      { [ -z "$PREVIOUS" ] || kc logs -n "$NS" "$POD" -c "$CONTAINER" --previous --tail=1 >/dev/null 2>&1; }; then
      break
    fi
    [ "$i" -lt 150 ] || die "kubectl logs -n $NS $POD -c $CONTAINER still fails after 30s: $(kc logs -n "$NS" "$POD" -c "$CONTAINER" --tail=1 2>&1 | tail -1)"
    sleep 0.2
  done
fi
log "pod $NS/$POD container $CONTAINER: log at $DIR/$CONTAINER.log${PREVIOUS:+ (previous: $DIR/$CONTAINER.previous.log)}"
