package testutil

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"
)

// waitedRE matches the end of a failure message: how long it waited.
var waitedRE = regexp.MustCompile(` \(waited ([^)]+)\)$`)

// checkFailure checks a failure message: want, then a wait of timeout or
// longer.
func checkFailure(t *testing.T, msg, want string, timeout time.Duration) {
	t.Helper()
	m := waitedRE.FindStringSubmatchIndex(msg)
	if m == nil {
		t.Fatalf("failure %q does not say how long it waited", msg)
	}
	if got := msg[:m[0]]; got != want {
		t.Errorf("failure %q, want %q before the wait", got, want)
	}
	if waited, err := time.ParseDuration(msg[m[2]:m[3]]); err != nil || waited < timeout {
		t.Errorf("failure %q: waited %v (%v), want %v or more", msg, waited, err, timeout)
	}
}

func TestEventuallyPassesOnceTheConditionHolds(t *testing.T) {
	calls := 0
	msg := runFake(func(tb testing.TB) {
		Eventually(tb, time.Minute, func() bool { calls++; return calls == 5 }, "never %s", "fails")
	}).fatal
	if msg != "" || calls != 5 {
		t.Fatalf("condition true at the 5th call: failed %q after %d calls, want no failure after 5", msg, calls)
	}
}

func TestEventuallyFailsWithTheMessageAndTheWait(t *testing.T) {
	const timeout = 20 * time.Millisecond
	msg := runFake(func(tb testing.TB) {
		Eventually(tb, timeout, func() bool { return false }, "received %d of %d frames", 3, 5)
		t.Error("Eventually returned from a failure")
	}).fatal
	checkFailure(t, msg, "received 3 of 5 frames", timeout)
}

func TestEventuallyErrPassesOnceTheConditionHolds(t *testing.T) {
	calls := 0
	msg := runFake(func(tb testing.TB) {
		EventuallyErr(tb, time.Minute, func() error {
			if calls++; calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	}).fatal
	if msg != "" || calls != 3 {
		t.Fatalf("condition nil at the 3rd call: failed %q after %d calls, want no failure after 3", msg, calls)
	}
}

func TestEventuallyErrFailsWithTheLastError(t *testing.T) {
	const timeout = 20 * time.Millisecond
	calls := 0
	msg := runFake(func(tb testing.TB) {
		EventuallyErr(tb, timeout, func() error { calls++; return fmt.Errorf("%d frames", calls) })
		t.Error("EventuallyErr returned from a failure")
	}).fatal
	checkFailure(t, msg, fmt.Sprintf("%d frames", calls), timeout)
}

// TestEventuallyConditionMayFail: a condition that fails the test ends the
// wait there, with its own message.
func TestEventuallyConditionMayFail(t *testing.T) {
	calls := 0
	msg := runFake(func(tb testing.TB) {
		Eventually(tb, time.Minute, func() bool {
			if calls++; calls == 2 {
				tb.Fatalf("process exited")
			}
			return false
		}, "not ready")
	}).fatal
	if msg != "process exited" || calls != 2 {
		t.Fatalf("failed %q after %d calls, want the condition's own failure at the 2nd", msg, calls)
	}
}
