package dataplane

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// TestDropBusyPollKicksWhenIdle: with busy polling the application drives
// the driver's NAPI through recvfrom. A spinning receive loop that finds
// the RX ring empty must still kick, or (with napi_defer_hard_irqs set, as
// busy polling wants) frames wait for the gro_flush_timeout timer instead
// of the next pass.
func TestDropBusyPollKicksWhenIdle(t *testing.T) {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: 32, TXSize: 32, BusyPoll: true}, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Refill()
	before, _ := k.Kicks()
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- Drop(s, &DropCounters{}, nil, &stop, DropOptions{Batch: 16, CPU: -1, Ring: 32, BusyPoll: true})
	}()
	defer func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Nothing ever arrives: every pass finds the RX ring empty.
	testutil.Eventually(t, 10*time.Second, func() bool { after, _ := k.Kicks(); return after > before },
		"busy-polling Drop loop with an empty RX ring made no recvfrom kick (%d kicks before it started)", before)
}

// TestDropCountsGenerated: with a tracker, Drop counts the packets it took
// for generated ones in DropCounters.Generated, live, and the others only
// in Packets.
func TestDropCountsGenerated(t *testing.T) {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: 32, TXSize: 32}, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tp, err := gen.NewTemplate(gen.Config{Proto: gen.UDP4, Size: 64, DstPort: 9,
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	s.Refill()
	const generated, foreign = 10, 3
	frame := append([]byte(nil), tp.Bytes()...)
	for i := range generated {
		tp.Stamp(frame, uint64(i), monotime.Now())
		k.Deliver(frame, 1)
	}
	k.Deliver(make([]byte, 60), foreign)
	var c DropCounters
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() { done <- Drop(s, &c, gen.NewTracker(), &stop, DropOptions{Batch: 16, CPU: -1, Ring: 32}) }()
	defer func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return c.Packets.Load() == generated+foreign },
		"Drop did not take the %d packets delivered", generated+foreign)
	if g := c.Generated.Load(); g != generated {
		t.Fatalf("Generated %d of %d packets, %d of them generated", g, c.Packets.Load(), generated)
	}
}
