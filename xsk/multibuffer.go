package xsk

import (
	"iter"

	"golang.org/x/sys/unix"
)

// Multi-buffer packets (SocketOptions.MultiBuffer, XDP_USE_SG): a packet
// larger than a frame's data room arrives and leaves as several
// descriptors, every one but the last flagged XDP_PKT_CONTD. Where a
// packet ends is said here once: Desc.Continues for one descriptor,
// PacketEnd and WholePackets for a slice, Packets to go over one packet
// at a time.

// PktContd is XDP_PKT_CONTD: set in Desc.Options on every segment of a
// multi-buffer packet except its last.
const PktContd = unix.XDP_PKT_CONTD

// Continues reports whether the packet goes on in the next descriptor
// (XDP_PKT_CONTD): true on every segment of a multi-buffer packet but its
// last, false on a packet's last (or only) descriptor.
func (d Desc) Continues() bool { return d.Options&PktContd != 0 }

// Segment is a descriptor of one buffer of a packet that may span several:
// Desc, or another transport's descriptor of the same frames that flags a
// continuing packet its own way. The functions below work on either.
type Segment interface {
	// Continues reports whether the packet goes on in the next
	// descriptor.
	Continues() bool
}

// PacketEnd returns the index after the last segment of the packet that
// starts at descs[i], and whether that packet is whole in descs. When
// descs ends with the packet still continuing, end is len(descs) and whole
// is false. i must be in [0, len(descs)).
func PacketEnd[S Segment](descs []S, i int) (end int, whole bool) {
	for ; i < len(descs); i++ {
		if !descs[i].Continues() {
			return i + 1, true
		}
	}
	return len(descs), false
}

// WholePackets is how many of descs, from the first, make whole packets:
// up to and including the last one that does not continue. descs[n:] is
// the start of a packet cut short.
func WholePackets[S Segment](descs []S) (n int) {
	n = len(descs)
	for n > 0 && descs[n-1].Continues() {
		n--
	}
	return n
}

// Packets yields the packets of descs in order, each the subslice of its
// segments (one descriptor unless multi-buffer), aliasing descs. A packet
// cut short by the end of descs is not yielded: WholePackets says where
// the whole ones end. It allocates nothing, but costs calls per packet: a
// loop that only counts packets on the hot path is faster testing
// Desc.Continues of each descriptor.
func Packets[S Segment](descs []S) iter.Seq[[]S] {
	return func(yield func([]S) bool) {
		for i := 0; i < len(descs); {
			end, whole := PacketEnd(descs, i)
			if !whole || !yield(descs[i:end]) {
				return
			}
			i = end
		}
	}
}

// ReceivePacket takes one whole packet off the RX ring into segs and
// returns its number of segments, or 0 when no complete packet is ready.
// When the next packet has more segments than len(segs) it takes nothing
// and returns ErrShortBuffer. The frames are the caller's afterwards, as
// with Receive. Allocates nothing.
func (s *Socket) ReceivePacket(segs []Desc) (int, error) {
	n, idx := s.rx.Peek(uint32(len(segs)))
	for i := range n {
		d := s.rx.Get(idx + i)
		segs[i] = d
		if !d.Continues() {
			s.rx.Release(i + 1)
			if s.umem.isFree != nil {
				s.umem.debugHeld("receive", segs[:i+1])
			}
			return int(i + 1), nil
		}
	}
	if n == uint32(len(segs)) && n > 0 {
		return 0, ErrShortBuffer
	}
	return 0, nil // the rest of the packet is not published yet
}

// TransmitPacket queues one packet of several segments on the TX ring, all
// or nothing: it sets XDP_PKT_CONTD on every segment but the last (the
// caller's Options are kept otherwise), submits, and kicks the kernel if it
// asks. It returns false, queuing nothing, when the ring lacks room.
func (s *Socket) TransmitPacket(segs []Desc) bool {
	n := uint32(len(segs))
	got, idx := s.tx.Reserve(n)
	if got < n {
		s.tx.Cancel(got)
		return false
	}
	if s.umem.isFree != nil {
		s.umem.debugHeld("transmit", segs)
	}
	for i := range n {
		d := segs[i]
		if i < n-1 {
			d.Options |= PktContd
		} else {
			d.Options &^= PktContd
		}
		s.tx.Set(idx+i, d)
	}
	s.tx.Submit(n)
	s.kickTX()
	return true
}

// PacketLen is the total length of a packet's segments.
func PacketLen(segs []Desc) int {
	n := 0
	for _, d := range segs {
		n += int(d.Len)
	}
	return n
}

// CopyPacket copies the bytes of a multi-segment packet into dst and
// returns how many it copied (at most len(dst)).
func (u *Umem) CopyPacket(dst []byte, segs []Desc) int {
	n := 0
	for _, d := range segs {
		n += copy(dst[n:], u.Bytes(d))
	}
	return n
}

// WritePacket spreads data over frames (from addrs, one per segment, data
// written at DataOffset) and fills segs with their descriptors, ready for
// TransmitPacket. It returns the number of segments used, or 0 when addrs
// or segs are too short.
func (u *Umem) WritePacket(segs []Desc, addrs []uint64, data []byte) int {
	off := u.DataOffset()
	room := uint64(u.opts.FrameSize) - off
	need := int((uint64(len(data)) + room - 1) / room)
	if need == 0 {
		need = 1
	}
	if need > len(addrs) || need > len(segs) {
		return 0
	}
	for i := range need {
		part := data[min(uint64(i)*room, uint64(len(data))):min(uint64(i+1)*room, uint64(len(data)))]
		a := addrs[i]&u.frameMask + off
		copy(u.mem[a:], part)
		segs[i] = Desc{Addr: a, Len: uint32(len(part))}
		if i < need-1 {
			segs[i].Options = PktContd
		}
	}
	return need
}
