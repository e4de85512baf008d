package dataplane

import (
	"testing"

	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestSocketDriverFromDevice: xsk is told the driver's name, its
// zero-copy and segment limit, and the queues both directions have; a
// device the kernel did not describe is unknown, whatever its fields say.
func TestSocketDriverFromDevice(t *testing.T) {
	d := netdev.Device{Known: true, Driver: "virtio_net", Features: netdev.XDPBasic | netdev.XDPXSKZeroCopy,
		ZeroCopyMaxSegs: 1, RXQueues: 4, TXQueues: 2}
	want := xsk.Driver{Known: true, Name: "virtio_net", ZeroCopy: true, ZeroCopyMaxSegs: 1, Queues: 2}
	if got := SocketDriver(d); got != want {
		t.Fatalf("SocketDriver(%+v) = %+v, want %+v", d, got, want)
	}
	d.Features = netdev.XDPBasic
	if got := SocketDriver(d); got.ZeroCopy {
		t.Fatalf("no xsk-zerocopy feature: %+v", got)
	}
	d.Known = false
	if got := SocketDriver(d); got != (xsk.Driver{}) {
		t.Fatalf("unknown device gave %+v", got)
	}
}
