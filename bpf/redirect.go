//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// MaxQueues is the number of XSKMAP entries: sockets can be registered on RX
// queues 0 to MaxQueues-1. Frames on higher queues go to the kernel stack.
const MaxQueues = 256

// Redirect is the foundation XDP program: each frame goes to the AF_XDP
// socket registered for its RX queue, or on to the kernel stack when no
// socket is registered there. It is multi-buffer aware (xdp.frags), so it
// attaches to MTU 9000 interfaces and hands jumbo frames to sockets bound with
// XDP_USE_SG. Methods are safe for concurrent use.
type Redirect struct {
	p       program
	prog    *ebpf.Program
	xsks    *ebpf.Map
	unbound *ebpf.Map
	track   *ebpf.Map // the tracking program's state, or nil
}

// RedirectOptions tune LoadRedirect and LoadTrackingRedirect. The zero
// value stamps nothing.
type RedirectOptions struct {
	// RxStamp, when not 0, stamps one redirected frame in RxStamp (a
	// power of two; 1: every frame), on each CPU, with the time, in the
	// XDP metadata area in front of it, for the worker's rx delay
	// histogram (pipeline.WorkerConfig.RxDelay). A stamp costs a clock
	// read.
	RxStamp uint32
	// RxMetadataIfindex, when not 0, loads the program bound to that
	// interface (BPF_F_XDP_DEV_BOUND_ONLY), resolved in the calling
	// thread's network namespace: it then reads the driver's RX hash and
	// timestamp with the XDP metadata kfuncs and puts them in front of
	// each frame it redirects, for pipeline.Packet's Rx fields (where the
	// driver has none, the kfuncs say so and the fields stay unset). A
	// bound program attaches to that interface only, in driver mode.
	// LoadTrackingRedirect does not take it.
	RxMetadataIfindex int
}

// LoadRedirect loads the redirect program and its XSKMAP into the kernel.
// Nothing is attached yet; Close releases everything.
func LoadRedirect(opts RedirectOptions) (*Redirect, error) {
	load := loadRedirect
	if opts.RxMetadataIfindex != 0 {
		load = loadRedirectmeta
	}
	var objs redirectLoaded
	if err := loadStamped(load, opts.RxStamp, opts.RxMetadataIfindex, &objs); err != nil {
		return nil, fmt.Errorf("load redirect program: %w", err)
	}
	r := &Redirect{p: newProgram("redirect", objs.XdpRedirect, &objs, true),
		prog: objs.XdpRedirect, xsks: objs.Xsks, unbound: objs.XskUnbound}
	r.p.bound = opts.RxMetadataIfindex
	return r, nil
}

// LoadTrackingRedirect loads the redirect program's variant that also
// counts the generated frames (xdpipe gen's payload) it redirects, as
// gen.Tracker does but for latency, at the hook, on the CPU that runs it
// (track.c); Tracked reads what it counted. A receiver then need not read
// the frames but to sample latency.
func LoadTrackingRedirect(opts RedirectOptions) (*Redirect, error) {
	if opts.RxMetadataIfindex != 0 {
		return nil, errors.New("load tracking redirect program: it does not read RX metadata")
	}
	var objs trackLoaded
	if err := loadStamped(loadTrack, opts.RxStamp, 0, &objs); err != nil {
		return nil, fmt.Errorf("load tracking redirect program: %w", err)
	}
	return &Redirect{p: newProgram("tracking redirect", objs.XdpTrack, &objs, true),
		prog: objs.XdpTrack, xsks: objs.Xsks, unbound: objs.XskUnbound, track: objs.Track}, nil
}

// redirectLoaded and trackLoaded are what the loaders take from the
// collections: programs and maps, not the constants (see steerLoaded).
type redirectLoaded struct {
	redirectPrograms
	redirectMaps
}

func (o *redirectLoaded) Close() error {
	return errors.Join(o.redirectPrograms.Close(), o.redirectMaps.Close())
}

type trackLoaded struct {
	trackPrograms
	trackMaps
}

func (o *trackLoaded) Close() error { return errors.Join(o.trackPrograms.Close(), o.trackMaps.Close()) }

// loadStamped loads the collection load returns into objs, with the
// programs' rx_stamp constant (xsk.h) set to rxStamp, and bound to
// interface bound unless it is 0.
func loadStamped(load func() (*ebpf.CollectionSpec, error), rxStamp uint32, bound int, objs any) error {
	if err := removeMemlock(); err != nil {
		return err
	}
	spec, err := load()
	if err != nil {
		return err
	}
	if err := setRxStamp(spec, rxStamp); err != nil {
		return err
	}
	bindTo(spec, bound)
	return spec.LoadAndAssign(objs, nil)
}

// bindTo makes spec's programs device-bound to interface ifindex (not 0),
// as the XDP metadata kfuncs they call require.
func bindTo(spec *ebpf.CollectionSpec, ifindex int) {
	if ifindex == 0 {
		return
	}
	for _, ps := range spec.Programs {
		ps.Ifindex = uint32(ifindex)
		ps.Flags |= unix.BPF_F_XDP_DEV_BOUND_ONLY
	}
}

// setRxStamp sets the rx_stamp constant of a program that ends with
// redirect_xsk (xsk.h): one frame in every stamped, 0 none.
func setRxStamp(spec *ebpf.CollectionSpec, every uint32) error {
	if every&(every-1) != 0 {
		return fmt.Errorf("rx stamp of one frame in %d: want a power of two", every)
	}
	v, ok := spec.Variables["rx_stamp"]
	if !ok {
		return errors.New("the program has no rx_stamp setting")
	}
	return v.Set(every)
}

// TrackState is what the tracking program counted on one CPU: gen.Tracker's
// counts and its duplicate window.
type TrackState = trackTrackState

// Tracked reads the tracking program's state, one per possible CPU. A
// Redirect loaded by LoadRedirect has none: an error.
func (r *Redirect) Tracked() ([]TrackState, error) {
	if r.track == nil {
		return nil, errors.New("read tracked frames: loaded without tracking")
	}
	if err := r.p.lock(); err != nil {
		return nil, fmt.Errorf("read tracked frames: %w", err)
	}
	defer r.p.mu.Unlock()
	var out []TrackState
	if err := r.track.Lookup(uint32(0), &out); err != nil {
		return nil, fmt.Errorf("read tracked frames: %w", err)
	}
	return out, nil
}

// Attach attaches the program to the interface ifindex (resolved in the
// calling thread's network namespace) with a bpf_link, and returns the mode
// obtained: AttachAuto yields AttachDriver or AttachGeneric. A Redirect
// attaches to one interface; load another for a second one.
func (r *Redirect) Attach(ifindex int, mode AttachMode) (AttachMode, error) {
	return r.p.attach(ifindex, mode, "")
}

// Mode returns the attach mode obtained, or AttachAuto when not attached.
func (r *Redirect) Mode() AttachMode { return r.p.attachMode() }

// Register sends the frames of RX queue queue to the AF_XDP socket fd. The
// kernel keeps its own reference to the socket until Unregister or Close.
func (r *Redirect) Register(queue, fd int) error {
	if err := r.p.lock(); err != nil {
		return fmt.Errorf("register queue %d: %w", queue, err)
	}
	defer r.p.mu.Unlock()
	return registerXSK(r.xsks, queue, fd)
}

// Unregister removes the socket of RX queue queue; its frames go to the
// kernel stack again. Unregistering an empty queue is not an error.
func (r *Redirect) Unregister(queue int) error {
	if err := r.p.lock(); err != nil {
		return fmt.Errorf("unregister queue %d: %w", queue, err)
	}
	defer r.p.mu.Unlock()
	return unregisterXSK(r.xsks, queue)
}

// Program returns the loaded program, for BPF_PROG_RUN. Owned by r: valid
// until Close, not to be closed by the caller.
func (r *Redirect) Program() *ebpf.Program { return r.prog }

// Close detaches the program and releases the program and map. It is safe
// to call more than once.
func (r *Redirect) Close() error { return r.p.close() }
