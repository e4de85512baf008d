package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// A Ratio is one receiver's rate over another's at one frame size, from
// cells of the same run: the side-by-side comparisons the project sets
// bars on, and the references that say whose cost a gap is.
type Ratio struct {
	What string `json:"what"`
	Size int    `json:"size"`
	// Rate is the offered rate of both cells (frames/s, 0: full speed).
	Rate  float64 `json:"offered_fps,omitempty"`
	Value float64 `json:"value"`
	// Bar is the least Value the project asks for, or with Lower the
	// greatest (0: a reference, no bar, or cells fed by gen's slow xsk
	// engine, which every receiver keeps up with: the ratio then measures
	// the generator).
	Bar float64 `json:"bar,omitempty"`
	// Lower says a lower Value is better: a ratio of CPU per frame.
	Lower bool `json:"lower_is_better,omitempty"`
	Met   bool `json:"met,omitempty"`
	// Spread and Rounds, in a repeated run only: Value is then the median
	// over the Rounds this ratio could be taken in, each ratio taken
	// between cells of one round, and Met judges the median.
	Spread *Spread `json:"spread,omitempty"`
	Rounds int     `json:"rounds,omitempty"`
}

// comparisons are the ratios reported, numerator over denominator: of
// frames/s received, or with cpu of receiver CPU per frame, where the bar
// is the most the project allows.
var comparisons = []struct {
	num, den, what string
	bar            float64
	cpu            bool
}{
	{"xdp-drop", "xdp-drop-bare", "gen live / bare live frames", 0.9, false},
	{"xdpipe-spin", "udp", "rxdrop spin / Go UDP socket", 5, false},
	{"xdpipe-wakeup", "xdpipe-spin", "rxdrop wakeup / spin", 0.9, false},
	{"xdpipe-track", "xdpipe-spin", "rxdrop accounting / --track=false", 0.9, false},
	{"xdpipe-l2fwd", "xdpipe-spin", "l2fwd / rxdrop", 0.7, false},
	{"xdpipe-count-delay", "xdpipe-count", "run --rx-delay / without", 0.97, false},
	{"c-xsk-l2fwd", "c-xsk-rxdrop", "C l2fwd / C rxdrop (libxdp)", 0, false},
	{"xdpipe-track", "c-xsk-rxdrop", "rxdrop, its defaults / C rxdrop (libxdp)", 1.1, false},
	{"xdpipe-spin", "c-xsk-rxdrop", "rxdrop --track=false / C rxdrop (libxdp)", 0, false},
	{"xdpipe-l2fwd", "c-xsk-l2fwd", "l2fwd / C l2fwd (libxdp)", 1.05, false},
	{"xdpipe-track", "asavie-xdp", "rxdrop, its defaults / asavie/xdp", 1.0, false},
	{"xdpipe-spin", "asavie-xdp", "rxdrop --track=false / asavie/xdp", 1.1, false},
	{"xdpipe-steer10k", "xdpipe-spin", "10,000 rules / redirect only", 0.85, false},
	{"xdpipe-wakeup", "asavie-poll", "rxdrop wakeup / asavie poll(2), CPU per frame", 0.5, true},
	{"xdpipe-wakeup", "c-xsk-poll", "rxdrop wakeup / C rxdrop poll(2) (libxdp), CPU per frame", 0, true},
	{"c-xsk-rxdrop", "asavie-poll", "C rxdrop / asavie poll(2), CPU per frame", 0, true},
	{"xdpipe-spin", "asavie-poll", "rxdrop spin / asavie poll(2), CPU per frame", 0, true},
}

// Compare computes the comparisons for every size where both cells ran and
// received something; in a repeated run, their spread over the rounds.
func (rep *Report) Compare() []Ratio {
	if len(rep.Rounds) > 1 {
		return rep.compareRounds()
	}
	return rep.compareResults()
}

// compareResults is Compare over the cells in Results.
func (rep *Report) compareResults() []Ratio {
	type key struct {
		rx   string
		size int
		rate float64
	}
	cells := map[key]Result{}
	for _, r := range rep.Results {
		if r.Error == "" && r.Fps > 0 {
			cells[key{r.Receiver, r.Size, r.Rate}] = r
		}
	}
	live := func(r Result) bool { return r.Engine == "live" || r.Engine == "bare" }
	var out []Ratio
	for _, c := range comparisons {
		for _, size := range rep.Sizes {
			for _, rate := range rep.rates() {
				num, okN := cells[key{c.num, size, rate}]
				den, okD := cells[key{c.den, size, rate}]
				if !okN || !okD {
					continue
				}
				r := Ratio{What: c.what, Size: size, Rate: rate, Value: num.Fps / den.Fps, Bar: c.bar, Lower: c.cpu}
				if c.cpu {
					if den.CPUPerMframe == 0 {
						continue
					}
					r.Value = num.CPUPerMframe / den.CPUPerMframe
				}
				if !live(num) || !live(den) {
					r.Bar = 0
				}
				r.Met = r.meets()
				out = append(out, r)
			}
		}
	}
	return out
}

// rates are the report's offered rates: 0 alone (full speed) when it has
// none.
func (rep *Report) rates() []float64 {
	if len(rep.Rates) == 0 {
		return []float64{0}
	}
	return rep.Rates
}

// at is a ratio's size column: the frame size, and the offered rate in a
// sweep.
func (rep *Report) at(r Ratio) string {
	if len(rep.Rates) == 0 {
		return fmt.Sprint(r.Size)
	}
	return fmt.Sprintf("%d @%s", r.Size, RateText(r.Rate))
}

// meets judges Value against the bar.
func (r Ratio) meets() bool {
	if r.Lower {
		return r.Bar > 0 && r.Value <= r.Bar
	}
	return r.Bar > 0 && r.Value >= r.Bar
}

// verdict says how a ratio stands against its bar.
func (r Ratio) verdict() string {
	switch {
	case r.Bar == 0:
		return ""
	case r.Lower && r.Met:
		return fmt.Sprintf("bar <= %g: met", r.Bar)
	case r.Lower:
		return fmt.Sprintf("bar <= %g: NOT met", r.Bar)
	case r.Met:
		return fmt.Sprintf("bar %g: met", r.Bar)
	}
	return fmt.Sprintf("bar %g: NOT met", r.Bar)
}

// WriteRatios prints the ratios as a table; a repeated run's with their
// median, minimum and maximum over the rounds.
func (rep *Report) WriteRatios(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Rounds) > 1 {
		fmt.Fprintf(tw, "ratio\tsize\tmedian\tmin\tmax\trounds\t\n")
		for _, r := range rep.Compare() {
			fmt.Fprintf(tw, "%s\t%s\t%.2fx\t%.2fx\t%.2fx\t%d\t%s\n", r.What, rep.at(r), r.Value, r.Spread.Min, r.Spread.Max,
				r.Rounds, r.verdict())
		}
		return tw.Flush()
	}
	fmt.Fprintf(tw, "ratio\tsize\tvalue\t\n")
	for _, r := range rep.Compare() {
		fmt.Fprintf(tw, "%s\t%s\t%.2fx\t%s\n", r.What, rep.at(r), r.Value, r.verdict())
	}
	return tw.Flush()
}

// writeRatiosMarkdown writes the ratios as a Markdown table.
func (rep *Report) writeRatiosMarkdown(w io.Writer) {
	ratios := rep.Compare()
	if len(ratios) == 0 {
		return
	}
	if len(rep.Rounds) > 1 {
		fmt.Fprintf(w, "\n| ratio (same round, over %d rounds) | size | median | min | max | bar |\n", len(rep.Rounds))
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
		for _, r := range ratios {
			fmt.Fprintf(w, "| %s | %s | %.2fx | %.2fx | %.2fx | %s |\n", r.What, rep.at(r), r.Value, r.Spread.Min, r.Spread.Max, r.verdict())
		}
		return
	}
	fmt.Fprintln(w, "\n| ratio (same run) | size | value | bar |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	for _, r := range ratios {
		fmt.Fprintf(w, "| %s | %s | %.2fx | %s |\n", r.What, rep.at(r), r.Value, r.verdict())
	}
}
