#!/usr/bin/env bash
# Fetches the guest kernel for the zero-copy VM: the newest Debian
# trixie-backports kernel >= 6.13 (virtio_net's AF_XDP zero-copy transmit and
# its xsk-zerocopy XDP feature), downloaded with a private apt configuration
# and unpacked, never installed on the host. The host's apt sources and
# package state stay untouched.
#
#   hack/vm/guest-kernel.sh [--print]
#
# Caches under $XDPIPE_VM_CACHE (default /var/cache/xdpipe/vm-kernel):
#   VER/vmlinuz, VER/lib/modules/VER/ (depmod'ed), VER/package (the Debian
#   version it came from), and `current`, the VER last fetched. Once a kernel
#   is cached the mirror is not asked again (delete the cache to refresh).
# Prints the kernel directory (VER/) on stdout. --print only prints it, and
# fails when nothing is cached.
#
# A failure prints one line naming the package or step and exits non-zero;
# every network step is bounded by timeouts.
set -euo pipefail

cache=${XDPIPE_VM_CACHE:-/var/cache/xdpipe/vm-kernel}
mirror=${XDPIPE_VM_MIRROR:-http://deb.debian.org/debian}
suite=trixie-backports
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
min=6.13

die() { echo "guest-kernel: $*" >&2; exit 1; }

cached() { # the cached kernel directory, if complete
  local v
  v=$(cat "$cache/current" 2>/dev/null) || return 1
  [[ -f $cache/$v/vmlinuz && -f $cache/$v/lib/modules/$v/modules.dep ]] || return 1
  echo "$cache/$v"
}

if [[ ${1:-} == --print ]]; then
  cached || die "no guest kernel cached in $cache: run hack/vm/guest-kernel.sh (or hack/deps.sh vm)"
  exit 0
fi
if cached; then exit 0; fi

for t in apt-get dpkg-deb depmod; do command -v $t >/dev/null || die "$t missing (apt-get install apt dpkg kmod)"; done
[[ -r $keyring ]] || die "$keyring missing (apt-get install debian-archive-keyring)"
mkdir -p "$cache" 2>/dev/null || die "cannot create $cache: run as root or set XDPIPE_VM_CACHE"
# One fetch at a time; a second caller waits, then finds the kernel cached.
exec 9>"$cache/.lock"
flock -w 1200 9 || die "another guest-kernel.sh holds $cache/.lock for 20 minutes"
if cached; then exit 0; fi
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{lists/partial,archives/partial,etc/preferences.d,deb}
echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/etc/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/etc/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache::Archives=$work/archives"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o APT::Architecture=amd64 -o APT::Architectures=amd64
  -o Acquire::Languages=none
  -o Acquire::http::Timeout=30 -o Acquire::Retries=2
  -o Debug::NoLocking=1 -o APT::Update::Error-Mode=any -o APT::Sandbox::User=root
)
timeout -k 10 300 apt-get "${apt_opts[@]}" -qq update >"$work/update.log" 2>&1 ||
  die "cannot fetch the guest kernel (linux-binary-*): apt-get update of $mirror $suite failed: $(grep -m1 "^E:" "$work/update.log" || tail -n1 "$work/update.log")"

# Newest linux-binary-VER-amd64 (VER = x.y.z+debNN) with x.y >= 6.13.
ver=$(apt-cache "${apt_opts[@]}" pkgnames linux-binary- 2>/dev/null |
  sed -n 's/^linux-binary-\([0-9][0-9.]*+deb[0-9]*-amd64\)$/\1/p' |
  awk -v min=$min '{ split($0, a, "[.+]"); split(min, m, "."); if (a[1] > m[1] || (a[1] == m[1] && a[2] >= m[2])) print }' |
  sort -V | tail -n1)
[[ -n $ver ]] || die "no package linux-binary-X.Y.Z+debNN-amd64 with X.Y >= $min in $mirror $suite"
pkgs=("linux-binary-$ver" "linux-modules-$ver" "linux-base-$ver")
for p in "${pkgs[@]}"; do
  (cd "$work/deb" && timeout -k 10 600 apt-get "${apt_opts[@]}" -qq download "$p" >"$work/download.log" 2>&1) ||
    die "download of package $p from $mirror $suite failed: $(grep -m1 "^E:" "$work/download.log" || tail -n1 "$work/download.log")"
done
pkgver=$(dpkg-deb -f "$work"/deb/linux-binary-"$ver"_*.deb Version)

dir=$work/$ver
mkdir -p "$dir"
for d in "$work"/deb/*.deb; do dpkg-deb -x "$d" "$dir/x" || die "dpkg-deb -x $(basename "$d") failed"; done
# The packages keep the kernel as /usr/lib/modules/VER/vmlinuz (older ones
# as /boot/vmlinuz-VER); flatten to VER/vmlinuz and VER/lib/modules/VER.
kver=$ver
mods=$dir/x/usr/lib/modules/$kver
[[ -d $mods/kernel ]] || die "package linux-modules-$ver has no /usr/lib/modules/$kver/kernel"
if [[ -f $mods/vmlinuz ]]; then mv "$mods/vmlinuz" "$dir/vmlinuz"
elif [[ -f $dir/x/boot/vmlinuz-$kver ]]; then mv "$dir/x/boot/vmlinuz-$kver" "$dir/vmlinuz"
else die "package linux-binary-$ver has no vmlinuz for $kver"; fi
mkdir -p "$dir/lib/modules"
mv "$mods" "$dir/lib/modules/$kver"
rm -rf "$dir/x"
depmod -b "$dir" "$kver" || die "depmod -b for $kver failed"
echo "$pkgver" >"$dir/package"
rm -rf "${cache:?}/$ver"
mv "$dir" "$cache/$ver"
echo "$ver" >"$cache/current.tmp" && mv "$cache/current.tmp" "$cache/current"
echo "guest-kernel: fetched $ver (Debian $pkgver, $suite)" >&2
echo "$cache/$ver"
