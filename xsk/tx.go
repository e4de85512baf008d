package xsk

// TXRing is a socket's transmit ring: this process produces descriptors of
// frames to send. One goroutine only.
//
// Use Reserve, Set for each reserved index, then Submit; then kick the
// kernel if NeedWakeup says so (Socket.Transmit does all of it). Submitted
// frames belong to the kernel until their addresses come back on the
// completion ring.
type TXRing struct {
	p    prodIndex
	desc []Desc
}

// NewTXRing builds a TX ring over mem (a kernel mapping or a plain byte
// region) laid out by off, with size entries.
func NewTXRing(mem []byte, off RingOffsets, size uint32) (*TXRing, error) {
	w, err := newRingWords(mem, off, size, 16, "tx")
	if err != nil {
		return nil, err
	}
	return &TXRing{p: newProdIndex(w), desc: descsAt(mem, off.Desc, size)}, nil
}

// Reserve reserves up to n entries and returns how many it got and the
// index of the first. The consumer index is reloaded only when the cached
// one says there is not room for n.
func (r *TXRing) Reserve(n uint32) (got, idx uint32) { return r.p.reserve(n) }

// Set writes a descriptor into reserved entry idx.
func (r *TXRing) Set(idx uint32, d Desc) { r.desc[idx&r.p.mask] = d }

// Submit publishes the next n reserved entries to the kernel.
func (r *TXRing) Submit(n uint32) { r.p.submit(n) }

// Cancel gives back the last n reserved, unsubmitted entries.
func (r *TXRing) Cancel(n uint32) { r.p.cancel(n) }

// NeedWakeup reports whether the kernel asks for a sendto to process this
// ring.
func (r *TXRing) NeedWakeup() bool { return r.p.needWakeup() }

// Size is the number of entries.
func (r *TXRing) Size() uint32 { return r.p.size }

// submitted reports whether anything was ever submitted on the ring.
func (r *TXRing) submitted() bool { return r.p.published != r.p.base }
