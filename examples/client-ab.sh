#!/usr/bin/env bash
# A/B of two bench clients in one run (docs/performance.md, "The bench
# client and the slave: CPU per job"): a master (--in-memory) and one slave
# (4 slots, strict sandbox) of OLD on loopback, FILE cached by a warm-up,
# then for each round `kiln bench --jobs JOBS --concurrency 4 FILE` with
# OLD's client, then NEW's, each timed by bash (user + system CPU of the
# whole client process, start and handshake included) and printed as CPU
# per job with the throughput. Only the client differs.
# Usage: examples/client-ab.sh OLD NEW [JOBS] [FILE] [ROUNDS]
#        (default 600 examples/hello.c 3)
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 jobs=${3:-600} file=${4:-examples/hello.c} rounds=${5:-3}
. examples/proc.sh # freeport, scratch, throwaway_pki
scratch kiln-ab # $d, removed at exit with the processes in pids
cport=$(freeport); sport=$(freeport)
throwaway_pki "$old" "$d"
$old master --dir "$d" --client-addr 127.0.0.1:$cport --slave-addr 127.0.0.1:$sport --console off --log-level error --in-memory 2>/dev/null &
pids+=($!)
$old slave --bundle "$d/slave.bundle" --master 127.0.0.1:$sport --slots 4 --work-dir "$d/work" --cache-dir "$d/cache" --log-level error 2>/dev/null &
pids+=($!)
export KILN_BUNDLE="$d/client.bundle" KILN_MASTER="127.0.0.1:$cport"
for _ in $(seq 1 100); do $old run "$file" >/dev/null 2>&1 && break; sleep 0.1; done
$old bench --jobs 20 --concurrency 4 "$file" >/dev/null
TIMEFORMAT='%U %S'
for _ in $(seq 1 "$rounds"); do
  for name in old new; do
    bin=$old
    [ $name = new ] && bin=$new
    t=$( { time $bin bench --jobs "$jobs" --concurrency 4 "$file" >"$d/out"; } 2>&1 )
    echo "$name  client $(awk -v u="${t% *}" -v s="${t#* }" -v n="$jobs" 'BEGIN { printf "%.3f", (u + s) * 1000 / n }') ms/job  $(grep -o '[0-9.]* jobs/s' "$d/out" | head -1)"
  done
done
