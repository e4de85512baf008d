//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// program is the lifecycle every XDP program type here shares (Redirect,
// DropCount, Steer): its loaded objects, a bpf_link per interface it is
// attached to, and one Close that detaches and releases everything. Its
// mutex also serialises the owner's map updates with Close.
type program struct {
	mu     sync.Mutex
	name   string        // in messages
	prog   *ebpf.Program // nil for maps opened from pins
	objs   io.Closer     // the program and its maps (bpf2go's objects)
	links  map[int]link.Link
	single bool       // attaches to one interface only
	bound  int        // the interface a device-bound program is bound to, or 0
	mode   AttachMode // obtained by the last attach
	closed bool
}

func newProgram(name string, prog *ebpf.Program, objs io.Closer, single bool) program {
	return program{name: name, prog: prog, objs: objs, links: map[int]link.Link{}, single: single}
}

// lock locks p, or returns ErrClosed (unlocked) when p is closed.
func (p *program) lock() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// attach attaches the program to ifindex with a bpf_link and returns the
// mode obtained. With pin set, the link is pinned at that path, and a link
// already pinned there is taken over and switched to this program (its
// mode is then the one it was attached with, reported as requested).
func (p *program) attach(ifindex int, mode AttachMode, pin string) (AttachMode, error) {
	if err := p.lock(); err != nil {
		return 0, fmt.Errorf("attach %s: %w", p.name, err)
	}
	defer p.mu.Unlock()
	if p.prog == nil {
		return 0, fmt.Errorf("attach %s: opened from pins without a program", p.name)
	}
	if p.bound != 0 {
		if ifindex != p.bound {
			return 0, fmt.Errorf("attach %s: bound to interface index %d for its RX metadata, not %d", p.name, p.bound, ifindex)
		}
		switch mode {
		case AttachGeneric:
			return 0, fmt.Errorf("attach %s: bound to its interface for its RX metadata, it attaches in driver mode only", p.name)
		case AttachAuto:
			mode = AttachDriver
		}
	}
	for idx := range p.links {
		if idx == ifindex || p.single {
			return 0, fmt.Errorf("attach %s: already attached to interface index %d", p.name, idx)
		}
	}
	if pin != "" {
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			if err := l.Update(p.prog); err != nil {
				l.Close()
				return 0, fmt.Errorf("attach %s: update pinned link %s: %w", p.name, pin, err)
			}
			p.links[ifindex] = l
			p.mode = mode
			return mode, nil
		}
	}
	l, got, err := attachXDP(p.prog, ifindex, mode)
	if err != nil {
		return 0, err
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			l.Close()
			return 0, fmt.Errorf("attach %s: pin link: %w", p.name, err)
		}
	}
	p.links[ifindex] = l
	p.mode = got
	return got, nil
}

// attachMode returns the mode the last attach obtained, or AttachAuto.
func (p *program) attachMode() AttachMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// close detaches the program from every interface (unless its links are
// pinned) and releases the program and its maps. Safe to call twice.
func (p *program) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for idx, l := range p.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s from interface index %d: %w", p.name, idx, err))
		}
	}
	p.links = nil
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", p.name, err))
	}
	return errors.Join(errs...)
}
