package testutil

import (
	"slices"
	"testing"
	"time"
)

// blockOn receives from c: a function whose name the test looks for.
func blockOn(c chan struct{}) { <-c }

// TestGoroutinesShowsBlockedAndEnded: a goroutine blocked in blockOn shows
// with the state "chan receive", and no more once it has returned; the
// test's own goroutine shows running.
func TestGoroutinesShowsBlockedAndEnded(t *testing.T) {
	const fn = "github.com/xdpipe/xdpipe/internal/testutil.blockOn"
	if s := Goroutines(fn); len(s) != 0 {
		t.Fatalf("before the goroutine: %q", s)
	}
	c := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		blockOn(c)
	}()
	Eventually(t, 10*time.Second, func() bool { return slices.Equal(Goroutines(fn), []string{"chan receive"}) },
		"the goroutine never showed blocked in blockOn")
	close(c)
	<-done
	Eventually(t, 10*time.Second, func() bool { return len(Goroutines(fn)) == 0 }, "the goroutine showed after it ended")
	if s := Goroutines("github.com/xdpipe/xdpipe/internal/testutil.TestGoroutinesShowsBlockedAndEnded"); !slices.Equal(s, []string{"running"}) {
		t.Errorf("the test's own goroutine: %q, want running", s)
	}
}
