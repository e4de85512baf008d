package dataplane

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// DropCounters are Drop's counts, written by the loop once per burst and
// read by a reporter. Padded so the reporter's reads do not share a cache
// line with anything else.
type DropCounters struct {
	Packets atomic.Uint64
	Bytes   atomic.Uint64
	// Generated counts the packets the tracker took for generated ones
	// (xdpipe gen's), when Drop has a tracker: the tracker itself is the
	// loop's alone until it stops.
	Generated atomic.Uint64
	_         [64 - 24]byte
}

// Tracker accounts the generated frames among those Drop receives
// (*gen.Tracker implements it). Drop calls it from its loop only, with the
// time of the burst (CLOCK_MONOTONIC nanoseconds, internal/monotime): the
// tracker is the loop's alone until Drop returns.
type Tracker interface {
	// Observe accounts frame if it is a generated one, and reports
	// whether it was.
	Observe(frame []byte, now int64) bool
	// SampleLatency records frame's latency if it is a generated one,
	// and counts nothing.
	SampleLatency(frame []byte, now int64) bool
}

// DropOptions configure Drop.
type DropOptions struct {
	// Batch is the most frames taken off the RX ring per burst.
	Batch int
	// CPU pins the loop's thread (zero: not pinned).
	CPU pipeline.CPU
	// Poll is how the loop waits when the RX ring is empty; Coalesce is
	// wakeup mode's longest nap (ParseCoalesce's result) and Ring the RX
	// ring size, which bounds the nap (see xsk.Idler).
	Poll     pipeline.PollMode
	Coalesce time.Duration
	Ring     int
	// BusyPoll says the socket busy-polls (xsk.SocketOptions.BusyPoll):
	// the loop then kicks the kernel also when the RX ring is empty.
	BusyPoll bool
	// SampleLatency says the XDP program counts the generated frames
	// (PortOptions.Track): the loop then only samples their latency into
	// the tracker, from one packet a burst, at a position that moves by
	// one each burst. Reading every frame would pull each one's cache
	// line to this CPU, and in copy mode the kernel's next copy into that
	// frame, on the sender's CPU, would pay to take it back.
	SampleLatency bool
}

// Drop is `xdpipe rxdrop`'s receive-and-drop loop on one socket until ctx
// ends: take a burst off the RX ring, count it, and hand its frames
// straight back to the fill ring. With a tracker it also accounts
// generated frames, reading the clock once per burst, and counts them in
// c.Generated; with SampleLatency it only samples their latency. It
// allocates nothing per burst.
//
// The loop keeps its OS thread when it spins or is pinned to a CPU. In
// wakeup mode without pinning it does not: a locked goroutine parked in
// Socket.Wait is woken by the netpoller's thread, which hands the P over
// to the locked one and sleeps, two thread wakeups more per park than an
// unlocked goroutine, which the netpoller's thread runs itself. Side by
// side on the veth bench, unlocked used 10-20% less CPU per frame at 10k
// and 100k frames/s.
func Drop(ctx context.Context, s *xsk.Socket, c *DropCounters, tr Tracker, o DropOptions) error {
	if _, pinned := o.CPU.Get(); pinned || o.Poll != pipeline.PollWakeup {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if err := o.CPU.Pin(); err != nil {
		return fmt.Errorf("pin receive loop: %w", err)
	}
	// The loop reads a flag, not ctx.Done(): a channel receive per
	// burst would cost the loop more than its flag load.
	var stop atomic.Bool
	defer context.AfterFunc(ctx, func() { stop.Store(true) })()
	descs := make([]xsk.Desc, o.Batch)
	u := s.Umem()
	idler := xsk.Idler{Coalesce: o.Coalesce, Ring: o.Ring}
	first := true // the next descriptor starts a packet
	var bursts uint64
	for !stop.Load() {
		n := s.Receive(descs)
		if n == 0 {
			if o.BusyPoll {
				// Busy polling: recvfrom (Refill kicks on every call)
				// runs the driver's NAPI, also when nothing came;
				// otherwise frames wait for the gro_flush_timeout timer.
				s.Refill()
			}
			if o.Poll != pipeline.PollWakeup {
				continue
			}
			if idler.Idle() {
				if err := s.Wait(100 * time.Millisecond); err != nil {
					return err
				}
			}
			continue
		}
		idler.Got(n)
		// A packet larger than a frame (multi-buffer) comes as several
		// descriptors: it counts once, by its last segment, and is
		// tracked by its first. One pass over the descriptors, not a
		// call per packet (xsk.Packets): this loop is all rxdrop does.
		var bytes, pkts, generated uint64
		var now int64
		sample := -1 // the descriptor whose latency is sampled
		if tr != nil {
			now = monotime.Now()
			if o.SampleLatency {
				sample = int(bursts % uint64(n))
				bursts++
			}
		}
		for i := range descs[:n] {
			d := &descs[i]
			bytes += uint64(d.Len)
			switch {
			case tr == nil || !first:
			case !o.SampleLatency:
				if tr.Observe(u.Bytes(*d), now) {
					generated++
				}
			case i == sample:
				tr.SampleLatency(u.Bytes(*d), now)
			}
			first = !d.Continues()
			if first {
				pkts++
			}
		}
		c.Packets.Add(pkts)
		c.Bytes.Add(bytes)
		if generated > 0 {
			c.Generated.Add(generated)
		}
		// The fill ring always has room for what the RX ring gave back;
		// anything it does not take goes to the free stack, and Refill
		// puts it back on the fill ring.
		if r := s.Recycle(descs[:n]); r < n {
			u.FreeDescs(descs[r:n])
			s.Refill()
		}
	}
	return nil
}
