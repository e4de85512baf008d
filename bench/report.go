package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
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

// WritePNG draws frames/s by frame size, one line per receiver.
func (rep *Report) WritePNG(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("xdpipe bench: frames/s received by frame size (veth, %s, %d CPUs; cells that received nothing left out)", rep.Kernel, rep.CPUs)
	p.X.Label.Text = "frame size (bytes)"
	p.Y.Label.Text = "million frames/s"
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for _, s := range rep.Sizes {
		ticks = append(ticks, plot.Tick{Value: float64(s), Label: fmt.Sprint(s)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	colors := []color.RGBA{{0, 0, 0, 255}, {214, 39, 40, 255}, {31, 119, 180, 255}, {44, 160, 44, 255},
		{255, 127, 14, 255}, {148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {23, 190, 207, 255}}
	ymax := 0.0
	for i, rx := range rep.Receivers {
		var pts plotter.XYs
		for _, r := range rep.Results {
			if r.Receiver == rx && r.Error == "" && r.Size > 0 && r.Received > 0 {
				pts = append(pts, plotter.XY{X: float64(r.Size), Y: r.Fps / 1e6})
				ymax = math.Max(ymax, r.Fps/1e6)
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		c := colors[i%len(colors)]
		l.Color, s.Color = c, c
		l.Width = vg.Points(1.5)
		s.Shape = draw.CircleGlyph{}
		if strings.HasPrefix(rx, "xdp-drop") {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l, s)
		p.Legend.Add(rx, l, s)
	}
	p.Y.Min = 0
	if ymax > 0 {
		p.Y.Max = ymax * 1.1
	}
	if len(rep.Sizes) == 1 {
		s := float64(rep.Sizes[0])
		p.X.Min, p.X.Max = s/2, s*2
	}
	return p.Save(10*vg.Inch, 6*vg.Inch, path)
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
