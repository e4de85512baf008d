#!/usr/bin/env bash
# The xdpipe demo: a veth pair across two fresh network namespaces, the
# live-frames generator on one end and `xdpipe rxdrop` on the other for a few
# seconds. Everything it makes is removed on exit, also when interrupted.
#
#   hack/demo.sh [path/to/xdpipe]      DURATION=5s SIZE=64 to change the run
set -euo pipefail

bin=$(realpath "${1:-bin/xdpipe}")
duration=${DURATION:-5s}
size=${SIZE:-64}
[[ -x $bin ]] || { echo "demo: $bin not built; run 'make build'" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (network namespaces, XDP, AF_XDP)" >&2; exit 1; }

tag=$$
nsa=xdpipe-demo-a-$tag nsb=xdpipe-demo-b-$tag
mac_a=02:58:44:50:de:0a mac_b=02:58:44:50:de:0b
ip_a=198.18.200.1 ip_b=198.18.200.2
genpid=

cleanup() {
  trap - EXIT INT TERM
  [[ -n $genpid ]] && kill "$genpid" 2>/dev/null && wait "$genpid" 2>/dev/null
  ip netns del "$nsa" 2>/dev/null || true
  ip netns del "$nsb" 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up"; exit 130' INT TERM

echo "== testbed: $nsa/veth-a ($ip_a, $mac_a) <-> $nsb/veth-b ($ip_b, $mac_b)"
ip netns add "$nsa"
ip netns add "$nsb"
ip -n "$nsa" link add veth-a type veth peer name veth-b netns "$nsb"
ip -n "$nsa" link set veth-a address $mac_a up
ip -n "$nsb" link set veth-b address $mac_b up
ip -n "$nsa" addr add $ip_a/24 dev veth-a
ip -n "$nsb" addr add $ip_b/24 dev veth-b

echo "== traffic: xdpipe gen --engine live, ${size}-byte UDP frames $ip_a -> $ip_b, full speed"
ip netns exec "$nsa" "$bin" gen --iface veth-a --engine live --size "$size" \
  --src-mac $mac_a --dst-mac $mac_b --src-ip $ip_a --dst-ip $ip_b --quiet &
genpid=$!

echo "== receiver: xdpipe rxdrop on veth-b queue 0 for $duration"
ip netns exec "$nsb" "$bin" rxdrop --iface veth-b --queue 0 --duration "$duration"

echo "== done; removing the testbed"
