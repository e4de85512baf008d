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
		if nap, poll = d.Idle(); nap > 0 || poll {
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
	// Woken with frames: a slow trickle, so the nap is the full Coalesce.
	c.t += time.Millisecond
	d.Got(10)
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
		if nap, poll := d.Idle(); nap != 0 || poll {
			t.Fatalf("pass %d after a frame: nap %v poll %v", i, nap, poll)
		}
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
	// An absurd rate still naps at least a microsecond.
	c.t++
	d.Got(1 << 20)
	if _, nap, _ = idleUntilSleep(t, &d); nap != time.Microsecond {
		t.Fatalf("at an absurd rate: nap %v; want 1µs", nap)
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
		d.Idle()
	}); n != 0 {
		t.Fatalf("%v allocations per pass", n)
	}
}
