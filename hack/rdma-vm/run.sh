#!/usr/bin/env bash
# SoftRoCE test bed: boots Debian's kernel (which ships rdma_rxe) under qemu
# with the host's root shared read-only over virtio-9p, runs one command in the
# guest and returns its exit status. The host kernel has no RDMA; the guest
# runs the host's own binaries (go test -c output, rdma-core, perftest).
#
#   hack/rdma-vm/run.sh [options] -- COMMAND [ARGS...]
#
#   --out DIR       results directory, shared read-write with the guest as
#                   /tmp/results (default: a new mktemp -d, printed at the end)
#   --timeout SEC   wall-clock limit for the whole VM run (default 600); on
#                   expiry qemu is killed and the exit status is 124
#   --mem MIB       guest memory (default 1024)
#   --smp N         guest CPUs (default 2)
#   --accel A       kvm, tcg or auto (default auto, or $XDPIPE_VM_ACCEL):
#                   auto uses KVM when /dev/kvm is present and a probe boot
#                   works under it, TCG otherwise
#
# In the guest: proc, sys, devtmpfs, tmpfs on /tmp, /run, /dev/shm; the
# modules for 9p, veth and rdma_rxe (with crc32_generic, which rxe needs but
# does not declare) are loaded; no RDMA device exists yet: the command creates
# them (hack/rdma-vm/rxe-up.sh). COMMAND runs chrooted in the host's root as
# root with cwd /tmp/results; its stdout+stderr go to DIR/command.log, its
# exit status to DIR/status. Exit status of run.sh: COMMAND's status, 124 on
# timeout, 125 when the VM failed before reporting a status.
#
# Needs: qemu-system-x86, linux-image-amd64, busybox-static, cpio, kmod
# (hack/deps.sh rdma). Does not need root on the host.
set -euo pipefail

out="" timeout=600 mem=1024 smp=2 accel=${XDPIPE_VM_ACCEL:-auto}
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
(($#)) || { echo "usage: $0 [--out DIR] [--timeout SEC] [--mem MIB] [--smp N] [--accel kvm|tcg|auto] -- COMMAND [ARGS...]" >&2; exit 2; }

die() { echo "rdma-vm: $*" >&2; exit 125; }

# Debian's kernel: the newest /boot/vmlinuz-*-amd64 whose modules are present.
kernel="" kver=""
for k in $(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V -r); do
  v=${k#/boot/vmlinuz-}
  if [[ -f /lib/modules/$v/modules.dep ]] && compgen -G "/lib/modules/$v/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko*" >/dev/null; then
    kernel=$k kver=$v
    break
  fi
done 2>/dev/null
[[ -n $kernel ]] || die "no /boot/vmlinuz-*-amd64 with rdma_rxe under /lib/modules (hack/deps.sh rdma)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (hack/deps.sh rdma)"
busybox=$(command -v busybox) || die "busybox missing (hack/deps.sh rdma)"
ldd "$busybox" >/dev/null 2>&1 && die "busybox must be static (busybox-static)"

if [[ -z $out ]]; then
  out=$(mktemp -d /tmp/xdpipe-rdma-vm.XXXXXX)
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/status" "$out/command.log" "$out/console.log"
work=$(mktemp -d /tmp/xdpipe-rdma-initrd.XXXXXX)
qpid=""
cleanup() {
  [[ -n $qpid ]] && kill "$qpid" 2>/dev/null || true
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
# order, and /init.
mods=(virtio_pci 9pnet_virtio 9p veth crc32_generic rdma_rxe ib_uverbs rdma_ucm)
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$root/bin/busybox"
depfile=/lib/modules/$kver/modules.dep
declare -A seen=()
order=()
add_mod() { # depth-first: dependencies first
  local name=$1 line path dep
  line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.[a-z]+)?:" "$depfile" | head -1) || die "module $name not in $depfile"
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
    *.ko) cp "/lib/modules/$kver/$p" "$root/lib/modules/$base" ;;
    *.ko.xz) xz -dc "/lib/modules/$kver/$p" >"$root/lib/modules/${base%.xz}" ;;
    *.ko.zst) zstd -qdc "/lib/modules/$kver/$p" >"$root/lib/modules/${base%.zst}" ;;
    *.ko.gz) gzip -dc "/lib/modules/$kver/$p" >"$root/lib/modules/${base%.gz}" ;;
  esac
  echo "${base%.ko*}.ko" >>"$root/lib/modules/order"
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "rdma-vm: $*" >/dev/console; }
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
say "running command"
chroot /newroot /usr/bin/env -i HOME=/root PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  TMPDIR=/tmp XDPIPE_IN_VM=1 /bin/sh -c '/tmp/results/command.sh >/tmp/results/command.log 2>&1' </dev/null
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

kvm_usable() {
  [[ -e /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] || return 1
  # /dev/kvm can exist without running a standard guest (nested paravirtual
  # hypervisors): boot the initramfs once in probe mode to be sure.
  timeout -k 5 60 qemu-system-x86_64 "${qemu_args[@]}" -accel kvm -cpu host \
    -append "$append xdpipe.probe" </dev/null 2>&1 | grep -q XDPIPE_VM_PROBE_OK
}
case $accel in
  kvm) accel_args=(-accel kvm -cpu host) ;;
  tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
  auto)
    if kvm_usable; then accel=kvm accel_args=(-accel kvm -cpu host)
    else accel=tcg accel_args=(-accel tcg,thread=multi -cpu max); fi ;;
  *) echo "rdma-vm: --accel must be kvm, tcg or auto" >&2; exit 2 ;;
esac

echo "rdma-vm: kernel $kver, accel $accel, ${mem} MiB, $smp CPUs, results in $out" >&2
start=$SECONDS
set +e
timeout -k 10 "$timeout" qemu-system-x86_64 "${qemu_args[@]}" "${accel_args[@]}" -append "$append" \
  </dev/null >"$out/console.log" 2>&1 &
qpid=$!
wait "$qpid"
qrc=$?
qpid=""
set -e
elapsed=$((SECONDS - start))

if [[ -f $out/command.log ]]; then cat "$out/command.log"; fi
if ((qrc == 124 || qrc == 137)); then
  echo "rdma-vm: TIMEOUT after ${timeout}s (console: $out/console.log)" >&2
  tail -n 20 "$out/console.log" >&2
  exit 124
fi
status=$(cat "$out/status" 2>/dev/null || true)
if [[ ! $status =~ ^[0-9]+$ ]]; then
  echo "rdma-vm: the VM reported no status (qemu exit $qrc); console:" >&2
  tail -n 40 "$out/console.log" >&2
  exit 125
fi
echo "rdma-vm: command exited $status after ${elapsed}s" >&2
exit "$status"
