# Shell helpers the benchmark scripts source (examples/bench.sh,
# examples/slave-ab.sh, examples/oneshot-ab.sh): free ports and CPU time from /proc.

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
