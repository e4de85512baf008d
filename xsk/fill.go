package xsk

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
