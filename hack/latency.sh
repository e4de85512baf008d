#!/usr/bin/env bash
# Round trips side by side on a veth testbed, closed loop (one message in
# flight), 64-byte frames, client on CPU 0, reflector on CPU 1:
#
#   hack/latency.sh [BIN] [ROUNDS] [SECONDS]
#
# BIN defaults to bin/xdpipe, ROUNDS to 3, SECONDS (per pair and round) to
# 3. The pairs, in an order rotated each round:
#
#   kernel            sockperf ping-pong -> sockperf server
#   sockperf->reflect sockperf ping-pong -> xdpipe run {reflect: {sockperf: true}}, spinning
#   ping->reflect     xdpipe ping        -> xdpipe run reflect, spinning
#   ping->reflect-bp  the same, with socket busy polling (--busy-poll; the
#                     veth's napi_defer_hard_irqs 2 and gro_flush_timeout
#                     200 us, as the kernel's NAPI documentation advises)
#   ping->reflect-wk  xdpipe ping        -> xdpipe run reflect, --poll wakeup (naps up to
#                     200 us while frames come, then poll(2))
#   ping->reflect-wk0 the same with --coalesce 0: poll(2) only
#   ping->udp-echo    xdpipe ping        -> a Go net.UDPConn echo (hack/udp-echo)
#
# Every figure is a round trip in microseconds: sockperf reports half of
# one, doubled here; xdpipe ping reports whole ones. Both clients read one
# host's CLOCK_MONOTONIC at both ends. Prints each round, then each
# pair's median (least-greatest) over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-bin/xdpipe}")
rounds=${2:-3}
secs=${3:-3}
[[ -x $BIN ]] || { echo "hack/latency.sh: $BIN not built (make build)" >&2; exit 1; }
hack/deps.sh run
command -v sockperf >/dev/null || { echo "hack/latency.sh: needs sockperf (apt-get install sockperf)" >&2; exit 1; }
source hack/testbed.sh
testbed_up latency
tmp=$(mktemp -d)
mkdir "$tmp/bpf"
mount -t bpf bpffs "$tmp/bpf"
cleanup() { umount "$tmp/bpf" 2>/dev/null || true; rm -rf "$tmp"; testbed_down; }
trap cleanup EXIT
port=11111
go build -o "$tmp/udp-echo" ./hack/udp-echo
cat >"$tmp/rules.yaml" <<EOF
rules:
  - name: reflected
    priority: 10
    proto: udp
    dport: $port
    action: redirect
EOF
reflector_conf() { # $1: reflect stage options
  cat >"$tmp/run.yaml" <<EOF
interfaces: [$IFB]
queues: all
rules: $tmp/rules.yaml
pin_dir: $tmp/bpf
stages: [{reflect: $1}]
EOF
}

# start_b CMD...: the reflector in B on CPU 1; waits for its ready line.
start_b() {
  ip netns exec "$NSB" taskset -c 1 "$@" >"$tmp/b.out" 2>&1 &
  bpid=$!
  for _ in $(seq 100); do
    grep -q -e "run: ready" -e "Warmup" -e "UDP" -e "udp-echo: ready" "$tmp/b.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "hack/latency.sh: reflector did not start:" >&2
  cat "$tmp/b.out" >&2
  exit 1
}
# stop_b: SIGTERM (a background job of a script ignores SIGINT, and a
# program that does not catch it, udp-echo, keeps ignoring it), then
# SIGKILL if the reflector is still there after 10 s.
stop_b() {
  kill -TERM $bpid 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 $bpid 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL $bpid 2>/dev/null || true
  wait $bpid 2>/dev/null || true
}

# sockperf_rtt: p50 p99 p99.9 max round trips (us) from sockperf's output.
sockperf_rtt() {
  awk '/percentile 50.000 =/ {p50=$NF} /percentile 99.000 =/ {p99=$NF} /percentile 99.900 =/ {p999=$NF}
       /<MAX> observation =/ {mx=$(NF)}
       END {if (p50 == "") exit 1; printf "%.1f %.1f %.1f %.1f\n", 2*p50, 2*p99, 2*p999, 2*mx}' "$1"
}
# ping_rtt: the same from xdpipe ping's output.
ping_rtt() {
  awk '/^round trip:/ {printf "%s %s %s %s\n", $4, $8, $10, $14; ok=1} END {if (!ok) exit 1}' "$1"
}

run_pair() { # $1: pair name; prints "name p50 p99 p99.9 max"
  case $1 in
    kernel)
      start_b sockperf server -i "$IPB" -p $port
      ip netns exec "$NSA" taskset -c 0 sockperf ping-pong -i "$IPB" -p $port -m 64 -t "$secs" >"$tmp/a.out" 2>&1 || true
      stop_b
      r=$(sockperf_rtt "$tmp/a.out") ;;
    sockperf-\>reflect)
      reflector_conf "{sockperf: true}"
      start_b "$BIN" run --config "$tmp/run.yaml" --metrics off --poll spin
      ip netns exec "$NSA" taskset -c 0 sockperf ping-pong -i "$IPB" -p $port -m 64 -t "$secs" >"$tmp/a.out" 2>&1 || true
      stop_b
      r=$(sockperf_rtt "$tmp/a.out") ;;
    ping-\>udp-echo)
      start_b "$tmp/udp-echo" -addr "$IPB:$port"
      ip netns exec "$NSA" taskset -c 0 "$BIN" ping --iface $IFA --dst-mac $MACB --dst-ip "$IPB" \
        --dst-port $port --duration "${secs}s" >"$tmp/a.out" 2>&1 || true
      stop_b
      r=$(ping_rtt "$tmp/a.out") ;;
    ping-\>reflect*)
      reflector_conf "{}"
      flags=(--poll spin)
      case $1 in
        *-bp) flags+=(--busy-poll)
              ip netns exec "$NSB" sh -c "echo 2 >/sys/class/net/$IFB/napi_defer_hard_irqs; echo 200000 >/sys/class/net/$IFB/gro_flush_timeout" ;;
        *-wk) flags=(--poll wakeup) ;;
        *-wk0) flags=(--poll wakeup --coalesce 0) ;;
      esac
      start_b "$BIN" run --config "$tmp/run.yaml" --metrics off "${flags[@]}"
      ip netns exec "$NSA" taskset -c 0 "$BIN" ping --iface $IFA --dst-mac $MACB --dst-ip "$IPB" \
        --dst-port $port --duration "${secs}s" >"$tmp/a.out" 2>&1 || true
      stop_b
      ip netns exec "$NSB" sh -c "echo 0 >/sys/class/net/$IFB/napi_defer_hard_irqs; echo 0 >/sys/class/net/$IFB/gro_flush_timeout"
      r=$(ping_rtt "$tmp/a.out") ;;
  esac || { echo "hack/latency.sh: $1 measured nothing:" >&2; cat "$tmp/a.out" "$tmp/b.out" >&2; exit 1; }
  echo "$1 $r"
}

pairs=(kernel "sockperf->reflect" "ping->reflect" "ping->reflect-bp" "ping->reflect-wk" "ping->reflect-wk0" "ping->udp-echo")
echo "round trips in us, closed loop, 64 B, ${secs}s per pair and round; $(date -u +'%Y-%m-%d %H:%M UTC'), $(uname -r)"
for ((r = 0; r < rounds; r++)); do
  echo "round $((r + 1)) of $rounds"
  for ((i = 0; i < ${#pairs[@]}; i++)); do
    run_pair "${pairs[$(((i + r) % ${#pairs[@]}))]}" | tee -a "$tmp/all"
  done
done
echo
printf "%-18s %22s %22s %22s %22s\n" pair "p50" "p99" "p99.9" "max"
for p in "${pairs[@]}"; do
  awk -v p="$p" '
    function stat(col,   n, i, j, t, v) { n = 0
      for (i = 1; i <= NR2; i++) v[++n] = a[i, col]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return sprintf("%.1f (%.1f-%.1f)", v[int((n + 1) / 2)], v[1], v[n]) }
    $1 == p { NR2++; for (c = 2; c <= 5; c++) a[NR2, c] = $c }
    END { printf "%-18s %22s %22s %22s %22s\n", p, stat(2), stat(3), stat(4), stat(5) }' "$tmp/all"
done
