package xsk

import (
	"errors"
	"fmt"
	"testing"
)

// testLayout lays a ring out as the kernel does (each index word on its own
// cache line) in a region of the returned length.
func testLayout(size uint32, elemSize int) (RingOffsets, int) {
	off := RingOffsets{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	return off, int(off.Desc) + int(size)*elemSize
}

// pair is a producer and a consumer over the same plain byte region: the
// two sides of one ring, as this process and the kernel see it.
type pair struct {
	p   prodIndex
	c   consIndex
	val []uint64
}

func newPair(t *testing.T, size, start uint32) *pair {
	t.Helper()
	off, n := testLayout(size, 8)
	mem := make([]byte, n)
	*u32At(mem, off.Producer) = start
	*u32At(mem, off.Consumer) = start
	w, err := newRingWords(mem, off, size, 8, "test")
	if err != nil {
		t.Fatal(err)
	}
	return &pair{p: newProdIndex(w), c: newConsIndex(w), val: u64sAt(mem, off.Desc, size)}
}

// TestRingWraparound pushes a sequence through rings whose indices start
// just below 2^32, in batches of several sizes, and checks every value
// arrives once, in order, and that the ring never holds more than its size.
func TestRingWraparound(t *testing.T) {
	const size = 64
	for _, start := range []uint32{0, 0xFFFFFF00, 0xFFFFFFFF - size/2} {
		for _, batch := range []uint32{1, 3, 16, 64, 100} {
			t.Run(fmt.Sprintf("start=%#x/batch=%d", start, batch), func(t *testing.T) {
				r := newPair(t, size, start)
				var next, want uint64
				const total = 2000 // well past 2^32 from 0xFFFFFF00
				for want < total {
					got, idx := r.p.reserve(batch)
					if got > size {
						t.Fatalf("reserved %d entries from a ring of %d", got, size)
					}
					for i := range got {
						r.val[(idx+i)&r.p.mask] = next
						next++
					}
					r.p.submit(got)
					if held := r.p.inRing(); held > size {
						t.Fatalf("ring holds %d > %d", held, size)
					}
					// The consumer takes a different batch size, so the two
					// sides drift against each other.
					cb := batch/2 + 1
					n, cidx := r.c.peek(cb)
					for i := range n {
						if v := r.val[(cidx+i)&r.c.mask]; v != want {
							t.Fatalf("entry %d: got %d, want %d (cons index %#x)", want, v, want, cidx+i)
						}
						want++
					}
					r.c.release(n)
				}
				if r.c.consumed-start < 1000 {
					t.Fatalf("consumer index only moved %d", r.c.consumed-start)
				}
				if start > 0xF0000000 && r.c.consumed > start {
					t.Fatalf("consumer index %#x did not wrap past 2^32", r.c.consumed)
				}
			})
		}
	}
}

// TestRingFullEmpty checks the edges: an empty ring peeks 0, a full ring
// reserves 0, and exactly size entries fit.
func TestRingFullEmpty(t *testing.T) {
	for _, start := range []uint32{0, 0xFFFFFFF0, 0xFFFFFFFF} {
		r := newPair(t, 8, start)
		if n, _ := r.c.peek(4); n != 0 {
			t.Fatalf("start %#x: empty ring peeked %d", start, n)
		}
		if n, _ := r.p.reserve(9); n != 8 {
			t.Fatalf("start %#x: reserve(9) on empty ring of 8 got %d", start, n)
		}
		if n, _ := r.p.reserve(1); n != 0 {
			t.Fatalf("start %#x: reserve on a fully reserved ring got %d", start, n)
		}
		r.p.submit(8)
		if n, _ := r.p.reserve(1); n != 0 {
			t.Fatalf("start %#x: reserve on a full ring got %d", start, n)
		}
		if n, idx := r.c.peek(100); n != 8 || idx != start {
			t.Fatalf("start %#x: peek on a full ring = %d at %#x, want 8 at %#x", start, n, idx, start)
		}
		r.c.release(8)
		if n, _ := r.c.peek(1); n != 0 {
			t.Fatalf("start %#x: drained ring peeked %d", start, n)
		}
		if n, idx := r.p.reserve(8); n != 8 || idx != start+8 {
			t.Fatalf("start %#x: reserve after drain = %d at %#x", start, n, idx)
		}
		r.p.cancel(8)
		if r.p.reserved != start+8 {
			t.Fatalf("cancel left reserved at %#x", r.p.reserved)
		}
	}
}

// TestRingCachedIndex checks that each side reloads the other's index only
// when its cache says empty (consumer) or too little room (producer).
func TestRingCachedIndex(t *testing.T) {
	r := newPair(t, 8, 0xFFFFFFFE)
	r.p.reserve(4)
	r.p.submit(4)
	if n, _ := r.c.peek(2); n != 2 {
		t.Fatalf("peek(2) = %d", n)
	}
	r.c.release(2)
	r.p.reserve(4)
	r.p.submit(4) // 6 ready now, but the consumer's cache says 2
	if n, _ := r.c.peek(8); n != 2 {
		t.Fatalf("peek with 2 cached = %d, want 2 (no reload while the cache is not empty)", n)
	}
	r.c.release(2)
	if n, _ := r.c.peek(8); n != 4 {
		t.Fatalf("peek on empty cache = %d, want 4 after reload", n)
	}
	r.c.release(4) // consumer at start+8, producer at start+8: empty

	// Producer: 8 reserved and submitted; its cached consumer is stale.
	r.p.reserve(8)
	r.p.submit(8)
	r.c.peek(8)
	r.c.release(3)
	if n, _ := r.p.reserve(2); n != 2 {
		t.Fatalf("reserve(2) with 3 free after reload = %d", n)
	}
	cached := r.p.cachedCons
	r.c.release(5) // 5 more free, producer does not know
	if n, _ := r.p.reserve(1); n != 1 || r.p.cachedCons != cached {
		t.Fatalf("reserve(1) with 1 free cached reloaded (cache %#x -> %#x)", cached, r.p.cachedCons)
	}
	if n, _ := r.p.reserve(5); n != 5 || r.p.cachedCons == cached {
		t.Fatalf("reserve(5) beyond the cache = %d, cache %#x (want a reload)", n, r.p.cachedCons)
	}
}

func TestRingInvariantPanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	r := newPair(t, 8, 0)
	mustPanic("submit without reserve", func() { r.p.submit(1) })
	mustPanic("release without peek", func() { r.c.release(1) })
	mustPanic("cancel without reserve", func() { r.p.cancel(1) })
}

func TestRingRegionValidation(t *testing.T) {
	off, n := testLayout(16, 16)
	mem := make([]byte, n)
	if _, err := NewRXRing(mem, off, 12); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("size 12: err = %v, want ErrInvalidOption", err)
	}
	if _, err := NewTXRing(mem[:n-1], off, 16); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("short region: err = %v, want ErrInvalidOption", err)
	}
	bad := off
	bad.Consumer = 66
	if _, err := NewFillRing(mem, bad, 16); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("misaligned consumer: err = %v, want ErrInvalidOption", err)
	}
	if _, err := NewCompletionRing(mem, off, 16); err != nil {
		t.Errorf("valid region: %v", err)
	}
}
