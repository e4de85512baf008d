// Package ping measures round trips over an AF_XDP socket: it sends
// stamped UDP frames (gen's payload: a sequence number and a send time) to
// a reflector, which sends each back with addresses and ports swapped and
// the payload untouched (xdpipe run's reflect stage, a UDP echo server),
// and records how long each took in an HdrHistogram.
//
// Closed loop (Options.Rate 0) keeps one frame in flight: the next goes
// out when the last came back, or was given up. Open loop sends at a fixed
// rate whatever comes back, and takes each round trip from the time the
// frame was meant to leave, so a stall of the sender counts against every
// frame it delayed (the coordinated-omission correction wrk2 makes).
//
// Both ends of a round trip are read on this host's CLOCK_MONOTONIC: the
// figures are round trips, not halves of them, and need no clock shared
// with the reflector.
package ping

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/xsk"
)

// Options say how to ping.
type Options struct {
	// Rate is the open loop's frames per second; 0 is a closed loop.
	Rate float64
	// Count stops after this many frames sent (0: Duration decides).
	Count uint64
	// Duration stops sending after this long (0: Count decides).
	Duration time.Duration
	// Timeout is how long a frame may take before it counts as lost: in
	// a closed loop the next is sent then. Default 1 s.
	Timeout time.Duration
	// Burst is how many descriptors a pass takes off the RX ring
	// (default 64).
	Burst int
}

// Result is what a run measured. RTT holds the round trips in
// nanoseconds; it belongs to the caller.
type Result struct {
	Sent, Received uint64
	// Lost are frames that did not come back within Timeout; Late those
	// that came back after it (counted as lost first); Others frames
	// that were not replies to this run.
	Lost, Late, Others uint64
	// Elapsed is the sending time.
	Elapsed time.Duration
}

// NewHistogram returns a histogram for round trips of 100 ns to 60 s in
// nanoseconds, three significant digits (about 0.1%).
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(100, int64(60*time.Second), 3)
}

// slots are the TX frames: few, reused, so they stay in the caches.
const slots = 64

// window is how many of the last sequence numbers sent a reply is checked
// against for duplicates.
const window = 1 << 16

// Pinger sends and receives on one socket. It belongs to one goroutine.
type Pinger struct {
	sock  *xsk.Socket
	umem  *xsk.Umem
	t     *gen.Template
	free  []uint64 // TX frames not in flight
	comp  []uint64
	descs []xsk.Desc
	tx    [1]xsk.Desc
}

// New prepares a pinger on sock, whose UMEM must have slots frames free
// beyond what its fill ring takes: it sends frames of t (UDP over IPv4 or
// IPv6, gen's payload), and receives the replies steered to sock.
func New(sock *xsk.Socket, t *gen.Template, burst int) (*Pinger, error) {
	if burst <= 0 {
		burst = 64
	}
	if t.Len() > int(xsk.FrameData(sock.Umem().FrameSize())) {
		return nil, fmt.Errorf("ping: %d-byte frames do not fit a %d-byte UMEM frame", t.Len(), sock.Umem().FrameSize())
	}
	p := &Pinger{sock: sock, umem: sock.Umem(), t: t, free: make([]uint64, slots),
		comp: make([]uint64, slots), descs: make([]xsk.Desc, burst)}
	if n := p.umem.Alloc(p.free); n != slots {
		p.umem.Free(p.free[:n])
		return nil, fmt.Errorf("ping: the UMEM has %d frames free for sending, want %d", n, slots)
	}
	off := p.umem.DataOffset()
	for i := range p.free {
		p.free[i] += off
		copy(p.umem.Frame(p.free[i])[off:], t.Bytes())
	}
	return p, nil
}

// Close gives the TX frames back to the UMEM (those still in flight are
// the socket's, freed with it).
func (p *Pinger) Close() {
	p.umem.Free(p.free)
	p.free = nil
}

// send stamps a free TX frame with seq and ts and queues it; false if no
// frame is free or the TX ring is full.
func (p *Pinger) send(seq uint64, ts int64) bool {
	p.reclaim()
	if len(p.free) == 0 {
		return false
	}
	a := p.free[len(p.free)-1]
	p.tx[0] = xsk.Desc{Addr: a, Len: uint32(p.t.Len())}
	p.t.Stamp(p.umem.Bytes(p.tx[0]), seq, ts)
	if p.sock.Transmit(p.tx[:]) != 1 {
		return false
	}
	p.free = p.free[:len(p.free)-1]
	return true
}

// reclaim takes sent frames back off the completion ring.
func (p *Pinger) reclaim() {
	n := p.sock.CompleteInto(p.comp)
	p.free = append(p.free, p.comp[:n]...)
}

// Run pings until o.Count frames are sent or o.Duration has passed (or ctx
// ends), then waits up to o.Timeout for the last replies. Each round trip
// goes into h, in nanoseconds. It allocates nothing per frame.
func (p *Pinger) Run(ctx context.Context, o Options, h *hdrhistogram.Histogram) (Result, error) {
	if o.Count == 0 && o.Duration <= 0 {
		return Result{}, errors.New("ping: give a count or a duration")
	}
	if !(o.Rate >= 0) {
		return Result{}, fmt.Errorf("ping: rate %v: want 0 (closed loop) or frames per second", o.Rate)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	var (
		r        Result
		seq      uint64 // next to send
		inFlight bool   // closed loop: a frame is out
		lastSent int64  // closed loop: when it went
		givenUp  uint64 // closed loop: frames not back within the timeout
		interval int64
	)
	if o.Rate > 0 {
		interval = int64(float64(time.Second) / o.Rate)
	}
	start := monotime.Now()
	end := int64(0)
	if o.Duration > 0 {
		end = start + int64(o.Duration)
	}
	// seen marks the sequence numbers back among the last 2^16 sent, to
	// tell a duplicate; a bit is cleared as its number is sent.
	var seen [window / 64]uint64
	sent := func() {
		seen[seq/64%uint64(len(seen))] &^= 1 << (seq % 64)
		seq++
	}
	p.sock.Refill()
	// counted says the count or the duration is reached; the context,
	// whose Err takes a lock, is looked at once a pass.
	counted := func(now int64) bool {
		return (o.Count > 0 && seq >= o.Count) || (end > 0 && now >= end)
	}
	var drainUntil int64
	for {
		now := monotime.Now()
		if drainUntil == 0 && (counted(now) || ctx.Err() != nil) {
			drainUntil = now + int64(timeout)
			r.Elapsed = time.Duration(now - start)
		}
		if drainUntil != 0 && (now >= drainUntil || (r.Received+givenUp >= seq && !inFlight)) {
			break
		}
		if drainUntil == 0 {
			if o.Rate == 0 {
				if inFlight && now-lastSent > int64(timeout) {
					inFlight = false
					givenUp++
				}
				if !inFlight && p.send(seq, now) {
					sent()
					inFlight, lastSent = true, now
				}
			} else {
				// The frames due by now, stamped with the time they were
				// due: a late send counts against its round trip. At most
				// a burst a pass, so that replies are taken in between.
				for k, due := 0, start+int64(seq)*interval; k < len(p.descs) && due <= now && !counted(now); k, due = k+1, start+int64(seq)*interval {
					if !p.send(seq, due) {
						break
					}
					sent()
				}
			}
		}
		n := p.sock.Receive(p.descs)
		if n == 0 {
			p.sock.Transmit(nil) // kick the kernel if it waits for one
			continue
		}
		now = monotime.Now()
		for i := range p.descs[:n] {
			pl, ok := gen.Parse(p.umem.Bytes(p.descs[i]))
			switch {
			case !ok || pl.Seq >= seq:
				r.Others++
			case seq-pl.Seq > window:
				r.Late++ // older than the duplicate window
			case seen[pl.Seq/64%uint64(len(seen))]&(1<<(pl.Seq%64)) != 0:
				r.Others++ // a duplicate
			default:
				seen[pl.Seq/64%uint64(len(seen))] |= 1 << (pl.Seq % 64)
				rtt := now - pl.Sent
				if o.Rate == 0 && inFlight && pl.Seq == seq-1 {
					inFlight = false
				} else if o.Rate == 0 {
					r.Late++ // given up on and counted lost before
					continue
				}
				r.Received++
				if err := h.RecordValue(max(rtt, 1)); err != nil {
					r.Others++ // beyond the histogram's range
				}
			}
		}
		if m := p.sock.Recycle(p.descs[:n]); m < n {
			p.umem.FreeDescs(p.descs[m:n])
		}
	}
	r.Sent = seq
	r.Lost = r.Sent - r.Received
	return r, ctx.Err()
}
