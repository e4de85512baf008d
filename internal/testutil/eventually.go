package testutil

import (
	"fmt"
	"testing"
	"time"
)

// Eventually waits until cond returns true, or fails the test with the
// formatted message and how long it waited. It calls cond at once, then
// again after pauses that start short and double up to pollMax, for at
// least timeout, and once more after the last pause: a condition that
// holds when the time is up still passes.
//
// The timeout bounds a test that would otherwise hang; it is never what
// the test checks, so make it generous (seconds, not milliseconds). The
// message is formatted when the test fails, but args are evaluated at the
// call: for a message that shows the state at the end, use EventuallyErr.
// Like tb.Fatal it must be called from the test's goroutine; cond runs
// there too, so it may call tb.Fatal itself.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	if waited, ok := poll(timeout, cond); !ok {
		tb.Fatalf("%s (waited %v)", fmt.Sprintf(format, args...), waited)
	}
}

// EventuallyErr is Eventually for a condition that says why it does not
// hold yet: it waits until cond returns nil, and fails the test with the
// last error cond returned and how long it waited.
func EventuallyErr(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	var err error
	if waited, ok := poll(timeout, func() bool { err = cond(); return err == nil }); !ok {
		tb.Fatalf("%v (waited %v)", err, waited)
	}
}

// pollMin and pollMax bound the pause between two calls of a condition:
// short at first, so a condition that is nearly there costs little time,
// longer later, so a slow one (a command run, a scrape) costs little CPU.
const (
	pollMin = 100 * time.Microsecond
	pollMax = 10 * time.Millisecond
)

// poll calls cond until it returns true or timeout has passed, and
// returns how long that took (to the millisecond) and whether cond held.
func poll(timeout time.Duration, cond func() bool) (waited time.Duration, ok bool) {
	start := time.Now()
	for pause := pollMin; ; pause = min(2*pause, pollMax) {
		ok = cond()
		waited = time.Since(start)
		if ok || waited >= timeout {
			return waited.Round(time.Millisecond), ok
		}
		time.Sleep(pause)
	}
}
