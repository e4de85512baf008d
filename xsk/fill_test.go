package xsk

import "testing"

// fillPlay drives a fillDepth as refills would: each refill the kernel
// takes some frames and the ring is topped up to what want asks.
type fillPlay struct {
	f      fillDepth
	now    int64
	cons   uint32
	queued uint32
}

func newFillPlay(low, high uint32) *fillPlay {
	p := &fillPlay{}
	p.f = newFillDepth(low, high, 0, func() int64 { return p.now })
	return p
}

// refill plays one refill after the kernel took taken frames (at most what
// was queued) and returns what the depth wanted added.
func (p *fillPlay) refill(taken uint32) uint32 {
	taken = min(taken, p.queued)
	p.cons += taken
	p.queued -= taken
	want := p.f.want(p.cons, p.queued)
	p.queued += want
	return want
}

// quiet plays n refills after each of which the kernel took one frame.
func (p *fillPlay) quiet(n int) {
	for range n {
		p.refill(1)
	}
}

func TestFillDepthStartsFullThenDecays(t *testing.T) {
	p := newFillPlay(256, 2048)
	if want := p.refill(0); want != 2048 {
		t.Fatalf("first refill wants %d, want the whole ring", want)
	}
	// Many refills, but less than fillDecay: the depth stays.
	p.quiet(10 * fillClockEvery)
	p.now += int64(fillDecay) - 1
	p.quiet(10 * fillClockEvery)
	if p.f.depth != 2048 {
		t.Fatalf("depth %d before fillDecay passed; want 2048", p.f.depth)
	}
	// fillDecay passed: the next clock read halves it.
	p.now++
	p.quiet(fillClockEvery)
	if p.f.depth != 1024 {
		t.Fatalf("depth %d after fillDecay of light takings; want 1024", p.f.depth)
	}
	// The kernel took more than a quarter (but not half) meanwhile: kept.
	p.now += int64(fillDecay)
	p.refill(257)
	p.quiet(fillClockEvery)
	if p.f.depth != 1024 {
		t.Fatalf("depth %d after a take of over a quarter; want 1024", p.f.depth)
	}
	// Quiet periods: down to the floor, never below. The frames queued
	// beyond the depth drain first; then the ring holds the floor.
	for range 5 {
		p.now += int64(fillDecay)
		p.quiet(fillClockEvery)
	}
	p.quiet(2048)
	if p.f.depth != 256 || p.queued != 256 {
		t.Fatalf("depth %d, %d queued after quiet periods; want the floor, 256", p.f.depth, p.queued)
	}
}

func TestFillDepthDoublesWhenTheKernelTakesHalf(t *testing.T) {
	p := newFillPlay(256, 2048)
	p.refill(0)
	for range 4 {
		p.now += int64(fillDecay)
		p.quiet(fillClockEvery)
	}
	p.quiet(2048)
	if p.f.depth != 256 {
		t.Fatalf("depth %d, want the floor 256", p.f.depth)
	}
	// Half taken: the kernel still had half. No change.
	if p.refill(128); p.f.depth != 256 {
		t.Fatalf("depth %d after a take of half", p.f.depth)
	}
	// More than half: double, and top the ring up to the new depth.
	if want := p.refill(129); p.f.depth != 512 || want != 129+256 || p.queued != 512 {
		t.Fatalf("after a take of 129 of 256: depth %d, wanted %d, %d queued; want 512, 385, 512", p.f.depth, want, p.queued)
	}
	for _, d := range []uint32{1024, 2048, 2048} {
		if p.refill(p.queued); p.f.depth != d {
			t.Fatalf("after the kernel took the whole ring: depth %d, want %d", p.f.depth, d)
		}
	}
}

func TestFillDepthFloor(t *testing.T) {
	for _, c := range []struct {
		low, high, want uint32
	}{
		{0, 2048, 2048},    // no floor: the whole ring, always
		{4096, 2048, 2048}, // a floor beyond the ring: the ring
		{256, 64, 64},
		{256, 2048, 256},
	} {
		p := newFillPlay(c.low, c.high)
		p.refill(0)
		for range 10 {
			p.now += int64(fillDecay)
			p.quiet(fillClockEvery)
		}
		p.quiet(int(c.high))
		if p.f.depth != c.want || p.queued != c.want {
			t.Errorf("floor %d on %d entries, after quiet periods: depth %d, %d queued; want %d", c.low, c.high, p.f.depth, p.queued, c.want)
		}
	}
}
