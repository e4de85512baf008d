#!/usr/bin/env bash
# Fetches the guest kernel for the zero-copy VM: the Debian trixie-backports
# kernel that hack/vm/guest-kernel.pin names (>= 6.13: virtio_net's AF_XDP
# zero-copy transmit and its xsk-zerocopy XDP feature), downloaded with a
# private apt configuration, checked against the SHA-256 the pin records for
# each .deb, and unpacked, never installed on the host. The host's apt
# sources and package state stay untouched.
#
#   hack/vm/guest-kernel.sh [--print | --describe]
#
# The pin has one line per package: linux-binary-VER, linux-modules-VER and
# linux-base-VER (linux-image-VER is an empty meta package), each with its
# Debian version and the SHA-256 of its .deb. Backports drop old uploads:
# when the pinned kernel is no longer on the mirror, the newest VER >= 6.13
# there is used instead (apt checks it against the mirror's signed index),
# and one line on stderr says so, then and at every later use, until the pin
# names one that is cached or on the mirror.
#
# Caches under $XDPIPE_VM_CACHE (default /var/cache/xdpipe/vm-kernel), by
# kernel and Debian version, KEY = VER_DEBVER: KEY/vmlinuz,
# KEY/lib/modules/VER/ (depmod'ed), KEY/release (VER), KEY/package (DEBVER)
# and KEY/pin (the pin lines of its three .debs: what to commit to move the
# pin to it); `fallback` holds "PINNED-KEY KEY" when the pinned kernel was
# not on the mirror. A cached kernel is used without asking the mirror.
# Prints the kernel directory (KEY/) on stdout. --print only prints it, and
# fails when nothing is cached; --describe prints one line: the kernel, its
# Debian version and whether it is the pinned one.
#
# Environment: XDPIPE_VM_CACHE; XDPIPE_VM_KERNEL_PIN, another pin file;
# XDPIPE_VM_MIRROR (default http://deb.debian.org/debian), where a file:
# mirror (a directory on this machine) is trusted without a signature.
#
# A failure prints one line naming the package or step and exits non-zero;
# every network step is bounded by timeouts.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${XDPIPE_VM_CACHE:-/var/cache/xdpipe/vm-kernel}
mirror=${XDPIPE_VM_MIRROR:-http://deb.debian.org/debian}
pin=${XDPIPE_VM_KERNEL_PIN:-$here/guest-kernel.pin}
suite=trixie-backports
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
min=6.13

die() { echo "guest-kernel: $*" >&2; exit 1; }

# The pin: pver (VER), pdeb (DEBVER) and sums[PACKAGE] (SHA-256).
declare -A sums=()
pver="" pdeb=""
[[ -r $pin ]] || die "pin $pin missing"
while read -r p v s extra; do
  [[ -z $p || $p == \#* ]] && continue
  [[ -n $v && $s =~ ^[0-9a-f]{64}$ && -z $extra ]] || die "pin $pin: want 'PACKAGE DEBIAN-VERSION SHA256' lines, got '$p $v $s $extra'"
  [[ -z $pdeb || $v == "$pdeb" ]] || die "pin $pin: $p is $v, the others $pdeb: one Debian version for all"
  pdeb=$v sums[$p]=$s
  if [[ $p =~ ^linux-binary-([0-9][0-9.]*\+deb[0-9]+-amd64)$ ]]; then pver=${BASH_REMATCH[1]}; fi
done <"$pin"
[[ -n $pver ]] || die "pin $pin names no linux-binary-X.Y.Z+debNN-amd64"
for p in linux-binary-$pver linux-modules-$pver linux-base-$pver; do
  [[ -n ${sums[$p]:-} ]] || die "pin $pin has no line for $p"
done
((${#sums[@]} == 3)) || die "pin $pin: want exactly linux-binary-, linux-modules- and linux-base-$pver"
key() { echo "${1}_${2//:/%3a}"; }
pkey=$(key "$pver" "$pdeb")

complete() { # $1: a cache KEY; true when its kernel is all there
  local d=$cache/$1 v
  v=$(cat "$d/release" 2>/dev/null) || return 1
  [[ -f $d/vmlinuz && -f $d/package && -f $d/lib/modules/$v/modules.dep ]]
}

# The cached kernel for this pin: key, and pinned=1 when it is the pinned one.
key="" pinned=0
cached() {
  if complete "$pkey"; then
    key=$pkey pinned=1
    return 0
  fi
  local from to
  read -r from to 2>/dev/null <"$cache/fallback" || return 1
  [[ $from == "$pkey" ]] && complete "$to" || return 1
  key=$to pinned=0
}

name() { echo "$(cat "$cache/$1/release") (Debian $(cat "$cache/$1/package"))"; }
fellback() { echo "guest-kernel: pinned $pver (Debian $pdeb) is no longer on the mirror; using $(name "$key")" >&2; }

# Prints the cached kernel's directory, saying so when it is not the pinned one.
found() {
  ((pinned)) || fellback
  echo "$cache/$key"
  exit 0
}

case ${1:-} in
  --print)
    cached || die "no guest kernel for $pver (Debian $pdeb) cached in $cache: run hack/vm/guest-kernel.sh (or hack/deps.sh vm)"
    found ;;
  --describe)
    cached || die "no guest kernel for $pver (Debian $pdeb) cached in $cache"
    if ((pinned)); then echo "guest kernel $(name "$key"), the pinned one"
    else echo "guest kernel $(name "$key"), NOT the pinned $pver (Debian $pdeb): that one is no longer on the mirror"; fi
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print | --describe]" >&2; exit 2 ;;
esac
if cached; then found; fi

for t in apt-get apt-cache dpkg-deb depmod sha256sum; do command -v $t >/dev/null || die "$t missing (apt-get install apt dpkg kmod coreutils)"; done
if [[ $mirror == file:* ]]; then
  trust=trusted=yes
else
  [[ -r $keyring ]] || die "$keyring missing (apt-get install debian-archive-keyring)"
  trust=signed-by=$keyring
fi
mkdir -p "$cache" 2>/dev/null || die "cannot create $cache: run as root or set XDPIPE_VM_CACHE"
# One fetch at a time; a second caller waits, then finds the kernel cached.
exec 9>"$cache/.lock"
flock -w 1200 9 || die "another guest-kernel.sh holds $cache/.lock for 20 minutes"
if cached; then found; fi
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{lists/partial,archives/partial,etc/preferences.d,deb}
echo "deb [$trust] $mirror $suite main" >"$work/etc/sources.list"
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
  die "cannot fetch the guest kernel (linux-binary-$pver): apt-get update of $mirror $suite failed: $(grep -m1 "^E:" "$work/update.log" || tail -n1 "$work/update.log")"

versions() { # the versions of package $1 on the mirror
  apt-cache "${apt_opts[@]}" madison "$1" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }'
}

ver=$pver deb=$pdeb
for p in linux-binary-$pver linux-modules-$pver linux-base-$pver; do
  versions "$p" | grep -qxF "$pdeb" && continue
  # Not there: the newest linux-binary-VER-amd64 (VER = x.y.z+debNN) with
  # x.y >= 6.13, at its newest Debian version.
  ver=$(apt-cache "${apt_opts[@]}" pkgnames linux-binary- 2>/dev/null |
    sed -n 's/^linux-binary-\([0-9][0-9.]*+deb[0-9]*-amd64\)$/\1/p' |
    awk -v min=$min '{ split($0, a, "[.+]"); split(min, m, "."); if (a[1] > m[1] || (a[1] == m[1] && a[2] >= m[2])) print }' |
    sort -V | tail -n1)
  [[ -n $ver ]] || die "pinned $pver (Debian $pdeb) is no longer on the mirror, and no package linux-binary-X.Y.Z+debNN-amd64 with X.Y >= $min is in $mirror $suite"
  deb=$(versions "linux-binary-$ver" | sort -V | tail -n1)
  [[ -n $deb ]] || die "no version of linux-binary-$ver in $mirror $suite"
  break
done
pkgs=("linux-binary-$ver" "linux-modules-$ver" "linux-base-$ver")
for p in "${pkgs[@]}"; do
  (cd "$work/deb" && timeout -k 10 600 apt-get "${apt_opts[@]}" -qq download "$p=$deb" >"$work/download.log" 2>&1) ||
    die "download of package $p $deb from $mirror $suite failed: $(grep -m1 "^E:" "$work/download.log" || tail -n1 "$work/download.log")"
done
dir=$work/$(key "$ver" "$deb")
mkdir -p "$dir"
for p in "${pkgs[@]}"; do
  f=$(echo "$work/deb/${p}_"*.deb)
  [[ -f $f ]] || die "download of package $p $deb left no .deb"
  sum=$(sha256sum "$f") sum=${sum%% *}
  if [[ $ver == "$pver" && $deb == "$pdeb" && $sum != "${sums[$p]}" ]]; then
    die "package $p $deb: SHA-256 $sum, but the pin $pin says ${sums[$p]}"
  fi
  echo "$p $deb $sum" >>"$dir/pin"
  dpkg-deb -x "$f" "$dir/x" || die "dpkg-deb -x $(basename "$f") failed"
done
# The packages keep the kernel as /usr/lib/modules/VER/vmlinuz (older ones
# as /boot/vmlinuz-VER); flatten to KEY/vmlinuz and KEY/lib/modules/VER.
mods=$dir/x/usr/lib/modules/$ver
[[ -d $mods/kernel ]] || die "package linux-modules-$ver has no /usr/lib/modules/$ver/kernel"
if [[ -f $mods/vmlinuz ]]; then mv "$mods/vmlinuz" "$dir/vmlinuz"
elif [[ -f $dir/x/boot/vmlinuz-$ver ]]; then mv "$dir/x/boot/vmlinuz-$ver" "$dir/vmlinuz"
else die "package linux-binary-$ver has no vmlinuz for $ver"; fi
mkdir -p "$dir/lib/modules"
mv "$mods" "$dir/lib/modules/$ver"
rm -rf "$dir/x"
depmod -b "$dir" "$ver" || die "depmod -b for $ver failed"
echo "$deb" >"$dir/package"
echo "$ver" >"$dir/release"
key=$(key "$ver" "$deb")
rm -rf "${cache:?}/$key"
mv "$dir" "$cache/$key"
if [[ $key == "$pkey" ]]; then
  pinned=1
  echo "guest-kernel: fetched $ver (Debian $deb, $suite), the pinned one" >&2
else
  pinned=0
  echo "$pkey $key" >"$cache/fallback.tmp" && mv "$cache/fallback.tmp" "$cache/fallback"
fi
found
