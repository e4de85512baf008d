#!/bin/sh
# Guest side of the SoftRoCE test bed: runs a test binary built with
# `go test -c -tags rdma ./rdma`, in two phases:
#   1. before any RDMA device exists: the no-device error paths (TestNoDevice);
#   2. after rxe-up.sh made the rxe pair: every test, with RXE_* exported.
# Extra arguments go to phase 2 (e.g. -test.run TestDeliverExact).
#
#   hack/vm/run.sh -- /path/to/hack/vm/rdma/guest-test.sh ./rdma.test [-test.run X]
set -u
here=$(dirname "$0")
bin=$1
shift
rc=0
echo "== phase 1: no RDMA device"
XDPIPE_RDMA_NODEV=1 "$bin" -test.run '^TestNoDevice$' -test.v -test.count=1 -test.timeout 2m || rc=1
echo "== phase 2: rxe pair"
"$here/rxe-up.sh" /tmp/rxe.env || exit 1
set -a
. /tmp/rxe.env
set +a
# Everything the tests need is here now: a test that would skip fails instead.
export CI=true
"$bin" -test.v -test.count=1 -test.timeout 8m "$@" || rc=1
if [ -x ./xdpipe ]; then
  echo "== phase 3: xdpipe end to end (gen -> run with the rdma stage -> rdma-sink)"
  "$here/guest-e2e.sh" ./xdpipe || rc=1
fi
echo "== rdma resources after the tests"
rdma resource show
exit $rc
