package ping

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// newLoopback returns a pinger whose fake kernel transmits what it is
// given and, with reflect, hands every frame straight back to the RX ring:
// a reflector that leaves gen's payload as it was, as the reflect stage
// does. Without reflect nothing comes back.
func newLoopback(t *testing.T, reflect bool) *Pinger {
	t.Helper()
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 8192, FrameSize: 2048, FillSize: 2048, CompletionSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	// Rings deeper than a run's frames: a pass that finds many due
	// cannot overflow them.
	s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: 2048, TXSize: 2048, NoNeedWakeup: true}, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sent := make([]xsk.Desc, 2048)
	k.OnWakeTX = func() {
		n := k.Send(sent)
		for _, d := range sent[:n] {
			if reflect {
				k.Deliver(u.Bytes(d), 1)
			}
		}
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	tp, err := gen.NewTemplate(gen.Config{Proto: gen.UDP4, SrcMAC: mac, DstMAC: mac, DstPort: 11111,
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(s, tp, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestRunCountsEveryRoundTrip: closed and open loop against a loopback,
// every frame back, each round trip in the histogram once.
func TestRunCountsEveryRoundTrip(t *testing.T) {
	for _, o := range []Options{{Count: 1000}, {Count: 1000, Rate: 1e6}} {
		p := newLoopback(t, true)
		h := NewHistogram()
		r, err := p.Run(context.Background(), o, h)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 1000 || r.Received != 1000 || r.Lost != 0 || r.Late != 0 || r.Others != 0 || h.TotalCount() != 1000 {
			t.Errorf("rate %v: %+v, %d round trips recorded: want 1000 of 1000", o.Rate, r, h.TotalCount())
		}
		// Replies are recycled: the fill ring keeps all its frames, for
		// the replies a stall leaves queued.
		if f := p.sock.Umem().Accounting().Fill; f != 2048 {
			t.Errorf("rate %v: %d frames on the fill ring, want all 2048", o.Rate, f)
		}
	}
}

// TestRunLosesWhatDoesNotComeBack: a reflector that answers nothing makes
// every frame lost after the timeout, in both loops.
func TestRunLosesWhatDoesNotComeBack(t *testing.T) {
	for _, o := range []Options{{Count: 3, Timeout: 10 * time.Millisecond}, {Count: 3, Rate: 1000, Timeout: 10 * time.Millisecond}} {
		p := newLoopback(t, false)
		h := NewHistogram()
		r, err := p.Run(context.Background(), o, h)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 3 || r.Received != 0 || r.Lost != 3 || h.TotalCount() != 0 {
			t.Errorf("rate %v: %+v: want 3 sent, 3 lost", o.Rate, r)
		}
	}
}

// TestRunAllocatesNothingPerSample: ten times the round trips, no more
// allocations.
func TestRunAllocatesNothingPerSample(t *testing.T) {
	allocs := func(n uint64) float64 {
		p := newLoopback(t, true)
		h := NewHistogram()
		return testing.AllocsPerRun(5, func() {
			h.Reset()
			if _, err := p.Run(context.Background(), Options{Count: n}, h); err != nil {
				t.Fatal(err)
			}
		})
	}
	if few, many := allocs(100), allocs(1000); many > few {
		t.Fatalf("%v allocations for 1000 round trips, %v for 100", many, few)
	}
}
