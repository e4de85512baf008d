package xsk

import "time"

// FillRing is the UMEM fill ring: this process produces frame addresses for
// the kernel to receive into. One goroutine only.
//
// Use Reserve, Set for each reserved index, then Submit. A frame address
// set and submitted belongs to the kernel until it comes back on the RX ring.
type FillRing struct {
	p    prodIndex
	addr []uint64
}

// NewFillRing builds a fill ring over mem, a kernel mapping or a plain byte
// region (for a fake kernel) laid out by off, with size entries.
func NewFillRing(mem []byte, off RingOffsets, size uint32) (*FillRing, error) {
	w, err := newRingWords(mem, off, size, 8, "fill")
	if err != nil {
		return nil, err
	}
	return &FillRing{p: newProdIndex(w), addr: u64sAt(mem, off.Desc, size)}, nil
}

// Reserve reserves up to n entries and returns how many it got and the
// index of the first. The consumer index is reloaded only when the cached
// one says there is not room for n.
func (r *FillRing) Reserve(n uint32) (got, idx uint32) { return r.p.reserve(n) }

// Set writes a frame address into reserved entry idx.
func (r *FillRing) Set(idx uint32, addr uint64) { r.addr[idx&r.p.mask] = addr }

// Submit publishes the next n reserved entries to the kernel.
func (r *FillRing) Submit(n uint32) { r.p.submit(n) }

// Cancel gives back the last n reserved, unsubmitted entries.
func (r *FillRing) Cancel(n uint32) { r.p.cancel(n) }

// NeedWakeup reports whether the kernel asks to be woken (recvfrom or poll)
// to take frames from this ring.
func (r *FillRing) NeedWakeup() bool { return r.p.needWakeup() }

// Size is the number of entries.
func (r *FillRing) Size() uint32 { return r.p.size }

// Taken loads the kernel's consumer index, a free-running count of the
// entries it has taken, and returns it with how many submitted entries it
// has not taken yet.
func (r *FillRing) Taken() (cons, queued uint32) {
	r.p.cachedCons = r.p.loadConsumer()
	return r.p.cachedCons, r.p.published - r.p.cachedCons
}

const (
	// fillDecay is how long a depth has to go unneeded before it halves.
	fillDecay = 250 * time.Millisecond
	// fillClockEvery is how many refills go by between two reads of the
	// clock while the depth is above its floor.
	fillClockEvery = 256
)

// fillDepth is how many frames Refill keeps on a socket's fill ring
// (SocketOptions.FillLow). The kernel writes into those frames in the order
// they were put there, so every frame on the ring is touched once per trip
// round it: a deep ring makes each packet's frame one the caches and the
// TLB have long forgotten. The depth starts at high, the whole ring, for
// what comes before the first receive. With a floor below it, the depth
// halves, never below low, after fillDecay in which the kernel never took
// more than a quarter of it between two refills, and doubles, up to high,
// whenever it took more than half: it might have run dry before the next
// refill. A receiver that stalls now and then keeps the depth that absorbs
// the stall, once a stall has shown it.
type fillDepth struct {
	depth, low, high uint32
	cons             uint32 // the kernel's consumer index at the last refill
	peak             uint32 // the most the kernel took between two refills since since
	refills          uint32 // refills since the clock was last read
	since            int64  // when the depth last changed or was last needed
	clock            func() int64
}

// newFillDepth is the depth of a ring of high entries with floor low (0: the
// whole ring), whose consumer index is cons.
func newFillDepth(low, high, cons uint32, clock func() int64) fillDepth {
	if low == 0 || low > high {
		low = high
	}
	return fillDepth{depth: high, low: low, high: high, cons: cons, since: clock(), clock: clock}
}

// want is how many frames to add to the ring, given the kernel's consumer
// index and the entries it has not taken yet.
func (f *fillDepth) want(cons, queued uint32) uint32 {
	if f.low < f.high {
		f.adapt(cons)
	}
	if queued >= f.depth {
		return 0
	}
	return f.depth - queued
}

// adapt moves the depth by what the kernel took since the last refill.
func (f *fillDepth) adapt(cons uint32) {
	taken := cons - f.cons
	f.cons = cons
	f.peak = max(f.peak, taken)
	switch {
	case taken > f.depth/2:
		f.depth = min(2*f.depth, f.high)
		f.since, f.peak = f.clock(), 0
	case f.depth > f.low:
		if f.refills++; f.refills < fillClockEvery {
			return
		}
		f.refills = 0
		if now := f.clock(); now-f.since >= int64(fillDecay) {
			if f.peak <= f.depth/4 {
				f.depth = max(f.depth/2, f.low)
			}
			f.since, f.peak = now, 0
		}
	}
}
