#!/usr/bin/env bash
# The xdpipe demo: a veth pair across two fresh network namespaces, the
# live-frames generator on one end and `xdpipe rxdrop` on the other for a few
# seconds spinning, then as long in wakeup mode (the same rate on less CPU).
# Everything it makes is removed on exit, also when interrupted.
#
#   hack/demo.sh [path/to/xdpipe]      DURATION=5s SIZE=64 to change the run
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-bin/xdpipe}")
duration=${DURATION:-5s}
size=${SIZE:-64}
[[ -x $BIN ]] || { echo "demo: $BIN not built; run 'make build'" >&2; exit 1; }
source hack/testbed.sh
testbed_up demo

# A generator run per receiver, started once rxdrop is ready: a veth takes
# XDP_TX frames only while its peer has an XDP program, and gen refuses to
# send into one that has none. Sequence numbers start at 0 with each run.
log=$(mktemp)
trap 'rm -f "$log"; testbed_down' EXIT  # keeps testbed_up's cleanup
for poll in spin wakeup; do
  echo "== receiver: xdpipe rxdrop --poll $poll on $IFB queue 0 for $duration"
  : >"$log"
  ip netns exec "$NSB" "$BIN" rxdrop --iface $IFB --queue 0 --poll $poll --duration "$duration" | tee "$log" &
  rx=$!
  for _ in $(seq 100); do grep -q '^rxdrop: ' "$log" && break; sleep 0.1; done
  grep -q '^rxdrop: ' "$log" || { echo "demo: rxdrop did not start" >&2; exit 1; }
  echo "== traffic: xdpipe gen --engine live, ${size}-byte UDP frames $IPA -> $IPB, full speed"
  gen_bg --engine live --size "$size"
  wait $rx
  kill %% && wait %% 2>/dev/null || true
done
echo "== done; removing the testbed"
