#!/usr/bin/env bash
# The cluster's figures in one run: a master and ONE slave (4 slots, strict
# sandbox) on loopback, then `kiln bench --baseline` for a Python hello world
# at concurrency 4, sealed and unsealed, against the same program run bare
# with 4 in parallel. Usage: examples/bench.sh [JOBS] [FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-bin/kiln}
jobs=${1:-200}
file=${2:-examples/hello.py}
dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(freeport); sport=$(freeport)
$KILN certs init --dir "$dir" --master-host 127.0.0.1 >/dev/null
$KILN certs issue --dir "$dir" --role slave --name slave-1 --out "$dir/slave.bundle" 2>/dev/null >/dev/null
$KILN certs issue --dir "$dir" --role client --name bench --out "$dir/client.bundle" 2>/dev/null >/dev/null
$KILN master --dir "$dir" --client-addr "127.0.0.1:$cport" --slave-addr "127.0.0.1:$sport" --console off --log-level warn &
pids+=($!)
$KILN slave --bundle "$dir/slave.bundle" --master "127.0.0.1:$sport" --slots 4 --work-dir "$dir/work" \
  --cache-dir "$dir/cache" --log-level warn &
pids+=($!)
export KILN_BUNDLE="$dir/client.bundle" KILN_MASTER="127.0.0.1:$cport"
for _ in $(seq 1 100); do $KILN run "$file" >/dev/null 2>&1 && break; sleep 0.1; done
echo "== one job at a time (latency of the cluster path)"
$KILN bench --jobs 100 --concurrency 1 --baseline "$file"
echo "== sealed (default)"
$KILN bench --jobs "$jobs" --concurrency 4 --baseline "$file"
echo "== unsealed (--no-seal)"
$KILN bench --jobs "$jobs" --concurrency 4 --baseline --no-seal "$file"
