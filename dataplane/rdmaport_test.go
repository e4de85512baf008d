package dataplane

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/xsk"
)

// fakeShipper takes whole packets while it has credits, one each, and
// completes them when told, in order, like rdma.Sender.
type fakeShipper struct {
	credits  int
	inFlight []rdma.Desc
	finished int // how many of inFlight have completed
	err      error
	cut      int    // Send calls given a burst that ends inside a packet
	maxMsg   uint32 // if set, longer packets are refused (rdma.ErrTooLarge)
}

func (f *fakeShipper) Send(d []rdma.Desc) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if len(d) > 0 && d[len(d)-1].Flags&rdma.More != 0 {
		f.cut++
	}
	n, size := 0, uint32(0)
	var err error
	for i := range d {
		if f.credits == 0 {
			break
		}
		if size += d[i].Len; f.maxMsg > 0 && size > f.maxMsg {
			err = fmt.Errorf("%w: packet at %d", rdma.ErrTooLarge, n)
			break
		}
		if d[i].Flags&rdma.More == 0 {
			f.credits--
			n, size = i+1, 0
		}
	}
	f.inFlight = append(f.inFlight, d[:n]...)
	return n, err
}

func (f *fakeShipper) Completed(done []rdma.Desc) (int, error) {
	n := copy(done, f.inFlight[:f.finished])
	for _, d := range done[:n] {
		if d.Flags&rdma.More == 0 {
			f.credits++
		}
	}
	f.inFlight = append(f.inFlight[:0], f.inFlight[n:]...) // in place: no allocation
	f.finished -= n
	return n, nil
}

// freeList is a pipeline.Memory that records what was freed.
type freeList struct{ freed []uint64 }

func (m *freeList) Frame(uint64) []byte { return nil }
func (m *freeList) Free(addrs []uint64) { m.freed = append(m.freed, addrs...) }

// testPort is an rdmaPort over a fakeShipper with credits and a freeList,
// logging nowhere.
func testPort(credits, batch, backlog int) (*fakeShipper, *freeList, *rdmaPort) {
	f, mem := &fakeShipper{credits: credits}, &freeList{}
	return f, mem, newRDMAPort(f, mem, batch, backlog, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func descs(n int, base uint64) []pipeline.Desc {
	d := make([]pipeline.Desc, n)
	for i := range d {
		d[i] = pipeline.Desc{Addr: base + uint64(i)*4096, Len: 64}
	}
	return d
}

// TestRDMAPortAccounting: frames leave on Send, return to the free stack
// only on completion, and what the connection does not take stays the
// caller's.
func TestRDMAPortAccounting(t *testing.T) {
	f, mem, p := testPort(100, 16, 0)

	if got := p.Transmit(descs(40, 0)); got != 40 {
		t.Fatalf("Transmit took %d of 40 with 100 credits", got)
	}
	if got := p.Complete(); got != 0 || len(mem.freed) != 0 {
		t.Fatalf("frames freed before their sends completed: %d", got)
	}
	f.finished = 25
	if got := p.Complete(); got != 25 || len(mem.freed) != 25 {
		t.Fatalf("Complete freed %d (memory has %d), want 25", got, len(mem.freed))
	}
	for i, a := range mem.freed {
		if a != uint64(i)*4096 {
			t.Fatalf("freed[%d] = %#x, want %#x: wrong frame returned", i, a, uint64(i)*4096)
		}
	}
	// 100 credits, 15 still in flight: 85 left; 100 offered, 85 taken.
	if got := p.Transmit(descs(100, 1<<20)); got != 85 {
		t.Fatalf("Transmit took %d with 85 credits left, want 85", got)
	}
	f.finished = len(f.inFlight)
	p.Complete()
	if len(mem.freed) != 125 {
		t.Fatalf("after all completions %d frames freed, want 125 (40+85 sent)", len(mem.freed))
	}
	if p.Errors.Load() != 0 {
		t.Fatalf("errors counted without a failure: %d", p.Errors.Load())
	}
}

// TestRDMAPortFailure: a failed connection takes nothing, counts the error
// and keeps the frames with the caller.
func TestRDMAPortFailure(t *testing.T) {
	f, _, p := testPort(100, 16, 0)
	f.err = errors.New("disconnected")
	if got := p.Transmit(descs(10, 0)); got != 0 {
		t.Fatalf("a failed connection took %d frames", got)
	}
	if p.Errors.Load() != 1 {
		t.Fatalf("errors = %d, want 1", p.Errors.Load())
	}
}

// TestRDMAPortAllocs: shipping and completing a burst allocates nothing.
func TestRDMAPortAllocs(t *testing.T) {
	f, mem, p := testPort(64, 64, 64)
	f.inFlight = make([]rdma.Desc, 0, 64)
	mem.freed = make([]uint64, 0, 1<<20)
	burst := descs(64, 0)
	allocs := testing.AllocsPerRun(100, func() {
		p.Transmit(burst)
		f.finished = len(f.inFlight)
		p.Complete()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per burst, want 0", allocs)
	}
}

// TestRDMAPortBacklog: frames that find no credits wait, in order, and go
// out as completions return credits; only a full backlog refuses frames.
func TestRDMAPortBacklog(t *testing.T) {
	f, mem, p := testPort(10, 16, 16)

	// 10 sent, 16 wait, 4 refused (they stay the caller's).
	if got := p.Transmit(descs(30, 0)); got != 26 {
		t.Fatalf("Transmit took %d of 30 with 10 credits and a backlog of 16, want 26", got)
	}
	// Newer frames queue behind the waiting ones, never ahead of them.
	if got := p.Transmit(descs(5, 1<<20)); got != 0 {
		t.Fatalf("Transmit took %d with the backlog full", got)
	}
	f.finished = 10 // credits back: the next 10 waiting frames go out
	if got := p.Complete(); got != 10 {
		t.Fatalf("Complete returned %d, want 10", got)
	}
	if got := p.Transmit(descs(5, 1<<20)); got != 5 {
		t.Fatalf("Transmit took %d of 5 with room in the backlog, want 5", got)
	}
	for round := 0; len(mem.freed) < 31 && round < 10; round++ {
		f.finished = len(f.inFlight)
		p.Complete()
	}
	if len(mem.freed) != 31 || p.queued != 0 {
		t.Fatalf("%d frames freed, %d still waiting; want 31 and 0", len(mem.freed), p.queued)
	}
	want := append(descs(26, 0), descs(5, 1<<20)...)
	for i, a := range mem.freed {
		if a != want[i].Addr {
			t.Fatalf("frame %d sent out of order: %#x, want %#x", i, a, want[i].Addr)
		}
	}
	if p.Dropped.Load() != 0 || p.Errors.Load() != 0 {
		t.Fatalf("dropped %d, errors %d without a failure", p.Dropped.Load(), p.Errors.Load())
	}
}

// TestRDMAPortBacklogFailure: when the connection fails, waiting frames go
// back to the free stack, counted as dropped and returned by Complete so
// the worker's in-flight count comes back to zero; every segment of a
// waiting multi-buffer packet, once.
func TestRDMAPortBacklogFailure(t *testing.T) {
	for _, c := range []struct {
		name       string
		in         []pipeline.Desc
		credits    int // packets sent
		sent, wait int // frames
	}{
		{"single", descs(10, 0), 5, 5, 5},
		{"multi-buffer", jumbo(4, 0), 1, 3, 9},
	} {
		f, mem, p := testPort(c.credits, 16, 16)
		if got := p.Transmit(c.in); got != len(c.in) {
			t.Fatalf("%s: Transmit took %d of %d, want all (%d sent, %d waiting)", c.name, got, len(c.in), c.sent, c.wait)
		}
		f.err = errors.New("disconnected")
		f.finished = c.sent
		if got := p.Complete(); got != len(c.in) {
			t.Fatalf("%s: Complete returned %d after the failure, want %d (%d completed, %d dropped)", c.name, got, len(c.in), c.sent, c.wait)
		}
		if p.Dropped.Load() != uint64(c.wait) || p.Errors.Load() != 1 || len(mem.freed) != len(c.in) {
			t.Fatalf("%s: dropped %d, errors %d, freed %d; want %d, 1, %d", c.name, p.Dropped.Load(), p.Errors.Load(), len(mem.freed), c.wait, len(c.in))
		}
		if got := p.Transmit(descs(3, 1<<20)); got != 0 {
			t.Fatalf("%s: a failed connection took %d frames", c.name, got)
		}
	}
}

// jumbo is n packets of 3 segments (XDP_PKT_CONTD on the first two), one
// frame each from base.
func jumbo(n int, base uint64) []pipeline.Desc {
	d := descs(3*n, base)
	for i := range d {
		if i%3 != 2 {
			d[i].Options = xsk.PktContd
		}
	}
	return d
}

// TestRDMAPortMultiBuffer: multi-buffer packets go to the connection whole
// (a credit each), wait in the backlog whole, are refused whole when it is
// full, and every segment's frame comes back exactly once.
func TestRDMAPortMultiBuffer(t *testing.T) {
	f, mem, p := testPort(4, 8, 10) // a send buffer of 8: 2 packets and a cut one
	in := jumbo(12, 0)
	// 4 packets sent, 3 wait (9 frames of a backlog of 10), 5 refused.
	if got := p.Transmit(in); got != 21 {
		t.Fatalf("Transmit took %d of 36 frames with 4 credits and a backlog of 10, want 21 (7 packets)", got)
	}
	if len(f.inFlight) != 12 || p.queued != 9 {
		t.Fatalf("%d frames in flight, %d waiting; want 12 and 9", len(f.inFlight), p.queued)
	}
	for i, d := range f.inFlight {
		if want := i%3 != 2; (d.Flags&rdma.More != 0) != want || d.Addr != in[i].Addr {
			t.Fatalf("sent desc %d = %+v, want addr %#x with More %v", i, d, in[i].Addr, want)
		}
	}
	// Completions return credits; waiting packets go out, oldest first,
	// and later ones queue behind them.
	for round := 0; len(mem.freed) < 21 && round < 20; round++ {
		f.finished = len(f.inFlight)
		p.Complete()
	}
	if got := p.Transmit(in[21:]); got != 15 {
		t.Fatalf("Transmit took %d of the 15 refused frames with credits back, want 15", got)
	}
	for round := 0; len(mem.freed) < 36 && round < 20; round++ {
		f.finished = len(f.inFlight)
		p.Complete()
	}
	if len(mem.freed) != 36 || p.queued != 0 || len(f.inFlight) != 0 {
		t.Fatalf("%d frames freed, %d waiting, %d in flight; want 36, 0, 0", len(mem.freed), p.queued, len(f.inFlight))
	}
	for i, a := range mem.freed {
		if a != in[i].Addr {
			t.Fatalf("frame %d freed out of order or twice: %#x, want %#x", i, a, in[i].Addr)
		}
	}
	if f.cut != 0 {
		t.Fatalf("%d sends were given a burst ending inside a packet", f.cut)
	}
}

// TestRDMAPortTooLarge: a packet the sink's buffers cannot hold is dropped
// alone, its frames freed once and counted, and the connection goes on:
// the refusal is not taken for a failed connection, and later packets
// still ship.
func TestRDMAPortTooLarge(t *testing.T) {
	f, mem, p := testPort(100, 16, 16)
	f.maxMsg = 9018
	in := jumbo(3, 0)
	in[3].Len, in[4].Len, in[5].Len = 3840, 3840, 3840 // 11520 bytes: a VLAN pushed onto more than a 9000-byte MTU frame
	if got := p.Transmit(in); got != 9 {
		t.Fatalf("Transmit took %d of 9 frames, want all (6 sent, 3 dropped)", got)
	}
	if len(f.inFlight) != 6 || len(mem.freed) != 3 || p.Dropped.Load() != 3 || p.TooLarge.Load() != 1 || p.Errors.Load() != 0 {
		t.Fatalf("in flight %d, freed %d, dropped %d, too large %d, errors %d; want 6, 3, 3, 1, 0",
			len(f.inFlight), len(mem.freed), p.Dropped.Load(), p.TooLarge.Load(), p.Errors.Load())
	}
	for i, a := range mem.freed {
		if a != in[3+i].Addr {
			t.Fatalf("freed %#x, want the long packet's frames", a)
		}
	}
	f.finished = len(f.inFlight)
	if got := p.Complete(); got != 9 {
		t.Fatalf("Complete returned %d, want 9 (6 sent, 3 dropped)", got)
	}
	if got := p.Transmit(jumbo(2, 1<<20)); got != 6 || len(f.inFlight) != 6 {
		t.Fatalf("after a refused packet Transmit took %d (%d in flight), want 6: the connection goes on", got, len(f.inFlight))
	}
}
