package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// WriteTable prints the report as a table.
func (rep *Report) WriteTable(w io.Writer) error {
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
