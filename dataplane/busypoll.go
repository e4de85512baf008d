package dataplane

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/xdpipe/xdpipe/xsk"
)

// WarnIdleBusyPoll looks once a second, until ctx ends, for the first
// frames on busy-polling sockets (received counts them), then reads each
// socket's NAPI id once and says through warn which have none. Busy
// polling drives the NAPI instance the socket's frames came in through; a
// socket without one (on a veth) polls nothing, and with the interrupt
// deferral the kernel's documentation pairs busy polling with, its frames
// then wait for the gro_flush_timeout timer: a latency that busy polling
// was set to take away, and would add without a word.
func WarnIdleBusyPoll(ctx context.Context, socks []*xsk.Socket, received func() uint64, warn func(string)) {
	every(ctx, time.Second, func() bool {
		if received() == 0 {
			return false
		}
		for _, s := range socks {
			id, err := s.NAPIID()
			if err != nil {
				warn("reading the busy-polling socket's NAPI id: " + err.Error())
				continue
			}
			if id == 0 {
				warn(idleBusyPollHint(s))
			}
		}
		return true
	})
}

func idleBusyPollHint(s *xsk.Socket) string {
	name := fmt.Sprintf("ifindex %d", s.Ifindex())
	if ifc, err := net.InterfaceByIndex(s.Ifindex()); err == nil {
		name = ifc.Name
	}
	return fmt.Sprintf("busy polling on %s queue %d polls nothing: the driver gives its XDP path no NAPI id "+
		"(SO_INCOMING_NAPI_ID 0, as a veth does), so frames wait for the device's own processing, "+
		"with napi_defer_hard_irqs for the gro_flush_timeout timer; busy polling is no use on this device",
		name, s.Queue())
}
