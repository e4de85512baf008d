package xsk

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/monotime"
)

// DefaultCoalesce is Idler's longest nap while frames keep arriving: the
// latency wakeup mode adds at most, at rates where a nap gathers more
// frames than a poll(2) wakeup. 200 µs rather than 50: on the veth bench
// it took receiver CPU per frame from 0.048 to 0.026 s per million at 1
// Mpps, and from 0.132 to 0.094 at 100 kpps, in the same run.
const DefaultCoalesce = 200 * time.Microsecond

// defaultSpins is how many empty passes Idler makes before it sleeps: a
// sleep per momentary gap costs more than the gap.
const defaultSpins = 16

// napSlack is the timer slack a napping thread asks for: Linux's default
// (50 µs) would add a quarter to a 200 µs nap.
const napSlack = time.Microsecond

// Idler is how a receive loop in wakeup mode waits when its RX ring is
// empty, the way a NIC coalesces interrupts: while frames come fast enough
// it naps on a timer (nanosleep) and drains what gathered meanwhile in
// one go; otherwise it blocks in poll(2) and the kernel wakes it when
// frames come. ("poll(2)" here is the kernel's wakeup of a waiting
// socket; Socket.Wait takes it in the Go runtime's netpoller while the
// socket only receives, which costs the runtime fewer thread wakeups
// than a goroutine blocked in poll(2): see sysKernel.Poll.)
//
// What costs is the wakeups. A thread blocked in poll(2) is woken by the
// kernel's receive path (sk_data_ready, a wakeup and an IPI) once per NAPI
// poll, on the CPU that receives the frames; on a veth or a loaded NIC
// queue that CPU is the bottleneck. A nap costs the receiving CPU nothing
// (the napping thread's own timer wakes it) and gathers as many frames as
// the rate brings in its length, so at high rates naps make fewer and
// cheaper wakeups than poll(2). At low rates a nap would wake for a few
// frames, or none, where poll(2) wakes once per burst: the Idler naps
// only when a nap of Coalesce is expected to gather more frames than a
// poll(2) wakeup does, which it measures. A longer Coalesce then makes it
// nap, and wake less often than once per burst, at lower rates: the
// latency a user accepts buys CPU. A nap is sized so that, at the highest
// rate seen lately (a burst may start during a nap), the RX ring fills to
// at most half meanwhile, counting the time a nap overruns what it asked
// for (timer and wake-up latency: tens of µs in a VM). When no nap can be
// that short, the loop blocks in poll(2), which returns as soon as frames
// come, rather than spin; the overrun estimate then ages so that naps are
// tried again.
//
// An Idler is used by one goroutine. A nap sets the calling thread's
// timer slack, and does so again after every poll: a goroutine not locked
// to its thread may come back from Socket.Wait on another one. The zero
// value works.
type Idler struct {
	// Spins is how many empty passes in a row come before a sleep
	// (default 16).
	Spins int
	// Coalesce is the longest nap (default DefaultCoalesce; negative: never
	// nap, always poll).
	Coalesce time.Duration
	// Ring is the RX ring's size (0: naps are not bounded by it).
	Ring int

	idle   int           // empty passes in a row
	hot    bool          // frames came since the last sleep began
	polled bool          // the last sleep was a poll(2)
	batch  float64       // frames a poll(2) wakeup gathers, averaged (0: minBatch, until measured)
	peak   float64       // frames per ns, the highest window's, decaying by an eighth a sleep
	got    int           // frames received since since
	since  time.Duration // start of the rate window: the last sleep
	over   time.Duration // how much naps overrun, averaged
	slack  bool          // the thread's timer slack is set (since the last poll)
	now    func() time.Duration
}

// minNap is the shortest nap worth taking; minBatch is what a poll(2)
// wakeup is taken to gather until one was measured: it wakes once per NAPI
// poll (up to 64 frames), and a nap that gathers less than half of that is
// no cheaper.
const (
	minNap   = time.Microsecond
	minBatch = 32
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
	if poll {
		d.slack = false // the caller may resume on another thread
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
	elapsed := now - d.since
	hot, got := d.hot, d.got
	if d.batch == 0 {
		d.batch = minBatch
	}
	if d.polled {
		d.batch = max((3*d.batch+float64(got))/4, 1)
	}
	if hot && elapsed > 0 {
		d.peak = max(float64(got)/float64(elapsed), d.peak*7/8)
	}
	d.hot, d.got, d.since, d.polled = false, 0, now, true // a sleep starts a new rate window
	switch {
	case !hot || limit < 0 || elapsed <= 0:
		return 0, true // nothing since the last sleep: traffic stopped
	case float64(got)*float64(limit) <= d.batch*float64(elapsed):
		return 0, true // a nap would gather no more than a poll(2) wakeup
	}
	nap = limit
	if d.Ring > 0 {
		// At the recent peak rate (a burst may start during the nap),
		// half the ring fills in this long; the nap will overrun what
		// it asks for by about over.
		half := time.Duration(float64(d.Ring/2) / d.peak)
		if nap = min(nap, half-d.over); nap < minNap {
			// Too fast to nap safely. The overrun is learned from naps
			// only: age it, or one long overrun would rule naps out
			// for as long as the rate lasts.
			d.over /= 2
			return 0, true
		}
	}
	d.polled = false
	return nap, false
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

// nap sleeps for t on the calling thread with a raw nanosleep(2) (see
// nanosleep), first asking for a timer slack of 1 µs, and learns how much naps
// overrun. A signal ends the nap early, which is harmless. The prctl is raw
// too: since Go 1.26 a system call through the scheduler wakes a sleeping
// sysmon, which then watches at 20 µs intervals for a millisecond or more.
func (d *Idler) nap(t time.Duration) {
	if !d.slack {
		_, _, _ = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, uintptr(napSlack), 0)
		d.slack = true
	}
	t0 := d.clock()
	nanosleep(t)
	d.napped(t, d.clock()-t0)
}
