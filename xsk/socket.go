package xsk

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/undo"
)

// Socket is an AF_XDP socket bound to one queue of one interface, with its
// four rings. Each ring is for one goroutine only; the usual split is one
// goroutine for Receive/Refill/Recycle and the same or another for
// Transmit/Complete. Close must not run concurrently with them.
type Socket struct {
	fd      int
	umem    *Umem
	ifindex int
	queue   int
	opts    SocketOptions
	mode    BindMode
	shared  bool   // bound with XDP_SHARED_UMEM
	why     string // why BindAuto got copy mode

	fill *FillRing
	comp *CompletionRing
	rx   *RXRing
	tx   *TXRing

	maps [][]byte // ring mappings, unmapped by Close
	k    Kernel   // the kernel's side: the real one, or a fake (NewSocketFrom)

	// Scratch batches, allocated once: fillBuf for Refill (the fill/RX
	// goroutine), compBuf for Complete (the TX goroutine).
	fillBuf []uint64
	compBuf []uint64
	depth   fillDepth     // how much of the fill ring Refill fills
	shown   uint32        // depth.depth as last published in fillNow
	fillNow atomic.Uint32 // the depth, for FillDepth from any goroutine

	rxOversized atomic.Uint64 // packets Receive dropped: more segments than its buffer

	closeMu sync.Mutex
	closed  bool
}

// NewSocket opens an AF_XDP socket on queue of the interface ifindex (in the
// calling thread's network namespace), with its rings, and binds it.
//
// The first socket on u registers the UMEM and uses u's fill and completion
// ring sizes; later ones bind with XDP_SHARED_UMEM and get fill and
// completion rings of their own, which needs a different queue or
// interface (kernel 5.10 or later). On failure nothing is left open or
// mapped.
//
// For frames to arrive, an XDP program must redirect them into an XSKMAP
// entry holding FD().
//
// The kernel frees a closed socket's queue a little later (from a
// workqueue), so a bind that finds the queue taken is retried for up to a
// second before it fails.
func NewSocket(u *Umem, ifindex, queue int, opts SocketOptions) (_ *Socket, err error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if ifindex <= 0 {
		return nil, invalid("socket options: ifindex %d: must be positive", ifindex)
	}
	if queue < 0 {
		return nil, invalid("socket options: queue %d: must not be negative", queue)
	}
	// The interface must exist and be up: bind succeeds on a down one, and
	// then nothing ever arrives.
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("new socket: no interface with index %d in this network namespace: %w", ifindex, unix.ENODEV)
	}
	if ifc.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("new socket: interface %s is down; bring it up with ip link set %s up: %w", ifc.Name, ifc.Name, unix.ENETDOWN)
	}
	u.sockMu.Lock()
	defer u.sockMu.Unlock()
	if u.closed {
		return nil, fmt.Errorf("new socket: umem: %w", ErrClosed)
	}
	var owner *Socket
	for _, s := range u.sockets {
		if s.fd < 0 { // a fake kernel's: no queue, nothing to share
			continue
		}
		if s.ifindex == ifindex && s.queue == queue {
			return nil, fmt.Errorf("new socket: queue %d of %s already has a socket on this umem; sharing one queue's fill ring is not supported: %w",
				queue, ifc.Name, ErrNotSupported)
		}
		if owner == nil {
			owner = s
		}
	}
	if owner != nil {
		switch {
		case o.Bind != BindAuto && o.Bind != owner.mode:
			return nil, invalid("socket options: bind %v, but the umem is shared with a %v socket and sharing inherits its mode", o.Bind, owner.mode)
		case o.NoNeedWakeup != owner.opts.NoNeedWakeup:
			return nil, invalid("socket options: NoNeedWakeup=%v differs from the socket that registered the umem", o.NoNeedWakeup)
		case o.MultiBuffer != owner.opts.MultiBuffer:
			return nil, invalid("socket options: MultiBuffer=%v differs from the socket that registered the umem", o.MultiBuffer)
		}
	}

	if err := o.Driver.checkQueue(ifc.Name, queue); err != nil {
		return nil, err
	}
	if owner != nil {
		return open(u, ifc, queue, o, owner)
	}
	var why string
	if o.Bind != BindCopy {
		var fix string
		if why, fix = o.Driver.ZeroCopyBlocker(ifc.MTU, u.opts.FrameSize); why != "" {
			if o.Bind == BindZeroCopy {
				return nil, fmt.Errorf("bind %s queue %d: zero-copy: %s; %s: %w", ifc.Name, queue, why, fix, ErrNotSupported)
			}
			o.Bind = BindCopy
		}
	}
	if o.Bind == BindAuto {
		// Ask for zero-copy explicitly, not the kernel's silent fallback,
		// so a refusal can be told.
		zc := o
		zc.Bind = BindZeroCopy
		s, err := open(u, ifc, queue, zc, nil)
		var be *bindErr
		if !errors.As(err, &be) || !zeroCopyRefused(be.err) {
			return s, err
		}
		why = o.Driver.zeroCopyRefusal(be.err)
		o.Bind = BindCopy
	}
	s, err := open(u, ifc, queue, o, nil)
	if err != nil {
		return nil, err
	}
	s.why = why
	return s, nil
}

// bindErr is a failed bind(2), already explained.
type bindErr struct{ err, explained error }

func (e *bindErr) Error() string { return e.explained.Error() }
func (e *bindErr) Unwrap() error { return e.explained }

// zeroCopyRefused reports whether a zero-copy bind failed for a reason a
// copy-mode bind may not have.
func zeroCopyRefused(err error) bool {
	for _, e := range []unix.Errno{unix.EBUSY, unix.ENODEV, unix.ENETDOWN, unix.EPERM} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// open opens and binds a socket with resolved options o (o.Bind is copy or
// zero-copy unless the umem is shared with owner). Called with u.sockMu
// held; on failure nothing is left open or mapped.
func open(u *Umem, ifc *net.Interface, queue int, o SocketOptions, owner *Socket) (_ *Socket, err error) {
	ifindex := ifc.Index
	var undo undo.Stack
	defer func() {
		if err != nil {
			undo.Run()
		}
	}()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("open af_xdp socket: kernel without CONFIG_XDP_SOCKETS: %w (%w)", ErrNotSupported, err)
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("open af_xdp socket: needs CAP_NET_RAW (run as root): %w", err)
		}
		return nil, fmt.Errorf("open af_xdp socket: %w", err)
	}
	undo.Push(func() { unix.Close(fd) })
	s := &Socket{fd: fd, umem: u, ifindex: ifindex, queue: queue, opts: o, shared: owner != nil}

	if owner == nil {
		if err := u.register(fd); err != nil {
			return nil, err
		}
	}
	for _, r := range []struct {
		opt  int
		size uint32
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, u.opts.FillSize, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, u.opts.CompletionSize, "completion"},
		{unix.XDP_RX_RING, o.RXSize, "rx"},
		{unix.XDP_TX_RING, o.TXSize, "tx"},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, int(r.size)); err != nil {
			return nil, fmt.Errorf("set %s ring size %d: %w", r.name, r.size, err)
		}
	}
	off, err := mmapOffsets(fd)
	if err != nil {
		return nil, fmt.Errorf("get mmap offsets: %w", err)
	}
	mapRing := func(pgoff int64, ro unix.XDPRingOffset, n uint32, elem uint64, name string) ([]byte, error) {
		mem, err := unix.Mmap(fd, pgoff, int(ro.Desc+uint64(n)*elem),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("mmap %s ring: %w", name, err)
		}
		s.maps = append(s.maps, mem)
		undo.Push(func() { unix.Munmap(mem) })
		return mem, nil
	}
	mem, err := mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, u.opts.FillSize, 8, "fill")
	if err != nil {
		return nil, err
	}
	if s.fill, err = NewFillRing(mem, offsetsFrom(off.Fr), u.opts.FillSize); err != nil {
		return nil, err
	}
	if mem, err = mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, u.opts.CompletionSize, 8, "completion"); err != nil {
		return nil, err
	}
	if s.comp, err = NewCompletionRing(mem, offsetsFrom(off.Cr), u.opts.CompletionSize); err != nil {
		return nil, err
	}
	if mem, err = mapRing(unix.XDP_PGOFF_RX_RING, off.Rx, o.RXSize, 16, "rx"); err != nil {
		return nil, err
	}
	if s.rx, err = NewRXRing(mem, offsetsFrom(off.Rx), o.RXSize); err != nil {
		return nil, err
	}
	if mem, err = mapRing(unix.XDP_PGOFF_TX_RING, off.Tx, o.TXSize, 16, "tx"); err != nil {
		return nil, err
	}
	if s.tx, err = NewTXRing(mem, offsetsFrom(off.Tx), o.TXSize); err != nil {
		return nil, err
	}

	s.initBuffers()
	bound := false
	if o.Prefill {
		// The fill ring belongs to the UMEM side and takes frames before
		// bind; the kernel reads it when the socket binds (libxdp's
		// xdpsock fills it before xsk_socket__create too). A failed bind
		// leaves them unused: back to the free stack. After a bind the
		// driver may hold them, so a later failure counts them lost, as
		// Close does.
		n := s.fillFromFree()
		undo.Push(func() {
			if bound {
				u.lost += int64(n)
				return
			}
			u.Free(s.fillBuf[:n])
		})
	}

	sa := &unix.SockaddrXDP{Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	if owner != nil {
		// Mode, need_wakeup and multi-buffer come from the UMEM's first
		// socket; the kernel rejects them here.
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(owner.fd)
	} else {
		if !o.NoNeedWakeup {
			sa.Flags |= unix.XDP_USE_NEED_WAKEUP
		}
		if o.MultiBuffer {
			sa.Flags |= unix.XDP_USE_SG
		}
		// BindAuto sets neither flag: the kernel tries zero-copy and falls
		// back to copy mode by itself.
		switch o.Bind {
		case BindCopy:
			sa.Flags |= unix.XDP_COPY
		case BindZeroCopy:
			sa.Flags |= unix.XDP_ZEROCOPY
		}
	}
	if err := bind(fd, sa); err != nil {
		return nil, &bindErr{err: err, explained: bindError(err, ifc.Name, queue, o)}
	}
	bound = true
	xo, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return nil, fmt.Errorf("get xdp options: %w", err)
	}
	s.mode = BindCopy
	if xo&unix.XDP_OPTIONS_ZEROCOPY != 0 {
		s.mode = BindZeroCopy
	}
	if o.BusyPoll {
		for _, b := range []struct {
			opt, val int
			name     string
		}{
			{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"},
			{unix.SO_BUSY_POLL, int(o.BusyPollTimeout / time.Microsecond), "SO_BUSY_POLL"},
			{unix.SO_BUSY_POLL_BUDGET, o.BusyPollBudget, "SO_BUSY_POLL_BUDGET"},
		} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.opt, b.val); err != nil {
				if errors.Is(err, unix.ENOPROTOOPT) {
					return nil, fmt.Errorf("set %s: kernel without busy polling: %w (%w)", b.name, ErrNotSupported, err)
				}
				return nil, fmt.Errorf("set %s %d: %w", b.name, b.val, err)
			}
		}
	}
	s.k = newSysKernel(fd, s)
	u.sockets = append(u.sockets, s)
	return s, nil
}

// Rings are a socket's four rings, for NewSocketFrom.
type Rings struct {
	Fill       *FillRing
	Completion *CompletionRing
	RX         *RXRing
	TX         *TXRing
}

// NewSocketFrom makes a Socket on u over rings the caller built (with
// NewFillRing and friends, over plain memory) whose other side is k: how
// package xsktest's fake kernel drives a Socket without privileges. The
// socket has no fd (FD returns -1) and is bound to nothing (Ifindex and
// Queue are 0); everything else (Receive, Refill, Transmit, Complete,
// accounting, Close) works as on a socket from NewSocket. The fill and
// completion rings must have u's sizes, the RX and TX rings opts'.
func NewSocketFrom(u *Umem, opts SocketOptions, rings Rings, k Kernel) (*Socket, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if rings.Fill == nil || rings.Completion == nil || rings.RX == nil || rings.TX == nil || k == nil {
		return nil, invalid("new socket from rings: a ring or the kernel is missing")
	}
	if rings.Fill.Size() != u.opts.FillSize || rings.Completion.Size() != u.opts.CompletionSize ||
		rings.RX.Size() != o.RXSize || rings.TX.Size() != o.TXSize {
		return nil, invalid("new socket from rings: ring sizes %d/%d/%d/%d (fill/completion/rx/tx), want %d/%d/%d/%d",
			rings.Fill.Size(), rings.Completion.Size(), rings.RX.Size(), rings.TX.Size(),
			u.opts.FillSize, u.opts.CompletionSize, o.RXSize, o.TXSize)
	}
	u.sockMu.Lock()
	defer u.sockMu.Unlock()
	if u.closed {
		return nil, fmt.Errorf("new socket from rings: umem: %w", ErrClosed)
	}
	s := &Socket{fd: -1, umem: u, opts: o, mode: BindCopy, k: k,
		fill: rings.Fill, comp: rings.Completion, rx: rings.RX, tx: rings.TX}
	s.initBuffers()
	u.sockets = append(u.sockets, s)
	return s, nil
}

func (s *Socket) initBuffers() {
	s.fillBuf = make([]uint64, s.fill.Size())
	s.compBuf = make([]uint64, s.comp.Size())
	cons, _ := s.fill.Taken()
	s.depth = newFillDepth(s.opts.FillLow, s.fill.Size(), cons, monotime.Now)
	s.shown = s.depth.depth
	s.fillNow.Store(s.shown)
}

// bindError turns a bind errno into a message naming the cause and a fix.
func bindError(err error, name string, queue int, o SocketOptions) error {
	switch {
	case o.Bind == BindZeroCopy && zeroCopyRefused(err):
		return fmt.Errorf("bind %s queue %d: zero-copy: %s; use copy or auto mode: %w (%w)", name, queue, o.Driver.zeroCopyRefusal(err), ErrNotSupported, err)
	case errors.Is(err, unix.EOPNOTSUPP) && o.MultiBuffer:
		return fmt.Errorf("bind %s queue %d: multi-buffer (XDP_USE_SG) not supported here; turn MultiBuffer off: %w (%w)", name, queue, ErrNotSupported, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("bind %s queue %d: queue %d of %s already has an AF_XDP socket (still taken after %v); close it or pick another queue: %w", name, queue, queue, name, bindBusyWait, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("bind: no interface %s in this network namespace: %w", name, err)
	case errors.Is(err, unix.EINVAL) && o.Driver.Queues == 0:
		return fmt.Errorf("bind %s queue %d: rejected; is queue %d below the active queue count (ethtool -l %s)?: %w", name, queue, queue, name, err)
	case errors.Is(err, unix.ENETDOWN):
		return fmt.Errorf("bind %s queue %d: interface is down; ip link set %s up: %w", name, queue, name, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("bind %s queue %d: needs CAP_NET_RAW (run as root): %w", name, queue, err)
	}
	return fmt.Errorf("bind %s queue %d: %w", name, queue, err)
}

// FD is the socket's file descriptor, for the XSKMAP entry of its queue.
func (s *Socket) FD() int { return s.fd }

// NAPIID is the NAPI instance the socket's frames last came in through
// (SO_INCOMING_NAPI_ID), the one busy polling drives. It is 0 before the
// first frame, and stays 0 after it where the driver gives its XDP path
// no NAPI id (veth's has none): busy polling then polls nothing.
func (s *Socket) NAPIID() (uint32, error) {
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
	if err != nil {
		return 0, fmt.Errorf("SO_INCOMING_NAPI_ID: %w", err)
	}
	return uint32(v), nil
}

// MultiBuffer reports whether the socket takes packets larger than one
// UMEM frame (SocketOptions.MultiBuffer).
func (s *Socket) MultiBuffer() bool { return s.opts.MultiBuffer }

// Umem is the socket's UMEM.
func (s *Socket) Umem() *Umem { return s.umem }

// Ifindex and Queue are what the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// Queue is the queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Mode is the bind mode the socket got, BindCopy or BindZeroCopy, as the
// kernel reports it in XDP_OPTIONS.
func (s *Socket) Mode() BindMode { return s.mode }

// Fallback says why a BindAuto socket is in copy mode ("driver veth has no
// xsk-zerocopy in its xdp-features", "zero-copy refused (EINVAL): ...");
// empty for a socket in zero-copy mode or one asked for copy mode.
func (s *Socket) Fallback() string { return s.why }

// Shared reports whether the socket shares a UMEM registered by an earlier
// socket (XDP_SHARED_UMEM).
func (s *Socket) Shared() bool { return s.shared }

// Fill returns the fill ring.
func (s *Socket) Fill() *FillRing { return s.fill }

// Completion returns the completion ring.
func (s *Socket) Completion() *CompletionRing { return s.comp }

// RX returns the RX ring.
func (s *Socket) RX() *RXRing { return s.rx }

// TX returns the TX ring.
func (s *Socket) TX() *TXRing { return s.tx }

// Receive takes up to len(descs) descriptors off the RX ring into descs and
// returns how many. Their frames are now the caller's (to Recycle,
// Transmit or Free). Allocates nothing.
//
// With MultiBuffer it takes whole packets only: descs never ends inside a
// packet (its last descriptor has no XDP_PKT_CONTD), and what does not fit
// stays on the ring for the next call. A packet with more segments than
// len(descs) can never fit: Receive frees its frames to the free stack
// and counts it in RxOversized, so a receiver with a short buffer loses
// that packet, never its framing.
func (s *Socket) Receive(descs []Desc) int {
	for {
		n, idx := s.rx.Peek(uint32(len(descs)))
		for i := range n {
			descs[i] = s.rx.Get(idx + i)
		}
		if whole := uint32(WholePackets(descs[:n])); whole < n {
			if whole == 0 && n == uint32(len(descs)) {
				s.dropOversized(descs)
				continue
			}
			// The kernel publishes whole packets: only our buffer cut this
			// one, and it waits on the ring.
			n = whole
		}
		s.rx.Release(n)
		if s.umem.isFree != nil {
			s.umem.debugHeld("receive", descs[:n])
		}
		return int(n)
	}
}

// dropOversized takes a packet with more segments than buf holds off the
// RX ring and frees its frames, buf as scratch.
func (s *Socket) dropOversized(buf []Desc) {
	for {
		n, idx := s.rx.Peek(uint32(len(buf)))
		for i := range n {
			buf[i] = s.rx.Get(idx + i)
		}
		end, whole := 0, true
		if n > 0 {
			end, whole = PacketEnd(buf[:n], 0)
		}
		s.rx.Release(uint32(end))
		if s.umem.isFree != nil {
			s.umem.debugHeld("receive", buf[:end])
		}
		s.umem.FreeDescs(buf[:end])
		if whole {
			s.rxOversized.Add(1)
			return
		}
	}
}

// RxOversized counts the packets Receive dropped because they had more
// segments than its buffer. Safe from any goroutine.
func (s *Socket) RxOversized() uint64 { return s.rxOversized.Load() }

// Recycle puts the frames of received descriptors straight back on the fill
// ring (the rxdrop loop) and kicks the kernel if it asks. It returns how
// many it placed; the rest are still the caller's.
func (s *Socket) Recycle(descs []Desc) int {
	n, idx := s.fill.Reserve(uint32(len(descs)))
	if s.umem.isFree != nil {
		s.umem.debugHeld("recycle", descs[:n])
	}
	mask := s.umem.frameMask
	for i := range n {
		s.fill.Set(idx+i, descs[i].Addr&mask)
	}
	s.fill.Submit(n)
	s.kickFill()
	return int(n)
}

// Refill moves free frames from the UMEM onto the fill ring, as many as fit
// (or, with SocketOptions.FillLow, as the kernel's recent takings call for)
// and are free, and kicks the kernel if it asks. Returns how many.
func (s *Socket) Refill() int {
	n := s.fillFromFree()
	s.kickFill()
	return n
}

// FillDepth is how many frames Refill keeps on the fill ring now: the whole
// ring, unless SocketOptions.FillLow lets the depth come down. Safe from
// any goroutine.
func (s *Socket) FillDepth() uint32 { return s.fillNow.Load() }

// fillFromFree moves free frames onto the fill ring, up to its depth and
// as many as are free, without a kick; their addresses stay in
// s.fillBuf[:n].
func (s *Socket) fillFromFree() int {
	want := s.depth.want(s.fill.Taken())
	if s.depth.depth != s.shown {
		s.shown = s.depth.depth
		s.fillNow.Store(s.shown)
	}
	if want == 0 {
		return 0
	}
	got, idx := s.fill.Reserve(want)
	if got == 0 {
		return 0
	}
	n := uint32(s.umem.Alloc(s.fillBuf[:got]))
	for i := range n {
		s.fill.Set(idx+i, s.fillBuf[i])
	}
	s.fill.Cancel(got - n)
	s.fill.Submit(n)
	return int(n)
}

// Transmit queues up to len(descs) descriptors on the TX ring and kicks the
// kernel if it asks (always without need_wakeup, and with busy polling).
// It returns how many it queued; those frames are the kernel's until they
// come back on the completion ring, the rest are still the caller's.
// Multi-buffer packets (segments chained with XDP_PKT_CONTD, as Receive
// gives them) are queued whole or not at all: a ring short of room never
// gets half a packet, which the kernel would join to the next one.
// In copy mode the kernel sends at most 32 frames per kick: call Transmit
// again, with no descriptors if need be, while the TX ring has entries; it
// kicks whenever the ring is not empty and the kernel asks.
func (s *Socket) Transmit(descs []Desc) int {
	n, idx := s.tx.Reserve(uint32(len(descs)))
	if n < uint32(len(descs)) {
		whole := uint32(WholePackets(descs[:n]))
		s.tx.Cancel(n - whole)
		n = whole
	}
	if s.umem.isFree != nil {
		s.umem.debugHeld("transmit", descs[:n])
	}
	for i := range n {
		s.tx.Set(idx+i, descs[i])
	}
	s.tx.Submit(n)
	if n > 0 || s.tx.p.inRing() > 0 {
		s.kickTX()
	}
	return int(n)
}

// Complete drains the completion ring into the UMEM's free stack and
// returns how many frames it freed.
func (s *Socket) Complete() int {
	total := 0
	for {
		n, idx := s.comp.Peek(uint32(len(s.compBuf)))
		if n == 0 {
			return total
		}
		for i := range n {
			s.compBuf[i] = s.comp.Get(idx + i)
		}
		s.comp.Release(n)
		s.umem.Free(s.compBuf[:n])
		total += int(n)
	}
}

// CompleteInto takes up to len(addrs) completed frame addresses without
// freeing them (to reuse the frames directly) and returns how many.
func (s *Socket) CompleteInto(addrs []uint64) int {
	n, idx := s.comp.Peek(uint32(len(addrs)))
	for i := range n {
		addrs[i] = s.comp.Get(idx + i)
	}
	s.comp.Release(n)
	return int(n)
}

// kickFill wakes the kernel to take fill-ring frames when it asks, or on
// every call with busy polling (the recvfrom drives the busy poll).
// EAGAIN, EBUSY and ENOBUFS mean "try later", not failure; other errors
// show up in Stats and are not worth a branch on the hot path.
func (s *Socket) kickFill() {
	if !s.opts.BusyPoll && !s.fill.NeedWakeup() {
		return
	}
	_ = s.k.WakeRX()
}

// kickTX makes the kernel send what is on the TX ring: when the ring asks,
// or always without need_wakeup (copy mode transmits only from sendto) or
// with busy polling.
func (s *Socket) kickTX() {
	if !s.opts.NoNeedWakeup && !s.opts.BusyPoll && !s.tx.NeedWakeup() {
		return
	}
	_ = s.k.WakeTX() // EAGAIN/EBUSY/ENOBUFS: the kernel is behind, retried next call
}

// Kick wakes the kernel for both directions unconditionally (recvfrom and
// sendto), ignoring EAGAIN, EBUSY and ENOBUFS.
func (s *Socket) Kick() error {
	for _, wake := range []func() error{s.k.WakeRX, s.k.WakeTX} {
		if err := wake(); err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOBUFS) {
			return fmt.Errorf("kick: %w", err)
		}
	}
	return nil
}

// Wait blocks until the RX ring has descriptors or timeout passes (a
// negative timeout waits for ever): in the Go runtime's netpoller while
// the socket only receives, in poll(2) once it transmitted (see
// sysKernel.Poll). A timeout is not an error. With need_wakeup it first
// wakes the driver for the fill ring if the ring asks, as poll(2) would.
func (s *Socket) Wait(timeout time.Duration) error { return s.k.Poll(timeout) }

// rxReady reports whether the RX ring has descriptors; it takes none.
func (s *Socket) rxReady() bool {
	if s.rx == nil {
		return false
	}
	got, _ := s.rx.Peek(1)
	return got > 0
}

// Statistics are the kernel's per-socket counters (XDP_STATISTICS).
type Statistics struct {
	RxDropped            uint64 // dropped for other reasons than an invalid descriptor (no fill frame in copy mode, too large)
	RxInvalidDescs       uint64 // invalid fill-ring addresses
	TxInvalidDescs       uint64 // invalid TX descriptors
	RxRingFull           uint64 // dropped because the RX ring was full
	RxFillRingEmptyDescs uint64 // times the fill ring was found empty
	TxRingEmptyDescs     uint64 // times the TX ring was found empty
}

// Stats reads the socket's XDP_STATISTICS.
func (s *Socket) Stats() (Statistics, error) { return s.k.Statistics() }

// Close unbinds the socket and releases its fd and ring mappings. Frames
// waiting on its RX and completion rings go back to the free stack; frames
// on its fill and TX rings or inside the kernel cannot be taken back safely
// while the kernel may still use them and are counted as Lost in the
// Umem's Accounting (a fake kernel may hand them back). Must not run
// concurrently with the ring methods, which must not be used afterwards
// (they panic). Safe to call twice.
func (s *Socket) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	u := s.umem
	// Frames the kernel has finished with.
	var buf [64]Desc
	for {
		n := s.Receive(buf[:])
		if n == 0 {
			break
		}
		u.FreeDescs(buf[:n])
	}
	s.Complete()
	var errs []error
	reclaimed, err := s.k.Release()
	if err != nil {
		errs = append(errs, err)
	}
	// Leave the Umem's list before unmapping, so Accounting never reads
	// the rings of a socket being closed.
	u.sockMu.Lock()
	fillSide, txSide := s.inFlight()
	u.lost += fillSide + txSide - reclaimed
	for i, o := range u.sockets {
		if o == s {
			u.sockets = append(u.sockets[:i], u.sockets[i+1:]...)
			break
		}
	}
	u.sockMu.Unlock()

	for _, m := range s.maps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("munmap ring: %w", err))
		}
	}
	s.maps = nil
	// Ring methods on a closed socket panic with a nil dereference rather
	// than fault on unmapped memory.
	s.fill, s.comp, s.rx, s.tx = nil, nil, nil, nil
	return errors.Join(errs...)
}

// bind binds, retrying EBUSY for a short while: the kernel releases a
// closed socket's hold on its queue from a workqueue, so a queue closed a
// moment ago can still look taken.
func bind(fd int, sa *unix.SockaddrXDP) error {
	start := time.Now()
	delay := 100 * time.Microsecond
	for {
		err := unix.Bind(fd, sa)
		if !errors.Is(err, unix.EBUSY) || time.Since(start) > bindBusyWait {
			return err
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// bindBusyWait is how long bind retries EBUSY. Here a closed socket's
// queue came free after 18 to 90 ms (an RCU grace period in the deferred
// release); a queue genuinely taken costs this long to report.
const bindBusyWait = time.Second
