package xsk

// RXRing is a socket's receive ring: the kernel produces descriptors of
// received frames. One goroutine only.
//
// Use Peek, Get for each index, then Release. After Release the frames the
// descriptors point at are the caller's: return them with FillRing,
// Socket.Recycle or Umem.Free, or transmit them.
type RXRing struct {
	c    consIndex
	desc []Desc
}

// NewRXRing builds an RX ring over mem (a kernel mapping or a plain byte
// region) laid out by off, with size entries.
func NewRXRing(mem []byte, off RingOffsets, size uint32) (*RXRing, error) {
	w, err := newRingWords(mem, off, size, 16, "rx")
	if err != nil {
		return nil, err
	}
	return &RXRing{c: newConsIndex(w), desc: descsAt(mem, off.Desc, size)}, nil
}

// Peek returns how many descriptors (at most n) are ready and the index of
// the first. The producer index is reloaded only when the cached one says
// empty.
func (r *RXRing) Peek(n uint32) (got, idx uint32) { return r.c.peek(n) }

// Get returns the descriptor in entry idx.
func (r *RXRing) Get(idx uint32) Desc { return r.desc[idx&r.c.mask] }

// Release hands the next n peeked entries back to the kernel.
func (r *RXRing) Release(n uint32) { r.c.release(n) }

// Size is the number of entries.
func (r *RXRing) Size() uint32 { return r.c.size }
