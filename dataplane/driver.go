package dataplane

import (
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/xsk"
)

// SocketDriver is what xsk.NewSocket is told of an interface's driver
// (xsk.SocketOptions.Driver), from what package netdev read of it: its
// name, whether it advertises xsk-zerocopy and how many segments its
// zero-copy takes, and the queues a socket can bind (the smaller of the
// RX and TX counts). A device netdev could not read gives the zero
// Driver: unknown.
func SocketDriver(d netdev.Device) xsk.Driver {
	if !d.Known {
		return xsk.Driver{}
	}
	return xsk.Driver{
		Known:           true,
		Name:            d.Driver,
		ZeroCopy:        d.Features.Has(netdev.XDPXSKZeroCopy),
		ZeroCopyMaxSegs: int(d.ZeroCopyMaxSegs),
		Queues:          min(d.RXQueues, d.TXQueues),
	}
}
