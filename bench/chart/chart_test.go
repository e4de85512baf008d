package chart

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/xdpipe/xdpipe/bench"
)

// TestWritePNG draws a two-receiver report and reads the PNG back.
func TestWritePNG(t *testing.T) {
	rep := &bench.Report{Kernel: "6.18", CPUs: 2, Receivers: []string{"xdp-drop", "udp"}, Sizes: []int{64, 1500},
		Results: []bench.Result{{Receiver: "xdp-drop", Size: 64, Received: 10, Fps: 13e6}, {Receiver: "xdp-drop", Size: 1500, Received: 10, Fps: 3e6},
			{Receiver: "udp", Size: 64, Received: 10, Fps: 0.3e6}, {Receiver: "udp", Size: 1500, Error: "failed"}}}
	p := filepath.Join(t.TempDir(), "bench.png")
	if err := WritePNG(rep, p); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("PNG: %v", err)
	}
	if img.Bounds().Dx() < 300 {
		t.Fatalf("PNG %v too small", img.Bounds())
	}
}
