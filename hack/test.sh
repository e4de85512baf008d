#!/usr/bin/env bash
# Runs xdpipe's Go tests in two lanes at once, each one package at a time:
# the packages that boot the VM test bed (qemu under TCG keeps one core busy
# for minutes) and all the others (veth, XDP, AF_XDP on the host). Sequential,
# the VM lane alone was most of `make test`'s time.
#
#   hack/test.sh [go test flags...]
#
# Both lanes write to stdout as go test does (a package's output when it
# ends). Then each lane's wall time. Exit status: 1 when either lane failed.
set -uo pipefail
cd "$(dirname "$0")/.."

vm_pkgs=(./internal/vmtest ./rdma)
mapfile -t host_pkgs < <(go list ./... | grep -v -e '/internal/vmtest$' -e '/rdma$')
((${#host_pkgs[@]})) || { echo "test.sh: go list found no packages" >&2; exit 1; }

start=$SECONDS
go test "$@" "${vm_pkgs[@]}" &
vm=$!
# The VM lane's qemu is stopped by its own cleanup when go test is; on an
# interrupt, stop the lane and wait for it.
trap 'kill -TERM $vm 2>/dev/null; wait $vm; exit 130' INT TERM
go test "$@" "${host_pkgs[@]}"
host_rc=$?
echo "== test lane host: $((SECONDS - start)) s (exit $host_rc)"
wait $vm
vm_rc=$?
trap - INT TERM
echo "== test lane vm: $((SECONDS - start)) s (exit $vm_rc)"
((host_rc == 0 && vm_rc == 0))
