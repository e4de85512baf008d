package gen

import (
	"testing"
	"time"
)

// TestPacerRate drives the pacer with a simulated clock and an engine that
// sends whatever the budget allows the moment it is allowed (the live
// engine's bursts): over 2 s the average must land within 1% of the
// target, and never above it.
func TestPacerRate(t *testing.T) {
	for _, rate := range []float64{1000, 50000, 2e6} {
		p := newPacer(Run{Rate: rate, Duration: 2 * time.Second})
		now := p.start
		var sent uint64
		for {
			n, wait, done := p.budget(now, sent, 1<<18)
			if done {
				break
			}
			if n == 0 {
				now = now.Add(wait)
				continue
			}
			sent += n
			// Sending takes time: 12 Mfps plus 20 µs per call.
			now = now.Add(time.Duration(float64(n)/12e6*float64(time.Second)) + 20*time.Microsecond)
			if float64(sent) > rate*now.Sub(p.start).Seconds()+1 {
				t.Fatalf("rate %v: %d sent after %v, above the limit", rate, sent, now.Sub(p.start))
			}
		}
		got := float64(sent) / now.Sub(p.start).Seconds()
		if got < rate*0.99 || got > rate*1.001 {
			t.Errorf("rate %v: got %.1f frames/s", rate, got)
		}
	}
}

func TestPacerCount(t *testing.T) {
	p := newPacer(Run{Count: 1000})
	n, _, done := p.budget(p.start, 0, 1<<20)
	if n != 1000 || done {
		t.Fatalf("budget %d done %v, want 1000", n, done)
	}
	if _, _, done := p.budget(p.start, 1000, 1<<20); !done {
		t.Fatal("not done at the count")
	}
}

func TestRunValidate(t *testing.T) {
	for _, r := range []Run{{Rate: -1}, {Duration: -time.Second}} {
		if err := r.validate(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}
