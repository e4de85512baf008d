#!/usr/bin/env bash
# The share of the live generator's kernel path that one XDP program takes,
# from perf's samples: where a receiver's rate is bound by the CPU that
# runs the generator, the peer's NAPI and its XDP program (the veth bench),
# this is the program's cost as the rate sees it, with the CPU caches as
# cold as the real path leaves them, which BPF_PROG_RUN's loop does not.
#
#   hack/xdp-share.sh [BIN] [ROUNDS]   RECEIVER=xdpipe-steer10k PROG=xdp_steer SIZE=64
#
# Runs `BIN bench` on one cell for 8 s ROUNDS times (default 3), samples
# the bench process (its generator thread runs the whole path in its
# BPF_PROG_RUN call) for 3 s with perf (cpu-clock) and prints, per round,
# the samples under the generator's BPF_PROG_RUN and the share of those
# inside PROG (its own code and what it calls). The bare redirect
# program's share (RECEIVER=xdpipe-spin PROG=xdp_redirect) is the
# baseline. Needs root and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-bin/xdpipe}")
rounds=${2:-3}
receiver=${RECEIVER:-xdpipe-steer10k}
prog=${PROG:-xdp_steer}
size=${SIZE:-64}
[[ -x $bin ]] || { echo "xdp-share: $bin not built; run 'make build'" >&2; exit 1; }
command -v perf >/dev/null || { echo "xdp-share: needs perf (apt-get install linux-perf)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for r in $(seq "$rounds"); do
  "$bin" bench --sizes "$size" --receivers "$receiver" --duration 8s --retries 0 --quiet --json "$dir/bench.json" >"$dir/bench.txt" 2>&1 &
  pid=$!
  sleep 4 # the testbed is up and the cell sending
  perf record -q -e cpu-clock -g -p "$pid" -o "$dir/perf.data" -- sleep 3 >/dev/null 2>&1 || true
  wait "$pid" || { cat "$dir/bench.txt" >&2; exit 1; }
  perf script -i "$dir/perf.data" 2>/dev/null | awk -v r="$r" -v prog="$prog" -v rx="$receiver" '
    BEGIN { RS = "" }
    /bpf_test_run_xdp_live/ { total++; if (index($0, "_" prog "+")) inside++ }
    END {
      if (!total) { print "round " r ": no samples under the generator BPF_PROG_RUN path" > "/dev/stderr"; exit 1 }
      printf "round %d: %s: %d samples on the generator path, %.1f%% in %s\n", r, rx, total, 100 * inside / total, prog
    }'
done
