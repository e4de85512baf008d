package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

var _ Tracker = (*gen.Tracker)(nil)

// newDropSocket makes a socket on the fake kernel for a Drop loop, its
// fill ring full: 32-entry rings on 256 frames, so's other options. The
// test closes both.
func newDropSocket(t *testing.T, so xsk.SocketOptions) (*xsk.Socket, *xsktest.Kernel) {
	t.Helper()
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	so.RXSize, so.TXSize = 32, 32
	s, k, err := xsktest.NewSocket(u, so, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Refill()
	return s, k
}

// TestDropBusyPollKicksWhenIdle: with busy polling the application drives
// the driver's NAPI through recvfrom. A spinning receive loop that finds
// the RX ring empty must still kick, or (with napi_defer_hard_irqs set, as
// busy polling wants) frames wait for the gro_flush_timeout timer instead
// of the next pass.
func TestDropBusyPollKicksWhenIdle(t *testing.T) {
	s, k := newDropSocket(t, xsk.SocketOptions{BusyPoll: true})
	before, _ := k.Kicks()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Drop(ctx, s, &DropCounters{}, nil, DropOptions{Batch: 16, Ring: 32, BusyPoll: true})
	}()
	defer func() {
		stop()
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
	s, k := newDropSocket(t, xsk.SocketOptions{})
	tp, err := gen.NewTemplate(gen.Config{Proto: gen.UDP4, Size: 64, DstPort: 9,
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	const generated, foreign = 10, 3
	frame := append([]byte(nil), tp.Bytes()...)
	for i := range generated {
		tp.Stamp(frame, uint64(i), monotime.Now())
		k.Deliver(frame, 1)
	}
	k.Deliver(make([]byte, 60), foreign)
	var c DropCounters
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Drop(ctx, s, &c, gen.NewTracker(), DropOptions{Batch: 16, Ring: 32}) }()
	defer func() {
		stop()
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

// TestDropSamplesOneLatencyABurst: when the XDP program counts the
// generated frames, the loop reads one packet a burst, for its latency,
// and counts nothing itself; without SampleLatency it accounts every one.
func TestDropSamplesOneLatencyABurst(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	tp, err := gen.NewTemplate(gen.Config{SrcMAC: mac, DstMAC: mac,
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	f := bytes.Clone(tp.Bytes())
	tp.Stamp(f, 0, monotime.Now())
	const bursts, burst = 8, 16
	for _, sample := range []bool{true, false} {
		s, k := newDropSocket(t, xsk.SocketOptions{})
		var c DropCounters
		ctx, stop := context.WithCancel(context.Background())
		tr := gen.NewTracker()
		done := make(chan error, 1)
		go func() {
			done <- Drop(ctx, s, &c, tr, DropOptions{Batch: burst, Ring: 32, SampleLatency: sample})
		}()
		for b := range bursts {
			if got := k.Deliver(f, burst); got != burst {
				t.Fatalf("delivered %d of %d", got, burst)
			}
			// The loop takes each delivery as one burst before the next.
			testutil.EventuallyErr(t, 10*time.Second, func() error {
				if got, want := c.Packets.Load(), uint64((b+1)*burst); got < want {
					return fmt.Errorf("the loop took %d packets of %d", got, want)
				}
				return nil
			})
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st := tr.Stats(0)
		want := gen.Stats{LatencySamples: bursts}
		if !sample {
			want = gen.Stats{Received: bursts * burst, LatencySamples: bursts * burst}
		}
		if st.Received != want.Received || st.LatencySamples != want.LatencySamples {
			t.Errorf("SampleLatency %v: received %d, %d latencies; want %d, %d", sample, st.Received, st.LatencySamples, want.Received, want.LatencySamples)
		}
	}
}

// TestDropCountsMultiBufferPacketsOnce: a packet of several segments is
// one packet of its whole length, tracked once by its first segment.
func TestDropCountsMultiBufferPacketsOnce(t *testing.T) {
	s, k := newDropSocket(t, xsk.SocketOptions{MultiBuffer: true})
	tp, err := gen.NewTemplate(gen.Config{Proto: gen.UDP4, Size: 9000, DstPort: 9,
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	const jumbos = 4
	frame := append([]byte(nil), tp.Bytes()...)
	for i := range jumbos {
		tp.Stamp(frame, uint64(i), monotime.Now())
		if !k.DeliverPacket(frame) {
			t.Fatalf("deliver jumbo %d", i)
		}
	}
	if !k.DeliverPacket(make([]byte, 60)) {
		t.Fatal("deliver a small frame")
	}
	var c DropCounters
	ctx, stop := context.WithCancel(context.Background())
	tr := gen.NewTracker()
	done := make(chan error, 1)
	go func() { done <- Drop(ctx, s, &c, tr, DropOptions{Batch: 8, Ring: 32}) }()
	testutil.Eventually(t, 10*time.Second, func() bool { return c.Packets.Load() == jumbos+1 },
		"Drop did not count the %d packets delivered as %d (got %d)", jumbos+1, jumbos+1, c.Packets.Load())
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b := c.Bytes.Load(); b != jumbos*uint64(len(frame))+60 {
		t.Errorf("Bytes %d, want %d", b, jumbos*len(frame)+60)
	}
	if g, st := c.Generated.Load(), tr.Stats(0); g != jumbos || st.Received != jumbos {
		t.Errorf("Generated %d, tracker received %d; want %d each", g, st.Received, jumbos)
	}
}

// TestDropKeepsTheFillRingFull: Drop hands frames straight back to the
// fill ring, which keeps their count: the whole ring stays there (rxdrop's
// --ring: what a stalled loop can absorb), where Refill would let the
// depth decay.
func TestDropKeepsTheFillRingFull(t *testing.T) {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 4096, FillSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{}, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Refill() // what SocketOptions.Prefill does on a real socket
	var c DropCounters
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Drop(ctx, s, &c, nil, DropOptions{Batch: 64, Ring: 2048}) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	full := func() bool { return u.Accounting().Fill == 2048 }
	testutil.Eventually(t, 10*time.Second, full, "the fill ring never held all its 2048 frames")
	if n := k.Deliver(make([]byte, 60), 1000); n != 1000 {
		t.Fatalf("delivered %d of 1000", n)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return c.Packets.Load() == 1000 && full() },
		"Drop did not take the 1000 frames and put them back on the fill ring")
}
