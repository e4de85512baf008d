#!/usr/bin/env bash
# The xdpipe demo: a veth pair across two fresh network namespaces, the
# live-frames generator on one end and `xdpipe rxdrop` on the other for a few
# seconds. Everything it makes is removed on exit, also when interrupted.
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

echo "== traffic: xdpipe gen --engine live, ${size}-byte UDP frames $IPA -> $IPB, full speed"
gen_bg --engine live --size "$size"

echo "== receiver: xdpipe rxdrop on $IFB queue 0 for $duration"
ip netns exec "$NSB" "$BIN" rxdrop --iface $IFB --queue 0 --duration "$duration"
echo "== done; removing the testbed"
