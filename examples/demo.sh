#!/usr/bin/env bash
# make demo: a throwaway cluster on loopback (a master and two slaves), the
# four examples, and a burst of jobs showing how they spread over the slaves.
# Everything it starts is stopped on exit, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-bin/kiln}
dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-demo.XXXXXX")
# The slaves' compile caches and kiln run's slave cache live in it too, not
# under the user's ~/.cache (the throwaway CA makes them useless after).
export XDG_CACHE_HOME="$dir/cache"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, stopping the cluster"; exit 130' INT TERM

freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(freeport); sport=$(freeport)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a throwaway CA and bundles in $dir"
$KILN certs init --dir "$dir" --master-host 127.0.0.1 >/dev/null
for s in slave-1 slave-2; do $KILN certs issue --dir "$dir" --role slave --name "$s" --out "$dir/$s.bundle" >/dev/null; done
$KILN certs issue --dir "$dir" --role client --name demo-user --out "$dir/client.bundle" >/dev/null
$KILN certs issue --dir "$dir" --role admin --name demo-admin --out "$dir/admin.bundle" >/dev/null
$KILN certs list --dir "$dir"

step "master on 127.0.0.1:$cport (clients) and 127.0.0.1:$sport (slaves), two slaves with 2 slots each"
$KILN master --dir "$dir" --client-addr "127.0.0.1:$cport" --slave-addr "127.0.0.1:$sport" >"$dir/master.log" 2>&1 &
pids+=($!)
for s in slave-1 slave-2; do
  $KILN slave --bundle "$dir/$s.bundle" --master "127.0.0.1:$sport" --slots 2 --load-interval 1s \
    --cache-dir "$dir/$s-cache" --work-dir "$dir/$s-work" >"$dir/$s.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  [ "$(grep -c 'slave registered' "$dir/master.log" 2>/dev/null || true)" -ge 2 ] && break
  sleep 0.1
done
grep -q 'slave registered' "$dir/master.log" || { echo "demo: slaves did not register"; cat "$dir"/*.log; exit 1; }
grep 'sandbox' "$dir/slave-1.log" | head -1 || true

export KILN_BUNDLE="$dir/client.bundle" KILN_MASTER="127.0.0.1:$cport"
for f in examples/hello.c examples/hello.cpp examples/Hello.java examples/hello.py; do
  step "kiln run $f"
  $KILN run -v "$f"
done

step "kiln run examples/hello.c again: the compile cache answers"
$KILN run --json examples/hello.c | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print("status=%s slave=%s cached=%s wall=%dms" % (r["status"], r["slave"], r["cached"], r["wall_ms"]))'

step "a burst of 24 Python jobs, 8 at a time: who ran what"
$KILN bench --jobs 24 --concurrency 8 examples/hello.py

if $KILN admin --help >/dev/null 2>&1; then
  step "kiln admin server list"
  $KILN admin --bundle "$dir/admin.bundle" server list || true
fi
step "done: stopping the master and the slaves"
