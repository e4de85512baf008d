package main

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
)

// fakeShipper takes sends while it has credits and completes them when
// told, in order, like rdma.Sender.
type fakeShipper struct {
	credits  int
	inFlight []rdma.Desc
	finished int // how many of inFlight have completed
	err      error
}

func (f *fakeShipper) Send(d []rdma.Desc) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := min(len(d), f.credits)
	f.credits -= n
	f.inFlight = append(f.inFlight, d[:n]...)
	return n, nil
}

func (f *fakeShipper) Completed(done []rdma.Desc) (int, error) {
	n := copy(done, f.inFlight[:f.finished])
	f.inFlight = append(f.inFlight[:0], f.inFlight[n:]...) // in place: no allocation
	f.finished -= n
	f.credits += n
	return n, nil
}

// freeList is a pipeline.Memory that records what was freed.
type freeList struct{ freed []uint64 }

func (m *freeList) Frame(uint64) []byte { return nil }
func (m *freeList) Free(addrs []uint64) { m.freed = append(m.freed, addrs...) }

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
	f := &fakeShipper{credits: 100}
	mem := &freeList{}
	p := newRDMAPort(f, mem, 16, slog.New(slog.NewTextHandler(io.Discard, nil)))

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
	f := &fakeShipper{credits: 100, err: errors.New("disconnected")}
	p := newRDMAPort(f, &freeList{}, 16, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got := p.Transmit(descs(10, 0)); got != 0 {
		t.Fatalf("a failed connection took %d frames", got)
	}
	if p.Errors.Load() != 1 {
		t.Fatalf("errors = %d, want 1", p.Errors.Load())
	}
}

// TestRDMAPortAllocs: shipping and completing a burst allocates nothing.
func TestRDMAPortAllocs(t *testing.T) {
	f := &fakeShipper{credits: 64, inFlight: make([]rdma.Desc, 0, 64)}
	p := newRDMAPort(f, &freeList{freed: make([]uint64, 0, 1<<20)}, 64, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
