package pipeline

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestClosingStageReleasesGoroutines: a reload closes the old chain; the
// goroutine draining a closed sample stage's channel ends, so reloads do
// not pile up goroutines and buffers.
func TestClosingStageReleasesGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 200 {
		s, err := NewSample(1, 8, 64)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := burstOf(t, udp4(t, 1), udp4(t, 2))
		s.Process(b)
		go func() {
			for x := range s.C() {
				s.Release(x)
			}
		}()
		if err := CloseStages([]Stage{s}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
	}
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after 200 closed sample stages, %d before", n, before)
		}
		return nil
	})
}

// gate blocks the worker in Process until the test opens it.
type gate struct {
	in   chan struct{}
	open chan struct{}
	n    atomic.Uint64
}

func (g *gate) Process(*Burst) {
	if g.n.Add(1) == 1 {
		close(g.in)
		<-g.open
	}
}

// TestFailedSetStagesNeverSwaps: when SetStages returns an error (its
// context ended before the worker took the chain), the worker never runs
// that chain: the caller closes it at once, and a closed stage that still
// ran (a sample stage's closed channel) would panic or lose frames.
func TestFailedSetStagesNeverSwaps(t *testing.T) {
	mem := newUmem(t, 512, 2048, 128)
	port, _ := newPort(t, mem, wireOf(udp4(t, 9), -1), 128, 128)
	g := &gate{in: make(chan struct{}), open: make(chan struct{})}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{g}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	<-g.in // the worker is inside a pass
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	next := &Count{}
	if _, err := w.SetStages(ctx, []Stage{next}); err == nil {
		t.Fatal("SetStages with an ended context succeeded while the worker was busy")
	}
	close(g.open)
	testutil.Eventually(t, 10*time.Second, func() bool { return w.PortStats(0).RxPackets.Load() > 10000 }, "no more traffic")
	stop()
	if next.Packets.Load() != 0 || w.Stages()[0] != Stage(g) {
		t.Fatalf("the refused chain ran: %d packets", next.Packets.Load())
	}
}
