package pipeline

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpipe/xdpipe/xsk"
)

// gathered returns the value of the series of name whose labels include
// every name=value pair of want, and how many series name has.
func gathered(t *testing.T, reg *prometheus.Registry, name string, want ...string) (v float64, series int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			ok := true
			for _, w := range want {
				k, val, _ := strings.Cut(w, "=")
				if labels[k] != val {
					ok = false
				}
			}
			if ok {
				switch {
				case m.Counter != nil:
					v += m.GetCounter().GetValue()
				case m.Gauge != nil:
					v += m.GetGauge().GetValue()
				case m.Histogram != nil:
					v += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return v, series
}

// TestCollector scrapes a worker driven by the fake kernel and checks the
// counters against what the worker saw.
func TestCollector(t *testing.T) {
	mem := newUmem(t, 512, 2048, 128)
	port, _ := newPort(t, mem, wireOf(udp4(t, 53), 1000), 128, 128)
	w, err := NewWorker(WorkerConfig{Queue: 3, Ports: []NamedPort{{"eth0", port}}, Mem: mem,
		Stages: []Stage{portFilter(t, 53), &Count{}, &MacSwap{}}})
	if err != nil {
		t.Fatal(err)
	}
	port.Refill()
	for w.PortStats(0).RxPackets.Load() < 1000 {
		w.pass()
	}
	w.shutdown()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector([]*Worker{w}, nil))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xdpipe_rx_packets_total", []string{"iface=eth0", "queue=3"}, 1000},
		{"xdpipe_tx_packets_total", []string{"iface=eth0", "queue=3"}, 1000},
		{"xdpipe_tx_completed_total", []string{"iface=eth0"}, 1000},
		{"xdpipe_stage_packets_total", []string{"stage=count", "index=1"}, 1000},
		{"xdpipe_filter_rule_hits_total", []string{"rule=prio-1"}, 1000},
		{"xdpipe_drops_total", []string{"reason=tx_ring_full"}, 0},
		{"xdpipe_fill_depth", []string{"iface=eth0", "queue=3"}, 128}, // the whole ring: no FillLow
		{"xdpipe_burst_size", []string{"queue=3"}, float64(w.Stats().Passes.Load() - w.Stats().IdlePasses.Load())},
	} {
		if v, n := gathered(t, reg, c.name, c.labels...); n == 0 || v != c.want {
			t.Errorf("%s%v = %v (%d series), want %v", c.name, c.labels, v, n, c.want)
		}
	}
}

// TestDropsAreFramesLost: xdpipe_drops_total counts frames lost only; the
// kernel's empty-ring events (a receive-only daemon's TX ring is always
// empty) are counted apart.
func TestDropsAreFramesLost(t *testing.T) {
	mem := newUmem(t, 512, 2048, 128)
	port, k := newPort(t, mem, nil, 128, 128)
	k.SetStatistics(xsk.Statistics{RxDropped: 1, RxRingFull: 2, RxFillRingEmptyDescs: 5, TxRingEmptyDescs: 32610})
	w, err := NewWorker(WorkerConfig{Queue: 0, Ports: []NamedPort{{"eth0", port}}, Mem: mem, Stages: []Stage{&Count{}}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector([]*Worker{w}, nil))
	if v, _ := gathered(t, reg, "xdpipe_drops_total"); v != 3 {
		t.Errorf("xdpipe_drops_total = %v, want the 3 frames lost (rx_dropped, rx_ring_full)", v)
	}
	for ring, want := range map[string]float64{"fill": 5, "tx": 32610} {
		if v, n := gathered(t, reg, "xdpipe_xsk_ring_empty_total", "ring="+ring); n == 0 || v != want {
			t.Errorf("xdpipe_xsk_ring_empty_total{ring=%s} = %v (%d series), want %v", ring, v, n, want)
		}
	}
}

// colorStage is a stage of the caller's own, with a counter of its own
// and a label of its own.
type colorStage struct{ red, blue uint64 }

var mColors = NewCounterDesc("test_colors_total", "Frames by colour.", "color")

func (*colorStage) Process(*Burst)    {}
func (*colorStage) StageName() string { return "colors" }
func (s *colorStage) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mColors, s.red, "red")
	emit(mColors, s.blue, "blue")
}

// TestCallersStageCounters: a stage described by CounterDescs alone, no
// Prometheus type in sight, is exported labelled queue, stage and index,
// then with its own labels, on every scrape.
func TestCallersStageCounters(t *testing.T) {
	mem := newUmem(t, 64, 2048, 16)
	port, _ := newPort(t, mem, nil, 16, 16)
	s := &colorStage{red: 7, blue: 9}
	w, err := NewWorker(WorkerConfig{Queue: 2, Ports: []NamedPort{{"eth0", port}}, Mem: mem, Stages: []Stage{&Count{}, s}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector([]*Worker{w}, nil))
	for range 2 { // the second scrape reuses the description
		for color, want := range map[string]float64{"red": 7, "blue": 9} {
			if v, n := gathered(t, reg, "test_colors_total", "queue=2", "stage=colors", "index=1", "color="+color); n != 2 || v != want {
				t.Errorf("test_colors_total{color=%s} = %v (%d series), want %v of 2 series", color, v, n, want)
			}
		}
	}
}
