#!/bin/sh
# Guest side of the zero-copy measurement (hack/vm/README.md): on the VM's
# two virtio-net NICs, in one run, ROUNDS rounds of the same receivers in
# rotating order, each fed the same traffic by `xdpipe gen --engine xsk` out
# of xzc0, received on xzc1. Prints one MEASURE line per run, per-round
# ratios and their min/median/max. Ratios only: TCG's absolute rates mean
# nothing.
#
#   hack/vm/run.sh --nics 2 --queues 2 --out DIR -- ./guest-zc-bench.sh ./xdpipe [ROUNDS] [RATE] [N] [NFULL] [SIZE]
#
# ROUNDS (default 3); RATE frames/s and N frames for the fixed-rate runs
# (default 5000, 10000); NFULL frames for the full-rate runs (default
# 30000); SIZE bytes a frame (default 64).
#
#   hack/vm/run.sh --nics 2 --queues Q --out DIR -- ./guest-zc-bench.sh ./xdpipe reorder [N] [ROUNDS]
#
# is the reordering check instead: N frames (default 100000) at full rate,
# ROUNDS times (default 2), into `rxdrop --bind zerocopy` (AF_XDP) and into
# `xdpipe bench receiver --kind afpacket3` (AF_PACKET: the kernel's own
# receive path), one RESULT line each with the frames received and how many
# arrived after a higher sequence number. Run it with Q 1 (qemu's hub) and
# Q 2 (taps) to compare the wires.
#
# Wire: with --queues 2 the NICs are taps on a host bridge, set here to one
# combined channel each. qemu's hub (--queues 1) reorders and silently drops
# frames whenever the receiver's RX ring runs dry (README: "Reordering"),
# which would charge qemu's artefacts to the receivers.
#
# Placement: the sender (gen) and xzc0's interrupts on CPU 0; the receiver
# process and thread, and xzc1's interrupts, on CPU 1. Receiver CPU is CPU
# 1's busy time (user, system, irq, softirq) from /proc/stat while the
# traffic runs plus one second of drain: the receiving process and the
# kernel's receive work (NAPI, XDP, the copy in copy mode, TX completions
# of l2fwd) together. An XDP program on xzc0 (`xdpipe bench receiver --kind
# xdp-drop`) drops what l2fwd sends back. l2fwd's count is what its worker
# put on the TX ring and the kernel completed (`run` accounts every frame).
#
# Runs (receiver on xzc1, queue 0):
#   fixed rate, the CPU comparisons (the receivers sleep when idle):
#     copy      rxdrop --bind copy --poll wakeup
#     zc        rxdrop --bind zerocopy --poll wakeup
#     l2fwd     run --stages macswap --bind zerocopy --poll wakeup
#     busy      rxdrop --bind zerocopy --poll spin --busy-poll, with xzc1's
#               napi_defer_hard_irqs 2 and gro_flush_timeout 200 µs
#   full rate (gen as fast as it goes), what gets through:
#     zc-spin (rxdrop), l2fwd-spin (run --poll spin), busy, zc
# Busy polling is measured on the receive side only: on virtio_net,
# SO_PREFER_BUSY_POLL stalls AF_XDP zero-copy transmit (README.md).

set -u
X=${1:?usage: guest-zc-bench.sh XDPIPE [ROUNDS] [RATE] [N] [NFULL] [SIZE] | XDPIPE reorder [N] [ROUNDS]}
mode=bench
if [ "${2:-}" = reorder ]; then
  mode=reorder N=${3:-100000} ROUNDS=${4:-2}
else
  ROUNDS=${2:-3} RATE=${3:-5000} N=${4:-10000} NFULL=${5:-30000} SIZE=${6:-64}
fi
TX=xzc0 RX=xzc1
RXMAC=$(cat /sys/class/net/$RX/address)
die() { echo "guest-zc-bench: $*" >&2; exit 1; }
[ -x "$X" ] || die "$X is not an executable xdpipe"
for n in $TX $RX; do
  [ -d /sys/class/net/$n ] || die "no NIC $n (boot with hack/vm/run.sh --nics 2)"
  if [ "${XDPIPE_VM_QUEUES:-1}" -gt 1 ]; then
    ethtool -L $n combined 1 || die "ethtool -L $n combined 1"
  fi
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (hack/vm/run.sh --smp 2)"

# Each NIC's interrupts on its side's CPU (virtio_net spreads queue i to CPU
# i by default: both NICs' queue 0 on CPU 0).
pin_irqs() { # nic cpu
  dev=$(basename "$(readlink /sys/class/net/$1/device)")
  for irq in $(awk -v d="$dev-" 'index($NF, d) == 1 { sub(":", "", $1); print $1 }' /proc/interrupts); do
    echo "$2" >/proc/irq/$irq/smp_affinity_list || die "pin irq $irq of $1 to CPU $2"
  done
}
pin_irqs $TX 0
pin_irqs $RX 1
rxdev=$(basename "$(readlink /sys/class/net/$RX/device)")
# Interrupts of xzc1's receive queue, all CPUs.
rx_irqs() { awk -v d="$rxdev-input.0" '$NF == d { s = 0; for (i = 2; i < NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s }' /proc/interrupts; }
# CPU 1's busy and softirq ticks (USER_HZ).
cpu1() { awk '$1 == "cpu1" { print $2 + $3 + $4 + $7 + $8 + $9, $8 }' /proc/stat; }
napi() { # defer gro_flush_timeout
  echo "$1" >/sys/class/net/$RX/napi_defer_hard_irqs && echo "$2" >/sys/class/net/$RX/gro_flush_timeout
}

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

# The reordering check: the same sender (one socket, one TX queue, pinned to
# CPU 0) into an AF_XDP and an AF_PACKET receiver in turn.
reorder() {
  wire="qemu hub"
  [ "${XDPIPE_VM_QUEUES:-1}" -gt 1 ] && wire="taps ($XDPIPE_VM_QUEUES-queue taps on a bridge, 1 channel used)"
  rc=0 r=0
  while [ $r -lt "$ROUNDS" ]; do
    r=$((r + 1))
    taskset -c 1 $X rxdrop --iface $RX --bind zerocopy --cpu 1 --interval 1h >rx.log 2>&1 &
    pid=$!
    if wait_for rx.log '^rxdrop: ' $pid; then
      send --count "$N"
      sleep 3 # what TCG still has in flight
      kill -INT $pid
      wait $pid
      echo "RESULT wire=$wire receiver=rxdrop-zerocopy round=$r $(sed -n 's/^generated: received \([0-9]*\) .* reordered \([0-9]*\);.*/received=\1 reordered=\2/p' rx.log)"
    else
      cat rx.log; kill -INT $pid 2>/dev/null; wait $pid; rc=1
    fi
    # AF_PACKET: it stops when its stdin closes.
    rm -f $fifo && mkfifo $fifo
    taskset -c 1 $X bench receiver --kind afpacket3 --iface $RX <$fifo >af.log 2>&1 &
    pid=$!
    exec 4>$fifo
    if wait_for af.log ready $pid; then
      send --count "$N"
      sleep 3
      exec 4>&-
      wait $pid
      echo "RESULT wire=$wire receiver=afpacket round=$r $(sed -n 's/.*generated: received \([0-9]*\) .* reordered \([0-9]*\);.*/received=\1 reordered=\2/p' af.log)"
    else
      exec 4>&-; cat af.log; wait $pid; rc=1
    fi
  done
  return $rc
}

# send [gen flags]: generated frames out of xzc0 from CPU 0; prints gen's
# last line ("sent N frames ...").
send() {
  # shellcheck disable=SC2086
  taskset -c 0 $X gen --engine xsk --iface $TX --dst-mac "$RXMAC" --src-ip 198.18.0.1 --dst-ip 198.18.0.2 --size "${SIZE:-64}" --quiet "$@" 2>gen.err | tail -1
}

fifo=/tmp/zc-bench.fifo
if [ $mode = reorder ]; then
  reorder
  exit $?
fi

# An XDP program that drops what l2fwd sends back to xzc0 before the
# stack sees it on the sender's CPU.
rm -f $fifo && mkfifo $fifo
$X bench receiver --kind xdp-drop --iface $TX <$fifo >xdp-drop.log 2>&1 &
xdpid=$!
exec 3>$fifo
wait_for xdp-drop.log ready $xdpid || die "xdp-drop on $TX: $(cat xdp-drop.log)"

one() { # phase cfg round
  phase=$1 cfg=$2 round=$3
  case $cfg in
    copy) cmd="rxdrop --bind copy --poll wakeup --cpu 1 --interval 1h" ;;
    zc) cmd="rxdrop --bind zerocopy --poll wakeup --cpu 1 --interval 1h" ;;
    zc-spin) cmd="rxdrop --bind zerocopy --poll spin --cpu 1 --interval 1h" ;;
    l2fwd) cmd="run --queues 0 --stages macswap --bind zerocopy --poll wakeup --cpus 1 --metrics off --interval 0" ;;
    l2fwd-spin) cmd="run --queues 0 --stages macswap --bind zerocopy --poll spin --cpus 1 --metrics off --interval 0" ;;
    busy) cmd="rxdrop --bind zerocopy --poll spin --busy-poll --cpu 1 --interval 1h" ;;
  esac
  if [ $cfg = busy ]; then napi 2 200000; else napi 0 0; fi
  log=rx.$phase.$cfg.$round.log
  # shellcheck disable=SC2086
  taskset -c 1 $X $cmd --iface $RX >"$log" 2>&1 &
  pid=$!
  if ! wait_for "$log" "^rxdrop: \|^run: ready" $pid; then
    echo "$cfg: receiver did not start:"; cat "$log"; kill -INT $pid 2>/dev/null; wait $pid; napi 0 0
    return 1
  fi
  sleep 0.5
  if [ $phase = fixed ]; then gargs="--count $N --rate $RATE"; else gargs="--count $NFULL"; fi
  irq0=$(rx_irqs)
  set -- $(cpu1)
  c0=$1 s0=$2
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  sent=$(send $gargs | sed -n 's/^sent \([0-9]*\) frames.*/\1/p')
  t1=$(date +%s.%N)
  sleep 1
  set -- $(cpu1)
  c1=$1 s1=$2
  irq1=$(rx_irqs)
  fwd=0
  kill -INT $pid
  wait $pid
  napi 0 0
  case $cfg in
    copy | zc | zc-spin | busy) rx=$(sed -n 's/^summary: \([0-9]*\) packets.*/\1/p' "$log") ;;
    *)
      rx=$(sed -n 's/^run: queue 0: received \([0-9]*\),.*/\1/p' "$log")
      fwd=$(sed -n 's/^run: queue 0: .*transmitted \([0-9]*\),.*/\1/p' "$log")
      # Transmitted frames left only if the kernel gave every one back.
      grep -q '^run: umem .*, tx 0, completion 0,' "$log" || fwd=-1
      ;;
  esac
  extra=$(sed -n 's/^generated: .*reordered \([0-9]*\);.*p50 \([^ ]*\) p99 \([^ ]*\) .*/reordered=\1 p50=\2 p99=\3/p' "$log")
  [ -n "$sent" ] && [ -n "$rx" ] || { echo "$cfg: no counts (gen: $(cat gen.err))"; cat "$log"; return 1; }
  echo "MEASURE size=$SIZE phase=$phase cfg=$cfg round=$round sent=$sent rx=$rx fwd=$fwd cpu_ticks=$((c1 - c0)) softirq_ticks=$((s1 - s0)) rx_irqs=$((irq1 - irq0)) secs=$(echo "$t1 $t0" | awk '{ printf "%.3f", $1 - $2 }') $extra" | tee -a "$res"
}

res=zc-bench.txt
: >"$res"
rc=0
fixed="copy zc l2fwd busy"
full="zc-spin l2fwd-spin busy zc"
r=0
while [ $r -lt "$ROUNDS" ]; do
  r=$((r + 1))
  # Rotate the order each round: a neighbour's disturbance hits each in turn.
  for phase in fixed full; do
    if [ $phase = fixed ]; then set -- $fixed; else set -- $full; fi
    k=$(((r - 1) % $#))
    while [ $k -gt 0 ]; do x=$1; shift; set -- "$@" "$x"; k=$((k - 1)); done
    for cfg in "$@"; do one $phase $cfg $r || rc=1; done
  done
done
exec 3>&-
wait $xdpid

echo "== $SIZE-byte frames: per-round ratios, min / median / max over $ROUNDS rounds"
awk '
  /^MEASURE/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    k = v["phase"] " " v["cfg"] " " v["round"]
    rx[k] = v["rx"]; fwd[k] = v["fwd"]; sent[k] = v["sent"]; cpu[k] = v["cpu_ticks"]; irq[k] = v["rx_irqs"]
    p50[k] = dur(v["p50"])
    rounds[v["round"]] = 1
  }
  function dur(s,   x) { # a Go duration: ns, µs, ms, s
    x = s + 0
    if (s ~ /ns$/) return x; if (s ~ /µs$/ || s ~ /us$/) return x * 1e3; if (s ~ /ms$/) return x * 1e6; if (s ~ /s$/) return x * 1e9
    return -1
  }
  function cpf(k) { return (k in rx && rx[k] > 0) ? cpu[k] / 100 / rx[k] * 1e6 : -1 } # CPU s per Mframe
  function add(name, val) { if (val >= 0) { n[name]++; R[name, n[name]] = val } }
  function sort_(name,   i, j, t, m) {
    m = n[name]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (R[name, j] < R[name, i]) { t = R[name, i]; R[name, i] = R[name, j]; R[name, j] = t }
  }
  END {
    for (r in rounds) {
      zc = cpf("fixed zc " r); cp = cpf("fixed copy " r); l2 = cpf("fixed l2fwd " r)
      if (zc > 0 && cp > 0) add("receiver CPU per frame, zero-copy / copy (rxdrop, wakeup, fixed rate)", zc / cp)
      if (zc > 0 && l2 > 0) add("l2fwd / rxdrop, zero-copy: capacity (rxdrop CPU per frame / l2fwd CPU per frame, wakeup, fixed rate)", zc / l2)
      if (rx["full zc-spin " r] > 0 && fwd["full l2fwd-spin " r] >= 0) add("l2fwd / rxdrop, zero-copy: delivered at full rate, spinning (frames l2fwd sent / frames rxdrop received)", fwd["full l2fwd-spin " r] / rx["full zc-spin " r])
      if (rx["full zc " r] > 0) add("busy polling / wakeup (rxdrop): received at full rate", rx["full busy " r] / rx["full zc " r])
      if (p50["fixed zc " r] > 0) add("busy polling / wakeup (rxdrop): latency p50, fixed rate", p50["fixed busy " r] / p50["fixed zc " r])
      if (rx["fixed zc " r] > 0) add("xzc1 RX interrupts per 1000 frames, rxdrop wakeup (fixed rate)", 1000 * irq["fixed zc " r] / rx["fixed zc " r])
      if (rx["fixed busy " r] > 0) add("xzc1 RX interrupts per 1000 frames, rxdrop busy polling (fixed rate)", 1000 * irq["fixed busy " r] / rx["fixed busy " r])
      if (rx["fixed l2fwd " r] > 0) add("frames l2fwd sent / received (fixed rate)", fwd["fixed l2fwd " r] / rx["fixed l2fwd " r])
    }
    for (name in n) {
      sort_(name); m = n[name]
      med = (m % 2) ? R[name, (m + 1) / 2] : (R[name, m / 2] + R[name, m / 2 + 1]) / 2
      printf "%-7.3f %-7.3f %-7.3f  %s (%d rounds)\n", R[name, 1], med, R[name, m], name, m
    }
  }' "$res" | sort -k4
exit $rc
