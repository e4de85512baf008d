#!/bin/sh
# Guest side of the SoftRoCE measurement: on one rxe pair, in one VM run,
# perftest's ib_send_bw and xdpipe's transport (TestMeasure in a test binary
# built with `go test -c -tags rdma ./rdma`) send the same number of
# messages of 64 and 1500 bytes, ROUNDS times each, back to back in
# alternating order (TCG on a shared host is noisy: a pair of adjacent runs
# sees about the same load). Prints one MEASURE line per run, the ratio of
# each pair, the medians, and the best run of each (the least disturbed by
# other load on the host). Ratios are of messages/s (ib_send_bw prints Gb/s
# with two decimals only).
#
#   hack/vm/run.sh -- .../guest-bench.sh ./rdma.test [N64] [N1500] [ROUNDS]
#
# Both sides: one RC QP, 128 sends in flight, 512 posted receives (ib_send_bw's
# defaults), sender and sink in separate processes, rates taken at the sender
# from the first post to the last completion. xdpipe runs with the default
# GOMAXPROCS (2 here): with GOMAXPROCS=1, every rxe post (a system call that
# runs the whole rxe pipeline inline, long under TCG) lets sysmon hand the P
# to another thread, which cost ~20% at 64 bytes; with an idle P it does not.
# (Real HCAs post without a system call.)
set -u
here=$(dirname "$0")
bin=$1
n64=${2:-40000}
n1500=${3:-20000}
rounds=${4:-5}
"$here/rxe-up.sh" /tmp/rxe.env >&2 || exit 1
set -a
. /tmp/rxe.env
set +a
res=/tmp/measure.txt
: >"$res"
rc=0

ib() { # size count round
  # Both ends bounded: a server whose client never came must not hang the run.
  timeout 300 ib_send_bw -d "$RXE_B_DEV" -x "$RXE_B_GID" -s "$1" -n "$2" -F --report_gbits >/tmp/ibsrv.log 2>&1 &
  srv=$!
  ok=0
  for try in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1 # the server needs a moment to listen (longer under load)
    if timeout 300 ib_send_bw -d "$RXE_A_DEV" -x "$RXE_A_GID" -s "$1" -n "$2" -F --report_gbits "$RXE_B_IP" >/tmp/ibcli.log 2>&1; then
      ok=1
      break
    fi
    grep -q "Couldn't connect" /tmp/ibcli.log || break
  done
  if [ $ok = 1 ]; then
    # "#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]"
    awk -v s="$1" -v n="$2" -v r="$3" '$1 == s && NF >= 5 { printf "MEASURE ib_send_bw size=%d msgs=%d gbps=%s mpps=%s round=%d\n", s, n, $4, $5, r }' /tmp/ibcli.log | tee -a "$res"
  else
    echo "ib_send_bw failed:"; cat /tmp/ibcli.log /tmp/ibsrv.log; rc=1
    kill "$srv" 2>/dev/null
  fi
  wait "$srv"
}
xd() { # size count round
  if XDPIPE_RDMA_MEASURE="$1:$2" "$bin" -test.run '^TestMeasure$' -test.count=1 -test.timeout 5m >/tmp/x.log 2>&1; then
    sed -n "s/^\(MEASURE xdpipe .*\)/\1 round=$3/p" /tmp/x.log | tee -a "$res"
  else
    cat /tmp/x.log; rc=1
  fi
}

for spec in "64:$n64" "1500:$n1500"; do
  size=${spec%%:*}
  n=${spec#*:}
  r=0
  while [ "$r" -lt "$rounds" ]; do
    r=$((r + 1))
    if [ $((r % 2)) -eq 1 ]; then ib "$size" "$n" "$r"; xd "$size" "$n" "$r"; else xd "$size" "$n" "$r"; ib "$size" "$n" "$r"; fi
  done
done

echo "== per-round ratio xdpipe / ib_send_bw (messages/s)"
awk '
  /^MEASURE/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    k = v["size"] " " v["round"]
    if ($2 == "ib_send_bw") { ib[k] = v["mpps"]; ibg[k] = v["gbps"] } else { xd[k] = v["mpps"]; xdg[k] = v["gbps"] }
    sizes[v["size"]] = 1; rounds[v["round"]] = 1
  }
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    printf "%-6s %-5s %12s %12s %12s %12s %7s\n", "size", "round", "ib Gb/s", "ib Mpps", "xdpipe Gb/s", "xdpipe Mpps", "ratio"
    for (s in sizes) {
      n = 0; delete R; delete A; delete B; delete AG; delete BG
      for (r in rounds) {
        k = s " " r
        if (!(k in ib) || !(k in xd) || ib[k] == 0) continue
        n++; R[n] = xd[k] / ib[k]; A[n] = ib[k]; B[n] = xd[k]; AG[n] = ibg[k]; BG[n] = xdg[k]
        printf "%-6s %-5s %12.6f %12.6f %12.6f %12.6f %7.3f\n", s, r, ibg[k], ib[k], xdg[k], xd[k], xd[k] / ib[k]
      }
      if (n) printf "%-6s %-5s %12.6f %12.6f %12.6f %12.6f %7.3f  <- medians\n", s, "med", median(AG, n), median(A, n), median(BG, n), median(B, n), median(R, n)
      if (n) {
        ma = mb = mag = mbg = 0
        for (i = 1; i <= n; i++) { if (A[i] > ma) ma = A[i]; if (B[i] > mb) mb = B[i]; if (AG[i] > mag) mag = AG[i]; if (BG[i] > mbg) mbg = BG[i] }
        printf "%-6s %-5s %12.6f %12.6f %12.6f %12.6f %7.3f  <- best of each (least disturbed run)\n", s, "best", mag, ma, mbg, mb, mb / ma
      }
    }
  }' "$res"
exit $rc
