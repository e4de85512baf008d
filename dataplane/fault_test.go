package dataplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestDaemonNeverRunsOnSilently: an interface deleted (or its XDP program
// removed) under a running daemon stops Run with an error that says so,
// without a signal; the frames received before are accounted for.
func TestDaemonNeverRunsOnSilently(t *testing.T) {
	for _, ev := range []netdev.LinkEvent{
		{Ifindex: 15, Name: "fake0", Deleted: true},
		{Ifindex: 15, Name: "fake0", Was: 7},
	} {
		cfg := baseConfig(t, "count")
		sys := &fakeSystem{}
		d, err := open(context.Background(), cfg, quiet(), sys)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		sys.wire.Arrive(100)
		waitRX(t, d, 100)
		sys.ports[0].fault <- ev
		select {
		case err = <-done:
		case <-time.After(10 * time.Second): // a hung test's bound, not a timing gate
			t.Fatal("Run went on after the data path was lost")
		}
		if !errors.Is(err, ErrDataPathLost) || !strings.Contains(err.Error(), ev.String()) {
			t.Errorf("Run: %v, want the cause %q", err, ev)
		}
		if !sys.ports[0].detached {
			t.Error("not detached")
		}
		if _, err := d.Account(); err != nil {
			t.Error(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeSteer is a steering program's rule maps.
type fakeSteer struct {
	mu    sync.Mutex
	rules []rules.Rule
}

func (s *fakeSteer) Apply(set *rules.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = slices.Clone(set.Rules)
	return nil
}

// add is `xdpipe rules add`.
func (s *fakeSteer) add(r rules.Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, r)
}

func (s *fakeSteer) CacheMisses() (bpf.Counter, error) { return bpf.Counter{}, nil }

func (s *fakeSteer) RuleStatsInto(out []bpf.RuleStat) ([]bpf.RuleStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out = out[:0]
	for _, r := range s.rules {
		out = append(out, bpf.RuleStat{Rule: r})
	}
	return out, nil
}

// TestReloadSaysItDropsRulesAddedAtRunTime: a SIGHUP applies the rules
// file, which replaces rules added with `xdpipe rules add`; the reload's
// log line says so and names them, and says nothing when there were none.
func TestReloadSaysItDropsRulesAddedAtRunTime(t *testing.T) {
	cfg := baseConfig(t, "count")
	set, _, err := rules.Parse("rules.yaml", []byte("rules:\n  - {priority: 10, name: gen, proto: udp, dport: 9, action: redirect}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = set
	var logs bytes.Buffer
	sys := &fakeSystem{}
	d, err := open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), sys)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sys.ports[0].st.add(rules.Rule{Priority: 20, Name: "dns"})
	if err := d.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "replaced rules added at run time") || !strings.Contains(logs.String(), "replaced=[dns]") {
		t.Fatalf("reload over a rule added at run time logged:\n%s", logs.String())
	}
	logs.Reset()
	if err := d.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "replaced") || !strings.Contains(logs.String(), "msg=reloaded") {
		t.Fatalf("reload with nothing added at run time logged:\n%s", logs.String())
	}
}

// TestReloadAppliesOrRefusesEverySetting: a reload applies the rules,
// the stages and the rule series; Options that change any other setting
// are refused in one line naming it, and nothing is reloaded (no setting
// silently kept). Every field of Options is one or the other.
func TestReloadAppliesOrRefusesEverySetting(t *testing.T) {
	restart := map[string]func(c *Options){
		"Interfaces":    func(c *Options) { c.Interfaces = append(c.Interfaces, "fake1") },
		"Queues":        func(c *Options) { c.Queues = []int{0} },
		"Umem":          func(c *Options) { c.Umem = UmemShared },
		"Ring":          func(c *Options) { c.Ring = 128 },
		"FillLow":       func(c *Options) { c.FillLow = 32 },
		"FrameSize":     func(c *Options) { c.FrameSize = 2048 },
		"Bind":          func(c *Options) { c.Bind = xsk.BindCopy },
		"Attach":        func(c *Options) { c.Attach = bpf.AttachGeneric },
		"Poll":          func(c *Options) { c.Poll = pipeline.PollWakeup },
		"Coalesce":      func(c *Options) { c.Coalesce = 10 * time.Microsecond },
		"BusyPoll":      func(c *Options) { c.BusyPoll = true },
		"CPUs":          func(c *Options) { c.CPUs = []int{1, 0} },
		"Burst":         func(c *Options) { c.Burst = 32 },
		"TXBatch":       func(c *Options) { c.TXBatch = 32 },
		"Drain":         func(c *Options) { c.Drain = 50 * time.Microsecond },
		"Default":       func(c *Options) { c.Default = pipeline.VerdictTransmit },
		"PinDir":        func(c *Options) { c.PinDir = "/sys/fs/bpf/elsewhere" },
		"RxDelay":       func(c *Options) { c.RxDelay = true },
		"RxDelaySample": func(c *Options) { c.RxDelaySample = 8 },
		"RxMetadata":    func(c *Options) { c.RxMetadata = true },
	}
	applied := []string{"Rules", "Stages", "RuleSeries"}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Options]()) {
		if _, ok := restart[f.Name]; !ok && !slices.Contains(applied, f.Name) {
			t.Errorf("setting %s: neither applied by a reload nor refused", f.Name)
		}
	}
	// Spinning workers (FillLow needs them), never started.
	spinning := func(kinds ...string) Options {
		c := baseConfig(t, kinds...)
		c.Poll = pipeline.PollSpin
		return c
	}
	cfg := spinning("count")
	d, err := open(context.Background(), cfg, quiet(), &fakeSystem{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for key, edit := range restart {
		next := spinning("count", "macswap")
		edit(&next)
		before := d.chains
		err := d.Reload(next)
		var re *RestartError
		if !errors.As(err, &re) || !slices.Equal(re.Settings, []string{key}) ||
			!strings.HasPrefix(err.Error(), key+" changed: a restart applies them") || strings.Contains(err.Error(), "\n") {
			t.Errorf("reload changing %s: %v, want it refused in one line naming %s", key, err, key)
		}
		if d.chains != before {
			t.Errorf("reload changing %s: the stages were reloaded", key)
		}
	}
	next := spinning("count", "macswap")
	next.Ring, next.Burst = 128, 32
	if err := d.Reload(next); err == nil || !strings.HasPrefix(err.Error(), "Ring, Burst changed") {
		t.Errorf("reload changing ring and burst: %v, want both named", err)
	}
	// What a start refuses, a reload refuses (the one validation).
	next = spinning("count")
	next.FrameSize = 3000
	if err := d.Reload(next); err == nil || !strings.Contains(err.Error(), "frame size 3000") {
		t.Errorf("reload with frame_size 3000: %v", err)
	}
	for _, c := range []struct {
		edit func(*Options)
		want string
	}{
		{func(c *Options) { c.FillLow = 128 }, "fill_low 128: want at most the ring's 64 entries"},
		{func(c *Options) { c.FillLow, c.Poll = 32, pipeline.PollWakeup }, "fill_low needs poll: spin"},
	} {
		next = spinning("count")
		c.edit(&next)
		if err := d.Reload(next); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("reload with %+v: %v, want %q", next, err, c.want)
		}
	}
	if err := d.Reload(spinning("count", "macswap")); err != nil {
		t.Fatalf("reload of the stages: %v", err)
	}
	if got := StageList(stageConfigsOf(d)); got != "count,macswap" {
		t.Errorf("stages after the reload: %s", got)
	}
}

// stageConfigsOf names the stages the daemon's first worker runs.
func stageConfigsOf(d *Daemon) []Stage {
	var out []Stage
	for _, s := range d.chains.chains[0] {
		out = append(out, Stage{Kind: s.(interface{ StageName() string }).StageName()})
	}
	return out
}

// TestReloadChecksOnlyTheMemoryItAdds: a configuration that takes most of
// the memory the machine has starts, and reloads: the UMEMs it runs on
// are not priced again against the memory left after they were taken. A
// reload whose new stages need more than is left is refused before it
// allocates them.
func TestReloadChecksOnlyTheMemoryItAdds(t *testing.T) {
	cfg := baseConfig(t, "count")
	costs, err := cfg.MemoryCosts(1, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	total, _ := xsk.Sum(costs)
	// The configuration costs 70% of MemAvailable, under the 3/4 bound.
	sys := &fakeSystem{available: total * 10 / 7}
	d, err := open(context.Background(), cfg, quiet(), sys)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Reload(baseConfig(t, "count", "macswap")); err != nil {
		t.Fatalf("reload of a configuration that started: %v", err)
	}
	big := baseConfig(t, "count")
	s, err := NewStage("sample")
	if err != nil {
		t.Fatal(err)
	}
	s.Where = "line 7"
	o := s.Options.(*pipeline.SampleOptions)
	o.Depth, o.SnapLen = int(total/2048), 2048 // as much again, per worker
	big.Stages = append(big.Stages, s)
	if err := d.Reload(big); err == nil || !strings.HasPrefix(err.Error(), "stage sample (line 7) depth × snaplen: the configuration needs") {
		t.Errorf("reload adding a stage that needs more than is left: %v", err)
	}
}

// TestDaemonFillLowReachesTheSockets: fill_low is every socket's
// xsk.SocketOptions.FillLow; unset, the sockets keep whole fill rings.
func TestDaemonFillLowReachesTheSockets(t *testing.T) {
	for _, low := range []uint32{0, 32} {
		c := baseConfig(t, "count")
		c.Poll, c.FillLow = pipeline.PollSpin, low
		sys := &fakeSystem{}
		d, err := open(context.Background(), c, quiet(), sys)
		if err != nil {
			t.Fatal(err)
		}
		if len(sys.opts) == 0 {
			t.Fatal("no port opened")
		}
		for _, o := range sys.opts {
			if o.Socket.FillLow != low {
				t.Errorf("fill_low %d: port %s opened with FillLow %d", low, o.Iface, o.Socket.FillLow)
			}
		}
		d.Close()
	}
}
