# Sourced by hack/demo.sh and hack/profile.sh: a veth pair across two fresh
# network namespaces, addresses from 198.18.0.0/15, removed on exit.
#
#   testbed_up TAG      makes $NSA/$IFA ($IPA, $MACA) <-> $NSB/$IFB ($IPB, $MACB)
#   testbed_down        removes it (installed as an EXIT trap by testbed_up)

testbed_up() {
  local tag=$1
  NSA=xdpipe-$tag-a-$$ NSB=xdpipe-$tag-b-$$
  IFA=veth-a IFB=veth-b
  MACA=02:58:44:50:de:0a MACB=02:58:44:50:de:0b
  IPA=198.18.200.1 IPB=198.18.200.2
  [[ $(id -u) -eq 0 ]] || { echo "$tag: needs root (network namespaces, XDP, AF_XDP)" >&2; exit 1; }
  trap testbed_down EXIT
  trap 'echo; echo "$tag: interrupted, cleaning up" >&2; exit 130' INT TERM
  ip netns add "$NSA"
  ip netns add "$NSB"
  ip -n "$NSA" link add $IFA type veth peer name $IFB netns "$NSB"
  ip -n "$NSA" link set $IFA address $MACA up
  ip -n "$NSB" link set $IFB address $MACB up
  ip -n "$NSA" addr add $IPA/24 dev $IFA
  ip -n "$NSB" addr add $IPB/24 dev $IFB
  echo "== testbed: $NSA/$IFA ($IPA, $MACA) <-> $NSB/$IFB ($IPB, $MACB)"
}

# Background jobs (the generator) are stopped before the namespaces go.
testbed_down() {
  trap - EXIT INT TERM
  local pids
  pids=$(jobs -p)
  [[ -n $pids ]] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
  ip netns del "$NSA" 2>/dev/null || true
  ip netns del "$NSB" 2>/dev/null || true
}

# gen_bg ARGS...: runs `xdpipe gen` on the A end towards B in the background.
gen_bg() {
  ip netns exec "$NSA" "$BIN" gen --iface $IFA --src-mac $MACA --dst-mac $MACB \
    --src-ip $IPA --dst-ip $IPB --quiet "$@" &
}
