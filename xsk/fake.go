package xsk

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// FakeOptions configure NewFakeSocket.
type FakeOptions struct {
	// StartIndex is the initial producer and consumer index of all four
	// rings. Start near 2^32 (0xFFFFFF00) to run through the wraparound.
	StartIndex uint32
}

// FakeKernel plays the kernel's side of a Socket's four rings in ordinary
// memory, for tests and benchmarks that need no privileges and no network:
// it consumes the fill ring and produces into the RX ring (Deliver,
// DeliverPacket), and consumes the TX ring and produces into the
// completion ring (Send). Like the kernel, it is a single producer and
// consumer per ring: drive it from one goroutine at a time.
type FakeKernel struct {
	s        *Socket
	umem     *Umem
	fill     consIndex
	fillAddr []uint64
	rx       prodIndex
	rxDesc   []Desc
	tx       consIndex
	txDesc   []Desc
	comp     prodIndex
	compAddr []uint64

	fillKicks, txKicks uint64
	stats              Statistics
}

// NewFakeSocket makes a Socket on u whose rings live in plain memory and
// whose kernel is the returned FakeKernel. It registers nothing and opens
// no fd (FD returns -1); everything else (Receive, Refill, Transmit,
// Complete, accounting, Close) works as on a real socket.
func NewFakeSocket(u *Umem, opts SocketOptions, fo FakeOptions) (_ *Socket, _ *FakeKernel, err error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, nil, err
	}
	u.sockMu.Lock()
	defer u.sockMu.Unlock()
	if u.closed {
		return nil, nil, fmt.Errorf("new fake socket: umem: %w", ErrClosed)
	}
	s := &Socket{fd: -1, umem: u, opts: o, mode: BindCopy}
	k := &FakeKernel{s: s, umem: u}
	region := func(size uint32, elem int) ([]byte, RingOffsets) {
		off, n := FakeRingLayout(size, elem)
		mem := make([]byte, n)
		*u32At(mem, off.Producer) = fo.StartIndex
		*u32At(mem, off.Consumer) = fo.StartIndex
		return mem, off
	}
	mem, off := region(u.opts.FillSize, 8)
	if s.fill, err = NewFillRing(mem, off, u.opts.FillSize); err != nil {
		return nil, nil, err
	}
	w, _ := newRingWords(mem, off, u.opts.FillSize, 8, "fill")
	k.fill, k.fillAddr = newConsIndex(w), u64sAt(mem, off.Desc, u.opts.FillSize)

	mem, off = region(u.opts.CompletionSize, 8)
	if s.comp, err = NewCompletionRing(mem, off, u.opts.CompletionSize); err != nil {
		return nil, nil, err
	}
	w, _ = newRingWords(mem, off, u.opts.CompletionSize, 8, "completion")
	k.comp, k.compAddr = newProdIndex(w), u64sAt(mem, off.Desc, u.opts.CompletionSize)

	mem, off = region(o.RXSize, 16)
	if s.rx, err = NewRXRing(mem, off, o.RXSize); err != nil {
		return nil, nil, err
	}
	w, _ = newRingWords(mem, off, o.RXSize, 16, "rx")
	k.rx, k.rxDesc = newProdIndex(w), descsAt(mem, off.Desc, o.RXSize)

	mem, off = region(o.TXSize, 16)
	if s.tx, err = NewTXRing(mem, off, o.TXSize); err != nil {
		return nil, nil, err
	}
	w, _ = newRingWords(mem, off, o.TXSize, 16, "tx")
	k.tx, k.txDesc = newConsIndex(w), descsAt(mem, off.Desc, o.TXSize)

	s.fake = k
	s.initBuffers()
	u.sockets = append(u.sockets, s)
	return s, k, nil
}

// SetNeedWakeup sets or clears XDP_RING_NEED_WAKEUP on the fill and TX
// rings, as a driver going to sleep would.
func (k *FakeKernel) SetNeedWakeup(fill, tx bool) {
	set := func(w *ringWords, on bool) {
		var v uint32
		if on {
			v = unix.XDP_RING_NEED_WAKEUP
		}
		atomic.StoreUint32(w.flags, v)
	}
	set(&k.fill.ringWords, fill)
	set(&k.tx.ringWords, tx)
}

// Kicks returns how many times the socket woke the kernel for the fill ring
// (recvfrom/poll) and for the TX ring (sendto).
func (k *FakeKernel) Kicks() (fill, tx uint64) { return k.fillKicks, k.txKicks }

// Deliver receives frame n times, the way copy mode does: each copy takes a
// frame from the fill ring, is written at the frame's data offset and
// posted on the RX ring. It returns how many were delivered; the rest are
// counted in Stats as dropped (fill ring empty or RX ring full, in the
// kernel's terms). A frame longer than a UMEM frame's data room is dropped.
// Allocates nothing.
func (k *FakeKernel) Deliver(frame []byte, n int) int {
	off := k.umem.DataOffset()
	if uint64(len(frame)) > uint64(k.umem.opts.FrameSize)-off {
		k.stats.RxDropped += uint64(n)
		return 0
	}
	got, fidx := k.fill.peek(uint32(n))
	if got < uint32(n) {
		k.stats.RxFillRingEmptyDescs++
		k.stats.RxDropped += uint64(uint32(n) - got)
	}
	put, ridx := k.rx.reserve(got)
	if put < got {
		k.stats.RxRingFull += uint64(got - put)
	}
	mask := k.umem.frameMask
	for i := range put {
		addr := k.fillAddr[(fidx+i)&k.fill.mask]&mask + off
		copy(k.umem.mem[addr:], frame)
		k.rxDesc[(ridx+i)&k.rx.mask] = Desc{Addr: addr, Len: uint32(len(frame))}
	}
	k.fill.release(put)
	k.rx.submit(put)
	return int(put)
}

// DeliverPacket receives one packet as multi-buffer does: split over as
// many fill-ring frames as it needs, every descriptor but the last flagged
// XDP_PKT_CONTD. All or nothing: it returns false (and counts a drop) when
// the socket has no MultiBuffer and the packet needs more than one frame,
// or when the fill or RX ring lacks room.
func (k *FakeKernel) DeliverPacket(frame []byte) bool {
	off := k.umem.DataOffset()
	room := uint64(k.umem.opts.FrameSize) - off
	segs := uint32((uint64(len(frame)) + room - 1) / room)
	if segs == 0 {
		segs = 1
	}
	if segs > 1 && !k.s.opts.MultiBuffer {
		k.stats.RxDropped++
		return false
	}
	got, fidx := k.fill.peek(segs)
	if got < segs {
		k.stats.RxFillRingEmptyDescs++
		k.stats.RxDropped++
		return false
	}
	put, ridx := k.rx.reserve(segs)
	if put < segs {
		k.rx.cancel(put)
		k.stats.RxRingFull++
		return false
	}
	mask := k.umem.frameMask
	for i := range segs {
		addr := k.fillAddr[(fidx+i)&k.fill.mask]&mask + off
		part := frame[min(uint64(i)*room, uint64(len(frame))):min(uint64(i+1)*room, uint64(len(frame)))]
		copy(k.umem.mem[addr:], part)
		var opt uint32
		if i < segs-1 {
			opt = unix.XDP_PKT_CONTD
		}
		k.rxDesc[(ridx+i)&k.rx.mask] = Desc{Addr: addr, Len: uint32(len(part)), Options: opt}
	}
	k.fill.release(segs)
	k.rx.submit(segs)
	return true
}

// Send transmits up to len(dst) descriptors from the TX ring: it copies
// them into dst (read the bytes with Umem.Bytes; they stay valid until the
// application reuses the frames) and posts their addresses on the
// completion ring. It takes no more than the completion ring has room for
// and returns how many it sent.
func (k *FakeKernel) Send(dst []Desc) int {
	got, tidx := k.tx.peek(uint32(len(dst)))
	if got == 0 {
		k.stats.TxRingEmptyDescs++
	}
	put, cidx := k.comp.reserve(got)
	for i := range put {
		d := k.txDesc[(tidx+i)&k.tx.mask]
		dst[i] = d
		k.compAddr[(cidx+i)&k.comp.mask] = d.Addr
	}
	k.tx.release(put)
	k.comp.submit(put)
	return int(put)
}

// reclaim frees what sits on the fill and TX rings when the socket closes
// (a real kernel might still be using those; the fake is not) and returns
// how many frames it freed.
func (k *FakeKernel) reclaim() int64 {
	var n int64
	var buf [64]uint64
	for {
		got, idx := k.fill.peek(uint32(len(buf)))
		if got == 0 {
			break
		}
		for i := range got {
			buf[i] = k.fillAddr[(idx+i)&k.fill.mask]
		}
		k.fill.release(got)
		k.umem.Free(buf[:got])
		n += int64(got)
	}
	for {
		got, idx := k.tx.peek(uint32(len(buf)))
		if got == 0 {
			break
		}
		for i := range got {
			buf[i] = k.txDesc[(idx+i)&k.tx.mask].Addr
		}
		k.tx.release(got)
		k.umem.Free(buf[:got])
		n += int64(got)
	}
	return n
}
