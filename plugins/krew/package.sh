#!/usr/bin/env bash
# Packages a built kubectl-triage for krew: OUTDIR/kubectl-triage-linux-amd64.tar.gz and
# OUTDIR/triage.yaml (the manifest beside this script, with version, URL and checksum filled in).
#   plugins/krew/package.sh BINARY URL_BASE OUTDIR
# URL_BASE is where the archive will be downloaded from (a release's assets).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 BINARY URL_BASE OUTDIR" >&2; exit 2; }
binary=$1 url_base=${2%/} out=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -x "$binary" ] || { echo "error: $binary is not an executable (cargo build --release --bin kubectl-triage)" >&2; exit 1; }
version=v$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/../../Cargo.toml" | head -1)
archive=kubectl-triage-linux-amd64.tar.gz
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/kubectl-triage"
# Fixed owner, order and times, so the same binary always gives the same checksum.
tar -C "$stage" --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -czf "$out/$archive" kubectl-triage
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
sed -e "s|@VERSION@|$version|" -e "s|@URI@|$url_base/$archive|" -e "s|@SHA256@|$sha|" \
  "$here/triage.yaml" > "$out/triage.yaml"
echo "$out/$archive"
echo "$out/triage.yaml"
