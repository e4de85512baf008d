#!/usr/bin/env bash
# make profile: a CPU profile of xdpipe's receive path under load. Runs the
# live-frames generator into a veth testbed, profiles `xdpipe rxdrop` (or the
# command in RECEIVER) for DURATION, and prints the top functions.
#
#   hack/profile.sh [path/to/xdpipe]   DURATION=10s OUT=out/rxdrop.prof
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-bin/xdpipe}")
duration=${DURATION:-10s}
out=${OUT:-out/rxdrop.prof}
[[ -x $BIN ]] || { echo "profile: $BIN not built; run 'make build'" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
out=$(realpath "$out")
source hack/testbed.sh
testbed_up profile

gen_bg --engine live
ip netns exec "$NSB" "$BIN" rxdrop --iface $IFB --duration "$duration" --cpuprofile "$out"
testbed_down
echo "== top functions of the receive path ($out; open with 'go tool pprof -http=: $BIN $out')"
go tool pprof -top -nodecount=25 "$BIN" "$out" 2>/dev/null | sed -n '1,35p'
