#!/usr/bin/env bash
# The master's durable state, one run (docs/performance.md, "Durable
# state: sessions that do not wait for their writes"): a master of KILN
# (with its data directory, or MASTERFLAGS=--in-memory) and one slave (4
# slots) on loopback, FILE cached by a warm-up, then `kiln bench --jobs
# JOBS --concurrency CONC FILE`; prints the bench's throughput and
# latency, the log entries written per job (kiln_state_entries_total),
# the master's and the slave's CPU per job (/proc) and, with STRACE=1,
# the master's fdatasync, fsync and pwrite64 calls per job (strace -c).
# Alternate two binaries (KILN=old, KILN=new) for an A/B.
# Usage: KILN=bin/kiln CONC=4 [MASTERFLAGS=--in-memory] [STRACE=1] examples/state-ab.sh [JOBS] [FILE]
#        (default 600 examples/hello.c)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-bin/kiln} jobs=${1:-600} file=${2:-examples/hello.c}
. examples/proc.sh # freeport, cpu, scratch, throwaway_pki
scratch kiln-state # $d, removed at exit with the processes in pids
cport=$(freeport) sport=$(freeport) mport=$(freeport)
throwaway_pki "$KILN" "$d"
"$KILN" master --dir "$d" --client-addr 127.0.0.1:$cport --slave-addr 127.0.0.1:$sport --console off \
  --log-level warn --metrics-addr 127.0.0.1:$mport ${MASTERFLAGS:-} &
mp=$!; pids+=($mp)
"$KILN" slave --bundle "$d/slave.bundle" --master 127.0.0.1:$sport --slots 4 --work-dir "$d/work" \
  --cache-dir "$d/cache" --log-level warn &
sp=$!; pids+=($sp)
export KILN_BUNDLE="$d/client.bundle" KILN_MASTER="127.0.0.1:$cport"
for _ in $(seq 1 100); do "$KILN" run "$file" >/dev/null 2>&1 && break; sleep 0.1; done
"$KILN" bench --jobs 20 --concurrency 4 "$file" >/dev/null
entries() { curl -s "http://127.0.0.1:$mport/metrics" | awk '/^kiln_state_entries_total/{print $2}'; }
e0=$(entries); e0=${e0:-0}
if [ -n "${STRACE:-}" ]; then
  strace -f -c -e trace=fdatasync,fsync,pwrite64 -o "$d/strace.out" -p $mp 2>/dev/null & stp=$!
  sleep 1
fi
m0=$(cpu $mp) s0=$(cpu $sp)
"$KILN" bench --jobs "$jobs" --concurrency "${CONC:-4}" "$file" | grep -E 'throughput|latency' | head -2
m1=$(cpu $mp) s1=$(cpu $sp)
e1=$(entries); e1=${e1:-0}
echo "log entries per job $(awk -v a="$e0" -v b="$e1" -v n="$jobs" 'BEGIN{print (b-a)/n}')"
if [ -n "${STRACE:-}" ]; then
  kill -INT $stp; wait $stp || true
  awk -v n="$jobs" '/fdatasync|fsync|pwrite64/{print $NF, "calls per job", $4/n}' "$d/strace.out"
fi
echo "master ms/job $(awk -v a=$((m1-m0)) -v n="$jobs" 'BEGIN{print a*10/n}') slave ms/job $(awk -v a=$((s1-s0)) -v n="$jobs" 'BEGIN{print a*10/n}')"
