#!/usr/bin/env bash
# The cluster's figures in one run (docs/performance.md, "The cluster path"):
# a master and ONE slave (4 slots, strict sandbox) on loopback, then for FILE
#   - latency at concurrency 1, sealed and --no-seal, against the program bare;
#   - throughput at concurrency 1, 4 and 16 against bare (`kiln bench --baseline`);
#   - CPU per job of each process over a JOBS-job run at concurrency 4: the
#     bench client, the master, the slave, the slave's sandboxes (their inits,
#     and the programs they reaped), against the program run bare;
#   - the file path: a 256 MiB stream over mutual TLS + yamux against raw TLS
#     (needs the Go toolchain; skipped without it).
# Usage: examples/bench.sh [JOBS] [FILE]   (default 200 examples/hello.c)
# MASTER_FLAGS adds flags to `kiln master` (default: none, so the master
# keeps its durable state in DIR/data; MASTER_FLAGS=--in-memory measures
# the master without it); FILE_PATH=0 skips the file-path benchmark. The
# last block repeats the issue-15 figures.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-bin/kiln}
jobs=${1:-200}
file=${2:-examples/hello.c}
. examples/proc.sh # freeport, cpu, tree, scratch, throwaway_pki
scratch kiln-bench # $d, removed at exit with the processes in pids
dir=$d
hz=$(getconf CLK_TCK)
ms_per_job() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN { printf "%.2f", t / hz * 1000 / n }'; }

cport=$(freeport); sport=$(freeport)
throwaway_pki "$KILN" "$dir"
$KILN master --dir "$dir" --client-addr "127.0.0.1:$cport" --slave-addr "127.0.0.1:$sport" --console off --log-level warn ${MASTER_FLAGS:-} &
mpid=$!; pids+=($mpid)
$KILN slave --bundle "$dir/slave.bundle" --master "127.0.0.1:$sport" --slots 4 --work-dir "$dir/work" \
  --cache-dir "$dir/cache" --log-level warn &
spid=$!; pids+=($spid)
export KILN_BUNDLE="$dir/client.bundle" KILN_MASTER="127.0.0.1:$cport"
for _ in $(seq 1 100); do $KILN run "$file" >/dev/null 2>&1 && break; sleep 0.1; done
$KILN bench --jobs 20 --concurrency 4 "$file" >/dev/null # warm: compiled program cached, sandboxes prepared

summary() { grep -E '^(cluster|bare)$|throughput|latency|ratio|added' | sed 's/^/  /'; }
echo "== master: ${MASTER_FLAGS:-durable state (default)}"
echo "== $file, one job at a time (latency), sealed"
$KILN bench --jobs 100 --concurrency 1 --baseline "$file" | summary | tee "$dir/c1"
echo "== one job at a time, --no-seal"
$KILN bench --jobs 100 --concurrency 1 --baseline --no-seal "$file" | summary
for c in 4 16; do
  echo "== concurrency $c, sealed"
  $KILN bench --jobs "$jobs" --concurrency "$c" --baseline "$file" | summary | tee "$dir/c$c"
done

echo "== CPU per job over $jobs jobs at concurrency 4 (ms; clock ticks of $((1000 / hz)) ms)"
m0=$(cpu "$mpid"); s0=$(cpu "$spid"); t0=$(tree "$spid")
TIMEFORMAT='%U %S'
client=$( { time $KILN bench --jobs "$jobs" --concurrency 4 "$file" >/dev/null; } 2>&1 | awk -v hz="$hz" '{ print ($1 + $2) * hz }')
m1=$(cpu "$mpid"); s1=$(cpu "$spid"); t1=$(tree "$spid")
# The program bare, as many times, one after the other.
bare=$( { time $KILN bench --jobs "$jobs" --concurrency 4 --baseline --json "$file" >/dev/null; } 2>&1 | awk -v hz="$hz" '{ print ($1 + $2) * hz }')
bare=$(awk -v b="$bare" -v c="$client" 'BEGIN { print (b > c ? b - c : 0) }') # the baseline's children, minus a cluster run
echo "  bench client          $(ms_per_job "$client" "$jobs")"
echo "  master                $(ms_per_job $((m1 - m0)) "$jobs")"
echo "  slave                 $(ms_per_job $((s1 - s0)) "$jobs")"
echo "  sandboxes + programs  $(ms_per_job $((t1 - t0)) "$jobs")"
echo "  program bare          $(ms_per_job "$bare" "$jobs")   (approximate: the baseline run minus a cluster run)"
own=$(ms_per_job "$(awk -v a="$client" -v b=$((m1 - m0)) -v c=$((s1 - s0)) -v d=$((t1 - t0)) -v e="$bare" 'BEGIN { print a + b + c + d - e }')" "$jobs")
echo "  Kiln's own (client + master + slave + sandboxes - bare): $own"

echo "== the file path: 256 MiB over mutual TLS + yamux against raw TLS, interleaved"
if [ "${FILE_PATH:-1}" = 0 ]; then
  echo "  (FILE_PATH=0: skipped)"
elif command -v go >/dev/null; then
  go test -run '^$' -bench 'FileStreamVsRawTLS' -benchtime 3x ./transport/ | grep -o '[0-9.]* \(cpu-ratio\|ratio\|rawtls-MB/s\|stream-MB/s\)' | sed 's/^/  /' | tee "$dir/file"
else
  echo "  (no Go toolchain: skipped)"
fi

# The figures issue 15 asks for, from the runs above.
pick() { awk -v k="$2" '$0 ~ k { print $NF; exit }' "$dir/$1" 2>/dev/null; }
echo "== summary ($file, master: ${MASTER_FLAGS:-durable})"
echo "  throughput at concurrency 4, cluster/bare:     $(pick c4 'throughput ratio')"
echo "  Kiln's own CPU per job (ms):                   $own"
echo "  added p50 latency, sealed, concurrency 1 (ms): $(awk '/added p50/ { print $(NF-1); exit }' "$dir/c1")"
echo "  file path, stream/raw TLS throughput:          $(awk '$2 == "ratio" { print $1; exit }' "$dir/file" 2>/dev/null)"
echo "  (the master's routing capacity: make loadtest)"
