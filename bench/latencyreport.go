package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// latencyComparisons are the latency ratios reported, numerator's round
// trip over denominator's at one percentile of the closed loop, lower
// better; the bars are the most the project allows (0: a reference).
var latencyComparisons = []struct {
	num, den, what string
	p50Bar, p99Bar float64
}{
	{"ping-reflect", "kernel", "xdpipe ping -> run reflect (spin, --fill-low 256) / sockperf -> sockperf server", 0.3, 0.5},
	{"sockperf-reflect", "kernel", "sockperf -> run reflect (spin, --fill-low 256) / sockperf -> sockperf server", 0.7, 0.7},
	{"ping-reflect", "ping-c-reflect", "run reflect / C reflector (libxdp), both from xdpipe ping", 1.05, 1.05},
	{"ping-c-reflect", "kernel", "xdpipe ping -> C reflector / sockperf -> sockperf server: the reference under the first bar", 0, 0},
	{"sockperf-c-reflect", "kernel", "sockperf -> C reflector / sockperf -> sockperf server: the reference under the second bar", 0, 0},
	{"ping-reflect-redirect", "ping-c-reflect", "run reflect without rules / C reflector: the pipeline alone, both programs redirecting every frame", 0, 0},
	{"ping-reflect", "ping-reflect-redirect", "run reflect: steering rules / without (the steering program's cost)", 0, 0},
	{"ping-echo", "kernel", "xdpipe ping -> Go UDP echo / sockperf -> sockperf server", 0, 0},
	{"ping-reflect-fullring", "ping-reflect", "run reflect: the whole fill ring / --fill-low 256", 0, 0},
	{"ping-reflect-busypoll", "ping-reflect", "run reflect: busy polling / spinning", 0, 0},
	{"ping-reflect-wakeup", "ping-reflect", "run reflect: wakeup (naps) / spinning", 0, 0},
	{"ping-reflect-poll", "ping-reflect", "run reflect: wakeup --coalesce 0 / spinning", 0, 0},
	{"ping-reflect-drain", "ping-reflect", "run reflect: TX drain 100 us / sent at once", 0, 0},
	{"ping-reflect-unpinned", "ping-reflect", "run reflect: unpinned / pinned to its own CPU", 0, 0},
}

// closedLoop is a round's closed-loop cells by pair, those that measured.
func closedLoop(cells []LatencyCell) map[string]LatencyCell {
	m := map[string]LatencyCell{}
	for _, c := range cells {
		if c.Load == 0 && c.Error == "" && c.Count > 0 {
			m[c.Pair] = c
		}
	}
	return m
}

// compareLatency takes the ratios in each round, and in a repeated run
// reports their median, minimum and maximum.
func (rep *LatencyReport) compareLatency() []Ratio {
	rounds := rep.Rounds
	if len(rounds) == 0 {
		rounds = [][]LatencyCell{rep.Cells}
	}
	var out []Ratio
	for _, c := range latencyComparisons {
		for _, pc := range []struct {
			name string
			bar  float64
			of   func(LatencyCell) float64
		}{
			{"p50", c.p50Bar, func(l LatencyCell) float64 { return l.P50 }},
			{"p99", c.p99Bar, func(l LatencyCell) float64 { return l.P99 }},
		} {
			var vals []float64
			for _, cells := range rounds {
				m := closedLoop(cells)
				num, okN := m[c.num]
				den, okD := m[c.den]
				if okN && okD && pc.of(den) > 0 {
					vals = append(vals, pc.of(num)/pc.of(den))
				}
			}
			if len(vals) == 0 {
				continue
			}
			s := spreadOf(vals)
			r := Ratio{What: pc.name + " " + c.what, Value: s.Median, Bar: pc.bar, Lower: true}
			if len(rep.Rounds) > 1 {
				r.Spread, r.Rounds = &s, len(vals)
			}
			r.Met = r.meets()
			out = append(out, r)
		}
	}
	return out
}

// aggregateLatency folds the rounds into one cell each: the median of each
// figure over the rounds the cell measured in, and the spread of the
// main ones.
func aggregateLatency(rounds [][]LatencyCell) []LatencyCell {
	type key struct {
		pair string
		load float64
	}
	var order []key
	byKey := map[key][]LatencyCell{}
	for _, cells := range rounds {
		for _, c := range cells {
			k := key{c.Pair, c.Load}
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], c)
		}
	}
	out := make([]LatencyCell, 0, len(order))
	for _, k := range order {
		var good []LatencyCell
		failed := 0
		for _, c := range byKey[k] {
			if c.Error == "" && c.Count > 0 {
				good = append(good, c)
			} else {
				failed++
			}
		}
		if len(good) == 0 {
			a := byKey[k][len(byKey[k])-1]
			a.Spread = &LatencySpread{Failed: failed}
			out = append(out, a)
			continue
		}
		med := func(f func(LatencyCell) float64) Spread {
			v := make([]float64, len(good))
			for i, c := range good {
				v[i] = f(c)
			}
			return spreadOf(v)
		}
		// The distribution drawn is the round with the median p99.
		a := good[0]
		p99 := med(func(c LatencyCell) float64 { return c.P99 })
		for _, c := range good {
			if c.P99 == p99.Median {
				a = c
			}
		}
		a.Spread = &LatencySpread{Rounds: len(good), Failed: failed,
			Rate: med(func(c LatencyCell) float64 { return c.Rate }),
			P50:  med(func(c LatencyCell) float64 { return c.P50 }),
			P99:  p99,
			P999: med(func(c LatencyCell) float64 { return c.P999 }),
			Max:  med(func(c LatencyCell) float64 { return c.Max })}
		a.Rate, a.P50, a.P99, a.P999, a.Max = a.Spread.Rate.Median, a.Spread.P50.Median, p99.Median, a.Spread.P999.Median, a.Spread.Max.Median
		a.Offered = med(func(c LatencyCell) float64 { return c.Offered }).Median
		a.P90 = med(func(c LatencyCell) float64 { return c.P90 }).Median
		a.P9999 = med(func(c LatencyCell) float64 { return c.P9999 }).Median
		a.ClientCPU = med(func(c LatencyCell) float64 { return c.ClientCPU }).Median
		a.ServerCPU = med(func(c LatencyCell) float64 { return c.ServerCPU }).Median
		a.ClientCore = med(func(c LatencyCell) float64 { return c.ClientCore }).Median
		a.ServerCore = med(func(c LatencyCell) float64 { return c.ServerCore }).Median
		var sent, recv, lost, count uint64
		for _, c := range good {
			sent, recv, lost, count = sent+c.Sent, recv+c.Received, lost+c.Lost, count+c.Count
		}
		a.Sent, a.Received, a.Lost, a.Count = sent, recv, lost, count
		out = append(out, a)
	}
	return out
}

// ReadLatencyJSON reads a report WriteJSON wrote.
func ReadLatencyJSON(path string) (*LatencyReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep LatencyReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Kind != "latency" {
		return nil, fmt.Errorf("%s: not a latency report", path)
	}
	return &rep, nil
}

// IsLatencyJSON reports whether the JSON report at path is a latency
// matrix's.
func IsLatencyJSON(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var k struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(b, &k) == nil && k.Kind == "latency"
}

// WriteJSON writes the report as indented JSON to path.
func (rep *LatencyReport) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// header says what every figure is.
func (rep *LatencyReport) header() string {
	rounds := ""
	if len(rep.Rounds) > 1 {
		rounds = fmt.Sprintf("; figures are medians over %d rounds, (min-max) beside the main ones", len(rep.Rounds))
	}
	warm := ""
	if rep.Warmup > 0 {
		warm = fmt.Sprintf(", after a closed loop of %.3g s against each reflector that is not counted", rep.Warmup)
	}
	return fmt.Sprintf("Round trips in microseconds, %d-byte UDP payloads, client on CPU %d in one namespace and reflector on CPU %d "+
		"in another across a veth pair; %.0f s per cell%s; kernel %s, %d CPUs, %s%s. Open loops run at a fraction of the pair's "+
		"closed-loop rate, and take each round trip from the time its message was due. CPU: seconds used per second, "+
		"by the process and (in brackets) by everything on its CPU.",
		rep.Payload, clientCPU, serverCPU, rep.Duration, warm, rep.Kernel, rep.CPUs, rep.Started.Format("2006-01-02 15:04 UTC"), rounds)
}

// row is one cell's figures as table columns.
func (rep *LatencyReport) row(c LatencyCell) []string {
	if c.Error != "" {
		return []string{c.Pair, loadText(c.Load), "error: " + c.Error}
	}
	f := func(v float64, s func(*LatencySpread) Spread) string {
		if c.Spread == nil || c.Spread.Rounds < 2 {
			return fmt.Sprintf("%.1f", v)
		}
		sp := s(c.Spread)
		return fmt.Sprintf("%.1f (%.1f-%.1f)", v, sp.Min, sp.Max)
	}
	offered := "-"
	if c.Load > 0 {
		offered = fmt.Sprintf("%.0f", c.Offered)
	}
	return []string{c.Pair, loadText(c.Load), offered, fmt.Sprintf("%.0f", c.Rate),
		f(c.P50, func(s *LatencySpread) Spread { return s.P50 }), fmt.Sprintf("%.1f", c.P90),
		f(c.P99, func(s *LatencySpread) Spread { return s.P99 }),
		f(c.P999, func(s *LatencySpread) Spread { return s.P999 }), fmt.Sprintf("%.1f", c.P9999),
		f(c.Max, func(s *LatencySpread) Spread { return s.Max }),
		fmt.Sprint(c.Count), fmt.Sprint(c.Lost),
		fmt.Sprintf("%.2f (%.2f)", c.ClientCPU, c.ClientCore), fmt.Sprintf("%.2f (%.2f)", c.ServerCPU, c.ServerCore)}
}

var latencyColumns = []string{"pair", "load", "offered/s", "done/s", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count", "lost",
	"client CPU", "reflector CPU"}

// WriteTable prints the matrix and its ratios.
func (rep *LatencyReport) WriteTable(w io.Writer) error {
	fmt.Fprintln(w, rep.header())
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(latencyColumns, "\t")+"\t")
	for _, c := range rep.Cells {
		fmt.Fprintln(tw, strings.Join(rep.row(c), "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio (closed loop, same round)\tmedian\tmin\tmax\t\t")
	for _, r := range rep.Ratios {
		fmt.Fprintln(tw, strings.Join(ratioRow(r), "\t")+"\t")
	}
	return tw.Flush()
}

// WriteMarkdown writes the matrix, the pairs and the ratios as Markdown.
func (rep *LatencyReport) WriteMarkdown(w io.Writer) error {
	fmt.Fprintln(w, rep.header())
	fmt.Fprintln(w)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintf(w, "\n| %s |\n|---|---|%s\n", strings.Join(latencyColumns, " | "), strings.Repeat("---:|", len(latencyColumns)-2))
	for _, c := range rep.Cells {
		fmt.Fprintf(w, "| %s |\n", strings.Join(rep.row(c), " | "))
	}
	fmt.Fprintln(w, "\n| ratio (closed loop, same round) | median | min | max | bar |\n|---|---:|---:|---:|---|")
	for _, r := range rep.Ratios {
		fmt.Fprintf(w, "| %s |\n", strings.Join(ratioRow(r), " | "))
	}
	return nil
}

// ratioRow is a ratio's columns: what, median, min, max and the verdict.
func ratioRow(r Ratio) []string {
	lo, hi := r.Value, r.Value
	if r.Spread != nil {
		lo, hi = r.Spread.Min, r.Spread.Max
	}
	return []string{r.What, fmt.Sprintf("%.2fx", r.Value), fmt.Sprintf("%.2fx", lo), fmt.Sprintf("%.2fx", hi), r.verdict()}
}
