#!/bin/sh
# Prints a seccomp profile for the xdpipe container: podman's default one
# (containers-common), which allows bpf(2) only to a container with
# CAP_SYS_ADMIN, with bpf(2) also allowed to one with CAP_BPF. xdpipe then
# runs without CAP_SYS_ADMIN (deploy/README.md):
#
#   deploy/container/seccomp.sh > /etc/xdpipe/seccomp.json
#   podman run --security-opt seccomp=/etc/xdpipe/seccomp.json ...
#
# Its argument is the profile to start from (default: podman's).
set -eu
jq '(.syscalls[] | select(.action == "SCMP_ACT_ERRNO" and (.names | index("bpf"))) | .excludes.caps) += ["CAP_BPF"]
  | .syscalls += [{"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_BPF"]}, "excludes": {}}]' \
  "${1:-/usr/share/containers/seccomp.json}"
