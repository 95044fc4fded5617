#!/usr/bin/env bash
# A/B of two slave binaries in one run (docs/performance.md, "The slave's
# steps of one job"): for each round, for OLD then NEW, a master (--in-memory)
# and one slave (4 slots, strict sandbox) on loopback, FILE cached by a warm-up,
# then
#   - p50 latency of one job at a time (sealed), over 100 jobs;
#   - throughput at concurrency 4 over JOBS jobs, and over that run the CPU per
#     job of the slave process and of its sandboxes (their inits with the
#     programs they reaped; /proc/PID/stat, 10 ms ticks);
# and the program bare (C compiled as the slave does, Python with
# /usr/bin/python3 -B), JOBS runs one after the other: its CPU per run.
# The master and the client are OLD's in both, so only the slave differs.
# Usage: examples/slave-ab.sh OLD NEW [JOBS] [FILE] [ROUNDS]
#        (default 400 examples/hello.c 3)
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 jobs=${3:-400} file=${4:-examples/hello.c} rounds=${5:-3}
. examples/proc.sh # freeport, cpu, tree
per_job() { awk -v t="$1" -v n="$jobs" 'BEGIN { printf "%.2f", t * 10 / n }'; }
one() { # one(NAME SLAVE_BINARY)
  local d mp sp cport sport lat thr s0 s1 t0 t1
  d=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ab.XXXXXX")
  cport=$(freeport); sport=$(freeport)
  throwaway_pki "$old" "$d"
  $old master --dir "$d" --client-addr 127.0.0.1:$cport --slave-addr 127.0.0.1:$sport --console off --log-level error --in-memory 2>/dev/null &
  mp=$!
  $2 slave --bundle "$d/slave.bundle" --master 127.0.0.1:$sport --slots 4 --work-dir "$d/work" --cache-dir "$d/cache" --log-level error 2>/dev/null &
  sp=$!
  export KILN_BUNDLE="$d/client.bundle" KILN_MASTER="127.0.0.1:$cport" XDG_CACHE_HOME="$d/xdg" # nothing under ~/.cache
  for _ in $(seq 1 100); do $old run "$file" >/dev/null 2>&1 && break; sleep 0.1; done
  $old bench --jobs 20 --concurrency 4 "$file" >/dev/null
  lat=$($old bench --jobs 100 --concurrency 1 "$file" | grep -o 'p50 [0-9.]* ms' | head -1)
  s0=$(cpu $sp); t0=$(tree $sp)
  thr=$($old bench --jobs "$jobs" --concurrency 4 "$file" | grep -o '[0-9.]* jobs/s' | head -1)
  s1=$(cpu $sp); t1=$(tree $sp)
  echo "$1  c1 $lat  c4 $thr  slave $(per_job $((s1 - s0))) ms/job  sandboxes+programs $(per_job $((t1 - t0))) ms/job"
  kill -TERM $mp $sp; wait $mp $sp 2>/dev/null || true
  rm -rf "$d"
}
bare() {
  local b cmd
  b=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ab.XXXXXX")
  case $file in
  *.c) gcc -O2 -pipe -std=gnu17 -o "$b/main" "$file" -lm; cmd="$b/main" ;;
  *.py) cmd="/usr/bin/python3 -B $file" ;;
  *) rm -rf "$b"; return ;;
  esac
  local TIMEFORMAT='%U %S' t
  t=$( { time (for _ in $(seq 1 "$jobs"); do $cmd >/dev/null; done); } 2>&1 )
  echo "bare  $(awk -v u="${t% *}" -v s="${t#* }" -v n="$jobs" 'BEGIN { printf "%.2f", (u + s) * 1000 / n }') ms of CPU per run"
  rm -rf "$b"
}
for r in $(seq 1 "$rounds"); do
  one old "$old"
  one new "$new"
  bare
done
