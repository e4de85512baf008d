package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/rules"
)

// TestTopRules: the rules with the most hits keep their series, ties in
// priority order; the others add up.
func TestTopRules(t *testing.T) {
	stats := []bpf.RuleStat{
		{Rule: rules.Rule{Priority: 1}, Counter: bpf.Counter{Packets: 5}},
		{Rule: rules.Rule{Priority: 2}, Counter: bpf.Counter{Packets: 50}},
		{Rule: rules.Rule{Priority: 3}, Counter: bpf.Counter{Packets: 7}},
		{Rule: rules.Rule{Priority: 4}, Counter: bpf.Counter{Packets: 7}},
	}
	top, others := topRules(stats, 2, nil)
	if len(top) != 2 || stats[top[0]].Rule.Priority != 2 || stats[top[1]].Rule.Priority != 3 || others != 12 {
		t.Fatalf("top %v others %d; want priorities 2 and 3, others 12", top, others)
	}
	if top, others := topRules(stats, -1, top); len(top) != 4 || others != 0 {
		t.Fatalf("every rule: %d series, others %d", len(top), others)
	}
	if stats[0].Rule.Priority != 1 {
		t.Fatal("topRules reordered its argument")
	}
}

// TestDaemonRuleSeries: rule_series bounds the per-rule series, the rest
// in one; a negative value below -1 is refused before anything opens.
func TestDaemonRuleSeries(t *testing.T) {
	cfg := baseConfig(t, "count")
	var b strings.Builder
	b.WriteString("rules:\n")
	for p := 1; p <= 5; p++ {
		fmt.Fprintf(&b, "  - {priority: %d, proto: udp, dport: 9, action: drop}\n", p)
	}
	set, _, err := rules.Parse("rules.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = set
	cfg.RuleSeries = 2
	d, err := open(context.Background(), cfg, slog.New(slog.DiscardHandler), &fakeSystem{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for _, m := range counters(t, d.Collector(), "xdpipe_steer_rule_hits_total") {
		names = append(names, m.labels["rule"])
	}
	slices.Sort(names) // the collector's order
	if strings.Join(names, ",") != otherRules+",prio-1,prio-2" {
		t.Fatalf("series for rules %v, want prio-1, prio-2 and %s", names, otherRules)
	}
	cfg.RuleSeries = -1 // a reload applies it
	if err := d.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if n := len(counters(t, d.Collector(), "xdpipe_steer_rule_hits_total")); n != 5 {
		t.Fatalf("%d series after a reload to rule_series -1, want 5", n)
	}
	cfg.RuleSeries = -2
	if _, err := open(context.Background(), cfg, slog.New(slog.DiscardHandler), &fakeSystem{}); err == nil || !strings.Contains(err.Error(), "rule_series -2") {
		t.Fatalf("rule_series -2: %v", err)
	}
}

// TestRxDelaySample: the stamp's sample reaches the ports (default 64),
// and one that is not a power of two is refused before anything opens.
func TestRxDelaySample(t *testing.T) {
	for _, c := range []struct {
		sample int
		want   uint32
	}{{0, DefaultRxDelaySample}, {1, 1}, {256, 256}} {
		cfg := baseConfig(t, "count")
		cfg.RxDelay, cfg.RxDelaySample = true, c.sample
		sys := &fakeSystem{}
		d, err := open(context.Background(), cfg, slog.New(slog.DiscardHandler), sys)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		if len(sys.opts) == 0 || sys.opts[0].RxStamp != c.want {
			t.Fatalf("rx_delay_sample %d: ports opened with %+v, want a stamp every %d", c.sample, sys.opts, c.want)
		}
	}
	cfg := baseConfig(t, "count")
	cfg.RxDelay, cfg.RxDelaySample = true, 48
	if _, err := open(context.Background(), cfg, slog.New(slog.DiscardHandler), &fakeSystem{}); err == nil || !strings.Contains(err.Error(), "rx_delay_sample 48") {
		t.Fatalf("rx_delay_sample 48: %v", err)
	}
}
