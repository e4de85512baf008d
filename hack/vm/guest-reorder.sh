#!/bin/sh
# Guest side of the reordering check (README.md, "Zero-copy on virtio-net"):
# N generated frames at full rate out of xzc0 (`xdpipe gen --engine xsk`, one
# socket, one TX queue, pinned to CPU 0) into xzc1, received ROUNDS times by
# each of two receivers pinned to CPU 1: `xdpipe rxdrop --bind zerocopy`
# (AF_XDP) and `xdpipe bench receiver --kind afpacket3` (AF_PACKET: the
# kernel's own receive path, no AF_XDP ring). One RESULT line per run with
# the frames received and how many arrived after a higher sequence number.
#
#   hack/vm/run.sh --nics 2 --queues 1 --out DIR -- ./guest-reorder.sh ./xdpipe [N] [ROUNDS]   # qemu's hub
#   hack/vm/run.sh --nics 2 --queues 2 --out DIR -- ./guest-reorder.sh ./xdpipe [N] [ROUNDS]   # taps on a bridge
#
# With --queues 2 the NICs are set to one combined channel each, so both
# wires carry the frames over one queue pair.
set -u
X=${1:?usage: guest-reorder.sh XDPIPE [N] [ROUNDS]}
N=${2:-100000}
ROUNDS=${3:-2}
TX=xzc0 RX=xzc1
die() { echo "guest-reorder: $*" >&2; exit 1; }
[ -x "$X" ] || die "$X is not an executable xdpipe"
if [ "${XDPIPE_VM_QUEUES:-1}" -gt 1 ]; then
  for n in $TX $RX; do ethtool -L $n combined 1 || die "ethtool -L $n combined 1"; done
  wire="taps ($XDPIPE_VM_QUEUES-queue taps on a bridge, 1 channel used)"
else
  wire="qemu hub"
fi
RXMAC=$(cat /sys/class/net/$RX/address)

# Waits up to 30 s for a line matching pattern in file while pid lives.
wait_for() { # file pattern pid
  i=0
  while ! grep -q "$2" "$1" 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || return 1
    i=$((i + 1))
    [ $i -gt 300 ] && return 1
    sleep 0.1
  done
}

send() {
  taskset -c 0 $X gen --engine xsk --iface $TX --dst-mac "$RXMAC" --src-ip 198.18.0.1 --dst-ip 198.18.0.2 --quiet --count "$N" 2>&1 | tail -1
}

rc=0
fifo=/tmp/reorder.fifo
r=0
while [ $r -lt "$ROUNDS" ]; do
  r=$((r + 1))
  # AF_XDP, zero-copy.
  taskset -c 1 $X rxdrop --iface $RX --bind zerocopy --cpu 1 --interval 1h >rx.log 2>&1 &
  pid=$!
  if wait_for rx.log '^rxdrop: ' $pid; then
    send
    sleep 3 # what TCG still has in flight
    kill -INT $pid
    wait $pid
    echo "RESULT wire=$wire receiver=rxdrop-zerocopy round=$r $(sed -n 's/^generated: received \([0-9]*\) .* reordered \([0-9]*\);.*/received=\1 reordered=\2/p' rx.log)"
  else
    cat rx.log; kill -INT $pid 2>/dev/null; wait $pid; rc=1
  fi
  # AF_PACKET: the stack. It stops when its stdin closes.
  rm -f $fifo && mkfifo $fifo
  taskset -c 1 $X bench receiver --kind afpacket3 --iface $RX <$fifo >af.log 2>&1 &
  pid=$!
  exec 3>$fifo
  if wait_for af.log ready $pid; then
    send
    sleep 3
    exec 3>&-
    wait $pid
    echo "RESULT wire=$wire receiver=afpacket round=$r $(sed -n 's/.*generated: received \([0-9]*\) .* reordered \([0-9]*\);.*/received=\1 reordered=\2/p' af.log)"
  else
    exec 3>&-; cat af.log; wait $pid; rc=1
  fi
done
exit $rc
