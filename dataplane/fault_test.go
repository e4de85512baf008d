package dataplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/rules"
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
		d, err := open(cfg, quiet(), sys)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		sys.send(100)
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

func (s *fakeSteer) RuleStats() ([]bpf.RuleStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []bpf.RuleStat
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
	cfg.Rules = filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(cfg.Rules, []byte("rules:\n  - {priority: 10, name: gen, proto: udp, dport: 9, action: redirect}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	sys := &fakeSystem{}
	d, err := open(cfg, slog.New(slog.NewTextHandler(&logs, nil)), sys)
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
