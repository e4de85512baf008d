package bench

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"10k": 1e4, "1M": 1e6, "1.5M": 1.5e6, "2000": 2000, " max": 0} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := ParseRate(RateText(got)); err != nil || back != got {
			t.Errorf("ParseRate(RateText(%v)) = %v, %v", got, back, err)
		}
	}
	for _, bad := range []string{"", "0", "-5k", "fast", "1G", "NaN", "Inf"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) took it", bad)
		}
	}
}

// TestKernelDrops reads the drops each AF_XDP receiver prints: rxdrop's
// summary (the last xdp line, not the rate lines before it), the C peer's
// and asavie peer's notes; other receivers print none.
func TestKernelDrops(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want uint64
	}{
		{"1.0s rx 5 Mpps | rx_dropped=1 rx_ring_full=2 fill_ring_empty=9 rx_invalid=0\n" +
			"summary: 10 packets, 640 bytes in 1s\nxdp: rx_dropped=3 rx_ring_full=40 fill_ring_empty=9 rx_invalid=0", 43},
		{`{"frames":5,"note":"C libxdp rxdrop; kernel: rx_dropped 7, rx_ring_full 0, fill_ring_empty 3, tx_invalid 0"}`, 7},
		{`{"frames":5,"note":"asavie/xdp v0.3.3 defaults; kernel: rx_ring_full 12, rx_dropped 1"}`, 13},
		{`{"frames":5,"bytes":320}`, 0},
	} {
		if got := kernelDrops(tc.out); got != tc.want {
			t.Errorf("kernelDrops(%q) = %d, want %d", tc.out, got, tc.want)
		}
	}
}

// TestSweepRounds: with rates, every round runs every receiver at every
// rate once, the rates reversed in odd rounds; cells fold per rate; the
// CPU ratio's bar is a most, judged per rate; the sweep table has them.
func TestSweepRounds(t *testing.T) {
	rxs, rates := []string{"xdpipe-wakeup", "asavie-poll"}, []float64{1e4, 0}
	for round := range 2 {
		g := roundOrder(round, rxs, []int{64}, rates)
		if len(g) != 1 || len(g[0]) != 4 {
			t.Fatalf("round %d: %v", round, g)
		}
		if first := g[0][0].rate; first != rates[round] {
			t.Errorf("round %d starts at rate %v", round, first)
		}
	}
	// CPU per frame: wakeup half asavie's at 10k (met, exactly the bar),
	// 0.6 at full speed (not met).
	cpu := map[cell][]float64{
		{"xdpipe-wakeup", 64, 1e4}: {0.5, 0.4, 0.6}, {"asavie-poll", 64, 1e4}: {1, 1, 1},
		{"xdpipe-wakeup", 64, 0}: {0.06, 0.06, 0.06}, {"asavie-poll", 64, 0}: {0.1, 0.1, 0.1},
	}
	rep := &Report{Sizes: []int{64}, Rates: rates, Receivers: rxs}
	for i := range 3 {
		var round []Result
		for c, v := range cpu {
			round = append(round, Result{Receiver: c.rx, Size: c.size, Rate: c.rate, Engine: "live", Fps: 1e4,
				Received: 100, CPUPerMframe: v[i], Drops: uint64(i)})
		}
		canonical(round, rxs, []int{64}, rates)
		rep.Rounds = append(rep.Rounds, round)
	}
	rep.Results = aggregate(rep.Rounds)
	if len(rep.Results) != 4 || rep.Results[0].Rate != 1e4 || rep.Results[0].Receiver != "xdpipe-wakeup" {
		t.Fatalf("folded cells %+v", rep.Results)
	}
	if d := rep.Results[0].Spread.Drops; d != (Spread{0, 1, 2}) || rep.Results[0].Drops != 3 {
		t.Errorf("drops spread %+v total %d", d, rep.Results[0].Drops)
	}
	got := map[float64]Ratio{}
	for _, r := range rep.Compare() {
		if r.What == "rxdrop wakeup / asavie poll(2), CPU per frame" {
			got[r.Rate] = r
		}
	}
	if r := got[1e4]; !near(r.Value, 0.5) || !r.Met || !r.Lower || r.Spread.Min != 0.4 || r.Spread.Max != 0.6 {
		t.Errorf("at 10k: %+v %+v", r, r.Spread)
	}
	if r := got[0]; !near(r.Value, 0.6) || r.Met {
		t.Errorf("at full speed: %+v", r)
	}
	var sw, rat strings.Builder
	if err := rep.WriteSweep(&sw); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteRatios(&rat); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"offered/s", "10k", "max", "0.500", "0.400", "0.600"} {
		if !strings.Contains(sw.String(), w) {
			t.Errorf("sweep table lacks %q:\n%s", w, sw.String())
		}
	}
	for _, w := range []string{"64 @10k", "bar <= 0.5: met", "bar <= 0.5: NOT met"} {
		if !strings.Contains(rat.String(), w) {
			t.Errorf("ratio table lacks %q:\n%s", w, rat.String())
		}
	}
}
