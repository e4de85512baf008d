#!/usr/bin/env bash
# Runs the full benchmark matrix (xdpipe bench) and keeps its outputs:
#
#   hack/bench.sh [BIN] [xdpipe bench flags...]
#
# BIN defaults to bin/xdpipe. Writes bench-results/bench.{json,png,md,txt};
# the chart is drawn by xdpipe-chart, built next to BIN (make build).
# Needs root (network namespaces, XDP, AF_XDP); installs what the C peer
# (hack/xsk-c-peer) needs to build (hack/deps.sh bench). The machine should
# be quiet: cells disturbed by other processes are repeated and marked.
# On a shared machine pass --repeat 3: three interleaved rounds, each cell
# and ratio reported as median, min and max (bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/xdpipe}
[[ $# -gt 0 ]] && shift
if [[ ! -x $bin ]]; then
  echo "hack/bench.sh: $bin not built (make build)" >&2
  exit 1
fi
hack/deps.sh bench
out=bench-results
mkdir -p "$out"
"$bin" bench --json "$out/bench.json" --markdown "$out/bench.md" --asavie-peer hack/asavie-peer --xsk-c-peer hack/xsk-c-peer "$@" | tee "$out/bench.txt"
"$(dirname "$bin")/xdpipe-chart" -o "$out/bench.png" "$out/bench.json"
echo "results in $out/ (bench.txt, bench.json, bench.png)"
