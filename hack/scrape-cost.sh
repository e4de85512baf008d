#!/usr/bin/env bash
# What metrics scrapes cost the data path: `xdpipe run` with 10,000
# steering rules (the last one redirects) receives generated frames at RATE
# for SECONDS, once without scrapes and once with SCRAPES /metrics requests
# a second, alternating, ROUNDS times. Prints the frames the kernel dropped
# in front of the socket (rx ring full and rx_dropped, from run's summary)
# and the scrapes answered in each run (scrapes slower than 1/SCRAPES s
# make fewer):
#
#   hack/scrape-cost.sh [BIN] [RATE] [SECONDS] [SCRAPES] [ROUNDS]
#
# Defaults: bin/xdpipe, 300000 frames/s, 6 s, 100 a second, 3 rounds. The
# generator and the scrapes (curl --rate) run on CPU 0; run's worker is
# pinned to CPU 1 (--cpus 1) and its other threads go where the scheduler
# puts them, as a deployed instance's do.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-bin/xdpipe}")
rate=${2:-300000}
secs=${3:-6}
scrapes=${4:-100}
rounds=${5:-3}
[[ -x $BIN ]] || { echo "hack/scrape-cost.sh: $BIN not built (make build)" >&2; exit 1; }
hack/deps.sh run
source hack/testbed.sh
testbed_up scrape
ip -n "$NSB" link set lo up
tmp=$(mktemp -d)
mkdir "$tmp/bpf"
mount -t bpf bpffs "$tmp/bpf"
cleanup() { umount "$tmp/bpf" 2>/dev/null || true; rm -rf "$tmp"; testbed_down; }
trap cleanup EXIT
awk -v ip="$IPB" 'BEGIN {
  print "default: pass\nrules:"
  for (i = 0; i < 9999; i++)
    printf "  - priority: %d\n    proto: udp\n    dst: 198.18.%d.%d/32\n    dport: %d\n    action: drop\n", i + 1, int(i / 256), i % 256, 1000 + i % 50000
  printf "  - priority: 10000\n    name: gen\n    proto: udp\n    dst: %s/32\n    dport: 9\n    action: redirect\n", ip
}' >"$tmp/rules.yaml"

one() { # $1: scrapes a second (0: none); prints "dropped N received M, S scrapes"
  ip netns exec "$NSB" "$BIN" run --iface $IFB --queues 0 --stages count --rules "$tmp/rules.yaml" --pin-dir "$tmp/bpf" \
    --metrics 127.0.0.1:9464 --interval 0s --cpus 1 >"$tmp/run.out" 2>&1 &
  local run=$!
  for _ in $(seq 150); do grep -q "run: ready" "$tmp/run.out" && break; sleep 0.1; done
  grep -q "run: ready" "$tmp/run.out" || { cat "$tmp/run.out" >&2; exit 1; }
  if (($1 > 0)); then
    ip netns exec "$NSB" taskset -c 0 curl -s -o /dev/null -w '%{http_code}\n' --rate "$1/s" \
      "http://127.0.0.1:9464/metrics?[1-$(($1 * secs))]" >"$tmp/scrapes" &
  fi
  ip netns exec "$NSA" taskset -c 0 "$BIN" gen --iface $IFA --src-mac $MACA --dst-mac $MACB --src-ip $IPA --dst-ip $IPB \
    --rate "$rate" --duration "${secs}s" --quiet >/dev/null
  sleep 0.3
  kill -TERM $run
  wait $run || true
  wait # the scrapes
  local n=0
  (($1 > 0)) && n=$(grep -c '^200$' "$tmp/scrapes" || true)
  sed -n "s/.*received \([0-9]*\),.*kernel dropped \([0-9]*\) before the worker.*/dropped \2 received \1, $n scrapes/p" "$tmp/run.out"
}

echo "$(basename "$BIN") $($BIN version 2>/dev/null || true); $rate frames/s for ${secs}s, $scrapes scrapes/s; $(date -u +'%Y-%m-%d %H:%M UTC')"
for ((r = 1; r <= rounds; r++)); do
  echo "round $r: no scrapes: $(one 0)"
  echo "round $r: $scrapes/s: $(one "$scrapes")"
done
