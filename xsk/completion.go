package xsk

// CompletionRing is the UMEM completion ring: the kernel produces the
// addresses of frames it has finished transmitting. One goroutine only.
//
// Use Peek, Get for each index, then Release. After Release the frames are
// the caller's (usually returned to the Umem with Free).
type CompletionRing struct {
	c    consIndex
	addr []uint64
}

// NewCompletionRing builds a completion ring over mem (a kernel mapping or a
// plain byte region) laid out by off, with size entries.
func NewCompletionRing(mem []byte, off RingOffsets, size uint32) (*CompletionRing, error) {
	w, err := newRingWords(mem, off, size, 8, "completion")
	if err != nil {
		return nil, err
	}
	return &CompletionRing{c: newConsIndex(w), addr: u64sAt(mem, off.Desc, size)}, nil
}

// Peek returns how many entries (at most n) are ready and the index of the
// first. The producer index is reloaded only when the cached one says empty.
func (r *CompletionRing) Peek(n uint32) (got, idx uint32) { return r.c.peek(n) }

// PeekFresh is Peek that reloads the producer index whenever the cached
// one shows fewer than n entries, as the kernel's consumers do
// (xskq_cons_nb_entries): for a fake kernel that needs n entries at once
// (a multi-buffer packet's frames), where Peek could stop at a stale count.
func (r *CompletionRing) PeekFresh(n uint32) (got, idx uint32) {
	if r.c.cachedProd-r.c.consumed < n {
		r.c.cachedProd = r.c.loadProducer()
	}
	return r.c.peek(n)
}

// Get returns the frame address in entry idx (as the TX descriptor gave it).
func (r *CompletionRing) Get(idx uint32) uint64 { return r.addr[idx&r.c.mask] }

// Release hands the next n peeked entries back to the kernel.
func (r *CompletionRing) Release(n uint32) { r.c.release(n) }

// Size is the number of entries.
func (r *CompletionRing) Size() uint32 { return r.c.size }
