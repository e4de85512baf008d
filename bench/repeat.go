package bench

import (
	"fmt"
	"slices"
)

// A Spread is one figure's minimum, median and maximum over the rounds of a
// repeated run (the median of an even count is the mean of the middle two).
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// spreadOf is the Spread of vs, which must not be empty.
func spreadOf(vs []float64) Spread {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Spread{Min: s[0], Median: med, Max: s[n-1]}
}

// CellSpread is how one cell varied over the rounds of a repeated run.
type CellSpread struct {
	// Rounds the cell ran in without an error; only these count below.
	Rounds int `json:"rounds"`
	// Failed is the count of rounds the cell ended with an error in.
	Failed         int    `json:"failed,omitempty"`
	Fps            Spread `json:"fps"`
	CPUPerMframe   Spread `json:"cpu_s_per_mframe"`
	RatioToCeiling Spread `json:"ratio_to_ceiling"`
	// Drops are the kernel's drops per round (Result.Drops).
	Drops Spread `json:"kernel_drops"`
}

// cell is one receiver at one frame size and offered rate.
type cell struct {
	rx   string
	size int
	rate float64
}

// roundOrder is the sequence round (from 0) runs the cells in, grouped by size
// (one MTU change a size), each group the rates in turn, each rate every
// receiver. Round 0 is the configured order; later rounds rotate the
// receivers by one place a round and alternate the direction of the sizes
// and of the rates, so that over len(receivers) rounds every receiver runs
// once in every position of its rate and drift in the machine's speed
// during a round hits every cell alike.
func roundOrder(round int, receivers []string, sizes []int, rates []float64) [][]cell {
	ss, rs := slices.Clone(sizes), slices.Clone(rates)
	if round%2 == 1 {
		slices.Reverse(ss)
		slices.Reverse(rs)
	}
	k := round % len(receivers)
	rxs := append(slices.Clone(receivers[k:]), receivers[:k]...)
	out := make([][]cell, 0, len(ss))
	for _, s := range ss {
		group := make([]cell, 0, len(rs)*len(rxs))
		for _, rate := range rs {
			for _, rx := range rxs {
				group = append(group, cell{rx, s, rate})
			}
		}
		out = append(out, group)
	}
	return out
}

// canonical sorts one round's results into the configured order: sizes
// outer, then rates, receivers inner, as round 0 runs them.
func canonical(results []Result, receivers []string, sizes []int, rates []float64) {
	rank := func(r Result) int {
		return (slices.Index(sizes, r.Size)*len(rates)+slices.Index(rates, r.Rate))*len(receivers) +
			slices.Index(receivers, r.Receiver)
	}
	slices.SortStableFunc(results, func(a, b Result) int { return rank(a) - rank(b) })
}

// setCeilingRatios fills in RatioToCeiling of one round's results: each
// cell's rate over the xdp-drop cell's of the same size and offered rate,
// where that ran clean of errors and received something.
func setCeilingRatios(results []Result) {
	type key struct {
		size int
		rate float64
	}
	ceiling := map[key]float64{}
	for _, r := range results {
		if r.Receiver == "xdp-drop" && r.Error == "" {
			ceiling[key{r.Size, r.Rate}] = r.Fps
		}
	}
	for i := range results {
		if c := ceiling[key{results[i].Size, results[i].Rate}]; c > 0 {
			results[i].RatioToCeiling = results[i].Fps / c
		}
	}
}

// aggregate folds the rounds of a repeated run into one Result a cell, in
// the order of rounds[0]: rates, per-frame CPU and the ratio to the ceiling
// are medians over the rounds the cell ran without error, with their
// spread in Spread; counts and seconds are totals over those rounds. A cell
// that failed in every round keeps its last error.
func aggregate(rounds [][]Result) []Result {
	if len(rounds) == 0 {
		return nil
	}
	var out []Result
	for _, first := range rounds[0] {
		var good, failed []Result
		for _, round := range rounds {
			for _, r := range round {
				if r.Receiver != first.Receiver || r.Size != first.Size || r.Rate != first.Rate {
					continue
				}
				if r.Error != "" {
					failed = append(failed, r)
				} else {
					good = append(good, r)
				}
			}
		}
		out = append(out, fold(good, failed))
	}
	return out
}

// fold is aggregate's work for one cell.
func fold(good, failed []Result) Result {
	if len(good) == 0 {
		r := failed[len(failed)-1]
		r.Spread = &CellSpread{Failed: len(failed)}
		return r
	}
	median := func(f func(Result) float64) Spread {
		vs := make([]float64, len(good))
		for i, r := range good {
			vs[i] = f(r)
		}
		return spreadOf(vs)
	}
	a := Result{Receiver: good[0].Receiver, Size: good[0].Size, Rate: good[0].Rate, Engine: good[0].Engine, Note: good[0].Note}
	a.Spread = &CellSpread{Rounds: len(good), Failed: len(failed),
		Fps:            median(func(r Result) float64 { return r.Fps }),
		CPUPerMframe:   median(func(r Result) float64 { return r.CPUPerMframe }),
		RatioToCeiling: median(func(r Result) float64 { return r.RatioToCeiling }),
		Drops:          median(func(r Result) float64 { return float64(r.Drops) }),
	}
	a.Fps, a.CPUPerMframe, a.RatioToCeiling = a.Spread.Fps.Median, a.Spread.CPUPerMframe.Median, a.Spread.RatioToCeiling.Median
	a.SentFps = median(func(r Result) float64 { return r.SentFps }).Median
	a.Gbps = median(func(r Result) float64 { return r.Gbps }).Median
	a.SoftirqPerMframe = median(func(r Result) float64 { return r.SoftirqPerMframe }).Median
	profiles, top := make([][]Symbol, len(good)), 0
	for i, r := range good {
		profiles[i], top = r.GenProfile, max(top, len(r.GenProfile))
	}
	a.GenProfile = meanProfile(profiles, top)
	for _, r := range good {
		a.Sent += r.Sent
		a.Received += r.Received
		a.Drops += r.Drops
		a.Seconds += r.Seconds
		a.RxCPUSecs += r.RxCPUSecs
		a.SoftirqSec += r.SoftirqSec
		a.MachineBusy += r.MachineBusy
		a.OtherCPU += r.OtherCPU
		a.Attempts = max(a.Attempts, r.Attempts)
		if r.Disturbed {
			a.Disturbed = true
			a.OtherTop = r.OtherTop
		}
		if r.Engine != a.Engine {
			a.Engine = "mixed"
		}
	}
	if len(failed) > 0 {
		a.Note = fmt.Sprintf("failed in %d of %d rounds: %s", len(failed), len(good)+len(failed), failed[len(failed)-1].Error)
	}
	return a
}

// compareRounds is Compare over a repeated run: each ratio is taken
// between cells of the same round, then folded over the rounds it could be
// taken in. Its bar applies only if it applied in every such round.
func (rep *Report) compareRounds() []Ratio {
	type key struct {
		what string
		size int
		rate float64
	}
	var keys []key
	vals := map[key][]float64{}
	bar := map[key]float64{}
	lower := map[key]bool{}
	for _, round := range rep.Rounds {
		one := Report{Sizes: rep.Sizes, Rates: rep.Rates, Results: round}
		for _, r := range one.compareResults() {
			k := key{r.What, r.Size, r.Rate}
			lower[k] = r.Lower
			if _, ok := vals[k]; !ok {
				keys = append(keys, k)
				bar[k] = r.Bar
			}
			vals[k] = append(vals[k], r.Value)
			if r.Bar == 0 {
				bar[k] = 0
			}
		}
	}
	// The order of the comparisons table, not of first appearance.
	rank := map[string]int{}
	for i, c := range comparisons {
		if _, ok := rank[c.what]; !ok {
			rank[c.what] = i
		}
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		if d := rank[a.what] - rank[b.what]; d != 0 {
			return d
		}
		if d := slices.Index(rep.Sizes, a.size) - slices.Index(rep.Sizes, b.size); d != 0 {
			return d
		}
		return slices.Index(rep.rates(), a.rate) - slices.Index(rep.rates(), b.rate)
	})
	out := make([]Ratio, 0, len(keys))
	for _, k := range keys {
		s := spreadOf(vals[k])
		r := Ratio{What: k.what, Size: k.size, Rate: k.rate, Value: s.Median, Bar: bar[k], Lower: lower[k],
			Spread: &s, Rounds: len(vals[k])}
		r.Met = r.meets()
		out = append(out, r)
	}
	return out
}
