// Package chart draws a benchmark report (package bench) as a PNG with
// gonum/plot. It is its own package, used by its own command
// (cmd/xdpipe-chart), so that the xdpipe binary does not link the plotting
// library and its fonts.
package chart

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/xdpipe/xdpipe/bench"
)

// WritePNG draws a report's frames/s by frame size, one line per
// receiver, into a PNG file at path.
func WritePNG(rep *bench.Report, path string) error {
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
