package netdev

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// LinkEvent is a change that stops a watched interface's data path: the
// interface went away, or the XDP program on it is no longer the one
// attached when the watch began (replaced, or removed, by someone else).
type LinkEvent struct {
	Ifindex int
	Name    string
	// Deleted: the interface was deleted (or moved to another network
	// namespace).
	Deleted bool
	// Prog is the XDP program attached now (0: none) and Was the one the
	// watch started with, when they differ.
	Prog, Was uint32
	// Err is set when the watch itself failed: changes may go unseen, and
	// no event comes after it.
	Err error
}

func (e LinkEvent) String() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("watching interface %s: %v", e.Name, e.Err)
	case e.Deleted:
		return fmt.Sprintf("interface %s (index %d) was deleted", e.Name, e.Ifindex)
	case e.Prog == 0:
		return fmt.Sprintf("the XDP program (id %d) on %s was removed by someone else", e.Was, e.Name)
	}
	return fmt.Sprintf("the XDP program (id %d) on %s was replaced by program id %d", e.Was, e.Name, e.Prog)
}

// RecheckInterval is how often a LinkWatch reads the XDP program of each
// interface it watches, for the changes no link event announces.
const RecheckInterval = time.Second

// LinkWatch watches interfaces through rtnetlink link events (RTMGRP_LINK),
// decoded by jsimonetti/rtnetlink (built on the mdlayher/netlink this
// package uses). One event per interface at most: the first that stops it.
//
// Detaching a program held by a bpf_link (bpftool link detach) sends no
// link event, so the watch also reads each interface's XDP program every
// RecheckInterval, and after the kernel dropped events (ENOBUFS).
type LinkWatch struct {
	conn   *rtnetlink.Conn // the events
	get    *rtnetlink.Conn // requests, apart from the events
	events chan LinkEvent
	done   chan struct{}
	once   sync.Once
}

type watched struct {
	name string
	prog uint32
	gone bool
}

// WatchLinks starts watching the interfaces ifindexes in the calling
// thread's network namespace. Each one's XDP program at this moment is the
// one expected: attach first, then watch. An interface already gone is an
// error.
func WatchLinks(ifindexes ...int) (*LinkWatch, error) {
	conn, err := rtnetlink.Dial(&netlink.Config{Groups: unix.RTMGRP_LINK})
	if err != nil {
		return nil, fmt.Errorf("watch links: %w", err)
	}
	// Subscribed first, so no change falls between the state read here
	// and the first event.
	get, err := rtnetlink.Dial(nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("watch links: %w", err)
	}
	state := map[uint32]*watched{}
	for _, idx := range ifindexes {
		m, err := get.Link.Get(uint32(idx))
		if err != nil {
			conn.Close()
			get.Close()
			return nil, fmt.Errorf("watch links: interface index %d: %w", idx, err)
		}
		state[m.Index] = &watched{name: m.Attributes.Name, prog: xdpProg(m)}
	}
	w := &LinkWatch{conn: conn, get: get, events: make(chan LinkEvent, len(state)), done: make(chan struct{})}
	go w.run(state)
	return w, nil
}

func xdpProg(m rtnetlink.LinkMessage) uint32 {
	if m.Attributes == nil || m.Attributes.XDP == nil {
		return 0
	}
	return m.Attributes.XDP.ProgID
}

// Events delivers the events; it is closed after Close, once every
// interface had its event, or after an event with Err.
func (w *LinkWatch) Events() <-chan LinkEvent { return w.events }

// Close stops the watch. Safe to call more than once.
func (w *LinkWatch) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		err = errors.Join(w.conn.Close(), w.get.Close())
	})
	return err
}

func (w *LinkWatch) run(state map[uint32]*watched) {
	defer close(w.events)
	left := len(state)
	for left > 0 {
		if err := w.conn.SetReadDeadline(time.Now().Add(RecheckInterval)); err != nil {
			w.fail(state, err)
			return
		}
		msgs, nms, err := w.conn.Receive()
		if err != nil {
			select {
			case <-w.done:
				return
			default:
			}
			// The recheck is due, or events were lost: read the state.
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, unix.ENOBUFS) {
				left -= w.resync(state)
				continue
			}
			w.fail(state, err)
			return
		}
		for i, m := range msgs {
			lm, ok := m.(*rtnetlink.LinkMessage)
			if !ok {
				continue
			}
			s := state[lm.Index]
			if s == nil || s.gone {
				continue
			}
			ev := LinkEvent{Ifindex: int(lm.Index), Name: s.name}
			switch {
			case nms[i].Header.Type == unix.RTM_DELLINK:
				ev.Deleted = true
			case lm.Attributes != nil && xdpProg(*lm) != s.prog:
				ev.Prog, ev.Was = xdpProg(*lm), s.prog
			default:
				continue
			}
			s.gone = true
			left--
			w.events <- ev // buffered: one per interface
		}
	}
}

// fail reports err as the end of the watch.
func (w *LinkWatch) fail(state map[uint32]*watched, err error) {
	for idx, s := range state {
		if !s.gone {
			w.events <- LinkEvent{Ifindex: int(idx), Name: s.name, Err: err}
			return
		}
	}
}

// resync compares each interface still watched with its current state; it
// returns the events it sent.
func (w *LinkWatch) resync(state map[uint32]*watched) int {
	n := 0
	for idx, s := range state {
		if s.gone {
			continue
		}
		ev := LinkEvent{Ifindex: int(idx), Name: s.name}
		m, err := w.get.Link.Get(idx)
		switch {
		case errors.Is(err, unix.ENODEV):
			ev.Deleted = true
		case err != nil:
			ev.Err = err
		case xdpProg(m) != s.prog:
			ev.Prog, ev.Was = xdpProg(m), s.prog
		default:
			continue
		}
		s.gone = true
		n++
		w.events <- ev
		if ev.Err != nil {
			return len(state) // the watch ends
		}
	}
	return n
}
