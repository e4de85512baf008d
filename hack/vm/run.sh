#!/usr/bin/env bash
# xdpipe's VM test bed, for SoftRoCE and for AF_XDP zero-copy on virtio-net:
# boots the Debian trixie-backports kernel (>= 6.13) that guest-kernel.sh
# fetched, the one guest-kernel.pin names (virtio-net with AF_XDP
# zero-copy, rdma_rxe), under qemu with the
# host's root shared read-only over virtio-9p, runs one command in the guest
# and returns its exit status. The guest runs the host's own binaries (go
# test -c output, rdma-core, perftest, iproute2, ethtool).
#
#   hack/vm/run.sh [options] -- COMMAND [ARGS...]
#
#   --nics N        0 (default) or 2 virtio-net NICs able to bind AF_XDP in
#                   zero-copy mode (iommu_platform=on), wired to each other,
#                   named xzc0 and xzc1 in the guest (MACs 02:58:44:50:7a:00
#                   and :01), up, with IPv6 off (no stray frames)
#   --queues Q      queue pairs per NIC (default 1). 1: the NICs are joined
#                   by a qemu hub. More: each NIC is a multi-queue tap in a
#                   network namespace that run.sh makes (and always removes),
#                   bridged together; needs root. The guest sets Q combined
#                   channels (ethtool -L)
#   --noiommu-nic   one more NIC without iommu_platform (xzcn, 02:...:7a:0f),
#                   on the same wire: the driver has no DMA API there and
#                   refuses zero-copy
#   --hash-report   xzc1 reports each frame's RSS hash to the driver (virtio-net
#                   hash=on: VIRTIO_NET_F_HASH_REPORT, which qemu offers only
#                   over a tap, and computes in userspace), with the guest's
#                   receive-hashing on; xzc0 and xzcn do not. The NICs are
#                   then taps as with --queues > 1; needs root
#   --out DIR       results directory, shared read-write with the guest as
#                   /tmp/results (default: a new mktemp -d, printed at the end)
#   --timeout SEC   wall-clock limit for the whole VM run (default 600); on
#                   expiry qemu is killed and the exit status is 124
#   --mem MIB       guest memory (default 1024)
#   --smp N         guest CPUs (default 2)
#   --accel A       kvm, tcg or auto (default auto, or $XDPIPE_VM_ACCEL):
#                   auto uses KVM when /dev/kvm is present and a probe boot
#                   works under it (cached in /run/xdpipe/vm-accel until the
#                   host reboots), TCG otherwise
#   --tcg-thread T  single (default) or multi: multi-threaded TCG runs the
#                   vCPUs in parallel, but the guest now and then oopses
#                   (int3 in bpf_dispatcher_xdp_func) when an XDP program is
#                   attached while the other vCPU runs XDP
#
# In the guest: proc, sys, devtmpfs, tmpfs on /tmp, /run, /dev/shm; the
# modules for 9p, veth, virtio_net and rdma_rxe are loaded; no RDMA device
# exists yet (hack/vm/rdma/rxe-up.sh makes them). COMMAND runs chrooted in the
# host's root as root with cwd /tmp/results and, in its environment,
# XDPIPE_IN_VM=1, XDPIPE_VM_KERNEL (uname -r), XDPIPE_VM_NICS ("xzc0 xzc1" or
# empty), XDPIPE_VM_QUEUES (Q), XDPIPE_VM_NOIOMMU_NIC (xzcn or empty),
# XDPIPE_VM_HASH_NIC (xzc1 with --hash-report, or empty) and
# the host's CI (so that under CI=true a test in the guest fails where it
# would skip). Its
# stdout+stderr go to DIR/command.log, its exit status to DIR/status, the
# serial console to DIR/console.log. Exit status of run.sh: COMMAND's status,
# 124 on timeout, 125 when the VM failed before reporting a status.
#
# Needs: qemu-system-x86, busybox-static, cpio, kmod, xz-utils and the guest
# kernel (hack/deps.sh vm). Root only for --queues > 1 and --hash-report.
set -euo pipefail

out="" timeout=600 mem=1024 smp=2 accel=${XDPIPE_VM_ACCEL:-auto}
nics=0 queues=1 noiommu=0 hash=0 tcg_thread=single
usage="usage: $0 [--nics 0|2] [--queues Q] [--noiommu-nic] [--hash-report] [--out DIR] [--timeout SEC] [--mem MIB] [--smp N] [--accel kvm|tcg|auto] [--tcg-thread single|multi] -- COMMAND [ARGS...]"
while (($#)); do
  case $1 in
    --nics) nics=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    --noiommu-nic) noiommu=1; shift ;;
    --hash-report) hash=1; shift ;;
    --out) out=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    --tcg-thread) tcg_thread=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
(($#)) || { echo "$usage" >&2; exit 2; }
bad() { echo "vm: $*" >&2; echo "$usage" >&2; exit 2; }
[[ $nics == 0 || $nics == 2 ]] || bad "--nics must be 0 or 2"
[[ $queues =~ ^[1-9][0-9]*$ ]] && ((queues <= 16)) || bad "--queues must be 1..16"
((noiommu == 0 || nics == 2)) || bad "--noiommu-nic needs --nics 2"
((hash == 0 || nics == 2)) || bad "--hash-report needs --nics 2"
[[ $tcg_thread == single || $tcg_thread == multi ]] || bad "--tcg-thread must be single or multi"

die() { echo "vm: $*" >&2; exit 125; }
here=$(cd "$(dirname "$0")" && pwd)

# Says on stderr when the kernel is not the pinned one.
kroot=$("$here/guest-kernel.sh" --print) || die "no guest kernel: run hack/vm/guest-kernel.sh (hack/deps.sh vm)"
kver=$(cat "$kroot/release") kdeb=$(cat "$kroot/package") kernel=$kroot/vmlinuz
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (hack/deps.sh vm)"
busybox=$(command -v busybox) || die "busybox missing (hack/deps.sh vm)"
ldd "$busybox" >/dev/null 2>&1 && die "busybox must be static (busybox-static)"
# Taps for more than one queue pair, and for hash reports: qemu offers
# VIRTIO_NET_F_HASH_REPORT only when the peer takes virtio-net headers,
# which a hub port does not.
taps=$(( queues > 1 || hash ))
if ((taps)); then
  [[ $(id -u) == 0 ]] || die "--queues $queues or --hash-report needs root (taps in a network namespace)"
  command -v ip >/dev/null || die "ip missing (hack/deps.sh run)"
fi

if [[ -z $out ]]; then
  out=$(mktemp -d /tmp/xdpipe-vm.XXXXXX)
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/status" "$out/command.log" "$out/console.log"
work=$(mktemp -d /tmp/xdpipe-vm-initrd.XXXXXX)
qpid="" netns=""
cleanup() {
  if [[ -n $qpid ]]; then
    kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  if [[ -n $netns ]]; then
    # The taps and the bridge go with the namespace, once qemu is gone.
    ip netns pids "$netns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$netns" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The command, as a script the guest runs from the results share.
{
  echo '#!/bin/sh'
  printf 'cd /tmp/results || exit 125\nexec'
  printf ' %q' "$@"
  echo
} >"$out/command.sh"
chmod +x "$out/command.sh"

# --- initramfs: static busybox, the modules with their dependencies in load
# order, the NIC plan and /init.
mods=(virtio_pci 9pnet_virtio 9p veth rdma_rxe ib_uverbs rdma_ucm failover net_failover virtio_net)
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules,etc}
cp "$busybox" "$root/bin/busybox"
moddir=$kroot/lib/modules/$kver
depfile=$moddir/modules.dep
declare -A seen=()
order=()
add_mod() { # depth-first: dependencies first
  local name=$1 line path dep
  if ! line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.[a-z]+)?:" "$depfile" | head -1) || [[ -z $line ]]; then
    grep -qE "(^|/)${name//_/[_-]}\.ko" "$moddir/modules.builtin" 2>/dev/null && return 0
    die "module $name not in $depfile"
  fi
  path=${line%%:*}
  [[ -n ${seen[$path]:-} ]] && return 0
  seen[$path]=1
  # modules.dep lists the full closure; load it in reverse (deepest first).
  local deps=(${line#*:})
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
    dep=${deps[i]}
    [[ -n ${seen[$dep]:-} ]] && continue
    seen[$dep]=1
    order+=("$dep")
  done
  order+=("$path")
}
for m in "${mods[@]}"; do add_mod "$m"; done
for p in "${order[@]}"; do
  base=$(basename "$p")
  case $p in
    *.ko) cp "$moddir/$p" "$root/lib/modules/$base" ;;
    *.ko.xz) xz -dc "$moddir/$p" >"$root/lib/modules/${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$moddir/$p" >"$root/lib/modules/${base%.zst}" ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$root/lib/modules/${base%.gz}" ;;
  esac
  echo "${base%.ko*}.ko" >>"$root/lib/modules/order"
done

# NICs: "name mac" lines the init renames by MAC. With one queue pair and no
# hash reports a qemu hub joins them; otherwise multi-queue taps on a bridge
# in a namespace.
nic_plan=() nic_names=()
qemu_net=()
((nics == 2)) && nic_plan=("xzc0 02:58:44:50:7a:00 iommu" "xzc1 02:58:44:50:7a:01 iommu")
((noiommu)) && nic_plan+=("xzcn 02:58:44:50:7a:0f noiommu")
if ((${#nic_plan[@]})); then
  if ((taps)); then
    netns=xdpipe-vm-$$
    ip netns add "$netns" || die "ip netns add $netns failed"
    nsx() { ip netns exec "$netns" "$@"; }
    # No IPv6 on the host side of the wire: the taps and the bridge would
    # send router solicitations and MLD reports into the guest's counters.
    nsx sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || die "sysctl in $netns failed"
    nsx ip link add xzbr type bridge forward_delay 0 stp_state 0 mcast_snooping 0 || die "bridge in $netns failed"
    nsx ip link set xzbr up
  fi
  i=0
  for n in "${nic_plan[@]}"; do
    read -r name mac kind <<<"$n"
    nic_names+=("$name")
    dev="virtio-net-pci,netdev=n$i,mac=$mac,queue_reset=on,disable-legacy=on,romfile="
    [[ $kind == iommu ]] && dev+=",iommu_platform=on"
    [[ $name == xzc1 ]] && ((hash)) && dev+=",hash=on"
    ((queues > 1)) && dev+=",mq=on,vectors=$((2 * queues + 2))"
    if ((taps)); then
      # qemu opens a one-queue tap without IFF_MULTI_QUEUE.
      nsx ip tuntap add dev xzt$i mode tap $( ((queues > 1)) && echo multi_queue) || die "tap xzt$i in $netns failed"
      nsx ip link set xzt$i master xzbr up || die "tap xzt$i in $netns failed"
      qemu_net+=(-netdev "tap,id=n$i,ifname=xzt$i,script=no,downscript=no,vhost=off,queues=$queues" -device "$dev")
    else
      qemu_net+=(-netdev "hubport,id=n$i,hubid=0" -device "$dev")
    fi
    i=$((i + 1))
  done
fi
{
  for n in "${nic_plan[@]}"; do echo "$n"; done
} >"$root/etc/nics"
{
  echo "XDPIPE_VM_NICS='$( ((nics == 2)) && echo "xzc0 xzc1")'"
  echo "XDPIPE_VM_QUEUES=$queues"
  echo "XDPIPE_VM_NOIOMMU_NIC=$( ((noiommu)) && echo xzcn)"
  echo "XDPIPE_VM_HASH_NIC=$( ((hash)) && echo xzc1)"
  printf 'CI=%q\n' "${CI:-}"
} >"$root/etc/vm.env"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "vm: $*" >/dev/console; }
fail() { say "FATAL: $*"; echo "XDPIPE_VM_STATUS=125" >/dev/console; poweroff -f; sleep 5; echo o >/proc/sysrq-trigger; }
say "booted $(uname -r)"
grep -q xdpipe.probe /proc/cmdline && { echo "XDPIPE_VM_PROBE_OK" >/dev/console; poweroff -f; }
while read -r m; do
  insmod /lib/modules/$m 2>/dev/null || grep -q "^${m%.ko} " /proc/modules || fail "insmod $m"
done </lib/modules/order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot || fail "mount host root"
for d in /proc /sys /dev; do mount --bind $d /newroot$d || fail "bind $d"; done
mkdir -p /dev/shm
for d in /tmp /run /dev/shm; do mount -t tmpfs -o mode=1777 tmpfs /newroot$d || fail "tmpfs $d"; done
mkdir -p /newroot/tmp/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /newroot/tmp/results || fail "mount results"
ip link set lo up
. /etc/vm.env
while read -r name mac kind; do
  dev=""
  for a in /sys/class/net/*/address; do
    [ "$(cat $a)" = "$mac" ] && dev=${a%/address} && dev=${dev##*/}
  done
  [ -n "$dev" ] || fail "no NIC with MAC $mac"
  ip link set "$dev" name "$name" || fail "rename $dev to $name"
  echo 1 >/proc/sys/net/ipv6/conf/$name/disable_ipv6
  if [ "$XDPIPE_VM_QUEUES" -gt 1 ]; then
    chroot /newroot /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin ethtool -L "$name" combined "$XDPIPE_VM_QUEUES" || fail "ethtool -L $name combined $XDPIPE_VM_QUEUES"
  fi
  if [ "$name" = "$XDPIPE_VM_HASH_NIC" ]; then
    chroot /newroot /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin ethtool -K "$name" rxhash on || fail "ethtool -K $name rxhash on"
  fi
  ip link set "$name" up || fail "ip link set $name up"
done </etc/nics
say "running command"
chroot /newroot /usr/bin/env -i HOME=/root PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  TMPDIR=/tmp XDPIPE_IN_VM=1 XDPIPE_VM_KERNEL="$(uname -r)" XDPIPE_VM_NICS="$XDPIPE_VM_NICS" \
  XDPIPE_VM_QUEUES="$XDPIPE_VM_QUEUES" XDPIPE_VM_NOIOMMU_NIC="$XDPIPE_VM_NOIOMMU_NIC" XDPIPE_VM_HASH_NIC="$XDPIPE_VM_HASH_NIC" CI="$CI" \
  /bin/sh -c '/tmp/results/command.sh >/tmp/results/command.log 2>&1' </dev/null
rc=$?
echo $rc >/newroot/tmp/results/status
sync
umount /newroot/tmp/results 2>/dev/null
echo "XDPIPE_VM_STATUS=$rc" >/dev/console
poweroff -f
sleep 5
echo o >/proc/sysrq-trigger
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"

# --- qemu
qemu_args=(
  -nodefaults -no-user-config -nographic -no-reboot
  -machine q35 -m "$mem" -smp "$smp"
  -kernel "$kernel" -initrd "$work/initrd.cpio"
  -serial stdio -monitor none
  -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev "local,id=results,path=$out,security_model=none"
  -device virtio-9p-pci,fsdev=results,mount_tag=results
)
append="console=ttyS0 panic=-1 loglevel=4 mitigations=off tsc=reliable"

# The probe's answer holds until the host reboots: cached per boot id.
accel_cache=/run/xdpipe/vm-accel
kvm_usable() {
  [[ -e /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] || return 1
  local boot got
  boot=$(cat /proc/sys/kernel/random/boot_id)
  got=$(sed -n "s/^$boot //p" "$accel_cache" 2>/dev/null)
  if [[ -z $got ]]; then
    # /dev/kvm can exist without running a standard guest (nested
    # paravirtual hypervisors, where the guest hangs in its BIOS): boot the
    # initramfs once in probe mode to be sure (about a second under KVM).
    got=tcg
    timeout -k 5 20 qemu-system-x86_64 "${qemu_args[@]}" -accel kvm -cpu host \
      -append "$append xdpipe.probe" </dev/null 2>&1 | grep -q XDPIPE_VM_PROBE_OK && got=kvm
    { mkdir -p "${accel_cache%/*}" && echo "$boot $got" >"$accel_cache"; } 2>/dev/null || true
  fi
  [[ $got == kvm ]]
}
tcg_args=(-accel "tcg,thread=$tcg_thread" -cpu max)
case $accel in
  kvm) accel_args=(-accel kvm -cpu host) ;;
  tcg) accel_args=("${tcg_args[@]}") ;;
  auto)
    if kvm_usable; then accel=kvm accel_args=(-accel kvm -cpu host)
    else accel=tcg accel_args=("${tcg_args[@]}"); fi ;;
  *) bad "--accel must be kvm, tcg or auto" ;;
esac
[[ $accel == tcg ]] && accel="tcg ($tcg_thread-threaded)"

echo "vm: kernel $kver (Debian $kdeb), accel $accel, ${mem} MiB, $smp CPUs, NICs: ${nic_names[*]:-none} ($queues queue pairs), results in $out" >&2
start=$SECONDS
nsrun=()
[[ -n $netns ]] && nsrun=(ip netns exec "$netns")
set +e
"${nsrun[@]}" timeout -k 10 "$timeout" qemu-system-x86_64 "${qemu_args[@]}" "${accel_args[@]}" "${qemu_net[@]}" \
  -append "$append" </dev/null >"$out/console.log" 2>&1 &
qpid=$!
wait "$qpid"
qrc=$?
qpid=""
set -e
elapsed=$((SECONDS - start))

if [[ -f $out/command.log ]]; then cat "$out/command.log"; fi
if ((qrc == 124 || qrc == 137)); then
  echo "vm: TIMEOUT after ${timeout}s (console: $out/console.log)" >&2
  tail -n 20 "$out/console.log" >&2
  exit 124
fi
status=$(cat "$out/status" 2>/dev/null || true)
if [[ ! $status =~ ^[0-9]+$ ]]; then
  echo "vm: the VM reported no status (qemu exit $qrc); console:" >&2
  tail -n 40 "$out/console.log" >&2
  exit 125
fi
echo "vm: command exited $status after ${elapsed}s" >&2
exit "$status"
