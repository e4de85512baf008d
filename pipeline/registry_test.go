package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRegistryKindsBuildAndNameThemselves builds every registered kind with
// options that work and checks that it reports its kind as StageName (the
// metrics label) and is found by LookupStage (the registry is sorted).
func TestRegistryKindsBuildAndNameThemselves(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(rulesFile, []byte("rules:\n  - {priority: 1, proto: udp, dport: 53, action: drop}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := map[string]func(o any){
		"filter":  func(o any) { o.(*FilterOptions).Rules = rulesFile },
		"forward": func(o any) { o.(*ForwardOptions).To = "eth1" },
		"ipfix":   func(o any) { *o.(*IPFIXOptions) = IPFIXOptions{Collector: "127.0.0.1:4739", MaxFlows: 16} },
		"pcap":    func(o any) { o.(*PcapStageOptions).Path = filepath.Join(dir, "c.pcap") },
		"rdma":    func(o any) { o.(*RDMAOptions).Connect = "198.18.0.1:7471" },
	}
	env := StageEnv{Queue: 1, PerQueue: true, Ports: []string{"eth0", "eth1"}, Ifindexes: []uint32{2, 3}}
	var names []string
	built := map[string]Stage{}
	for _, k := range stageKinds {
		names = append(names, k.Name)
		if got, ok := LookupStage(k.Name); !ok || got.Name != k.Name {
			t.Errorf("LookupStage(%q) = %q, %v", k.Name, got.Name, ok)
		}
		o := k.Options()
		if set := good[k.Name]; set != nil {
			set(o)
		}
		s, err := k.New(o, env)
		if err != nil {
			t.Errorf("%s: %v", k.Name, err)
			continue
		}
		t.Cleanup(func() { CloseStages([]Stage{s}) })
		built[k.Name] = s
		if n := stageName(s); n != k.Name {
			t.Errorf("stage kind %s names itself %q", k.Name, n)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("registry not sorted: %v", names)
	}
	if pc, ok := built["pcap"].(*Pcap); !ok || pc.opts.Path != filepath.Join(dir, "c.q1.pcap") {
		t.Errorf("pcap with several workers: %v, want it writing c.q1.pcap", built["pcap"])
	}
	if _, ok := LookupStage("nosuch"); ok {
		t.Error("LookupStage found an unknown kind")
	}
}

// TestRegistryRejectsBadOptions: each option is checked once, in the
// constructor, with one line naming the option.
func TestRegistryRejectsBadOptions(t *testing.T) {
	neg, zero, big := -1, 0, 256
	for _, c := range []struct {
		kind string
		set  func(o any)
		want string
	}{
		{"forward", func(o any) { o.(*ForwardOptions).To = "eth9" }, "not one of the interfaces"},
		{"filter", func(any) {}, "needs rules"},
		{"ipfix", func(any) {}, "needs collector"},
		{"pcap", func(any) {}, "needs path"},
		{"pcap", func(o any) { *o.(*PcapStageOptions) = PcapStageOptions{Path: "x", SnapLen: -1} }, "negative"},
		{"rdma", func(any) {}, "needs connect"},
		{"rdma", func(o any) { o.(*RDMAOptions).Connect = "nohostport" }, "connect"},
		{"rewrite", func(o any) { o.(*RewriteOptions).TTL = &zero }, "ttl 0: want 1..255"},
		{"rewrite", func(o any) { o.(*RewriteOptions).TTL = &big }, "ttl 256: want 1..255"},
		{"rewrite", func(o any) { o.(*RewriteOptions).DSCP = &neg }, "dscp -1: want 0..63"},
		{"rewrite", func(o any) { o.(*RewriteOptions).PushVLAN = &zero }, "push_vlan 0: want 1..4094"},
		{"rewrite", func(o any) { o.(*RewriteOptions).SrcMAC = "zz" }, "src_mac"},
		{"sample", func(o any) { o.(*SampleOptions).Every = -1 }, "want n >= 1"},
	} {
		k, _ := LookupStage(c.kind)
		o := k.Options()
		c.set(o)
		s, err := k.New(o, StageEnv{Ports: []string{"eth0"}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: err %v, want %q", c.kind, o, err, c.want)
		}
		if s != nil && err == nil {
			CloseStages([]Stage{s})
		}
	}
}
