package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t-\t%s\t\n", r.Receiver, r.Size, r.Engine, short(r.Error))
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
			r.Receiver, r.Size, r.Engine, r.SentFps/1e6, r.Fps/1e6, r.Gbps, r.CPUPerMframe,
			r.SoftirqPerMframe, r.RatioToCeiling, note)
	}
	return tw.Flush()
}

// writeSpreadTable is WriteTable for a repeated run.
func (rep *Report) writeSpreadTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "receiver\tsize\tgen\trounds\tsent Mfps\trx Mfps\tmin\tmax\trx CPU s/Mf\tsoftirq s/Mf\tx ceiling\tmin\tmax\tnote\t\n")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t0\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t\n", r.Receiver, r.Size, r.Engine, short(r.Error))
			continue
		}
		sp := r.Spread
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.2f\t%.2f\t%.2f\t%s\t\n",
			r.Receiver, r.Size, r.Engine, sp.Rounds, r.SentFps/1e6, r.Fps/1e6, sp.Fps.Min/1e6, sp.Fps.Max/1e6,
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
		return nil
	}
	fmt.Fprintln(w, "| receiver | size | generator | sent Mfps | rx Mfps | Gbit/s | rx CPU s/Mframe | x ceiling | note |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---|")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "| %s | %d | %s | | | | | | %s |\n", r.Receiver, r.Size, r.Engine, r.Error)
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
			r.Receiver, r.Size, r.Engine, r.SentFps/1e6, r.Fps/1e6, r.Gbps, r.CPUPerMframe, r.RatioToCeiling, note)
	}
	rep.writeRatiosMarkdown(w)
	return nil
}

// writeSpreadMarkdown is WriteMarkdown's cell table for a repeated run.
func (rep *Report) writeSpreadMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Medians, least and greatest of %d rounds, the cells' order rotated each round.\n\n", len(rep.Rounds))
	fmt.Fprintln(w, "| receiver | size | generator | rounds | sent Mfps | rx Mfps | min | max | rx CPU s/Mframe | x ceiling | min | max | note |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "| %s | %d | %s | 0 | | | | | | | | | %s |\n", r.Receiver, r.Size, r.Engine, r.Error)
			continue
		}
		sp := r.Spread
		fmt.Fprintf(w, "| %s | %d | %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f | %.2f | %s |\n",
			r.Receiver, r.Size, r.Engine, sp.Rounds, r.SentFps/1e6, r.Fps/1e6, sp.Fps.Min/1e6, sp.Fps.Max/1e6,
			r.CPUPerMframe, r.RatioToCeiling, sp.RatioToCeiling.Min, sp.RatioToCeiling.Max, spreadNote(r))
	}
}
