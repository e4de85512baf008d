#!/bin/sh
# Guest side of the SoftRoCE measurement: on one rxe pair, in one VM run,
# perftest's ib_send_bw and xdpipe's transport (TestMeasure in a test binary
# built with `go test -c -tags rdma ./rdma`) send the same number of
# messages of 64 and 1500 bytes, alternating, ROUNDS times each; prints one
# MEASURE line per run and a summary with the ratio of the medians.
#
#   hack/rdma-vm/run.sh -- .../guest-bench.sh ./rdma.test [N64] [N1500] [ROUNDS]
#
# Both sides use one RC QP, 128 sends in flight and 512 posted receives
# (ib_send_bw's defaults); rates are taken at the sender.
set -u
here=$(dirname "$0")
bin=$1
n64=${2:-200000}
n1500=${3:-100000}
rounds=${4:-3}
"$here/rxe-up.sh" /tmp/rxe.env >&2 || exit 1
set -a
. /tmp/rxe.env
set +a
res=/tmp/measure.txt
: >"$res"
rc=0
for spec in "64:$n64" "1500:$n1500"; do
  size=${spec%%:*}
  n=${spec#*:}
  r=0
  while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    ib_send_bw -d "$RXE_B_DEV" -x "$RXE_B_GID" -s "$size" -n "$n" -F --report_gbits >/tmp/ibsrv.log 2>&1 &
    srv=$!
    sleep 1
    if ib_send_bw -d "$RXE_A_DEV" -x "$RXE_A_GID" -s "$size" -n "$n" -F --report_gbits "$RXE_B_IP" >/tmp/ibcli.log 2>&1; then
      # "#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]"
      awk -v s="$size" -v n="$n" '$1 == s && NF >= 5 { printf "MEASURE ib_send_bw size=%d msgs=%d gbps=%s mpps=%s\n", s, n, $4, $5 }' /tmp/ibcli.log | tee -a "$res"
    else
      echo "ib_send_bw failed:"; cat /tmp/ibcli.log /tmp/ibsrv.log; rc=1
    fi
    wait "$srv"
    XDPIPE_RDMA_MEASURE="$size:$n" "$bin" -test.run '^TestMeasure$' -test.count=1 -test.timeout 10m >/tmp/x.log 2>&1 || { cat /tmp/x.log; rc=1; }
    grep '^MEASURE' /tmp/x.log | tee -a "$res"
  done
done
echo "== summary (median of $rounds runs each)"
for size in 64 1500; do
  for tool in ib_send_bw xdpipe; do
    grep "^MEASURE $tool size=$size " "$res" | sed 's/.*gbps=\([0-9.]*\) mpps=\([0-9.]*\).*/\1 \2/' | sort -n |
      awk -v t="$tool" -v s="$size" '{ g[NR] = $1; p[NR] = $2 } END { if (NR) { m = int((NR + 1) / 2); printf "%s %s %s %s\n", t, s, g[m], p[m] } }'
  done
done | awk '
  { gb[$1 " " $2] = $3; pp[$1 " " $2] = $4 }
  END {
    printf "%-6s %14s %14s %14s %14s %8s\n", "size", "ib_send Gb/s", "ib_send Mpps", "xdpipe Gb/s", "xdpipe Mpps", "ratio"
    for (i = 1; i <= 2; i++) {
      s = (i == 1) ? 64 : 1500
      a = gb["ib_send_bw " s]; b = gb["xdpipe " s]
      printf "%-6d %14s %14s %14s %14s %8.3f\n", s, a, pp["ib_send_bw " s], b, pp["xdpipe " s], (a > 0) ? b / a : 0
    }
  }'
exit $rc
