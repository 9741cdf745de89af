# The log-writer image's entrypoint (run by busybox sh; scripts/image.sh log-writer): prints the
# log file it is given, marks itself printed for a readiness probe (`test -e /tmp/printed`),
# then idles until SIGTERM, which it honours at once so an eviction's grace period is not waited
# out.
trap 'echo "log-writer: SIGTERM, exiting"; exit 0' TERM INT
[ $# -eq 1 ] || { echo "usage: log-writer FILE" >&2; exit 2; }
cat -- "$1" || exit 1
: >/tmp/printed
while :; do
  sleep 3600 &
  wait $!
done
