package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/xdpipe/xdpipe/bench"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

// pingSummaryRE matches ping's summary line.
var pingSummaryRE = regexp.MustCompile(`ping: sent (\d+) in [0-9.]+s, received (\d+), lost (\d+) \(late (\d+), other frames (\d+)\)`)

// TestPingAgainstRunReflect: xdpipe ping, closed loop and open loop, gets
// every frame back from xdpipe run's reflect stage on the other end of a
// veth pair, reports the round trips' percentiles and writes them in
// HdrHistogram's .hgrm form.
func TestPingAgainstRunReflect(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	proc := startReflector(t, p, "")
	for _, c := range []struct {
		name string
		args []string
		loop string
	}{
		{"closed loop", []string{"--count", "500"}, "closed loop, one frame in flight"},
		{"open loop", []string{"--rate", "20000", "--duration", "500ms"}, "open loop at 20000 frames/s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hgrm := filepath.Join(t.TempDir(), "rtt.hgrm")
			args := append([]string{"ping", "--iface", p.A.Name, "--dst-mac", p.B.MAC.String(), "--dst-ip", p.B.IP.String(),
				"--dst-port", strconv.Itoa(reflectPort), "--bind", testutil.Bind(), "--hgrm", hgrm}, c.args...)
			out, code := xdpipeIn(t, p.A.NS, args...)
			if code != 0 {
				t.Fatalf("ping exited %d:\n%s", code, out)
			}
			if !strings.Contains(out, c.loop) || !strings.Contains(out, "round trips, both ends read on this host's CLOCK_MONOTONIC") {
				t.Errorf("ping's start line does not say the loop (%q) and what is measured:\n%s", c.loop, out)
			}
			m := pingSummaryRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no summary in ping's output:\n%s", out)
			}
			sent, _ := strconv.Atoi(m[1])
			got, _ := strconv.Atoi(m[2])
			if sent == 0 || got != sent || m[3] != "0" {
				t.Fatalf("ping sent %d, received %d, lost %s: want every reply:\n%s", sent, got, m[3], out)
			}
			if !regexp.MustCompile(`round trip: p50 [0-9.]+ p90 [0-9.]+ p99 [0-9.]+ p99.9 [0-9.]+ p99.99 [0-9.]+ max [0-9.]+ us \(` + m[2] + ` round trips\)`).MatchString(out) {
				t.Errorf("no percentiles of %s round trips:\n%s", m[2], out)
			}
			b, err := os.ReadFile(hgrm)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "Value") || !strings.Contains(string(b), "#[Max") || !strings.Contains(string(b), "Total count    =") {
				t.Errorf("--hgrm wrote no HdrHistogram percentile distribution:\n%s", b)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
	if _, code := proc.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, proc.output())
	}
}

// TestPingBadInput: misuse gives a one-line error and a non-zero exit.
func TestPingBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dst-mac", "02:00:00:00:00:01", "--dst-ip", "198.18.0.1"}, "--iface is required"},
		{[]string{"--iface", "lo", "--dst-ip", "198.18.0.1"}, "--dst-mac is required"},
		{[]string{"--iface", "lo", "--dst-mac", "02:00:00:00:00:01"}, "--dst-ip is required"},
		{[]string{"--iface", "lo", "--dst-mac", "02:00:00:00:00:01", "--dst-ip", "198.18.0.1", "--rate", "-1"}, "--rate -1"},
		{[]string{"--iface", "lo", "--dst-mac", "02:00:00:00:00:01", "--dst-ip", "198.18.0.1", "--dst-port", "70000"}, "ports must be 1..65535"},
		{[]string{"--iface", "nosuch0", "--dst-mac", "02:00:00:00:00:01", "--dst-ip", "198.18.0.1"}, "--iface nosuch0"},
	} {
		out, code := xdpipeIn(t, nil, append([]string{"ping"}, c.args...)...)
		if code == 0 || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("ping %v: exit %d, output %q: want one line with %q", c.args, code, out, c.want)
		}
	}
}

// TestBenchLatency runs `xdpipe bench latency` over every pair for one
// short round, closed loop and one open loop, and reads its JSON: the
// warm-up before each pair, every cell measured, its percentiles in order, both sides' CPU taken, the
// open loop offered half the closed loop's rate, the ratios with their
// bars there, and the testbed gone afterwards.
func TestBenchLatency(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "sockperf")
	dir := t.TempDir()
	js := filepath.Join(dir, "latency.json")
	out, code := xdpipeIn(t, nil, "bench", "latency", "--duration", "1s", "--loads", "50", "--quiet",
		"--xsk-c-peer", "../../hack/xsk-c-peer", "--json", js)
	t.Log("\n" + out)
	if code != 0 {
		t.Fatalf("bench latency: exit %d", code)
	}
	rep, err := bench.ReadLatencyJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Warmup != 1 {
		t.Errorf("warm-up %v s before each pair's cells, want the default 1 s", rep.Warmup)
	}
	if want := 2 * len(bench.LatencyPairs()); len(rep.Cells) != want {
		t.Fatalf("%d cells, want %d", len(rep.Cells), want)
	}
	closed := map[string]bench.LatencyCell{}
	for _, c := range rep.Cells {
		if c.Error != "" {
			t.Errorf("%s at load %v: %s", c.Pair, c.Load, c.Error)
			continue
		}
		if !(c.Count > 0 && c.P50 > 0 && c.P50 <= c.P90 && c.P90 <= c.P99 && c.P99 <= c.P999 && c.P999 <= c.P9999 && c.P9999 <= c.Max) {
			t.Errorf("%s at load %v: %d round trips, p50 %v p90 %v p99 %v p99.9 %v p99.99 %v max %v",
				c.Pair, c.Load, c.Count, c.P50, c.P90, c.P99, c.P999, c.P9999, c.Max)
		}
		if c.ClientCPU <= 0 || c.ServerCPU <= 0 || len(c.Dist) == 0 {
			t.Errorf("%s at load %v: CPU client %v reflector %v, %d distribution rows", c.Pair, c.Load, c.ClientCPU, c.ServerCPU, len(c.Dist))
		}
		if c.Load == 0 {
			closed[c.Pair] = c
		} else if cl, ok := closed[c.Pair]; ok && math.Abs(c.Offered-cl.Rate/2) > 1 {
			t.Errorf("%s: open loop offered %v, want half of %v", c.Pair, c.Offered, cl.Rate)
		}
	}
	bars := 0
	for _, r := range rep.Ratios {
		if r.Bar > 0 {
			bars++
		}
	}
	if bars != 6 {
		t.Errorf("%d ratios with a bar, want 6 (p50 and p99 of three comparisons): %+v", bars, rep.Ratios)
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "xdpipe-bench") {
		t.Errorf("bench latency left its namespaces:\n%s", ns)
	}
}
