//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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
	mu      sync.Mutex
	objs    redirectObjects
	link    link.Link
	mode    AttachMode
	ifindex int
	closed  bool
}

// LoadRedirect loads the redirect program and its XSKMAP into the kernel.
// Nothing is attached yet; Close releases everything.
func LoadRedirect() (*Redirect, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	r := &Redirect{}
	if err := loadRedirectObjects(&r.objs, nil); err != nil {
		return nil, fmt.Errorf("load redirect program: %w", err)
	}
	return r, nil
}

// Attach attaches the program to the interface ifindex (resolved in the
// calling thread's network namespace) with a bpf_link, and returns the mode
// obtained: AttachAuto yields AttachDriver or AttachGeneric. A Redirect
// attaches to one interface; load another for a second one.
func (r *Redirect) Attach(ifindex int, mode AttachMode) (AttachMode, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("attach redirect: %w", ErrClosed)
	}
	if r.link != nil {
		return 0, fmt.Errorf("attach redirect: already attached to interface index %d", r.ifindex)
	}
	l, got, err := attachXDP(r.objs.XdpRedirect, ifindex, mode)
	if err != nil {
		return 0, err
	}
	r.link, r.mode, r.ifindex = l, got, ifindex
	return got, nil
}

// Mode returns the attach mode obtained, or AttachAuto when not attached.
func (r *Redirect) Mode() AttachMode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}

// Register sends the frames of RX queue queue to the AF_XDP socket fd. The
// kernel keeps its own reference to the socket until Unregister or Close.
func (r *Redirect) Register(queue, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("register queue %d: out of range 0..%d", queue, MaxQueues-1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("register queue %d: %w", queue, ErrClosed)
	}
	if err := r.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("register queue %d socket fd %d (must be an AF_XDP socket): %w", queue, fd, err)
	}
	return nil
}

// Unregister removes the socket of RX queue queue; its frames go to the
// kernel stack again. Unregistering an empty queue is not an error.
func (r *Redirect) Unregister(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("unregister queue %d: out of range 0..%d", queue, MaxQueues-1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("unregister queue %d: %w", queue, ErrClosed)
	}
	if err := r.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister queue %d: %w", queue, err)
	}
	return nil
}

// Program returns the loaded program, for BPF_PROG_RUN. Owned by r: valid
// until Close, not to be closed by the caller.
func (r *Redirect) Program() *ebpf.Program { return r.objs.XdpRedirect }

// Close detaches the program and releases the program and map. It is safe
// to call more than once.
func (r *Redirect) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	if r.link != nil {
		if err := r.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach redirect: %w", err))
		}
		r.link = nil
	}
	if err := r.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close redirect objects: %w", err))
	}
	return errors.Join(errs...)
}
