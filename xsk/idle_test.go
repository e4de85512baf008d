package xsk

import (
	"testing"
	"time"
)

// fakeClock is an Idler clock the test moves by hand.
type fakeClock struct{ t time.Duration }

func (c *fakeClock) now() time.Duration { return c.t }

// idleUntilSleep makes empty passes until the Idler says sleep, and returns
// how many it took and what it said.
func idleUntilSleep(t *testing.T, d *Idler) (passes int, nap time.Duration, poll bool) {
	t.Helper()
	for passes = 1; passes < 1000; passes++ {
		if nap, poll = d.decide(); nap > 0 || poll {
			return passes, nap, poll
		}
	}
	t.Fatal("Idler never said sleep")
	return
}

func TestIdlerSpinsThenPollsWhenNothingCame(t *testing.T) {
	var c fakeClock
	d := Idler{now: c.now}
	passes, nap, poll := idleUntilSleep(t, &d)
	if passes != defaultSpins || nap != 0 || !poll {
		t.Fatalf("first sleep after %d passes: nap %v poll %v; want poll after %d", passes, nap, poll, defaultSpins)
	}
	// Still nothing: poll again after the same number of spins.
	if passes, _, poll = idleUntilSleep(t, &d); passes != defaultSpins || !poll {
		t.Fatalf("second sleep after %d passes, poll %v", passes, poll)
	}
}

func TestIdlerNapsWhileFramesCome(t *testing.T) {
	var c fakeClock
	d := Idler{Spins: 4, now: c.now}
	idleUntilSleep(t, &d) // idle: poll
	// Woken with frames: 100 in 50 µs (2 Mpps), enough for a nap of
	// Coalesce to gather a batch, so the nap is the full Coalesce.
	c.t += 50 * time.Microsecond
	d.Got(100)
	passes, nap, poll := idleUntilSleep(t, &d)
	if passes != 4 || poll || nap != DefaultCoalesce {
		t.Fatalf("after frames: %d passes, nap %v, poll %v; want nap %v after 4", passes, nap, poll, DefaultCoalesce)
	}
	// The nap brought nothing: back to poll.
	c.t += nap
	if _, nap, poll = idleUntilSleep(t, &d); !poll || nap != 0 {
		t.Fatalf("after an empty nap: nap %v poll %v; want poll", nap, poll)
	}
	// A frame between empty passes restarts the spin count.
	d.Got(1)
	for i := 0; i < 3; i++ {
		if nap, poll := d.decide(); nap != 0 || poll {
			t.Fatalf("pass %d after a frame: nap %v poll %v", i, nap, poll)
		}
	}
}

// TestIdlerPollsWhenNapWouldGatherLittle: at a rate where a nap of
// Coalesce is expected to gather fewer than minBatch frames, poll(2)
// (one wakeup per burst) is cheaper than a nap (which would wake for a few
// frames, or for none between bursts, and then poll anyway).
func TestIdlerPollsWhenNapWouldGatherLittle(t *testing.T) {
	var c fakeClock
	d := Idler{Ring: 2048, now: c.now}
	idleUntilSleep(t, &d)
	// 20 frames per 200 µs (100 kpps, the generator's bursts): a 50 µs nap
	// would gather 5.
	for burst := range 10 {
		c.t += 200 * time.Microsecond
		d.Got(20)
		if _, nap, poll := idleUntilSleep(t, &d); !poll || nap != 0 {
			t.Fatalf("burst %d at 100 kpps: nap %v poll %v; want poll", burst, nap, poll)
		}
	}
	// The same with a Coalesce long enough to gather a batch: nap.
	d.Coalesce = 400 * time.Microsecond
	c.t += 200 * time.Microsecond
	d.Got(20)
	if _, nap, poll := idleUntilSleep(t, &d); poll || nap != d.Coalesce {
		t.Fatalf("at 100 kpps with Coalesce %v: nap %v poll %v; want the full nap", d.Coalesce, nap, poll)
	}
}

// TestIdlerLearnsWhatPollGathers: the frames a poll(2) wakeup gathers are
// measured, and a nap is taken when it is expected to gather more. At 10
// kpps in bursts of 2 frames, poll(2) wakes per burst; with a Coalesce of
// 1 ms a nap gathers 10, and the Idler naps, waking a fifth as often.
func TestIdlerLearnsWhatPollGathers(t *testing.T) {
	var c fakeClock
	d := Idler{Ring: 2048, Coalesce: time.Millisecond, now: c.now}
	idleUntilSleep(t, &d)
	naps := 0
	for burst := range 20 {
		c.t += 200 * time.Microsecond
		d.Got(2)
		_, nap, poll := idleUntilSleep(t, &d)
		if burst < 3 && !poll {
			t.Fatalf("burst %d: napped %v before poll(2)'s batch was learned (assumed %d frames)", burst, nap, minBatch)
		}
		if nap > 0 {
			naps++
			if nap != d.Coalesce {
				t.Fatalf("burst %d: nap %v, want %v", burst, nap, d.Coalesce)
			}
			c.t += nap - 200*time.Microsecond // the nap gathers the next bursts: 10 frames in all
			d.Got(8)
		}
	}
	if naps < 10 {
		t.Fatalf("%d naps in 20 bursts; want the Idler napping once poll(2) was seen to gather 2 frames", naps)
	}
	if d.batch < 1.5 || d.batch > 10 {
		t.Fatalf("learned poll(2) batch %.1f, want about 2", d.batch)
	}
}

func TestIdlerNapKeepsRingHalfEmpty(t *testing.T) {
	var c fakeClock
	d := Idler{Ring: 2048, Coalesce: 100 * time.Microsecond, now: c.now}
	idleUntilSleep(t, &d)
	// 200 frames in 10 µs is 20 Mpps: half the ring (1024 frames) fills
	// in 51.2 µs, less than Coalesce, so the nap shrinks to that.
	c.t += 10 * time.Microsecond
	d.Got(200) // 20 frames per µs
	_, nap, poll := idleUntilSleep(t, &d)
	if poll || nap != 51200*time.Nanosecond {
		t.Fatalf("at 20 Mpps: nap %v poll %v; want 51.2µs", nap, poll)
	}
}

// TestIdlerNapBoundedByRecentPeak: a nap after a lull is still sized for
// the burst rate seen just before, which may come back during the nap; the
// peak ages away over later sleeps.
func TestIdlerNapBoundedByRecentPeak(t *testing.T) {
	var c fakeClock
	d := Idler{Ring: 2048, now: c.now}
	idleUntilSleep(t, &d)
	c.t += 10 * time.Microsecond
	d.Got(200) // 20 Mpps: half the ring in 51.2 µs
	if _, nap, _ := idleUntilSleep(t, &d); nap != 51200*time.Nanosecond {
		t.Fatalf("at 20 Mpps: nap %v, want 51.2µs", nap)
	}
	c.t += 100 * time.Microsecond
	d.Got(200) // 2 Mpps: half the ring in 512 µs, more than Coalesce
	if _, nap, _ := idleUntilSleep(t, &d); nap <= 0 || nap > 60*time.Microsecond {
		t.Fatalf("at 2 Mpps just after 20 Mpps: nap %v, want the 20 Mpps bound aged by an eighth (58.5µs)", nap)
	}
	for range 40 {
		c.t += 100 * time.Microsecond
		d.Got(200)
		idleUntilSleep(t, &d)
	}
	if _, nap, _ := idleUntilSleep(t, &d); nap != 0 {
		t.Fatalf("an extra sleep with nothing received: nap %v", nap)
	}
	c.t += 100 * time.Microsecond
	d.Got(200)
	if _, nap, _ := idleUntilSleep(t, &d); nap != DefaultCoalesce {
		t.Fatalf("after 4 ms at 2 Mpps: nap %v, want %v", nap, DefaultCoalesce)
	}
}

// TestIdlerPollsWhenNoNapIsShortEnough: naps that overrun by 40 µs at a
// rate where half the ring fills in 51.2 µs leave 11.2 µs to ask for; at
// twice that rate nothing is left, and the loop sleeps in poll(2), which
// returns as soon as frames come, instead of spinning.
func TestIdlerPollsWhenNoNapIsShortEnough(t *testing.T) {
	var c fakeClock
	d := Idler{Ring: 2048, Coalesce: 100 * time.Microsecond, now: c.now}
	for range 20 {
		d.napped(10*time.Microsecond, 50*time.Microsecond)
	}
	if d.over < 39*time.Microsecond || d.over > 40*time.Microsecond {
		t.Fatalf("learned overrun %v, want about 40µs", d.over)
	}
	idleUntilSleep(t, &d)
	c.t += 10 * time.Microsecond
	d.Got(200) // 20 Mpps
	if _, nap, poll := idleUntilSleep(t, &d); poll || nap < 11*time.Microsecond || nap > 12*time.Microsecond {
		t.Fatalf("at 20 Mpps with 40µs overrun: nap %v poll %v; want about 11.2µs", nap, poll)
	}
	c.t += 10 * time.Microsecond
	d.Got(400) // 40 Mpps: half the ring in 25.6 µs, less than the overrun
	passes, nap, poll := idleUntilSleep(t, &d)
	if !poll || nap != 0 || passes != defaultSpins {
		t.Fatalf("at 40 Mpps with 40µs overrun: after %d passes nap %v poll %v; want poll after %d", passes, nap, poll, defaultSpins)
	}
}

// TestIdlerNapsAgainAfterOneLongOverrun: one nap that overran by two
// milliseconds (the thread was descheduled) must not rule naps out for as
// long as a high rate lasts. The overrun is learned from naps only, so
// before it aged while the loop could not nap, the Idler spun through
// every gap at 4 Mpps for good: a whole core, as spin mode.
func TestIdlerNapsAgainAfterOneLongOverrun(t *testing.T) {
	var c fakeClock
	d := Idler{Ring: 2048, now: c.now}
	d.napped(50*time.Microsecond, 2050*time.Microsecond)
	idleUntilSleep(t, &d)
	naps := 0
	for cycle := range 20 {
		c.t += 50 * time.Microsecond
		d.Got(200) // 4 Mpps: half the ring fills in 256 µs
		passes, nap, poll := idleUntilSleep(t, &d)
		if nap == 0 && !poll {
			t.Fatalf("cycle %d: neither nap nor poll after %d passes", cycle, passes)
		}
		if nap > 0 {
			naps++
			d.napped(nap, nap+10*time.Microsecond) // a nap overruns by 10 µs
		}
	}
	if naps < 15 {
		t.Fatalf("napped in %d of 20 cycles at 4 Mpps after one 2 ms overrun; want naps back within a few", naps)
	}
}

func TestIdlerNegativeCoalesceNeverNaps(t *testing.T) {
	var c fakeClock
	d := Idler{Coalesce: -1, now: c.now}
	c.t += time.Millisecond
	d.Got(100)
	if _, nap, poll := idleUntilSleep(t, &d); nap != 0 || !poll {
		t.Fatalf("nap %v poll %v; want poll", nap, poll)
	}
}

func TestIdlerAllocatesNothing(t *testing.T) {
	var d Idler
	if n := testing.AllocsPerRun(1000, func() {
		d.Got(3)
		d.decide()
	}); n != 0 {
		t.Fatalf("%v allocations per pass", n)
	}
}

// TestIdlerSetsSlackAgainAfterPoll: a goroutine not locked to its thread
// may come back from a poll on another thread, whose timer slack is the
// default: the next nap sets it again.
func TestIdlerSetsSlackAgainAfterPoll(t *testing.T) {
	var c fakeClock
	d := Idler{now: c.now, slack: true}
	for !d.Idle() {
	}
	if d.slack {
		t.Fatal("after a poll the Idler still takes the thread's timer slack as set")
	}
}
