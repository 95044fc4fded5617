#!/usr/bin/env bash
# Test batches against separate runs, same run: a master and ONE slave (2
# slots, strict sandbox) on loopback; a small C++ program (a+b) on N tests
# (default 100) as one batch (`kiln run --tests`), then as N separate
# `kiln run` calls one after the other (its build cached after the first),
# then the compiled binary run bare N times on this host.
# Usage: examples/bench-judge.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-bin/kiln}
n=${1:-100}
. examples/proc.sh # freeport, scratch, throwaway_pki
scratch kiln-bench-judge # $d, removed at exit with the processes in pids
dir=$d
now() { date +%s.%N; }
ms() { /usr/bin/python3 -c "print(round(($2 - $1) * 1000))"; }
cport=$(freeport); sport=$(freeport)
throwaway_pki "$KILN" "$dir"
$KILN master --dir "$dir" --client-addr "127.0.0.1:$cport" --slave-addr "127.0.0.1:$sport" --console off --log-level warn &
pids+=($!)
$KILN slave --bundle "$dir/slave.bundle" --master "127.0.0.1:$sport" --slots 2 --work-dir "$dir/work" \
  --cache-dir "$dir/cache" --log-level warn &
pids+=($!)
export KILN_BUNDLE="$dir/client.bundle" KILN_MASTER="127.0.0.1:$cport"
cat >"$dir/sum.cpp" <<'CPP'
#include <cstdio>
int main() { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 3; printf("%ld\n", a + b); }
CPP
mkdir "$dir/tests"
for i in $(seq 1 "$n"); do echo "$i $((i * 7))" >"$dir/tests/$i.in"; echo $((i * 8)) >"$dir/tests/$i.out"; done
for _ in $(seq 1 100); do $KILN run --stdin "$dir/tests/1.in" "$dir/sum.cpp" >/dev/null 2>&1 && break; sleep 0.1; done
t0=$(now); $KILN run --tests "$dir/tests" --json "$dir/sum.cpp" >"$dir/batch.json"; t1=$(now)
/usr/bin/python3 - "$dir/batch.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = [t["wall_ms"] for t in r["tests"]]
print(f"batch: {r['summary']['passed']}/{r['summary']['total']} passed, cached build {r['cached']}, "
      f"per-test wall in the sandbox: mean {sum(w)/len(w):.1f} ms, max {max(w)} ms")
PY
echo "one batch of $n tests (kiln run --tests):      $(ms "$t0" "$t1") ms"
t0=$(now)
for i in $(seq 1 "$n"); do $KILN run --stdin "$dir/tests/$i.in" "$dir/sum.cpp" >/dev/null; done
t1=$(now)
echo "$n separate kiln run calls, one at a time:   $(ms "$t0" "$t1") ms"
g++ -O2 -pipe -std=gnu++17 -o "$dir/sum" "$dir/sum.cpp"
t0=$(now)
for i in $(seq 1 "$n"); do "$dir/sum" <"$dir/tests/$i.in" >/dev/null; done
t1=$(now)
echo "$n bare runs of the compiled binary:           $(ms "$t0" "$t1") ms"
