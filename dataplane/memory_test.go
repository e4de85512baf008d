package dataplane

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestOOMSizedConfigRefusedBeforeAllocating: a configuration whose sizes
// the machine cannot hold is refused by Open in one line naming the
// setting, before a UMEM, a stage buffer or a file is made. Validation
// only: nothing OOM-sized is ever allocated (the fake refuses large UMEMs
// too, failing the test instead).
func TestOOMSizedConfigRefusedBeforeAllocating(t *testing.T) {
	dir := t.TempDir()
	stage := func(t *testing.T, kind string, set func(any)) Stage {
		s, err := NewStage(kind)
		if err != nil {
			t.Fatal(err)
		}
		s.Where = "line 9"
		set(s.Options)
		return s
	}
	for _, c := range []struct {
		name string
		edit func(t *testing.T, c *Options)
		want string
	}{
		{"ring 2^30", func(_ *testing.T, c *Options) { c.Ring = 1 << 30 }, "ring:"},
		{"ring 2^28 shared", func(_ *testing.T, c *Options) { c.Ring, c.Umem = 1<<28, UmemShared }, "ring:"},
		{"ring 2^31", func(_ *testing.T, c *Options) { c.Ring = 1 << 31 }, "ring:"},
		{"sample depth and snaplen 10^8", func(t *testing.T, c *Options) {
			c.Stages = append(c.Stages, stage(t, "sample", func(o any) {
				o.(*pipeline.SampleOptions).Depth, o.(*pipeline.SampleOptions).SnapLen = 100000000, 100000000
			}))
		}, "stage sample (line 9) depth × snaplen:"},
		{"sample depth 10^11", func(t *testing.T, c *Options) {
			c.Stages = append(c.Stages, stage(t, "sample", func(o any) { o.(*pipeline.SampleOptions).Depth = 100000000000 }))
		}, "stage sample (line 9) depth × snaplen:"},
		{"ipfix max_flows 2^40", func(t *testing.T, c *Options) {
			c.Stages = append(c.Stages, stage(t, "ipfix", func(o any) {
				*o.(*pipeline.IPFIXOptions) = pipeline.IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: 1 << 40}
			}))
		}, "stage ipfix (line 9) max_flows:"},
		{"pcap buffer 1 TiB", func(t *testing.T, c *Options) {
			c.Stages = append(c.Stages, stage(t, "pcap", func(o any) {
				o.(*pipeline.PcapStageOptions).Path = filepath.Join(dir, "x.pcap")
				o.(*pipeline.PcapStageOptions).Buffer = 1 << 40
			}))
		}, "stage pcap (line 9) buffer:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := baseConfig(t, "count")
			c.edit(t, &cfg)
			sys := &fakeSystem{}
			d, err := open(context.Background(), cfg, quiet(), sys)
			if err == nil {
				d.Close()
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q: want one line starting with %q", err, c.want)
			}
			if len(sys.mems) != 0 || sys.opened != 0 {
				t.Errorf("refused after making %d UMEMs and %d ports", len(sys.mems), sys.opened)
			}
		})
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "*")); len(ents) != 0 {
		t.Errorf("refused configurations left files: %v", ents)
	}
}

// TestMemoryCostsCountEverySocketAndWorker: the UMEM and rings grow with
// interfaces × queues, a stage's buffers with the workers (queues), and
// ring 0 costs the default ring.
func TestMemoryCostsCountEverySocketAndWorker(t *testing.T) {
	s, err := NewStage("sample")
	if err != nil {
		t.Fatal(err)
	}
	o := s.Options.(*pipeline.SampleOptions)
	o.Depth, o.SnapLen = 100, 1000
	sample, _ := o.MemoryCost()
	for _, c := range []struct {
		name                  string
		cfg                   Options
		ifaces, queues        int
		wantTotal, wantLocked uint64
	}{
		// 4 UMEM frames a ring entry; rings: 16-byte rx and tx
		// descriptors, 8-byte fill (1x ring) and completion (2x ring)
		// entries, a page of producer and consumer words each.
		{"default ring, one socket", Options{}, 1, 1, 32<<20 + 128<<10, 32 << 20},
		{"ring 1024, 2 interfaces x 4 queues", Options{Ring: 1024, FrameSize: 2048}, 2, 4, 64<<20 + 8*72<<10, 64 << 20},
		{"a sample stage per worker", Options{Ring: 64, Stages: []Stage{s}}, 1, 3, 3*256<<12 + 3*(64*56+4<<12) + 3*sample, 3 * 256 << 12},
	} {
		costs, err := c.cfg.MemoryCosts(c.ifaces, c.queues, 2)
		if err != nil {
			t.Fatal(err)
		}
		total, locked := xsk.Sum(costs)
		if total != c.wantTotal || locked != c.wantLocked {
			t.Errorf("%s: total %d locked %d, want %d and %d", c.name, total, locked, c.wantTotal, c.wantLocked)
		}
	}
}

// TestMemoryCostsCountSteeringMapsWithRules: with rules, each interface's
// steering program adds its maps (bpf.SteerMemory, growing with the
// possible CPUs), unlocked; without, no steering program and no entry.
func TestMemoryCostsCountSteeringMapsWithRules(t *testing.T) {
	for _, ifaces := range []int{1, 3} {
		for _, cpus := range []int{2, 64} {
			perProgram, err := bpf.SteerMemory(cpus)
			if err != nil {
				t.Fatal(err)
			}
			plain := Options{Ring: 64}
			steered := Options{Ring: 64, Rules: &rules.Set{}}
			without, err := plain.MemoryCosts(ifaces, 2, cpus)
			if err != nil {
				t.Fatal(err)
			}
			with, err := steered.MemoryCosts(ifaces, 2, cpus)
			if err != nil {
				t.Fatal(err)
			}
			isMaps := func(c xsk.Cost) bool { return c.Setting == steeringMaps }
			if slices.ContainsFunc(without, isMaps) {
				t.Errorf("%d interfaces, no rules: costs %v count steering maps", ifaces, without)
			}
			i := slices.IndexFunc(with, isMaps)
			if i < 0 {
				t.Fatalf("%d interfaces with rules: costs %v lack %q", ifaces, with, steeringMaps)
			}
			if got, want := with[i], (xsk.Cost{Setting: steeringMaps, Bytes: uint64(ifaces) * perProgram}); got != want {
				t.Errorf("%d interfaces on %d CPUs: %+v, want %+v", ifaces, cpus, got, want)
			}
			if others := slices.Delete(slices.Clone(with), i, i+1); !slices.Equal(others, without) {
				t.Errorf("%d interfaces: rules changed the other costs: %v, want %v", ifaces, others, without)
			}
		}
	}
	small, _ := bpf.SteerMemory(2)
	large, _ := bpf.SteerMemory(64)
	if large <= small {
		t.Errorf("steering maps on 64 CPUs %d bytes, on 2 CPUs %d: the per-CPU maps do not grow", large, small)
	}
}
