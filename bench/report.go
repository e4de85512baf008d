package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report as a table; a repeated run's with the
// medians over the rounds and the least and greatest rate and ratio to the
// ceiling.
func (rep *Report) WriteTable(w io.Writer) error {
	if len(rep.Rounds) > 1 {
		return rep.writeSpreadTable(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "receiver\tsize\tgen\tsent Mfps\trx Mfps\tGbit/s\trx CPU s/Mf\tsoftirq s/Mf\tx ceiling\tnote\t\n")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t-\t%s\t\n", r.Receiver, r.Size, r.genText(), short(r.Error))
			continue
		}
		note := ""
		if r.Received == 0 {
			note = "received nothing"
		}
		if r.Disturbed {
			note = fmt.Sprintf("disturbed after %d runs (%s)", r.Attempts, r.OtherTop)
		} else if r.Attempts > 1 {
			note = fmt.Sprintf("clean on run %d", r.Attempts)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f\t%.3f\t%.2f\t%.3f\t%.3f\t%.2f\t%s\t\n",
			r.Receiver, r.Size, r.genText(), r.SentFps/1e6, r.Fps/1e6, r.Gbps, r.CPUPerMframe,
			r.SoftirqPerMframe, r.RatioToCeiling, note)
	}
	return tw.Flush()
}

// WriteProfiles writes each cell's generator CPU profile (Config.Perf), one
// line a cell; nothing if no cell has one.
func (rep *Report) WriteProfiles(w io.Writer) {
	header := false
	for _, r := range rep.Results {
		if r.GenProfile == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\ngenerator CPU, perf cpu-clock: top symbols (mean shares over the rounds)")
			header = true
		}
		fmt.Fprintf(w, "%-14s %5d B %4s: %s\n", r.Receiver, r.Size, RateText(r.Rate), profileText(r.GenProfile))
	}
}

// writeSpreadTable is WriteTable for a repeated run.
func (rep *Report) writeSpreadTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "receiver\tsize\tgen\trounds\tsent Mfps\trx Mfps\tmin\tmax\trx CPU s/Mf\tsoftirq s/Mf\tx ceiling\tmin\tmax\tnote\t\n")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t0\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t\n", r.Receiver, r.Size, r.genText(), short(r.Error))
			continue
		}
		sp := r.Spread
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\t%.2f\t%.2f\t%s\t\n",
			r.Receiver, r.Size, r.genText(), sp.Rounds, r.SentFps/1e6, r.Fps/1e6, sp.Fps.Min/1e6, sp.Fps.Max/1e6,
			r.CPUPerMframe, r.SoftirqPerMframe, r.RatioToCeiling, sp.RatioToCeiling.Min, sp.RatioToCeiling.Max,
			spreadNote(r))
	}
	return tw.Flush()
}

// spreadNote is a repeated run's cell's note: rounds that failed, that
// received nothing, or that stayed disturbed.
func spreadNote(r Result) string {
	var notes []string
	if r.Spread.Failed > 0 {
		notes = append(notes, fmt.Sprintf("failed in %d of %d rounds", r.Spread.Failed, r.Spread.Failed+r.Spread.Rounds))
	}
	if r.Spread.Fps.Min == 0 {
		notes = append(notes, "received nothing in a round")
	}
	if r.Disturbed {
		notes = append(notes, "disturbed in a round")
	}
	return strings.Join(notes, ", ")
}

func short(s string) string {
	if len(s) > 70 {
		return s[:67] + "..."
	}
	return s
}

// ReadJSON reads a report WriteJSON wrote.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// WriteJSON writes the report as indented JSON to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteMarkdown writes the report as a Markdown table (for a README).
func (rep *Report) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "Kernel %s, %d CPUs, %.0f s per cell, %s.\n\n", rep.Kernel, rep.CPUs, rep.Duration, rep.Started.Format("2006-01-02 15:04 UTC"))
	if len(rep.Rounds) > 1 {
		rep.writeSpreadMarkdown(w)
		rep.writeRatiosMarkdown(w)
		rep.writeSweepMarkdown(w)
		rep.writeProfilesMarkdown(w)
		return nil
	}
	fmt.Fprintln(w, "| receiver | size | generator | sent Mfps | rx Mfps | Gbit/s | rx CPU s/Mframe | x ceiling | note |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---|")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "| %s | %d | %s | | | | | | %s |\n", r.Receiver, r.Size, r.genText(), r.Error)
			continue
		}
		note := ""
		switch {
		case r.Received == 0:
			note = "received nothing"
		case r.Disturbed:
			note = "disturbed"
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.3f | %.3f | %.2f | %.3f | %.2f | %s |\n",
			r.Receiver, r.Size, r.genText(), r.SentFps/1e6, r.Fps/1e6, r.Gbps, r.CPUPerMframe, r.RatioToCeiling, note)
	}
	rep.writeRatiosMarkdown(w)
	rep.writeSweepMarkdown(w)
	rep.writeProfilesMarkdown(w)
	return nil
}

// writeProfilesMarkdown is WriteProfiles as a Markdown table.
func (rep *Report) writeProfilesMarkdown(w io.Writer) {
	if !slices.ContainsFunc(rep.Results, func(r Result) bool { return r.GenProfile != nil }) {
		return
	}
	fmt.Fprint(w, "\nThe generator's CPU under `perf record -e cpu-clock`, the top symbols:\n\n")
	fmt.Fprintln(w, "| receiver | size | generator CPU |")
	fmt.Fprintln(w, "|---|---:|---|")
	for _, r := range rep.Results {
		if r.GenProfile != nil {
			fmt.Fprintf(w, "| %s | %d | %s |\n", r.Receiver, r.Size, profileText(r.GenProfile))
		}
	}
}

// genText is a cell's generator with its offered rate, if not full speed.
func (r Result) genText() string {
	if r.Rate == 0 {
		return r.Engine
	}
	return r.Engine + " " + RateText(r.Rate) + "/s"
}

// sweepRow is one cell of a sweep: its CPU per frame and kernel drops as
// median, least and greatest over the rounds (all three the same figure
// in a run of one round).
func sweepRow(r Result) (rounds int, cpu, drops Spread) {
	if r.Spread != nil {
		return r.Spread.Rounds, r.Spread.CPUPerMframe, r.Spread.Drops
	}
	d := float64(r.Drops)
	return 1, Spread{r.CPUPerMframe, r.CPUPerMframe, r.CPUPerMframe}, Spread{d, d, d}
}

// WriteSweep prints a report with offered rates (Config.Rates) as the
// sweep: per receiver and rate, the received rate, receiver CPU per
// million frames and the kernel's drops at the socket, each with its
// median, least and greatest over the rounds. A report without rates
// prints nothing.
func (rep *Report) WriteSweep(w io.Writer) error {
	if len(rep.Rates) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "receiver\tsize\toffered/s\trounds\trx Mfps\tCPU s/Mf\tmin\tmax\tkernel drops\tmin\tmax\t\n")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t0\t-\t-\t-\t-\t-\t-\t-\t%s\n", r.Receiver, r.Size, RateText(r.Rate), short(r.Error))
			continue
		}
		n, cpu, drops := sweepRow(r)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.4f\t%.3f\t%.3f\t%.3f\t%.0f\t%.0f\t%.0f\t\n", r.Receiver, r.Size, RateText(r.Rate), n,
			r.Fps/1e6, cpu.Median, cpu.Min, cpu.Max, drops.Median, drops.Min, drops.Max)
	}
	return tw.Flush()
}

// writeSweepMarkdown is WriteSweep as Markdown.
func (rep *Report) writeSweepMarkdown(w io.Writer) {
	if len(rep.Rates) == 0 {
		return
	}
	fmt.Fprintln(w, "\n| receiver | size | offered/s | rounds | rx Mfps | CPU s/Mframe (median) | min | max | kernel drops (median) | min | max |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "| %s | %d | %s | 0 | | | | | | | %s |\n", r.Receiver, r.Size, RateText(r.Rate), r.Error)
			continue
		}
		n, cpu, drops := sweepRow(r)
		fmt.Fprintf(w, "| %s | %d | %s | %d | %.4f | %.3f | %.3f | %.3f | %.0f | %.0f | %.0f |\n", r.Receiver, r.Size, RateText(r.Rate), n,
			r.Fps/1e6, cpu.Median, cpu.Min, cpu.Max, drops.Median, drops.Min, drops.Max)
	}
}

// writeSpreadMarkdown is WriteMarkdown's cell table for a repeated run.
func (rep *Report) writeSpreadMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Medians, least and greatest of %d rounds, the cells' order rotated each round.\n\n", len(rep.Rounds))
	fmt.Fprintln(w, "| receiver | size | generator | rounds | sent Mfps | rx Mfps | min | max | rx CPU s/Mframe | x ceiling | min | max | note |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "| %s | %d | %s | 0 | | | | | | | | | %s |\n", r.Receiver, r.Size, r.genText(), r.Error)
			continue
		}
		sp := r.Spread
		fmt.Fprintf(w, "| %s | %d | %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f | %.2f | %s |\n",
			r.Receiver, r.Size, r.genText(), sp.Rounds, r.SentFps/1e6, r.Fps/1e6, sp.Fps.Min/1e6, sp.Fps.Max/1e6,
			r.CPUPerMframe, r.RatioToCeiling, sp.RatioToCeiling.Min, sp.RatioToCeiling.Max, spreadNote(r))
	}
}
