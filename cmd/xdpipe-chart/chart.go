package main

// The charts: a benchmark report (package bench) drawn as a PNG with
// gonum/plot.

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/xdpipe/xdpipe/bench"
)

// colors are the lines' colors, in the report's receiver order.
var colors = []color.RGBA{{0, 0, 0, 255}, {214, 39, 40, 255}, {31, 119, 180, 255}, {44, 160, 44, 255},
	{255, 127, 14, 255}, {148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {23, 190, 207, 255}}

// writePNG draws a report into a PNG file at path: frames/s by frame size,
// one line per receiver; or, for a sweep of offered rates, receiver CPU
// per frame and the kernel's drops against the rate (writeSweepPNG).
func writePNG(rep *bench.Report, path string) error {
	if len(rep.Rates) > 0 {
		return writeSweepPNG(rep, path)
	}
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

// writeSweepPNG draws a sweep (a report with offered rates) into a PNG
// file at path: above, receiver CPU seconds per million frames against
// the offered rate (log-log); below, the kernel's drops at the socket as
// a share of the frames sent. One line per receiver (and frame size, if
// several); a full-speed cell sits at the rate the generator reached.
// In a repeated run the points are medians.
func writeSweepPNG(rep *bench.Report, path string) error {
	cpu, drops := plot.New(), plot.New()
	cpu.Title.Text = fmt.Sprintf("xdpipe bench sweep: receiver CPU per frame by offered rate (veth, %s, %d CPUs)", rep.Kernel, rep.CPUs)
	cpu.Y.Label.Text = "receiver CPU s per million frames"
	cpu.Y.Scale, cpu.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	drops.Title.Text = "kernel drops at the socket (rx_dropped + rx_ring_full)"
	drops.Y.Label.Text = "% of frames sent"
	for _, p := range []*plot.Plot{cpu, drops} {
		p.X.Label.Text = "offered frames/s (full speed: what the generator reached)"
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
	}
	for i, rx := range rep.Receivers {
		for _, size := range rep.Sizes {
			var cpts, dpts plotter.XYs
			for _, r := range rep.Results {
				if r.Receiver != rx || r.Size != size || r.Error != "" || r.Received == 0 || r.CPUPerMframe <= 0 {
					continue
				}
				x := r.Rate
				if x == 0 {
					x = r.SentFps
				}
				cpts = append(cpts, plotter.XY{X: x, Y: r.CPUPerMframe})
				if r.Sent > 0 {
					dpts = append(dpts, plotter.XY{X: x, Y: 100 * float64(r.Drops) / float64(r.Sent)})
				}
			}
			name := rx
			if len(rep.Sizes) > 1 {
				name = fmt.Sprintf("%s %d B", rx, size)
			}
			c := colors[i%len(colors)]
			for _, pp := range []struct {
				p   *plot.Plot
				pts plotter.XYs
			}{{cpu, cpts}, {drops, dpts}} {
				if len(pp.pts) == 0 {
					continue
				}
				l, s, err := plotter.NewLinePoints(pp.pts)
				if err != nil {
					return err
				}
				l.Color, s.Color = c, c
				l.Width = vg.Points(1.5)
				s.Shape = draw.CircleGlyph{}
				pp.p.Add(l, s)
				pp.p.Legend.Add(name, l, s)
			}
		}
	}
	drops.Y.Min = 0
	return saveStacked(path, cpu, drops)
}

// saveStacked draws plots one above the other into a PNG file at path.
func saveStacked(path string, plots ...*plot.Plot) error {
	w, h := 10*vg.Inch, vg.Length(5*len(plots))*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Points(12), PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(12)}
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeLatencyPNG draws a latency report into a PNG file at path: above,
// each pair's closed-loop round trips by percentile, on HdrHistogram's
// log axis (1/(1-percentile)); below, each pair's p50 and p99 against the
// rate offered (the closed loop at the rate it reached). Both in
// microseconds, log scale; a repeated run draws its medians, and the
// distribution of the round with the median p99.
func writeLatencyPNG(rep *bench.LatencyReport, path string) error {
	dist, load := plot.New(), plot.New()
	dist.Title.Text = fmt.Sprintf("xdpipe bench latency: closed-loop round trips by percentile (veth, %s, %d CPUs)", rep.Kernel, rep.CPUs)
	dist.X.Label.Text = "percentile"
	dist.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for _, p := range []struct {
		x     float64
		label string
	}{{1, "0%"}, {2, "50%"}, {10, "90%"}, {100, "99%"}, {1000, "99.9%"}, {10000, "99.99%"}, {100000, "99.999%"}} {
		ticks = append(ticks, plot.Tick{Value: p.x, Label: p.label})
	}
	dist.X.Tick.Marker = plot.ConstantTicks(ticks)
	load.Title.Text = "round trips against the offered rate: p50 solid, p99 dashed"
	load.X.Label.Text = "messages/s offered (closed loop: the rate it reached)"
	load.X.Scale, load.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	for _, p := range []*plot.Plot{dist, load} {
		p.Y.Label.Text = "round trip (us)"
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
	}
	line := func(p *plot.Plot, pts plotter.XYs, i int, dashed bool, name string) error {
		if len(pts) == 0 {
			return nil
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		// Black is the axes' and the text's: lines start at the next color.
		l.Color, l.Width = colors[(i+1)%len(colors)], vg.Points(1.5)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		if name != "" {
			p.Legend.Add(name, l)
		}
		return nil
	}
	for i, pair := range rep.Pairs {
		var dpts, p50, p99 plotter.XYs
		for _, c := range rep.Cells {
			if c.Pair != pair || c.Error != "" || c.Count == 0 {
				continue
			}
			x := c.Offered
			if c.Load == 0 {
				x = c.Rate
				for _, d := range c.Dist {
					if d.Percentile < 100 && d.Micros > 0 {
						dpts = append(dpts, plotter.XY{X: 1 / (1 - d.Percentile/100), Y: d.Micros})
					}
				}
			}
			if x > 0 && c.P50 > 0 && c.P99 > 0 {
				p50 = append(p50, plotter.XY{X: x, Y: c.P50})
				p99 = append(p99, plotter.XY{X: x, Y: c.P99})
			}
		}
		slices.SortFunc(p50, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		slices.SortFunc(p99, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		if err := line(dist, dpts, i, false, pair); err != nil {
			return err
		}
		if err := line(load, p50, i, false, pair); err != nil {
			return err
		}
		if err := line(load, p99, i, true, ""); err != nil {
			return err
		}
	}
	return saveStacked(path, dist, load)
}
