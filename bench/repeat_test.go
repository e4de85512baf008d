package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Spread
	}{
		{[]float64{4}, Spread{4, 4, 4}},
		{[]float64{3, 1, 2}, Spread{1, 2, 3}},
		{[]float64{4, 1, 3, 2}, Spread{1, 2.5, 4}},
		{[]float64{5, 9, 1, 7, 3}, Spread{1, 5, 9}},
	} {
		in := slices.Clone(tc.in)
		if got := spreadOf(in); got != tc.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("spreadOf reordered its input: %v", in)
		}
	}
}

// TestRoundOrder: every round runs every cell once, grouped by size; round
// 0 is the configured order; over as many rounds as receivers, each
// receiver runs once in every position; sizes alternate direction.
func TestRoundOrder(t *testing.T) {
	rxs := []string{"xdp-drop", "xdpipe-spin", "udp"}
	sizes := []int{64, 1500, 9000}
	pos := map[string]map[int]bool{}
	for round := range len(rxs) {
		groups := roundOrder(round, rxs, sizes, []float64{0})
		var gotSizes []int
		seen := map[cell]bool{}
		for _, g := range groups {
			gotSizes = append(gotSizes, g[0].size)
			for i, c := range g {
				if c.size != g[0].size {
					t.Fatalf("round %d: size group %v mixes sizes", round, g)
				}
				seen[c] = true
				if pos[c.rx] == nil {
					pos[c.rx] = map[int]bool{}
				}
				if c.size == 64 {
					pos[c.rx][i] = true
				}
			}
		}
		if len(seen) != len(rxs)*len(sizes) {
			t.Fatalf("round %d: %d distinct cells, want %d", round, len(seen), len(rxs)*len(sizes))
		}
		want := slices.Clone(sizes)
		if round%2 == 1 {
			slices.Reverse(want)
		}
		if !slices.Equal(gotSizes, want) {
			t.Errorf("round %d: sizes %v, want %v", round, gotSizes, want)
		}
		if round == 0 {
			var got []string
			for _, c := range groups[0] {
				got = append(got, c.rx)
			}
			if !slices.Equal(got, rxs) {
				t.Errorf("round 0 runs %v, want the configured %v", got, rxs)
			}
		}
	}
	for rx, p := range pos {
		if len(p) != len(rxs) {
			t.Errorf("%s ran in positions %v over %d rounds, want every one", rx, p, len(rxs))
		}
	}
}

// TestCanonicalCeiling: a round run in rotated order is sorted back into
// the configured order, and the ratio to the ceiling is its own round's.
func TestCanonicalCeiling(t *testing.T) {
	round := []Result{
		{Receiver: "udp", Size: 1500, Fps: 1e6},
		{Receiver: "xdp-drop", Size: 1500, Fps: 4e6},
		{Receiver: "udp", Size: 64, Fps: 1e6},
		{Receiver: "xdp-drop", Size: 64, Error: "attach failed"},
	}
	canonical(round, []string{"xdp-drop", "udp"}, []int{64, 1500}, []float64{0})
	setCeilingRatios(round)
	var got []string
	for _, r := range round {
		got = append(got, fmt.Sprintf("%s@%d:%.2f", r.Receiver, r.Size, r.RatioToCeiling))
	}
	want := []string{"xdp-drop@64:0.00", "udp@64:0.00", "xdp-drop@1500:1.00", "udp@1500:0.25"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// rounds builds a repeated run's rounds from per-round rates of
// xdpipe-spin and udp at 64 bytes; a rate of -1 is a cell that failed.
func rounds(spin, udp []float64) *Report {
	rep := &Report{Sizes: []int{64}, Receivers: []string{"xdpipe-spin", "udp"}}
	for i := range spin {
		var round []Result
		for _, c := range []struct {
			rx  string
			fps float64
		}{{"xdpipe-spin", spin[i]}, {"udp", udp[i]}} {
			r := Result{Receiver: c.rx, Size: 64, Engine: "live", Fps: c.fps, Sent: 10, Received: 5, Attempts: 1,
				CPUPerMframe: c.fps / 1e7}
			if c.fps < 0 {
				r = Result{Receiver: c.rx, Size: 64, Engine: "live", Error: fmt.Sprintf("round %d broke", i)}
			}
			round = append(round, r)
		}
		rep.Rounds = append(rep.Rounds, round)
	}
	rep.Results = aggregate(rep.Rounds)
	return rep
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestAggregate: cells fold to their median, least and greatest rate over
// the rounds they ran in; a cell that failed in one round is folded over
// the others and says so; ratios are taken within each round, then folded.
func TestAggregate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spin, udp []float64
		// spin's rate spread, its rounds and failures
		spinFps      Spread
		spinRounds   int
		spinFailed   int
		ratio        Spread
		ratioRounds  int
		met          bool
		spinReceived uint64
	}{
		{
			name: "odd", spin: []float64{6e6, 3e6, 9e6}, udp: []float64{1e6, 1e6, 1e6},
			spinFps: Spread{3e6, 6e6, 9e6}, spinRounds: 3,
			ratio: Spread{3, 6, 9}, ratioRounds: 3, met: true, spinReceived: 15,
		},
		{
			// The ratio of the medians would be 4.5/0.9375 = 4.8; within each
			// round it is 2 and 8, so the median ratio is 5.
			name: "even", spin: []float64{2e6, 8e6 - 1e6}, udp: []float64{1e6, 0.875e6},
			spinFps: Spread{2e6, 4.5e6, 7e6}, spinRounds: 2,
			ratio: Spread{2, 5, 8}, ratioRounds: 2, met: true, spinReceived: 10,
		},
		{
			// udp fails in round 1: spin is folded over three rounds, the
			// ratio only over the two rounds both cells ran in.
			name: "failed cell", spin: []float64{4e6, 5e6, 6e6}, udp: []float64{2e6, -1, 1e6},
			spinFps: Spread{4e6, 5e6, 6e6}, spinRounds: 3,
			ratio: Spread{2, 4, 6}, ratioRounds: 2, met: false, spinReceived: 15,
		},
		{
			// spin fails in one of two rounds: one round left, min = median = max.
			name: "even with a failure", spin: []float64{-1, 6e6}, udp: []float64{1e6, 1e6},
			spinFps: Spread{6e6, 6e6, 6e6}, spinRounds: 1, spinFailed: 1,
			ratio: Spread{6, 6, 6}, ratioRounds: 1, met: true, spinReceived: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := rounds(tc.spin, tc.udp)
			if len(rep.Results) != 2 {
				t.Fatalf("%d cells, want 2", len(rep.Results))
			}
			spin := rep.Results[0]
			if spin.Receiver != "xdpipe-spin" || spin.Error != "" || spin.Spread == nil {
				t.Fatalf("first cell %+v", spin)
			}
			sp := spin.Spread
			if sp.Fps != tc.spinFps || sp.Rounds != tc.spinRounds || sp.Failed != tc.spinFailed {
				t.Errorf("spin spread %+v, want fps %+v over %d rounds, %d failed", sp, tc.spinFps, tc.spinRounds, tc.spinFailed)
			}
			if spin.Fps != tc.spinFps.Median || !near(spin.CPUPerMframe, tc.spinFps.Median/1e7) {
				t.Errorf("spin's figures %v fps, %v CPU s/Mf: want the medians", spin.Fps, spin.CPUPerMframe)
			}
			if spin.Received != tc.spinReceived {
				t.Errorf("spin received %d, want the total %d", spin.Received, tc.spinReceived)
			}
			if tc.spinFailed > 0 && !strings.Contains(spin.Note, "failed in 1 of 2 rounds") {
				t.Errorf("spin's note %q does not name the failed round", spin.Note)
			}
			ratios := rep.Compare()
			if len(ratios) != 1 {
				t.Fatalf("ratios %+v, want spin / udp only", ratios)
			}
			r := ratios[0]
			if r.What != "rxdrop spin / Go UDP socket" || r.Spread == nil || r.Rounds != tc.ratioRounds ||
				!near(r.Spread.Min, tc.ratio.Min) || !near(r.Spread.Median, tc.ratio.Median) ||
				!near(r.Spread.Max, tc.ratio.Max) || !near(r.Value, tc.ratio.Median) || r.Met != tc.met || r.Bar != 5 {
				t.Errorf("ratio %+v (spread %+v), want %+v over %d rounds, met %v", r, r.Spread, tc.ratio, tc.ratioRounds, tc.met)
			}
		})
	}
}

// TestAggregateAllFailed: a cell that failed in every round keeps its
// error and gives no ratio.
func TestAggregateAllFailed(t *testing.T) {
	rep := rounds([]float64{5e6, 6e6}, []float64{-1, -1})
	udp := rep.Results[1]
	if udp.Error != "round 1 broke" || udp.Spread == nil || udp.Spread.Failed != 2 || udp.Spread.Rounds != 0 {
		t.Errorf("udp %+v (spread %+v), want the last error, failed in 2 rounds", udp, udp.Spread)
	}
	if r := rep.Compare(); len(r) != 0 {
		t.Errorf("ratios %+v from a cell that never ran", r)
	}
}

// TestRepeatOutputs: a repeated run's tables show min, median and max; an
// unrepeated one's tables and JSON are as before --repeat.
func TestRepeatOutputs(t *testing.T) {
	rep := rounds([]float64{6e6, 3e6, 9e6}, []float64{1e6, -1, 1e6})
	var tab, rat, md strings.Builder
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteRatios(&rat); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, got string
		want      []string
	}{
		{"table", tab.String(), []string{"rounds", "min", "max", "6.000", "3.000", "9.000", "failed in 1 of 3 rounds"}},
		{"ratios", rat.String(), []string{"median", "7.50x", "6.00x", "9.00x", "bar 5: met"}},
		{"markdown", md.String(), []string{"3 rounds", "| 6.000 | 3.000 | 9.000 |", "| 7.50x | 6.00x | 9.00x |"}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.got, w) {
				t.Errorf("%s lacks %q:\n%s", c.what, w, c.got)
			}
		}
	}

	once := &Report{Sizes: []int{64}, Results: []Result{
		{Receiver: "xdpipe-spin", Size: 64, Engine: "live", Fps: 6e6},
		{Receiver: "udp", Size: 64, Engine: "live", Fps: 1e6},
	}}
	once.Ratios = once.Compare()
	tab.Reset()
	rat.Reset()
	if err := once.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if err := once.WriteRatios(&rat); err != nil {
		t.Fatal(err)
	}
	head := func(s string) string { return strings.Join(strings.Fields(strings.SplitN(s, "\n", 2)[0]), " ") }
	if head(tab.String()) != "receiver size gen sent Mfps rx Mfps Gbit/s rx CPU s/Mf softirq s/Mf x ceiling note" ||
		head(rat.String()) != "ratio size value" {
		t.Errorf("an unrepeated run's tables changed:\n%s\n%s", tab.String(), rat.String())
	}
	b, err := json.Marshal(once)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"rounds"`, `"spread"`} {
		if strings.Contains(string(b), k) {
			t.Errorf("an unrepeated run's JSON has %s: %s", k, b)
		}
	}
}
