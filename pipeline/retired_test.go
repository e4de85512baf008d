package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestStageCountersNeverGoBack: a reload swaps in fresh stages, but the
// counters the metrics export for a stage (same place, same kind) go on
// from where the old one left them: Prometheus counters never go back
// within a process's life. Scraped all along, across many reloads.
func TestStageCountersNeverGoBack(t *testing.T) {
	mem := newUmem(t, 512, 2048, 128)
	port, _ := newPort(t, mem, wireOf(udp4(t, 9), -1), 128, 128)
	first := &Count{}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{first}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector([]*Worker{w}, nil))
	stageCount := func() float64 {
		v, _ := gathered(t, reg, "xdpipe_stage_packets_total", "index=0")
		return v
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return first.Packets.Load() > 0 }, "no traffic")
	var last float64
	counts := []*Count{first}
	for range 50 {
		c := &Count{}
		old, err := w.SetStages(context.Background(), []Stage{c})
		if err != nil || len(old) != 1 {
			t.Fatal(old, err)
		}
		counts = append(counts, c)
		for range 3 {
			v := stageCount()
			if v < last {
				t.Fatalf("xdpipe_stage_packets_total went back from %v to %v", last, v)
			}
			last = v
		}
		testutil.Eventually(t, 10*time.Second, func() bool { return c.Packets.Load() > 0 }, "no traffic after the reload")
	}
	stop()
	var sum uint64
	for _, c := range counts {
		sum += c.Packets.Load()
	}
	if v := stageCount(); v != float64(sum) {
		t.Fatalf("exported %v, the stages counted %d in all", v, sum)
	}
}
