package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestLatencyScript runs hack/latency.sh for one short round: every pair
// must report its round trips, the figures ordered p50 <= p99 <= p99.9 <=
// max, and the namespaces must be gone afterwards.
func TestLatencyScript(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "sockperf")
	// A hung script's bound, not a timing gate: seven pairs take about 20 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../hack/latency.sh", xdpipeBin, "1", "1")
	// On the bound, SIGTERM to the script's whole process group: its
	// trap removes the testbed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/latency.sh: %v\n%s", err, out)
	}
	row := regexp.MustCompile(`(?m)^(\S+)\s+([0-9.]+) \([0-9.]+-[0-9.]+\)\s+([0-9.]+) \([0-9.]+-[0-9.]+\)\s+([0-9.]+) \([0-9.]+-[0-9.]+\)\s+([0-9.]+) \([0-9.]+-[0-9.]+\)$`)
	got := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(out), -1) {
		var v [4]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(m[i+2], 64)
		}
		if !(v[0] > 0 && v[0] <= v[1] && v[1] <= v[2] && v[2] <= v[3]) {
			t.Errorf("%s: p50 %v p99 %v p99.9 %v max %v are not in order", m[1], v[0], v[1], v[2], v[3])
		}
		got[m[1]] = true
	}
	for _, p := range []string{"kernel", "sockperf->reflect", "ping->reflect", "ping->reflect-bp", "ping->reflect-wk", "ping->reflect-wk0", "ping->udp-echo"} {
		if !got[p] {
			t.Errorf("no figures for %s:\n%s", p, out)
		}
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "xdpipe-latency") {
		t.Errorf("hack/latency.sh left its namespaces:\n%s", ns)
	}
}
