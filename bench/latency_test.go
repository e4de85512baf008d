package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// writeLog writes a sockperf --full-log with rows of (tx, rx) seconds.
func writeLog(t *testing.T, rows [][2]float64) *os.File {
	t.Helper()
	var b strings.Builder
	b.WriteString("sockperf: [Total Run] RunTime=1.000 sec; Warm up time=400 msec; SentMessages=4; ReceivedMessages=4\n")
	b.WriteString("packet, txTime(sec), rxTime(sec), rtt(usec)\n")
	for i, r := range rows {
		b.WriteString(strings.Join([]string{itoa(i), ftoa(r[0]), ftoa(r[1]), ftoa((r[1] - r[0]) * 1e6)}, ", ") + "\n")
	}
	b.WriteString("------------------------------\n")
	p := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSockperfHistogram: round trips come from the log's times; in an open
// loop a message that left late by the schedule counts from when it was
// due, and a message with no reply is left out.
func TestSockperfHistogram(t *testing.T) {
	// 1000 messages/s; the third left 5 ms late (a stalled sender), the
	// others on time; every round trip took 20 us; the last has no reply.
	rows := [][2]float64{{10, 10.00002}, {10.001, 10.00102}, {10.007, 10.00702}, {10.003, 10.00302}, {10.004, 0}}
	closed, err := sockperfHistogram(writeLog(t, rows), 0)
	if err != nil {
		t.Fatal(err)
	}
	if closed.TotalCount() != 4 || closed.Max() > 20100 || closed.Min() < 19900 {
		t.Fatalf("closed loop: %d round trips, %d..%d ns; want 4 of 20 us", closed.TotalCount(), closed.Min(), closed.Max())
	}
	open, err := sockperfHistogram(writeLog(t, rows), 1000)
	if err != nil {
		t.Fatal(err)
	}
	// The late one counts 5 ms more: due at 10.002, answered at 10.00702.
	if open.TotalCount() != 4 || open.Max() < 5015000 || open.Max() > 5025000 {
		t.Fatalf("open loop: %d round trips, max %d ns; want 4, max 5.02 ms", open.TotalCount(), open.Max())
	}
	if _, err := sockperfHistogram(writeLog(t, nil), 0); err == nil {
		t.Fatal("an empty log gave a histogram")
	}
}

func TestParseClients(t *testing.T) {
	var c LatencyCell
	err := parsePing("ping: iface...\nping: sent 1000 in 2.00s, received 998, lost 2 (late 0, other frames 0)\n"+
		"round trip: p50 7.1 p90 8.0 p99 20.5 p99.9 50.0 p99.99 60.0 max 70.2 us (998 round trips)\n", &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sent != 1000 || c.Received != 998 || c.Lost != 2 || c.Rate != 499 || c.P50 != 7.1 || c.P99 != 20.5 || c.Max != 70.2 || c.Count != 998 {
		t.Fatalf("ping: %+v", c)
	}
	if err := parsePing("ping: no reply\n", &c); err == nil {
		t.Fatal("no error for a ping without round trips")
	}
	c = LatencyCell{}
	err = parseSockperf("sockperf: [Valid Duration] RunTime=0.500 sec; SentMessages=5000; ReceivedMessages=4990\n"+
		"sockperf: # dropped messages = 10; # duplicated messages = 0; # out-of-order messages = 0\n", &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sent != 5000 || c.Received != 4990 || c.Lost != 10 || c.Rate != 9980 {
		t.Fatalf("sockperf: %+v", c)
	}
	if err := parseSockperf("sockperf: error\n", &c); err == nil {
		t.Fatal("no error for sockperf without a run")
	}
	d := parseHgrm("       Value     Percentile TotalCount 1/(1-Percentile)\n\n      7.100 0.000000000000          1           1.00\n" +
		"      9.500 0.500000000000        500           2.00\n#[Mean    =        8.000, StdDeviation   =        1.000]\n")
	if len(d) != 2 || d[1] != (DistPoint{Percentile: 50, Micros: 9.5}) {
		t.Fatalf("hgrm: %+v", d)
	}
}

// TestLatencyRounds: a repeated run folds each cell's rounds into medians
// with their spread, and takes each ratio within a round.
func TestLatencyRounds(t *testing.T) {
	cell := func(pair string, p50, p99 float64) LatencyCell {
		return LatencyCell{Pair: pair, P50: p50, P99: p99, Max: 2 * p99, Count: 100, Rate: 1e6 / p50}
	}
	rep := &LatencyReport{Rounds: [][]LatencyCell{
		{cell("kernel", 30, 60), cell("ping-reflect", 6, 30)},
		{cell("kernel", 20, 40), cell("ping-reflect", 5, 40)},
		{cell("kernel", 40, 80), {Pair: "ping-reflect", Error: "reflector did not start"}},
	}}
	rep.Cells = aggregateLatency(rep.Rounds)
	if len(rep.Cells) != 2 {
		t.Fatalf("%d cells, want 2", len(rep.Cells))
	}
	k, p := rep.Cells[0], rep.Cells[1]
	if k.P50 != 30 || k.Spread.P50 != (Spread{20, 30, 40}) || k.Spread.Rounds != 3 {
		t.Fatalf("kernel: p50 %v spread %+v", k.P50, k.Spread)
	}
	if p.P50 != 5.5 || p.Spread.Rounds != 2 || p.Spread.Failed != 1 || p.Count != 200 {
		t.Fatalf("ping-reflect: p50 %v spread %+v count %d", p.P50, p.Spread, p.Count)
	}
	ratios := rep.compareLatency()
	if len(ratios) != 2 {
		t.Fatalf("ratios %+v, want p50 and p99 of ping-reflect / kernel", ratios)
	}
	// p50: 6/30 = 0.2 and 5/20 = 0.25, median 0.225; the failed round
	// left out.
	if r := ratios[0]; r.Rounds != 2 || r.Spread.Min != 0.2 || r.Spread.Max != 0.25 || r.Value != 0.225 || !r.Met {
		t.Fatalf("p50 ratio %+v spread %+v", r, r.Spread)
	}
	if r := ratios[1]; r.Value != 0.75 || r.Met {
		t.Fatalf("p99 ratio %+v: want 0.75, bar 0.5 not met", r)
	}
}

func TestLatencyConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  LatencyConfig
		want string
	}{
		{LatencyConfig{Pairs: []string{"nosuch"}}, `unknown pair "nosuch"`},
		{LatencyConfig{Loads: []float64{1.5}}, "load 1.5"},
		{LatencyConfig{Payload: 8}, "payload 8 bytes"},
		{LatencyConfig{Duration: -1}, "negative duration"},
	} {
		if err := c.cfg.defaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func itoa(i int) string     { return strconv.Itoa(i) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 9, 64) }
