package xsk

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/monotime"
)

// DefaultCoalesce is Idler's longest nap while frames keep arriving.
const DefaultCoalesce = 50 * time.Microsecond

// defaultSpins is how many empty passes Idler makes before it sleeps: a
// sleep per momentary gap costs more than the gap.
const defaultSpins = 16

// napSlack is the timer slack a napping thread asks for: Linux's default
// (50 µs) would double a 50 µs nap.
const napSlack = time.Microsecond

// Idler is how a receive loop in wakeup mode waits when its RX ring is
// empty, the way a NIC coalesces interrupts: while frames keep coming it
// naps on a timer (nanosleep), and only when a nap brings nothing does it
// block in poll(2).
//
// The point is who pays for the wakeup. A thread blocked in poll(2) is woken
// by the kernel's receive path (sk_data_ready, a wakeup and an IPI) once per
// NAPI poll, on the CPU that receives the frames; on a veth or a loaded NIC
// queue that CPU is the bottleneck, and the wakeups cost it a quarter of its
// rate. A nap costs the receiving CPU nothing: the napping thread's own
// timer wakes it. A nap is sized so that, at the rate seen, the RX ring
// fills to at most half meanwhile, counting the time a nap overruns what it
// asked for (timer and wake-up latency: tens of µs in a VM). When no nap can
// be that short, the loop keeps spinning rather than lose frames.
//
// An Idler is used by one goroutine, locked to its OS thread (a nap sets the
// thread's timer slack). The zero value works.
type Idler struct {
	// Spins is how many empty passes in a row come before a sleep
	// (default 16).
	Spins int
	// Coalesce is the longest nap (default DefaultCoalesce; negative: never
	// nap, always poll).
	Coalesce time.Duration
	// Ring is the RX ring's size (0: naps are not bounded by it).
	Ring int

	idle  int           // empty passes in a row
	hot   bool          // frames came since the last sleep began
	got   int           // frames received since since
	since time.Duration // start of the rate window: the last sleep, or later
	over  time.Duration // how much naps overrun, averaged
	slack bool          // the thread's timer slack is set
	now   func() time.Duration
}

// minNap is the shortest nap worth taking; rateWindow is the age at which
// the rate estimate is halved while spinning.
const (
	minNap     = time.Microsecond
	rateWindow = time.Millisecond
)

// Got records a busy pass: one that received n frames, or had other work
// (n 0: frames still in flight on TX, say).
func (d *Idler) Got(n int) {
	d.idle = 0
	d.got += n
	if n > 0 {
		d.hot = true
	}
}

// Idle records a pass that received nothing. It returns at once (keep
// spinning), or after a nap, or reports that the caller should block in
// poll(2) (true). It reads the clock only when it decides to sleep.
func (d *Idler) Idle() (poll bool) {
	nap, poll := d.decide()
	if nap > 0 {
		d.nap(nap)
	}
	return poll
}

// decide is Idle's choice: keep spinning (0, false), nap for the returned
// time, or poll (true).
func (d *Idler) decide() (nap time.Duration, poll bool) {
	spins := d.Spins
	if spins <= 0 {
		spins = defaultSpins
	}
	if d.idle++; d.idle < spins {
		return 0, false
	}
	d.idle = 0
	now := d.clock()
	limit := d.Coalesce
	if limit == 0 {
		limit = DefaultCoalesce
	}
	if !d.hot || limit < 0 {
		d.sleep(now)
		return 0, true // nothing since the last sleep: traffic stopped
	}
	nap = limit
	if elapsed := now - d.since; d.Ring > 0 && d.got > 0 && elapsed > 0 {
		// At got frames per elapsed, half the ring fills in this long;
		// the nap will overrun what it asks for by about over.
		half := time.Duration(int64(elapsed) * int64(d.Ring/2) / int64(d.got))
		nap = min(nap, half-d.over)
		if nap < minNap {
			// Too fast to nap safely: spin, keeping the estimate
			// current by halving it as it ages.
			if elapsed > rateWindow {
				d.got /= 2
				d.since = now - elapsed/2
			}
			return 0, false
		}
	}
	d.sleep(now)
	return nap, false
}

// sleep starts a new rate window as a sleep begins.
func (d *Idler) sleep(now time.Duration) {
	d.hot, d.got, d.since = false, 0, now
}

// napped records that a nap asked for t took took.
func (d *Idler) napped(t, took time.Duration) {
	d.over = (3*d.over + max(took-t, 0)) / 4
}

func (d *Idler) clock() time.Duration {
	if d.now != nil {
		return d.now()
	}
	return time.Duration(monotime.Now())
}

// nap sleeps for t on the calling thread with nanosleep(2), first asking
// for a timer slack of 1 µs, and learns how much naps overrun. EINTR ends
// the nap early, which is harmless.
func (d *Idler) nap(t time.Duration) {
	if !d.slack {
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(napSlack), 0, 0, 0)
		d.slack = true
	}
	ts := unix.NsecToTimespec(int64(t))
	t0 := d.clock()
	_ = unix.Nanosleep(&ts, nil)
	d.napped(t, d.clock()-t0)
}
