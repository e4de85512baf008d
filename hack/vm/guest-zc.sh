#!/bin/sh
# Guest side of the zero-copy stage: runs test binaries built on the host
# (go test -c) with their link pairs made of the VM's virtio-net NICs
# (testutil.NewLinkPair lends XDPIPE_VM_NICS to each test) and their sockets
# bound in zero-copy mode, under CI=true, so a test that would skip for a
# missing capability fails instead.
#
#   hack/vm/run.sh --nics 2 [--queues Q] -- ./guest-zc.sh BIN REGEX [BIN REGEX...]
#
# Each BIN (relative to the results directory) runs the tests REGEX selects
# (-test.run). ./xdpipe, when present, is the binary cmd/xdpipe's tests run.
# XDPIPE_TEST_BIND (default zerocopy) and XDPIPE_TEST_SCALE (default 0.1: TCG
# spends about a millisecond a frame) pass through; the NIC that reports RX
# hashes (run.sh --hash-report) passes as XDPIPE_TEST_RXHASH_NIC.
set -u
[ -n "${XDPIPE_VM_NICS:-}" ] || { echo "guest-zc: XDPIPE_VM_NICS is empty: boot with --nics 2"; exit 125; }
export XDPIPE_TEST_NICS="$XDPIPE_VM_NICS" XDPIPE_TEST_RXHASH_NIC="${XDPIPE_VM_HASH_NIC:-}" CI=true
export XDPIPE_TEST_BIND="${XDPIPE_TEST_BIND:-zerocopy}" XDPIPE_TEST_SCALE="${XDPIPE_TEST_SCALE:-0.1}"
[ -x ./xdpipe ] && export XDPIPE_TEST_BIN="$PWD/xdpipe"
echo "guest-zc: kernel $(uname -r), NICs $XDPIPE_VM_NICS, ${XDPIPE_VM_QUEUES:-1} queues, bind $XDPIPE_TEST_BIND, frames x$XDPIPE_TEST_SCALE"
rc=0
while [ $# -ge 2 ]; do
  echo "== $1 -test.run '$2'"
  start=$(date +%s)
  if ! "./$1" -test.v -test.count=1 -test.timeout 5m -test.run "$2"; then
    rc=1
    # The failed tests logged their NICs' counters (testutil); the whole
    # run's and the kernel's view, for what happened outside a test.
    for nic in $XDPIPE_VM_NICS; do echo "== ethtool -S $nic"; ethtool -S "$nic" | grep -v ': 0$'; done
    echo "== dmesg, last lines"; dmesg | tail -n 30
  fi
  echo "== $1: $(($(date +%s) - start)) s"
  shift 2
done
[ $# -eq 0 ] || { echo "guest-zc: a binary without a -test.run pattern: $*"; exit 2; }
exit $rc
