#!/usr/bin/env bash
# Runs xdpipe's Go tests in two lanes at once, each one package at a time.
# qemu under TCG keeps one core busy for minutes per VM boot, so the VM
# packages are split over the lanes: one runs the zero-copy and verifier
# boots (internal/vmtest), the other the host packages (veth, XDP, AF_XDP),
# then SoftRoCE (rdma). Sequential, the VM boots alone took most of
# `make test`'s time.
#
#   hack/test.sh [go test flags...]
#
# Both lanes write to stdout as go test does (a package's output when it
# ends), then each lane's wall time. Exit status: 1 when either lane failed.
set -uo pipefail
cd "$(dirname "$0")/.."

mapfile -t host_pkgs < <(go list ./... | grep -v -e '/internal/vmtest$' -e '/rdma$')
((${#host_pkgs[@]})) || { echo "test.sh: go list found no packages" >&2; exit 1; }

start=$SECONDS
go test "$@" ./internal/vmtest &
vm=$!
# An interrupted run stops the other lane too (its qemu goes with go test:
# vmtest's cleanup) and waits for it.
trap 'kill -TERM $vm 2>/dev/null; wait $vm; exit 130' INT TERM
go test "$@" "${host_pkgs[@]}" ./rdma
host_rc=$?
echo "== test lane host, then rdma: $((SECONDS - start)) s (exit $host_rc)"
wait $vm
vm_rc=$?
trap - INT TERM
echo "== test lane internal/vmtest: $((SECONDS - start)) s (exit $vm_rc)"
((host_rc == 0 && vm_rc == 0))
