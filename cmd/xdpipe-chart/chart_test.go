package main

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/xdpipe/xdpipe/bench"
)

// drawPNG draws rep with writePNG and reads the PNG back.
func drawPNG(t *testing.T, rep *bench.Report) image.Image {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chart.png")
	if err := writePNG(rep, p); err != nil {
		t.Fatal(err)
	}
	return readPNG(t, p)
}

// readPNG reads the PNG file at p.
func readPNG(t *testing.T, p string) image.Image {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("PNG: %v", err)
	}
	return img
}

// TestWritePNG draws a two-receiver report and reads the PNG back.
func TestWritePNG(t *testing.T) {
	rep := &bench.Report{Header: bench.Header{Kernel: "6.18", CPUs: 2}, Receivers: []string{"xdp-drop", "udp"}, Sizes: []int{64, 1500},
		Results: []bench.Result{{Receiver: "xdp-drop", Size: 64, Received: 10, Fps: 13e6}, {Receiver: "xdp-drop", Size: 1500, Received: 10, Fps: 3e6},
			{Receiver: "udp", Size: 64, Received: 10, Fps: 0.3e6}, {Receiver: "udp", Size: 1500, Error: "failed"}}}
	if b := drawPNG(t, rep).Bounds(); b.Dx() < 300 {
		t.Fatalf("PNG %v too small", b)
	}
}

// TestWriteSweepPNG draws a sweep (a report with offered rates): CPU per
// frame and drops against the rate, a full-speed cell at the rate reached.
func TestWriteSweepPNG(t *testing.T) {
	rep := &bench.Report{Header: bench.Header{Kernel: "6.18", CPUs: 2}, Receivers: []string{"xdpipe-wakeup", "asavie-poll"}, Sizes: []int{64},
		Rates: []float64{1e4, 1e6, 0}}
	for _, rx := range rep.Receivers {
		for _, rate := range rep.Rates {
			sent := rate
			if rate == 0 {
				sent = 4e6
			}
			rep.Results = append(rep.Results, bench.Result{Receiver: rx, Size: 64, Rate: rate, Sent: uint64(sent), SentFps: sent,
				Received: uint64(sent) - 10, Fps: sent, CPUPerMframe: 1e4 / sent, Drops: 10})
		}
	}
	rep.Results = append(rep.Results, bench.Result{Receiver: "c-xsk-rxdrop", Size: 64, Rate: 1e4, Error: "not built"})
	if b := drawPNG(t, rep).Bounds(); b.Dx() < 300 || b.Dy() < 600 {
		t.Fatalf("PNG %v: want two panels, one above the other", b)
	}
}

// TestWriteLatencyPNG draws a two-pair latency report: each pair's line
// must be in both panels (its color in the upper and the lower half).
func TestWriteLatencyPNG(t *testing.T) {
	dist := []bench.DistPoint{{Percentile: 0, Micros: 7}, {Percentile: 50, Micros: 8}, {Percentile: 99, Micros: 20}, {Percentile: 99.9, Micros: 60}}
	rep := &bench.LatencyReport{Kind: "latency", Header: bench.Header{Kernel: "6.18", CPUs: 2}, Pairs: []string{"kernel", "ping-reflect"}}
	for i, pair := range rep.Pairs {
		scale := float64(1 + 3*(1-i))
		var d []bench.DistPoint
		for _, p := range dist {
			d = append(d, bench.DistPoint{Percentile: p.Percentile, Micros: p.Micros * scale})
		}
		rate := 1e6 / (8 * scale)
		rep.Cells = append(rep.Cells,
			bench.LatencyCell{Pair: pair, Rate: rate, P50: 8 * scale, P99: 20 * scale, Count: 100, Dist: d},
			bench.LatencyCell{Pair: pair, Load: 0.5, Offered: rate / 2, Rate: rate / 2, P50: 9 * scale, P99: 30 * scale, Count: 100})
	}
	rep.Cells = append(rep.Cells, bench.LatencyCell{Pair: "kernel", Load: 0.9, Error: "failed"})
	p := filepath.Join(t.TempDir(), "latency.png")
	if err := writeLatencyPNG(rep, p); err != nil {
		t.Fatal(err)
	}
	img := readPNG(t, p)
	b := img.Bounds()
	for i := range rep.Pairs {
		want := colors[i+1]
		var upper, lower int
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				if uint8(r>>8) == want.R && uint8(g>>8) == want.G && uint8(bl>>8) == want.B {
					if y < b.Dy()/2 {
						upper++
					} else {
						lower++
					}
				}
			}
		}
		if upper < 50 || lower < 50 {
			t.Errorf("%s: %d pixels of its color in the upper panel, %d in the lower", rep.Pairs[i], upper, lower)
		}
	}
}
