//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// TX is the XDP_TX program used as a traffic generator: BPF_PROG_RUN in
// live-frames mode on the sending end of a veth pair transmits each run's
// frame out of that interface.
type TX struct {
	objs xdptxObjects
	once sync.Once
	err  error
}

// LoadTX loads the XDP_TX program.
func LoadTX() (*TX, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	t := &TX{}
	if err := loadXdptxObjects(&t.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp_tx program: %w", err)
	}
	return t, nil
}

// Program returns the loaded program. Owned by t: valid until Close.
func (t *TX) Program() *ebpf.Program { return t.objs.XdpTx }

// xdpMD is struct xdp_md, the XDP context BPF_PROG_RUN takes.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// LiveOptions tunes TX.Send.
type LiveOptions struct {
	// Repeat is how many frames to send (default 1). Each Send sets up a
	// page pool and waits for RCU, so long runs reach the highest rates.
	Repeat uint32
	// BatchSize is how many frames the kernel sends per batch (default 64,
	// at most 256).
	BatchSize uint32
	// Queue is the RX queue the frame pretends to arrive on.
	Queue uint32
}

// Send transmits frame Repeat times out of interface ifindex, using
// BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18). Call it from a
// thread in the interface's network namespace. frame must fit one page with
// headroom (live-frames mode takes no multi-buffer frames) and hold at least
// an Ethernet header.
func (t *TX) Send(ifindex int, frame []byte, opts LiveOptions) error {
	if opts.Repeat == 0 {
		opts.Repeat = 1
	}
	_, err := t.objs.XdpTx.Run(&ebpf.RunOptions{
		Data:      frame,
		Repeat:    opts.Repeat,
		BatchSize: opts.BatchSize,
		Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Context: xdpMD{
			DataEnd:        uint32(len(frame)),
			IngressIfindex: uint32(ifindex),
			RxQueueIndex:   opts.Queue,
		},
	})
	if err != nil {
		return fmt.Errorf("send %d live frames on interface index %d: %w", opts.Repeat, ifindex, err)
	}
	return nil
}

// Close releases the program. Safe to call more than once.
func (t *TX) Close() error {
	t.once.Do(func() { t.err = t.objs.Close() })
	return t.err
}

// DropCount is the XDP_DROP program that counts what it drops (packets and
// bytes, per CPU, summed by Counts). Multi-buffer aware.
type DropCount struct {
	mu     sync.Mutex
	objs   dropcountObjects
	link   link.Link
	closed bool
}

// LoadDropCount loads the drop-and-count program and its counters.
func LoadDropCount() (*DropCount, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	d := &DropCount{}
	if err := loadDropcountObjects(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp_drop_count program: %w", err)
	}
	return d, nil
}

// Attach attaches the program to ifindex with a bpf_link; see Redirect.Attach.
func (d *DropCount) Attach(ifindex int, mode AttachMode) (AttachMode, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, fmt.Errorf("attach xdp_drop_count: %w", ErrClosed)
	}
	if d.link != nil {
		return 0, errors.New("attach xdp_drop_count: already attached")
	}
	l, got, err := attachXDP(d.objs.XdpDropCount, ifindex, mode)
	if err != nil {
		return 0, err
	}
	d.link = l
	return got, nil
}

// Counts returns the packets and bytes dropped so far, summed over CPUs.
func (d *DropCount) Counts() (Counter, error) {
	var percpu []dropcountCounter
	if err := d.objs.DropCounts.Lookup(uint32(0), &percpu); err != nil {
		return Counter{}, fmt.Errorf("read drop counters: %w", err)
	}
	return sumCounters(percpu), nil
}

// Program returns the loaded program. Owned by d: valid until Close.
func (d *DropCount) Program() *ebpf.Program { return d.objs.XdpDropCount }

// Close detaches and releases everything. Safe to call more than once.
func (d *DropCount) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.link != nil {
		if err := d.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp_drop_count: %w", err))
		}
	}
	if err := d.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
