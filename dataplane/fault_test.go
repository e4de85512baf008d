package dataplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/netdev"
)

// TestDaemonNeverRunsOnSilently: an interface deleted (or its XDP program
// removed) under a running daemon stops Run with an error that says so,
// without a signal; the frames received before are accounted for.
func TestDaemonNeverRunsOnSilently(t *testing.T) {
	for _, ev := range []netdev.LinkEvent{
		{Ifindex: 15, Name: "fake0", Deleted: true},
		{Ifindex: 15, Name: "fake0", Was: 7},
	} {
		cfg := baseConfig(t, "count")
		sys := &fakeSystem{}
		d, err := open(cfg, quiet(), sys)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		sys.send(100)
		waitRX(t, d, 100)
		sys.ports[0].fault <- ev
		select {
		case err = <-done:
		case <-time.After(10 * time.Second): // a hung test's bound, not a timing gate
			t.Fatal("Run went on after the data path was lost")
		}
		if !errors.Is(err, ErrDataPathLost) || !strings.Contains(err.Error(), ev.String()) {
			t.Errorf("Run: %v, want the cause %q", err, ev)
		}
		if !sys.ports[0].detached {
			t.Error("not detached")
		}
		if _, err := d.Account(); err != nil {
			t.Error(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
