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
	"math"
	"sync"
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
	// Wire, if set, is the link the kernel receives from and sends to on
	// its own, from the socket's calls (see Wire).
	Wire *Wire
}

// Wire is a fake link beside a Kernel (Options.Wire): packets waiting to
// arrive, and a sink for the packets the socket sends. The kernel works it
// from the socket's own calls, as a driver the socket wakes: each WakeRX
// (a Refill or Recycle whose fill ring asks for a wakeup) and each Poll
// delivers what waits, as far as the fill and RX rings take it, and each
// WakeTX sends what is on the TX ring. A socket on a Wire has need_wakeup
// set on both rings, so it kicks on each of those calls. Packets waiting
// on the wire are not drops: they wait until the socket has room.
//
// Several sockets may share one Wire (the queues of one interface); each
// takes what it can of the waiting packets. Arrive and the counters are
// safe from any goroutine.
type Wire struct {
	// Frame is the bytes of every packet that arrives. It must fit one
	// UMEM frame's data room; a longer one never arrives (DeliverPacket
	// delivers multi-buffer packets).
	Frame []byte
	// Meta, if set, writes an arriving packet's metadata into the bytes of
	// its UMEM frame before the data, where an XDP program puts it. It
	// runs in the goroutine of the socket's call.
	Meta func(headroom []byte)
	// OnSend, if set, sees each packet the socket sends, in the goroutine
	// of the kick that sent it, before its frame completes.
	OnSend func(data []byte)
	// SendEvery, above 1, sends only at every SendEvery-th TX wakeup: a
	// link slower than the socket, whose TX ring fills.
	SendEvery int

	waiting, delivered, sent atomic.Int64
}

// endless is the number of waiting packets of a Wire that never runs dry.
const endless = math.MaxInt64 / 2

// Arrive adds n packets to those waiting; a negative n makes them endless.
func (w *Wire) Arrive(n int) {
	if n < 0 {
		w.waiting.Store(endless)
		return
	}
	w.waiting.Add(int64(n))
}

// Delivered is how many packets the sockets took onto their RX rings.
func (w *Wire) Delivered() int64 { return w.delivered.Load() }

// Sent is how many packets the wire sent.
func (w *Wire) Sent() int64 { return w.sent.Load() }

// Waiting is how many packets wait to arrive.
func (w *Wire) Waiting() int64 { return w.waiting.Load() }

// RingLayout returns offsets like the kernel's (each index word on its own
// cache line) for a ring of size entries of elemSize bytes (8 for fill and
// completion, 16 for RX and TX), and the region length it needs.
func RingLayout(size uint32, elemSize int) (xsk.RingOffsets, int) {
	off := xsk.RingOffsets{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	return off, int(off.Desc) + int(size)*elemSize
}

// Kernel plays the kernel's side of a Socket's rings: it consumes the fill
// ring and produces into the RX ring (Deliver, DeliverPacket, Post), and
// consumes the TX ring and produces into the completion ring (Send); with
// a Wire it does both on its own, from the socket's calls. Like the
// kernel, it is a single producer and consumer per ring: drive it from one
// goroutine at a time (with a Wire, the socket's goroutine drives it).
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
	statsMu            sync.Mutex // Statistics may be read from any goroutine
	stats              xsk.Statistics

	wire    *Wire
	txWakes int        // WakeTX calls, for Wire.SendEvery
	sendBuf []xsk.Desc // what a WakeTX sends to the wire

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
		dataOff: u.DataOffset(), room: uint64(u.FrameSize()) - u.DataOffset(), wire: o.Wire}
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
	if k.wire != nil {
		k.sendBuf = make([]xsk.Desc, txSize)
		k.SetNeedWakeup(true, true)
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

// WakeRX implements xsk.Kernel: it counts the kick and delivers what
// waits on the Wire.
func (k *Kernel) WakeRX() error {
	k.fillKicks.Add(1)
	if k.wire != nil {
		k.fromWire()
	}
	return nil
}

// WakeTX implements xsk.Kernel: it counts the kick, runs OnWakeTX and sends
// to the Wire.
func (k *Kernel) WakeTX() error {
	k.txKicks.Add(1)
	if k.OnWakeTX != nil {
		k.OnWakeTX()
	}
	if k.wire != nil {
		k.toWire()
	}
	return nil
}

// Poll implements xsk.Kernel. Without a Wire it returns at once. With one
// it delivers what waits, and when nothing did it naps for the timeout, at
// most 100 µs (a negative timeout naps that long too), and delivers again:
// a poll(2) that comes back early, which its callers allow for.
func (k *Kernel) Poll(timeout time.Duration) error {
	if k.wire == nil || k.fromWire() > 0 || timeout == 0 {
		return nil
	}
	if timeout < 0 || timeout > 100*time.Microsecond {
		timeout = 100 * time.Microsecond
	}
	time.Sleep(timeout)
	k.fromWire()
	return nil
}

// Statistics implements xsk.Kernel: the drops and empty rings Deliver and
// Send counted, and what SetStatistics set. Safe from any goroutine.
func (k *Kernel) Statistics() (xsk.Statistics, error) {
	k.statsMu.Lock()
	defer k.statsMu.Unlock()
	return k.stats, nil
}

// SetStatistics replaces the counters Statistics returns, as if the kernel
// had counted them.
func (k *Kernel) SetStatistics(st xsk.Statistics) {
	k.statsMu.Lock()
	k.stats = st
	k.statsMu.Unlock()
}

// count adds to the counters under their lock.
func (k *Kernel) count(rxDropped, rxRingFull, fillEmpty, txEmpty uint64) {
	k.statsMu.Lock()
	k.stats.RxDropped += rxDropped
	k.stats.RxRingFull += rxRingFull
	k.stats.RxFillRingEmptyDescs += fillEmpty
	k.stats.TxRingEmptyDescs += txEmpty
	k.statsMu.Unlock()
}

// fromWire delivers waiting packets of the Wire, as many as the fill and
// RX rings take, and returns how many.
func (k *Kernel) fromWire() int {
	w := k.wire
	total := 0
	for {
		p := w.waiting.Load()
		if p <= 0 {
			return total
		}
		claim := min(p, int64(k.fill.Size()))
		if !w.waiting.CompareAndSwap(p, p-claim) {
			continue
		}
		put := k.place(w.Frame, uint32(claim), w.Meta)
		if rest := claim - int64(put); rest > 0 {
			w.waiting.Add(rest)
		}
		w.delivered.Add(int64(put))
		total += int(put)
		if int64(put) < claim {
			return total
		}
	}
}

// toWire sends what is on the TX ring to the Wire, at every SendEvery-th
// call.
func (k *Kernel) toWire() {
	w := k.wire
	k.txWakes++
	if w.SendEvery > 1 && k.txWakes%w.SendEvery != 0 {
		return
	}
	n := k.Send(k.sendBuf)
	if w.OnSend != nil {
		for _, d := range k.sendBuf[:n] {
			w.OnSend(k.umem.Bytes(d))
		}
	}
	w.sent.Add(int64(n))
}

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
		k.count(uint64(n), 0, 0, 0)
		return 0
	}
	got, _ := k.fill.Peek(uint32(n))
	if got < uint32(n) {
		k.count(uint64(uint32(n)-got), 0, 1, 0)
	}
	put := k.place(frame, got, nil)
	if put < got {
		k.count(0, uint64(got-put), 0, 0)
	}
	return int(put)
}

// place writes frame into up to n frames from the fill ring, as far as the
// RX ring has room, with meta's metadata in front if meta is set, and posts
// them on the RX ring. It counts nothing and returns how many it placed.
func (k *Kernel) place(frame []byte, n uint32, meta func([]byte)) uint32 {
	if uint64(len(frame)) > k.room {
		return 0
	}
	got, fidx := k.fill.Peek(n)
	put, ridx := k.rx.Reserve(got)
	for i := range put {
		addr := k.frameAddr(k.fill.Get(fidx + i))
		copy(k.region[addr:], frame)
		if meta != nil {
			meta(k.region[addr&k.frameMask : addr])
		}
		k.rx.Set(ridx+i, xsk.Desc{Addr: addr, Len: uint32(len(frame))})
	}
	k.fill.Release(put)
	k.rx.Submit(put)
	return put
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
		k.count(1, 0, 0, 0)
		return false
	}
	got, fidx := k.fill.PeekFresh(segs)
	if got < segs {
		k.count(1, 0, 1, 0)
		return false
	}
	put, ridx := k.rx.Reserve(segs)
	if put < segs {
		k.rx.Cancel(put)
		k.count(0, 1, 0, 0)
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
		k.count(0, 0, 0, 1)
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
