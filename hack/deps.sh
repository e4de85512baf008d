#!/usr/bin/env bash
# Installs the Debian packages a make target needs, idempotently: packages
# already installed are not touched, and apt-get runs only when one is missing.
#
#   hack/deps.sh run       iproute2, ethtool, ping: the veth testbed and demo
#   hack/deps.sh test      run + tshark (pcap checks) + sockperf (the reflect stage) + nfdump (the IPFIX stage's
#                          collector: nfcapd, nfdump) + bpf toolchain + bench
#   hack/deps.sh bench     run + libxdp, libbpf and a C compiler for hack/xsk-c-peer,
#                          perf (xdpipe bench --perf)
#   hack/deps.sh generate  the pinned clang and libbpf headers for bpf2go
#   hack/deps.sh vm        qemu, busybox and the guest kernel for the VM test bed
#                          (hack/vm: virtio-net zero-copy, SoftRoCE); the kernel
#                          is downloaded into a cache, not installed
#   hack/deps.sh rdma-dev  the verbs headers and a C compiler: what building
#                          with -tags rdma needs (make lint checks that build)
#   hack/deps.sh rdma      vm + rdma-dev + rdma-core and perftest
#   hack/deps.sh image     podman and runc (deploy/container's image and its
#                          test), jq (its seccomp profile), systemd-analyze
#                          (verifies deploy/systemd's unit) and setpriv (runs
#                          xdpipe with the unit's capabilities)
#
#   hack/deps.sh --versions SET...
#                          installs nothing: prints the installed version of
#                          every package of the sets on one line (apt keeps
#                          them current within the release; the test output
#                          records which ones a run had)
set -euo pipefail

versions=0
if [[ ${1:-} == --versions ]]; then
  versions=1
  shift
fi

run_pkgs=(iproute2 ethtool iputils-ping procps)
generate_pkgs=(clang-14 llvm-14 libbpf-dev linux-libc-dev)
bench_pkgs=("${run_pkgs[@]}" libxdp-dev libbpf-dev gcc libc6-dev make linux-perf)
test_pkgs=("${run_pkgs[@]}" tshark nfdump sockperf "${generate_pkgs[@]}" "${bench_pkgs[@]}")
vm_pkgs=(qemu-system-x86 busybox-static cpio kmod xz-utils apt dpkg debian-archive-keyring "${run_pkgs[@]}")
rdma_dev_pkgs=(libibverbs-dev librdmacm-dev gcc libc6-dev)
rdma_pkgs=("${vm_pkgs[@]}" "${rdma_dev_pkgs[@]}" rdma-core ibverbs-providers perftest)
# runc, not crun: crun refuses a hybrid cgroup v1 layout (hosts like this one).
# golang-github-containers-common (a dependency of podman, named for the
# record) has podman's seccomp profile, which deploy/container/seccomp.sh edits.
image_pkgs=(podman runc golang-github-containers-common jq systemd util-linux "${run_pkgs[@]}")

want=() kernel=0
for set in "$@"; do
  case $set in
    run) want+=("${run_pkgs[@]}") ;;
    test) want+=("${test_pkgs[@]}") ;;
    generate) want+=("${generate_pkgs[@]}") ;;
    bench) want+=("${bench_pkgs[@]}") ;;
    vm) want+=("${vm_pkgs[@]}"); kernel=1 ;;
    rdma-dev) want+=("${rdma_dev_pkgs[@]}") ;;
    rdma) want+=("${rdma_pkgs[@]}"); kernel=1 ;;
    image) want+=("${image_pkgs[@]}") ;;
    *) echo "hack/deps.sh: unknown set '$set' (run, test, generate, bench, vm, rdma-dev, rdma, image)" >&2; exit 2 ;;
  esac
done

if ((versions)); then
  line=""
  for p in $(printf '%s\n' "${want[@]}" | sort -u); do
    v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || true
    line+=" $p=${v:-none}"
  done
  echo "packages:$line"
  exit 0
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "hack/deps.sh: missing packages ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The VM's guest kernel: fetched once into its cache (a no-op when cached).
if ((kernel)); then
  "$(dirname "$0")/vm/guest-kernel.sh" >/dev/null
fi
