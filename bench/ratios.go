package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// A Ratio is one receiver's rate over another's at one frame size, from
// cells of the same run: the side-by-side comparisons the issues set bars
// on, and the references that say whose cost a gap is.
type Ratio struct {
	What  string  `json:"what"`
	Size  int     `json:"size"`
	Value float64 `json:"value"`
	// Bar is the least Value the project asks for (0: a reference, no bar,
	// or cells fed by gen's slow xsk engine, which every receiver keeps up
	// with: the ratio then measures the generator).
	Bar float64 `json:"bar,omitempty"`
	Met bool    `json:"met,omitempty"`
	// Spread and Rounds, in a repeated run only: Value is then the median
	// over the Rounds this ratio could be taken in, each ratio taken
	// between cells of one round, and Met judges the median.
	Spread *Spread `json:"spread,omitempty"`
	Rounds int     `json:"rounds,omitempty"`
}

// comparisons are the ratios reported, numerator over denominator.
var comparisons = []struct {
	num, den, what string
	bar            float64
}{
	{"xdp-drop", "xdp-drop-bare", "gen live / bare live frames", 0.9},
	{"xdpipe-spin", "udp", "rxdrop spin / Go UDP socket", 5},
	{"xdpipe-wakeup", "xdpipe-spin", "rxdrop wakeup / spin", 0.9},
	{"xdpipe-l2fwd", "xdpipe-spin", "l2fwd / rxdrop", 0.7},
	{"c-xsk-l2fwd", "c-xsk-rxdrop", "C l2fwd / C rxdrop (libxdp)", 0},
	{"xdpipe-spin", "c-xsk-rxdrop", "rxdrop / C rxdrop (libxdp)", 0},
	{"xdpipe-l2fwd", "c-xsk-l2fwd", "l2fwd / C l2fwd (libxdp)", 0},
	{"asavie-xdp", "xdpipe-spin", "asavie/xdp / rxdrop spin", 0},
	{"xdpipe-steer10k", "xdpipe-spin", "10,000 rules / redirect only", 0},
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
	}
	fps := map[key]float64{}
	live := map[key]bool{}
	for _, r := range rep.Results {
		if r.Error == "" && r.Fps > 0 {
			fps[key{r.Receiver, r.Size}] = r.Fps
			live[key{r.Receiver, r.Size}] = r.Engine == "live" || r.Engine == "bare"
		}
	}
	var out []Ratio
	for _, c := range comparisons {
		for _, size := range rep.Sizes {
			num, den := fps[key{c.num, size}], fps[key{c.den, size}]
			if num == 0 || den == 0 {
				continue
			}
			v := num / den
			bar := c.bar
			if !live[key{c.num, size}] || !live[key{c.den, size}] {
				bar = 0
			}
			out = append(out, Ratio{What: c.what, Size: size, Value: v, Bar: bar, Met: bar > 0 && v >= bar})
		}
	}
	return out
}

// verdict says how a ratio stands against its bar.
func (r Ratio) verdict() string {
	switch {
	case r.Bar == 0:
		return ""
	case r.Met:
		return fmt.Sprintf("bar %.2g: met", r.Bar)
	}
	return fmt.Sprintf("bar %.2g: NOT met", r.Bar)
}

// WriteRatios prints the ratios as a table; a repeated run's with their
// median, minimum and maximum over the rounds.
func (rep *Report) WriteRatios(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Rounds) > 1 {
		fmt.Fprintf(tw, "ratio\tsize\tmedian\tmin\tmax\trounds\t\n")
		for _, r := range rep.Compare() {
			fmt.Fprintf(tw, "%s\t%d\t%.2fx\t%.2fx\t%.2fx\t%d\t%s\n", r.What, r.Size, r.Value, r.Spread.Min, r.Spread.Max,
				r.Rounds, r.verdict())
		}
		return tw.Flush()
	}
	fmt.Fprintf(tw, "ratio\tsize\tvalue\t\n")
	for _, r := range rep.Compare() {
		fmt.Fprintf(tw, "%s\t%d\t%.2fx\t%s\n", r.What, r.Size, r.Value, r.verdict())
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
			fmt.Fprintf(w, "| %s | %d | %.2fx | %.2fx | %.2fx | %s |\n", r.What, r.Size, r.Value, r.Spread.Min, r.Spread.Max, r.verdict())
		}
		return
	}
	fmt.Fprintln(w, "\n| ratio (same run) | size | value | bar |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	for _, r := range ratios {
		fmt.Fprintf(w, "| %s | %d | %.2fx | %s |\n", r.What, r.Size, r.Value, r.verdict())
	}
}
