package dataplane

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/xdpipe/xdpipe/xsk"
)

// WarnMTU looks once a second, until ctx ends, at the MTU of the
// interfaces socks are bound to, and says through warn, once for each MTU
// an interface takes, when its largest frames no longer fit the UMEM frame
// of a socket set up without multi-buffer (for the MTU it had when the
// socket was made): the kernel drops those frames, counted in rx_dropped,
// and only a restart sets the sockets up for them.
func WarnMTU(ctx context.Context, socks []*xsk.Socket, warn func(string)) {
	byIface := map[int][]*xsk.Socket{}
	for _, s := range socks {
		byIface[s.Ifindex()] = append(byIface[s.Ifindex()], s)
	}
	said := map[int]int{} // ifindex: the MTU last looked at
	every(ctx, time.Second, func() bool {
		// An interface lookup is a dump of every link: one per
		// interface, not per socket (a queue each).
		for ifindex, ss := range byIface {
			ifc, err := net.InterfaceByIndex(ifindex)
			if err != nil || said[ifindex] == ifc.MTU {
				continue // gone: the link watch says so
			}
			said[ifindex] = ifc.MTU
			for _, s := range ss {
				if h := mtuHint(ifc.Name, ifc.MTU, s); h != "" {
					warn(h)
					break
				}
			}
		}
		return false
	})
}

// mtuHint says what an interface's MTU costs a socket on it, or "".
func mtuHint(iface string, mtu int, s *xsk.Socket) string {
	fs := s.Umem().FrameSize()
	if s.MultiBuffer() || !NeedsMultiBuffer(mtu, fs) {
		return ""
	}
	return fmt.Sprintf("%s has an MTU of %d now: its frames above %d bytes do not fit a %d-byte UMEM frame and the kernel drops them "+
		"(rx_dropped); restart to receive them as multi-buffer packets", iface, mtu, xsk.FrameData(fs), fs)
}
