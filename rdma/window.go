package rdma

import "fmt"

// window is a Sender's bookkeeping, apart from the verbs: the descriptors
// in flight, by sequence number, and the sink's credits. A send's wr_id is
// the sequence of its packet's last Desc, so its completion retires every
// Desc up to that one.
type window struct {
	ring    []Desc // in flight, at sequence & mask
	mask    uint64
	next    uint64 // sequence of the next Desc
	done    uint64 // Desc with sequence < done have completed
	handed  uint64 // Desc with sequence < handed were handed back
	credits int    // packets the sink has buffers for
	region  uint64 // length of the registered region the Desc point into
	maxSegs int    // the most Desc per packet
	maxMsg  uint32 // the sink's buffer size: the longest packet
}

// newWindow is the bookkeeping of a Sender with slots in-flight Desc (a
// power of two) and credits from the sink.
func newWindow(slots, credits int, region uint64, maxSegs int, maxMsg uint32) window {
	return window{ring: make([]Desc, slots), mask: uint64(slots - 1), credits: credits, region: region,
		maxSegs: maxSegs, maxMsg: maxMsg}
}

// inFlight is the Desc taken by posted not yet handed back by handBack.
func (w *window) inFlight() int { return int(w.next - w.handed) }

// fit returns how many of descs, whole packets, the credits and the ring's
// room take, and the error (ErrTooLarge) of a packet that stops the burst
// there.
func (w *window) fit(descs []Desc) (int, error) {
	room := len(w.ring) - w.inFlight()
	n := 0
	for pkts := 0; n < len(descs) && pkts < w.credits; pkts++ {
		end, err := w.packet(descs, n)
		if err != nil {
			return n, err
		}
		if end > room {
			break
		}
		n = end
	}
	return n, nil
}

// packet checks the packet that starts at descs[i] and returns the index
// after its last Desc.
func (w *window) packet(descs []Desc, i int) (end int, err error) {
	var size uint64
	for j := i; j < len(descs); j++ {
		d := descs[j]
		size += uint64(d.Len)
		if d.Addr+uint64(d.Len) > w.region || d.Addr+uint64(d.Len) < d.Addr {
			return 0, fmt.Errorf("%w: packet at %d: segment of %d bytes at offset %d lies outside the region (%d bytes)",
				ErrTooLarge, i, d.Len, d.Addr, w.region)
		}
		if j-i >= w.maxSegs {
			return 0, fmt.Errorf("%w: packet at %d has more than %d segments (DialOptions.MaxSegments)", ErrTooLarge, i, w.maxSegs)
		}
		if !d.Continues() {
			if size > uint64(w.maxMsg) {
				return 0, bufferSizeError{fmt.Errorf("%w: packet at %d: %d bytes, the sink's receive buffers hold %d",
					ErrTooLarge, i, size, w.maxMsg)}
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: packet at %d: its last segment (flagged More) ends the burst", ErrTooLarge, i)
}

// track puts descs, which fit took, in the ring from sequence next, where
// posting them numbers them.
func (w *window) track(descs []Desc) {
	for i, d := range descs {
		w.ring[(w.next+uint64(i))&w.mask] = d
	}
}

// posted moves next past descs, tracked and posted, taking a credit per
// packet, and returns how many packets and bytes they are.
func (w *window) posted(descs []Desc) (pkts int, bytes uint64) {
	for _, d := range descs {
		bytes += uint64(d.Len)
		if !d.Continues() {
			pkts++
		}
	}
	w.next += uint64(len(descs))
	w.credits -= pkts
	return pkts, bytes
}

// completed records the completion of the send whose wr_id is seq: an RC
// send queue completes in order, so every Desc up to seq is done.
func (w *window) completed(seq uint64) {
	w.done = max(w.done, seq+1)
}

// flush makes every Desc in flight done: the connection failed and their
// sends were flushed, so the device no longer reads their frames.
func (w *window) flush() { w.done = w.next }

// handBack fills out with the done Desc not yet handed back, in order, and
// returns how many.
func (w *window) handBack(out []Desc) int {
	n := 0
	for w.handed < w.done && n < len(out) {
		out[n] = w.ring[w.handed&w.mask]
		w.handed++
		n++
	}
	return n
}

// returns is a Receiver's bookkeeping of the credits it owes the sender:
// the buffers reposted and not yet returned, sent back in one message per
// threshold buffers while its send queue has a slot.
type returns struct {
	pending   int // buffers reposted, not yet returned as credits
	threshold int // the fewest credits a message returns
	out       int // credit messages not yet completed
	depth     int // the send queue's slots
}

// reposted records n buffers reposted.
func (r *returns) reposted(n int) { r.pending += n }

// completed records k credit messages completed.
func (r *returns) completed(k int) { r.out -= k }

// due is the credits to return now: 0 until threshold buffers were
// reposted, or while every send queue slot is taken.
func (r *returns) due() int {
	if r.pending >= r.threshold && r.out < r.depth {
		return r.pending
	}
	return 0
}

// sent records the message returning due's credits.
func (r *returns) sent() {
	r.out++
	r.pending = 0
}
