// Package xsktest is a fake kernel for package xsk: it plays the kernel's
// side of a Socket's four rings in ordinary memory, so tests and benchmarks
// run the production ring and socket code without privileges or a network,
// as wireguard-go's conn/bindtest stands in for conn.Bind.
//
// The fake reuses xsk's own ring types with the roles swapped: the kernel
// consumes the fill and TX rings (an xsk.CompletionRing and an xsk.RXRing
// over their memory) and produces into the RX and completion rings (an
// xsk.TXRing and an xsk.FillRing), the way one ring's two sides see the
// same producer and consumer words.
package xsktest

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/xsk"
)

// Options configure NewSocket.
type Options struct {
	// StartIndex is the initial producer and consumer index of all four
	// rings. Start near 2^32 (0xFFFFFF00) to run through the wraparound.
	StartIndex uint32
}

// RingLayout returns offsets like the kernel's (each index word on its own
// cache line) for a ring of size entries of elemSize bytes (8 for fill and
// completion, 16 for RX and TX), and the region length it needs.
func RingLayout(size uint32, elemSize int) (xsk.RingOffsets, int) {
	off := xsk.RingOffsets{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	return off, int(off.Desc) + int(size)*elemSize
}

// Kernel plays the kernel's side of a Socket's rings: it consumes the fill
// ring and produces into the RX ring (Deliver, DeliverPacket, Post), and
// consumes the TX ring and produces into the completion ring (Send). Like
// the kernel, it is a single producer and consumer per ring: drive it from
// one goroutine at a time.
type Kernel struct {
	umem  *xsk.Umem
	multi bool // the socket has MultiBuffer
	// The UMEM's geometry: a frame address's base is addr&frameMask, its
	// data starts dataOff after it, and holds up to room bytes.
	region        []byte
	frameMask     uint64
	dataOff, room uint64

	fill *xsk.CompletionRing // the fill ring, consumed
	rx   *xsk.TXRing         // the RX ring, produced
	tx   *xsk.RXRing         // the TX ring, consumed
	comp *xsk.FillRing       // the completion ring, produced

	fillFlags, txFlags *uint32

	fillKicks, txKicks atomic.Uint64
	stats              xsk.Statistics

	// OnWakeTX, if set, runs on every TX kick, in the kicking goroutine:
	// a test can Send there, as copy mode transmits inside sendto.
	OnWakeTX func()
}

var _ xsk.Kernel = (*Kernel)(nil)

// NewSocket makes a Socket on u whose rings live in plain memory and whose
// kernel is the returned Kernel. It registers nothing and opens no fd (FD
// returns -1); everything else (Receive, Refill, Transmit, Complete,
// accounting, Close) works as on a real socket.
func NewSocket(u *xsk.Umem, opts xsk.SocketOptions, o Options) (*xsk.Socket, *Kernel, error) {
	uo := u.Options()
	rxSize, txSize := opts.RXSize, opts.TXSize
	if rxSize == 0 {
		rxSize = xsk.DefaultRingSize
	}
	if txSize == 0 {
		txSize = xsk.DefaultRingSize
	}
	k := &Kernel{umem: u, multi: opts.MultiBuffer, region: u.Region(), frameMask: ^uint64(u.FrameSize() - 1),
		dataOff: u.DataOffset(), room: uint64(u.FrameSize()) - u.DataOffset()}
	region := func(size uint32, elem int) ([]byte, xsk.RingOffsets) {
		off, n := RingLayout(size, elem)
		mem := make([]byte, n)
		binary.NativeEndian.PutUint32(mem[off.Producer:], o.StartIndex)
		binary.NativeEndian.PutUint32(mem[off.Consumer:], o.StartIndex)
		return mem, off
	}
	var (
		rings xsk.Rings
		err   error
	)
	// Each ring twice over the same region: the socket's side and ours.
	mem, off := region(uo.FillSize, 8)
	if rings.Fill, err = xsk.NewFillRing(mem, off, uo.FillSize); err != nil {
		return nil, nil, err
	}
	if k.fill, err = xsk.NewCompletionRing(mem, off, uo.FillSize); err != nil {
		return nil, nil, err
	}
	k.fillFlags = u32At(mem, off.Flags)
	mem, off = region(uo.CompletionSize, 8)
	if rings.Completion, err = xsk.NewCompletionRing(mem, off, uo.CompletionSize); err != nil {
		return nil, nil, err
	}
	if k.comp, err = xsk.NewFillRing(mem, off, uo.CompletionSize); err != nil {
		return nil, nil, err
	}
	mem, off = region(rxSize, 16)
	if rings.RX, err = xsk.NewRXRing(mem, off, rxSize); err != nil {
		return nil, nil, err
	}
	if k.rx, err = xsk.NewTXRing(mem, off, rxSize); err != nil {
		return nil, nil, err
	}
	mem, off = region(txSize, 16)
	if rings.TX, err = xsk.NewTXRing(mem, off, txSize); err != nil {
		return nil, nil, err
	}
	if k.tx, err = xsk.NewRXRing(mem, off, txSize); err != nil {
		return nil, nil, err
	}
	k.txFlags = u32At(mem, off.Flags)
	s, err := xsk.NewSocketFrom(u, opts, rings, k)
	if err != nil {
		return nil, nil, err
	}
	return s, k, nil
}

// SetNeedWakeup sets or clears XDP_RING_NEED_WAKEUP on the fill and TX
// rings, as a driver going to sleep would.
func (k *Kernel) SetNeedWakeup(fill, tx bool) {
	set := func(w *uint32, on bool) {
		var v uint32
		if on {
			v = unix.XDP_RING_NEED_WAKEUP
		}
		atomic.StoreUint32(w, v)
	}
	set(k.fillFlags, fill)
	set(k.txFlags, tx)
}

// Kicks returns how many times the socket woke the kernel for the fill ring
// (recvfrom/poll) and for the TX ring (sendto).
func (k *Kernel) Kicks() (fill, tx uint64) { return k.fillKicks.Load(), k.txKicks.Load() }

// WakeRX implements xsk.Kernel: it counts the kick.
func (k *Kernel) WakeRX() error { k.fillKicks.Add(1); return nil }

// WakeTX implements xsk.Kernel: it counts the kick and runs OnWakeTX.
func (k *Kernel) WakeTX() error {
	k.txKicks.Add(1)
	if k.OnWakeTX != nil {
		k.OnWakeTX()
	}
	return nil
}

// Poll implements xsk.Kernel: it returns at once.
func (k *Kernel) Poll(time.Duration) error { return nil }

// Statistics implements xsk.Kernel: the drops Deliver and Send counted.
func (k *Kernel) Statistics() (xsk.Statistics, error) { return k.stats, nil }

// frameAddr turns a fill-ring address into the address of its data.
func (k *Kernel) frameAddr(a uint64) uint64 { return a&k.frameMask + k.dataOff }

// Deliver receives frame n times, the way copy mode does: each copy takes a
// frame from the fill ring, is written at the frame's data offset and
// posted on the RX ring. It returns how many were delivered; the rest are
// counted in Stats as dropped (fill ring empty or RX ring full, in the
// kernel's terms). A frame longer than a UMEM frame's data room is dropped.
// Allocates nothing.
func (k *Kernel) Deliver(frame []byte, n int) int {
	if uint64(len(frame)) > k.room {
		k.stats.RxDropped += uint64(n)
		return 0
	}
	got, fidx := k.fill.Peek(uint32(n))
	if got < uint32(n) {
		k.stats.RxFillRingEmptyDescs++
		k.stats.RxDropped += uint64(uint32(n) - got)
	}
	put, ridx := k.rx.Reserve(got)
	if put < got {
		k.stats.RxRingFull += uint64(got - put)
	}
	for i := range put {
		addr := k.frameAddr(k.fill.Get(fidx + i))
		copy(k.region[addr:], frame)
		k.rx.Set(ridx+i, xsk.Desc{Addr: addr, Len: uint32(len(frame))})
	}
	k.fill.Release(put)
	k.rx.Submit(put)
	return int(put)
}

// Post moves up to n frames from the fill ring to the RX ring as packets
// of length bytes without writing them: the kernel's side of a receive
// without the copy, for benchmarks of the socket's own cost. It returns
// how many it posted.
func (k *Kernel) Post(n, length int) int {
	got, fidx := k.fill.Peek(uint32(n))
	put, ridx := k.rx.Reserve(got)
	for i := range put {
		k.rx.Set(ridx+i, xsk.Desc{Addr: k.frameAddr(k.fill.Get(fidx + i)), Len: uint32(length)})
	}
	k.fill.Release(put)
	k.rx.Submit(put)
	return int(put)
}

// DeliverPacket receives one packet as multi-buffer does: split over as
// many fill-ring frames as it needs, every descriptor but the last flagged
// XDP_PKT_CONTD. All or nothing: it returns false (and counts a drop) when
// the socket has no MultiBuffer and the packet needs more than one frame,
// or when the fill or RX ring lacks room.
func (k *Kernel) DeliverPacket(frame []byte) bool {
	room := k.room
	segs := max(uint32((uint64(len(frame))+room-1)/room), 1)
	if segs > 1 && !k.multi {
		k.stats.RxDropped++
		return false
	}
	got, fidx := k.fill.PeekFresh(segs)
	if got < segs {
		k.stats.RxFillRingEmptyDescs++
		k.stats.RxDropped++
		return false
	}
	put, ridx := k.rx.Reserve(segs)
	if put < segs {
		k.rx.Cancel(put)
		k.stats.RxRingFull++
		return false
	}
	for i := range segs {
		addr := k.frameAddr(k.fill.Get(fidx + i))
		part := frame[min(uint64(i)*room, uint64(len(frame))):min(uint64(i+1)*room, uint64(len(frame)))]
		copy(k.region[addr:], part)
		var opt uint32
		if i < segs-1 {
			opt = unix.XDP_PKT_CONTD
		}
		k.rx.Set(ridx+i, xsk.Desc{Addr: addr, Len: uint32(len(part)), Options: opt})
	}
	k.fill.Release(segs)
	k.rx.Submit(segs)
	return true
}

// Send transmits up to len(dst) descriptors from the TX ring: it copies
// them into dst (read the bytes with Umem.Bytes; they stay valid until the
// application reuses the frames) and posts their addresses on the
// completion ring. It takes no more than the completion ring has room for
// and returns how many it sent.
func (k *Kernel) Send(dst []xsk.Desc) int {
	got, tidx := k.tx.Peek(uint32(len(dst)))
	if got == 0 {
		k.stats.TxRingEmptyDescs++
	}
	put, cidx := k.comp.Reserve(got)
	for i := range put {
		d := k.tx.Get(tidx + i)
		dst[i] = d
		k.comp.Set(cidx+i, d.Addr)
	}
	k.tx.Release(put)
	k.comp.Submit(put)
	return int(put)
}

// Release implements xsk.Kernel: unlike the real kernel, which may still
// be using them, the fake hands the frames on the fill and TX rings back
// to the Umem's free stack when the socket closes.
func (k *Kernel) Release() (int64, error) {
	var n int64
	var buf [64]uint64
	for {
		got, idx := k.fill.Peek(uint32(len(buf)))
		if got == 0 {
			break
		}
		for i := range got {
			buf[i] = k.fill.Get(idx + i)
		}
		k.fill.Release(got)
		k.umem.Free(buf[:got])
		n += int64(got)
	}
	for {
		got, idx := k.tx.Peek(uint32(len(buf)))
		if got == 0 {
			break
		}
		for i := range got {
			buf[i] = k.tx.Get(idx + i).Addr
		}
		k.tx.Release(got)
		k.umem.Free(buf[:got])
		n += int64(got)
	}
	return n, nil
}
