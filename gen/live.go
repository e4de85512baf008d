package gen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/netdev"
)

// LiveOptions configures the live engine. Only Ifindex is required.
type LiveOptions struct {
	// Ifindex of the sending device, in the network namespace of the
	// thread that calls NewLive and Send (the kernel resolves it there).
	Ifindex int
	// Queue is the RX queue the frames pretend to arrive on (default 0):
	// live frames run the program as if the frame was received on
	// (Ifindex, Queue), and XDP_TX sends it out of Ifindex.
	Queue int
	// BatchSize is how many frames the kernel allocates and sends per
	// batch (default 64, at most 256).
	BatchSize uint32
	// Chunk is the Repeat count of one BPF_PROG_RUN call at full speed
	// (default 1<<20). Every call sets up a page pool and waits for an RCU
	// grace period, so short calls cap the rate; Chunk also bounds how
	// late a Duration or a cancellation is noticed.
	Chunk uint32
	// Bare sends the template as it is, through a program that only
	// returns XDP_TX: no sequence number, flow word or timestamp. It is
	// the reference the engine's cost is measured against (the bench's
	// xdp-drop-bare cell); a Tracker sees every frame as sequence 0.
	Bare bool
}

// xdpMD is struct xdp_md, the context of an XDP program.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// bpfFTestXDPLiveFrames is BPF_F_TEST_XDP_LIVE_FRAMES (linux/bpf.h).
const bpfFTestXDPLiveFrames = 1 << 1

// MaxLiveFrameSize is the largest frame the kernel sends in live-frames
// mode: one page less XDP headroom (256) and skb_shared_info (320 on
// 64-bit). Live mode refuses larger (multi-buffer) input; use XSK.
func MaxLiveFrameSize() int { return os.Getpagesize() - 256 - 320 }

// Live is the live-frames engine: BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES runs an XDP program (built for the Template)
// over kernel-allocated copies of the frame, Repeat times per call, and
// the program's XDP_TX sends each out of the device. The program takes a
// sequence number from a counter in global data, stamps it with the flow
// word and the send time (bpf_ktime_get_ns(), read once a batch) into the
// frame and fixes the checksums, so every frame differs although user
// space hands the kernel one template. A Live sends from one goroutine at
// a time: the counter has no atomic instruction.
// The program drops frames past the count, so a Count is exact even when a
// call is interrupted and repeated.
//
// Frames count as sent only once the driver took them: a tracepoint
// program (xmitCounter) counts what the kernel hands to the driver's
// ndo_xdp_xmit and what the driver refuses. Where nothing can leave (a
// driver without ndo-xmit in its xdp-features: a veth whose peer has no
// XDP program, a virtio-net NIC without one of its own) NewLive fails
// naming the cause, and so does Send when no frame left.
type Live struct {
	t    *Template
	opts LiveOptions
	st   *stamper
	xmit *xmitCounter
	md   xdpMD
}

var _ Engine = (*Live)(nil)

// NewLive checks the device and the frame size and loads the program.
func NewLive(t *Template, opts LiveOptions) (*Live, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = 64
	}
	if opts.BatchSize > 256 {
		return nil, fmt.Errorf("live engine: batch size %d above the kernel's 256", opts.BatchSize)
	}
	if opts.Chunk == 0 {
		opts.Chunk = 1 << 20
	}
	if err := checkDevice(opts.Ifindex, t.Len()); err != nil {
		return nil, fmt.Errorf("live engine: %w", err)
	}
	if t.Len() > MaxLiveFrameSize() {
		return nil, fmt.Errorf("live engine: %w: frame size %d above %d, the most live frames can send (one page); use the xsk engine for larger frames",
			ErrBadConfig, t.Len(), MaxLiveFrameSize())
	}
	if dev, err := netdev.Get(opts.Ifindex); err == nil {
		if err := checkQueue(dev, opts.Queue); err != nil {
			return nil, fmt.Errorf("live engine: %w", err)
		}
		if !dev.Features.Has(netdev.XDPNdoXmit) {
			return nil, fmt.Errorf("live engine: %s", noXmit(dev))
		}
	}
	newProg := func() (*stamper, error) { return newStamper(t, opts.BatchSize) }
	if opts.Bare {
		newProg = newBare
	}
	st, err := newProg()
	if err != nil {
		return nil, fmt.Errorf("live engine: %w", err)
	}
	x, err := newXmitCounter()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("live engine: %w", err)
	}
	return &Live{t: t, opts: opts, st: st, xmit: x, md: xdpMD{
		DataEnd:        uint32(t.Len()),
		IngressIfindex: uint32(opts.Ifindex),
		RxQueueIndex:   uint32(opts.Queue),
	}}, nil
}

// checkDevice checks that ifindex exists in this namespace, is up, and
// that its MTU takes frames of size bytes.
func checkDevice(ifindex, size int) error {
	if ifindex <= 0 {
		return fmt.Errorf("no interface given (ifindex %d)", ifindex)
	}
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("interface %d: %w", ifindex, err)
	}
	if ifc.Flags&net.FlagUp == 0 {
		return fmt.Errorf("interface %s is down: ip link set %s up", ifc.Name, ifc.Name)
	}
	if size > ifc.MTU+frame.EthLen {
		return fmt.Errorf("%w: frame size %d above interface %s's MTU %d plus the 14-byte Ethernet header: raise the MTU or the frame size",
			ErrBadConfig, size, ifc.Name, ifc.MTU)
	}
	return nil
}

// checkQueue checks that the device has RX queue q: live frames pretend
// to arrive on it, and the kernel refuses a queue beyond the active ones.
// The count is netdev's (the netdev family, in the calling thread's
// namespace); where it is unknown the kernel decides.
func checkQueue(dev netdev.Device, q int) error {
	if n := dev.RXQueues; n > 0 && (q < 0 || q >= n) {
		return fmt.Errorf("%w: queue %d: %s has %d RX queues (0 to %d); pick one of them or raise the count with ethtool -L %s",
			ErrBadConfig, q, dev.Name, n, n-1, dev.Name)
	}
	return nil
}

// Send implements Engine. Call it on a thread in the device's namespace.
// Result.Sent counts the frames the driver took; Result.Dropped those the
// program made that did not leave. When none left, Send fails naming the
// cause.
func (l *Live) Send(ctx context.Context, r Run) (Result, error) {
	if err := r.validate(); err != nil {
		return Result{}, err
	}
	limit := uint64(math.MaxUint64)
	if r.Count != 0 {
		limit = r.Count
	}
	// The transmit counter counts this thread's frames.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := l.xmit.watch(); err != nil {
		return Result{}, err
	}
	p := newPacer(r)
	opts := ebpf.RunOptions{
		Data:      l.t.Bytes(),
		Context:   l.md,
		Flags:     bpfFTestXDPLiveFrames,
		BatchSize: l.opts.BatchSize,
	}
	var made, left uint64
	var err error
	// cilium/ebpf runs an interrupted call (EINTR: a signal, such as the
	// Go scheduler's preemption) again with its whole Repeat. The stamping
	// program counts what it made across attempts; for the bare one, what
	// the driver was handed during the call (taken or refused) counts when
	// it is more than the Repeat. handed is the driver's count before it.
	var handed uint64
	c := counter{Limit: limit}
	for ctx.Err() == nil {
		now := time.Now()
		p.report(now, left, false)
		n, wait, done := p.budget(now, made, uint64(l.opts.Chunk))
		if done {
			break
		}
		if n == 0 {
			sleepCtx(ctx, wait)
			continue
		}
		opts.Repeat = uint32(n)
		c.Left = 0 // the call's first frame reads the clock
		if err = l.st.set(c); err != nil {
			break
		}
		if _, err = l.st.prog.Run(&opts); err != nil { // live mode reports no return value
			err = fmt.Errorf("live engine: %w", errors.Join(err, liveHint(err)))
			break
		}
		var refused uint64
		if left, refused, _, err = l.xmit.read(); err != nil {
			break
		}
		if l.opts.Bare {
			made += max(n, left+refused-handed)
		} else if c, err = l.st.get(); err != nil {
			break
		} else {
			made = min(c.Next, limit)
		}
		handed = left + refused
	}
	sent, drops, errno, rerr := l.xmit.read()
	now := time.Now()
	p.report(now, sent, true)
	res := Result{Sent: min(sent, made), Elapsed: now.Sub(p.start)}
	res.Dropped = made - res.Sent
	switch {
	case err != nil:
		return res, err
	case rerr != nil:
		return res, rerr
	case made > 0 && sent == 0:
		return res, fmt.Errorf("live engine: none of %d frames left: %s", made, l.why(drops, errno))
	}
	return res, nil
}

// why explains frames that did not leave: what the device's features say,
// or the driver's error.
func (l *Live) why(drops uint64, errno int32) string {
	dev, err := netdev.Get(l.opts.Ifindex)
	switch {
	case err == nil && !dev.Features.Has(netdev.XDPNdoXmit):
		return noXmit(dev)
	case errno < 0 && err == nil && dev.Driver == "veth" && unix.Errno(-errno) == unix.ENXIO:
		return fmt.Sprintf("the driver refused %d of them (ENXIO): the veth peer of %s is down; bring it up", drops, dev.Name)
	case errno < 0:
		return fmt.Sprintf("the driver refused %d of them (%s)", drops, unix.ErrnoName(unix.Errno(-errno)))
	case drops > 0:
		return fmt.Sprintf("the driver refused %d of them (its transmit ring was full)", drops)
	}
	return "they never reached the driver (the XDP_TX redirect failed; see the xdp:xdp_redirect_err tracepoint)"
}

// noXmit says why a device without ndo-xmit cannot send XDP frames, and
// what to do.
func noXmit(d netdev.Device) string {
	switch d.Driver {
	case "veth":
		return fmt.Sprintf("%s cannot send XDP frames: its veth peer has no XDP program (veth hands XDP_TX frames only to a peer with one, or with GRO on); attach one to the peer, e.g. run xdpipe rxdrop there", d.Name)
	case "virtio_net":
		return fmt.Sprintf("%s cannot send XDP frames: virtio-net transmits them only while an XDP program is attached to the sending NIC; attach one to %s", d.Name, d.Name)
	}
	return fmt.Sprintf("%s cannot send XDP frames: its driver %s has no ndo-xmit in its xdp-features (%v)", d.Name, d.Driver, d.Features)
}

func liveHint(err error) error {
	if errors.Is(err, os.ErrInvalid) || errors.Is(err, ebpf.ErrNotSupported) {
		return errors.New("live frames need Linux 5.18 or later and an interface in this network namespace")
	}
	return nil
}

// Close releases the program and map; idempotent.
func (l *Live) Close() error {
	if l.st == nil {
		return nil
	}
	err := l.st.Close()
	if xerr := l.xmit.Close(); err == nil {
		err = xerr
	}
	l.st, l.xmit = nil, nil
	return err
}
