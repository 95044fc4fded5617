#!/usr/bin/env bash
# usage: examples/oneshot-ab.sh [N] — p50 wall time of N one-shot
# `kiln run examples/hello.c` per kind, interleaved, against one real master
# and slave of NEW: NEW with its slave cache (warm), NEW with
# --no-slave-cache, and OLD (another build's client). Run from the
# repository's root; NEW defaults to bin/kiln, OLD to NEW.
set -euo pipefail
. examples/proc.sh # freeport
NEW=${NEW:-bin/kiln}; OLD=${OLD:-$NEW}
n=${1:-30}; file=${FILE:-examples/hello.c}
d=$(mktemp -d)
cport=$(freeport); sport=$(freeport)
throwaway_pki "$NEW" "$d" one
$NEW master --dir "$d" --client-addr 127.0.0.1:$cport --slave-addr 127.0.0.1:$sport --console off --log-level warn &
mp=$!
$NEW slave --bundle "$d/slave.bundle" --master 127.0.0.1:$sport --slots 4 --work-dir "$d/work" --cache-dir "$d/cache" --log-level warn &
sp=$!
trap 'kill -TERM $mp $sp; wait $mp $sp 2>/dev/null || true; rm -rf "$d"' EXIT
export KILN_BUNDLE="$d/client.bundle" KILN_MASTER="127.0.0.1:$cport" XDG_CACHE_HOME="$d/xdg"
for _ in $(seq 1 100); do $NEW run "$file" >/dev/null 2>&1 && break; sleep 0.1; done
for _ in 1 2 3; do $NEW run "$file" >/dev/null; $OLD run "$file" >/dev/null; done # compiled, cache written
ms() { local t0; t0=$(date +%s%N); "$@" >/dev/null; echo $((($(date +%s%N) - t0) / 1000)); }
for _ in $(seq 1 "$n"); do
  ms $NEW run "$file" >>"$d/cache.us"
  ms $NEW run --no-slave-cache "$file" >>"$d/nocache.us"
  ms $OLD run "$file" >>"$d/old.us"
done
for k in cache nocache old; do
  sort -n "$d/$k.us" | awk -v k=$k '{a[NR]=$1} END {printf "%-8s p25 %.2f ms  p50 %.2f ms  p75 %.2f ms (n=%d)\n", k, a[int(NR/4)+1]/1000, a[int(NR/2)+1]/1000, a[int(3*NR/4)+1]/1000, NR}'
done
