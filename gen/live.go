package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
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
// sequence number from an atomic counter in a map, stamps it with the flow
// word and bpf_ktime_get_ns() into the frame and fixes the checksums, so
// every frame differs although user space hands the kernel one template.
// The program drops frames past the count, so a Count is exact even when a
// call is interrupted and repeated.
type Live struct {
	t    *Template
	opts LiveOptions
	st   *stamper
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
	if err := checkQueue(opts.Ifindex, opts.Queue); err != nil {
		return nil, fmt.Errorf("live engine: %w", err)
	}
	if t.Len() > MaxLiveFrameSize() {
		return nil, fmt.Errorf("live engine: %w: frame size %d above %d, the most live frames can send (one page); use the xsk engine for larger frames",
			ErrBadConfig, t.Len(), MaxLiveFrameSize())
	}
	st, err := newStamper(t)
	if err != nil {
		return nil, fmt.Errorf("live engine: %w", err)
	}
	return &Live{t: t, opts: opts, st: st, md: xdpMD{
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
	if size > ifc.MTU+ethLen {
		return fmt.Errorf("%w: frame size %d above interface %s's MTU %d plus the 14-byte Ethernet header: raise the MTU or the frame size",
			ErrBadConfig, size, ifc.Name, ifc.MTU)
	}
	return nil
}

// checkQueue checks that the device has RX queue q (live frames pretend
// to arrive on it; the kernel refuses a queue the device does not have).
// The count comes from rtnetlink, in the calling thread's namespace.
func checkQueue(ifindex, q int) error {
	n, err := rxQueues(ifindex)
	if err != nil {
		return nil // let the kernel decide
	}
	if q < 0 || q >= n {
		return fmt.Errorf("%w: queue %d: interface %d has %d RX queues", ErrBadConfig, q, ifindex, n)
	}
	return nil
}

// rxQueues is the interface's IFLA_NUM_RX_QUEUES.
func rxQueues(ifindex int) (int, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return 0, err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return 0, err
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		if int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))) != ifindex {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Attr.Type == 0x20 && len(a.Value) >= 4 { // IFLA_NUM_RX_QUEUES
				return int(binary.NativeEndian.Uint32(a.Value)), nil
			}
		}
	}
	return 0, fmt.Errorf("interface %d: no RX queue count", ifindex)
}

// Send implements Engine. Call it on a thread in the device's namespace.
func (l *Live) Send(ctx context.Context, r Run) (Result, error) {
	if err := r.validate(); err != nil {
		return Result{}, err
	}
	limit := uint64(math.MaxUint64)
	if r.Count != 0 {
		limit = r.Count
	}
	if err := l.st.set(counter{Next: 0, Limit: limit}); err != nil {
		return Result{}, err
	}
	p := newPacer(r)
	opts := ebpf.RunOptions{
		Data:      l.t.Bytes(),
		Context:   l.md,
		Flags:     bpfFTestXDPLiveFrames,
		BatchSize: l.opts.BatchSize,
	}
	var sent uint64
	for ctx.Err() == nil {
		now := time.Now()
		p.report(now, sent, false)
		n, wait, done := p.budget(now, sent, uint64(l.opts.Chunk))
		if done {
			break
		}
		if n == 0 {
			sleepCtx(ctx, wait)
			continue
		}
		opts.Repeat = uint32(n)
		_, err := l.st.prog.Run(&opts) // live mode reports no return value
		if err != nil {
			return Result{Sent: sent, Elapsed: time.Since(p.start)}, fmt.Errorf("live engine: %w", errors.Join(err, liveHint(err)))
		}
		c, err := l.st.get()
		if err != nil {
			return Result{Sent: sent, Elapsed: time.Since(p.start)}, err
		}
		sent = min(c.Next, limit)
	}
	now := time.Now()
	p.report(now, sent, true)
	return Result{Sent: sent, Elapsed: now.Sub(p.start)}, nil
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
	l.st = nil
	return err
}
