package netdev

import (
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

func nextEvent(t *testing.T, w *LinkWatch) LinkEvent {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("events closed without an event")
		}
		return ev
	case <-time.After(10 * time.Second): // a bound for a hung test, not a timing gate
		t.Fatal("no link event")
	}
	return LinkEvent{}
}

// TestDeletedInterfaceIsSeen: deleting a veth's peer deletes the watched
// end; the watch delivers that.
func TestDeletedInterfaceIsSeen(t *testing.T) {
	testutil.RequireVeth(t, "the test deletes the interface")
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	idx := p.A.Ifindex(t)
	var w *LinkWatch
	p.A.NS.MustDo(t, func() (err error) { w, err = WatchLinks(idx); return err })
	t.Cleanup(func() { w.Close() })
	p.B.NS.MustRun(t, "ip", "link", "del", p.B.Name)
	ev := nextEvent(t, w)
	if !ev.Deleted || ev.Ifindex != idx || ev.Name != p.A.Name || !strings.Contains(ev.String(), "deleted") {
		t.Fatalf("event %+v (%s)", ev, ev)
	}
	if _, ok := <-w.Events(); ok {
		t.Fatal("a second event for the one interface watched")
	}
}

// TestRemovedXDPProgramIsSeen: the XDP program attached when the watch
// began goes away (someone detached it): the watch says so; another change
// to the interface (its MTU) is not reported.
func TestRemovedXDPProgramIsSeen(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	detach := p.A.AttachPass(t)
	idx := p.A.Ifindex(t)
	var w *LinkWatch
	p.A.NS.MustDo(t, func() (err error) { w, err = WatchLinks(idx); return err })
	t.Cleanup(func() { w.Close() })
	p.A.NS.MustRun(t, "ip", "link", "set", p.A.Name, "mtu", "1400")
	detach()
	ev := nextEvent(t, w)
	if ev.Deleted || ev.Was == 0 || ev.Prog != 0 || !strings.Contains(ev.String(), "removed") {
		t.Fatalf("event %+v (%s)", ev, ev)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Events(); ok {
		t.Fatal("events not closed by Close")
	}
}

func TestWatchGoneInterface(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	p.A.NS.MustDo(t, func() error {
		if _, err := WatchLinks(99999); err == nil {
			t.Error("watching a missing interface succeeded")
		}
		return nil
	})
}
