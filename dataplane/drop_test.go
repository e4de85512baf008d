package dataplane

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// TestDropBusyPollKicksWhenIdle: with busy polling the application drives
// the driver's NAPI through recvfrom. A spinning receive loop that finds
// the RX ring empty must still kick, or (with napi_defer_hard_irqs set, as
// busy polling wants) frames wait for the gro_flush_timeout timer instead
// of the next pass.
func TestDropBusyPollKicksWhenIdle(t *testing.T) {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: 32, TXSize: 32, BusyPoll: true}, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Refill()
	before, _ := k.Kicks()
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- Drop(s, &DropCounters{}, nil, &stop, DropOptions{Batch: 16, CPU: -1, Ring: 32, BusyPoll: true})
	}()
	defer func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Nothing ever arrives: every pass finds the RX ring empty.
	testutil.Eventually(t, 10*time.Second, func() bool { after, _ := k.Kicks(); return after > before },
		"busy-polling Drop loop with an empty RX ring made no recvfrom kick (%d kicks before it started)", before)
}
