# Shell helpers the benchmark scripts source (examples/bench.sh,
# examples/slave-ab.sh, examples/oneshot-ab.sh, ...): free ports, CPU time
# from /proc, a scratch directory and a throwaway CA.

# freeport prints a free TCP port on loopback.
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cpu PID: user+system clock ticks of the process itself.
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# tree PID: ticks of every live descendant of PID, with the children each reaped.
tree() {
  local total=0 kids k
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
  for k in $kids; do
    [ -r "/proc/$k/stat" ] || continue
    total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$k/stat") + $(tree "$k")))
  done
  echo "$total"
}

# scratch NAME: a fresh temporary directory in $d, removed at exit with
# every process whose pid the script adds to the array pids. The user
# cache (XDG_CACHE_HOME: kiln run's slave cache) lives in it, never under
# ~/.cache, where a throwaway CA's entries would stay useless.
scratch() {
  d=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  export XDG_CACHE_HOME="$d/cache"
  pids=()
  trap scratch_end EXIT
  trap 'exit 130' INT TERM
}
scratch_end() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$d"
}
# throwaway_pki KILN DIR [CLIENT]: a cluster CA in DIR, the bundle of
# slave-1 in DIR/slave.bundle and of CLIENT (default bench) in
# DIR/client.bundle.
throwaway_pki() {
  "$1" certs init --dir "$2" --master-host 127.0.0.1 >/dev/null
  "$1" certs issue --dir "$2" --role slave --name slave-1 --out "$2/slave.bundle" >/dev/null 2>&1
  "$1" certs issue --dir "$2" --role client --name "${3:-bench}" --out "$2/client.bundle" >/dev/null 2>&1
}
