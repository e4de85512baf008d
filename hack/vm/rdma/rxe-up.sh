#!/bin/sh
# Guest side of the SoftRoCE test bed (run inside hack/vm/run.sh):
# creates a veth pair with one rxe device on each end, in the one network
# namespace of the VM, and writes what it made to the env file given as $1
# (default /tmp/rxe.env), as shell assignments:
#
#   RXE_A_DEV=rxe0 RXE_A_NETDEV=xrdma0 RXE_A_IP=198.18.0.1 RXE_A_GID=<index>
#   RXE_B_DEV=rxe1 RXE_B_NETDEV=xrdma1 RXE_B_IP=198.18.0.2 RXE_B_GID=<index>
#
# RXE_MTU sets the veth MTU (default 1500, which gives a RoCE path MTU of
# 1024). Addresses are from 198.18.0.0/15 only.
#
# Facts this depends on (found on Debian's 6.1 kernel, kept for the 7.x
# guest kernel):
#   - with both veth ends in one namespace, accept_local=1 and rp_filter=0 or
#     the queue pair never reaches RTR (the peer's packets look spoofed);
#   - the RoCE v2 GID index of the IPv4 address is read from sysfs, never
#     assumed (index 0 is the link-local GID).
set -eu
envfile=${1:-/tmp/rxe.env}
mtu=${RXE_MTU:-1500}

ip link add xrdma0 type veth peer name xrdma1
ip link set xrdma0 mtu "$mtu"
ip link set xrdma1 mtu "$mtu"
ip addr add 198.18.0.1/24 dev xrdma0
ip addr add 198.18.0.2/24 dev xrdma1
for c in all default xrdma0 xrdma1; do
  echo 1 >/proc/sys/net/ipv4/conf/$c/accept_local
  echo 0 >/proc/sys/net/ipv4/conf/$c/rp_filter
done
ip link set xrdma0 up
ip link set xrdma1 up
# Static neighbours: rdma_cm's first address resolution otherwise waits for
# its own timeout (2s and more under TCG) with both ends in one namespace.
ip neigh replace 198.18.0.2 lladdr "$(cat /sys/class/net/xrdma1/address)" dev xrdma0 nud permanent
ip neigh replace 198.18.0.1 lladdr "$(cat /sys/class/net/xrdma0/address)" dev xrdma1 nud permanent
rdma link add rxe0 type rxe netdev xrdma0
rdma link add rxe1 type rxe netdev xrdma1

# gid_index DEV IPV4: the index of the RoCE v2 GID ::ffff:IPV4 on port 1.
gid_index() {
  want=$(echo "$2" | awk -F. '{ printf "0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x", $1, $2, $3, $4 }')
  d=/sys/class/infiniband/$1/ports/1
  # The GID table fills in asynchronously after the address appears.
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    for g in "$d"/gids/*; do
      i=${g##*/}
      if [ "$(cat "$g" 2>/dev/null)" = "$want" ] && [ "$(cat "$d/gid_attrs/types/$i" 2>/dev/null)" = "RoCE v2" ]; then
        echo "$i"
        return 0
      fi
    done
    sleep 0.5
  done
  echo "rxe-up: no RoCE v2 GID for $2 on $1" >&2
  return 1
}
ga=$(gid_index rxe0 198.18.0.1)
gb=$(gid_index rxe1 198.18.0.2)
cat >"$envfile" <<EOF
RXE_A_DEV=rxe0
RXE_A_NETDEV=xrdma0
RXE_A_IP=198.18.0.1
RXE_A_GID=$ga
RXE_B_DEV=rxe1
RXE_B_NETDEV=xrdma1
RXE_B_IP=198.18.0.2
RXE_B_GID=$gb
EOF
echo "rxe-up: rxe0 on xrdma0 198.18.0.1 (gid $ga), rxe1 on xrdma1 198.18.0.2 (gid $gb), mtu $mtu"
