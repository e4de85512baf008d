package gen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Engine sends frames of a Template. Both engines (Live, XSK) implement it.
type Engine interface {
	// Send sends frames as r says and returns what was sent. It stops
	// early, without error, when ctx is cancelled. One Send at a time.
	Send(ctx context.Context, r Run) (Result, error)
	// Close releases what the engine holds; idempotent.
	Close() error
}

// Run says how many frames to send and how fast. The zero value sends at
// full speed until the context is cancelled.
type Run struct {
	// Count stops after this many frames (0: no count limit).
	Count uint64
	// Duration stops after this long (0: no time limit).
	Duration time.Duration
	// Rate limits the average rate in frames per second (0: full speed).
	// Frames leave in bursts of up to a few milliseconds' worth.
	Rate float64
	// Progress, if set, is called about once a second from the sending
	// goroutine, and once at the end.
	Progress func(Progress)
}

// Progress is a running report.
type Progress struct {
	Sent    uint64        // frames sent so far
	Elapsed time.Duration // since Send started
	Rate    float64       // frames per second over the last interval
	Final   bool          // the last call, after sending stopped
}

// Result is what Send did.
type Result struct {
	// Sent counts the frames that left: the driver took them.
	Sent uint64
	// Dropped counts frames made but refused by the driver (live engine:
	// its transmit ring was full, or it cannot send XDP frames at all).
	Dropped uint64
	Elapsed time.Duration
}

// Rate is the average frames per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// ErrBadRun is wrapped by Run validation errors.
var ErrBadRun = errors.New("bad run parameters")

func (r Run) validate() error {
	switch {
	case r.Rate < 0 || math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0):
		return fmt.Errorf("%w: rate %v frames/s (want > 0, or 0 for full speed)", ErrBadRun, r.Rate)
	case r.Duration < 0:
		return fmt.Errorf("%w: negative duration %v", ErrBadRun, r.Duration)
	}
	return nil
}

// pacer tells a sending loop how many frames it may have sent by now.
type pacer struct {
	run      Run
	start    time.Time
	lastT    time.Time
	lastSent uint64
	nextRep  time.Time
}

func newPacer(r Run) *pacer {
	now := time.Now()
	return &pacer{run: r, start: now, lastT: now, nextRep: now.Add(time.Second)}
}

// budget returns how many more frames may go now, at most limit, given
// sent so far; done is true when the count or duration is reached. wait is
// how long to sleep when the budget is 0.
func (p *pacer) budget(now time.Time, sent, limit uint64) (n uint64, wait time.Duration, done bool) {
	el := now.Sub(p.start)
	if p.run.Count != 0 && sent >= p.run.Count {
		return 0, 0, true
	}
	if p.run.Duration != 0 && el >= p.run.Duration {
		return 0, 0, true
	}
	n = limit
	if p.run.Count != 0 {
		n = min(n, p.run.Count-sent)
	}
	if p.run.Rate > 0 {
		allowed := uint64(p.run.Rate * el.Seconds())
		if p.run.Duration != 0 {
			allowed = min(allowed, uint64(p.run.Rate*p.run.Duration.Seconds()))
		}
		if allowed <= sent {
			wait = time.Duration(float64(time.Second) / p.run.Rate)
			wait = min(max(wait, 200*time.Microsecond), 10*time.Millisecond)
			return 0, wait, false
		}
		n = min(n, allowed-sent)
	}
	return n, 0, false
}

// report calls Progress when a second has passed (or final).
func (p *pacer) report(now time.Time, sent uint64, final bool) {
	if p.run.Progress == nil || (!final && now.Before(p.nextRep)) {
		return
	}
	dt := now.Sub(p.lastT).Seconds()
	var rate float64
	if dt > 0 {
		rate = float64(sent-p.lastSent) / dt
	}
	if final {
		rate = Result{Sent: sent, Elapsed: now.Sub(p.start)}.Rate()
	}
	p.run.Progress(Progress{Sent: sent, Elapsed: now.Sub(p.start), Rate: rate, Final: final})
	p.lastT, p.lastSent = now, sent
	p.nextRep = now.Add(time.Second)
}

// sleepCtx sleeps d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
