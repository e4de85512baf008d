//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
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

// LoadRedirect loads the redirect program and its XSKMAP into the kernel.
// Nothing is attached yet; Close releases everything.
func LoadRedirect() (*Redirect, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	var objs redirectObjects
	if err := loadRedirectObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load redirect program: %w", err)
	}
	return &Redirect{p: newProgram("redirect", objs.XdpRedirect, &objs, true),
		prog: objs.XdpRedirect, xsks: objs.Xsks, unbound: objs.XskUnbound}, nil
}

// LoadTrackingRedirect loads the redirect program's variant that also
// counts the generated frames (xdpipe gen's payload) it redirects, as
// gen.Tracker does but for latency, at the hook, on the CPU that runs it
// (track.c); Tracked reads what it counted. A receiver then need not read
// the frames but to sample latency.
func LoadTrackingRedirect() (*Redirect, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	var objs trackObjects
	if err := loadTrackObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load tracking redirect program: %w", err)
	}
	return &Redirect{p: newProgram("tracking redirect", objs.XdpTrack, &objs, true),
		prog: objs.XdpTrack, xsks: objs.Xsks, unbound: objs.XskUnbound, track: objs.Track}, nil
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
