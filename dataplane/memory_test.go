package dataplane

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestOOMSizedConfigRefusedBeforeAllocating: a configuration whose sizes
// the machine cannot hold is refused by Open in one line naming the
// setting, before a UMEM, a stage buffer or a file is made. Validation
// only: nothing OOM-sized is ever allocated (the fake refuses large UMEMs
// too, failing the test instead).
func TestOOMSizedConfigRefusedBeforeAllocating(t *testing.T) {
	dir := t.TempDir()
	stage := func(t *testing.T, kind string, set func(any)) StageConfig {
		s, err := NewStageConfig(kind)
		if err != nil {
			t.Fatal(err)
		}
		s.Line = 9
		set(s.Options)
		return s
	}
	for _, c := range []struct {
		name string
		edit func(t *testing.T, c *Config)
		want string
	}{
		{"ring 2^30", func(_ *testing.T, c *Config) { c.Ring = 1 << 30 }, "ring:"},
		{"ring 2^28 shared", func(_ *testing.T, c *Config) { c.Ring, c.Umem = 1<<28, "shared" }, "ring:"},
		{"ring 2^31", func(_ *testing.T, c *Config) { c.Ring = 1 << 31 }, "ring:"},
		{"sample depth and snaplen 10^8", func(t *testing.T, c *Config) {
			c.Stages = append(c.Stages, stage(t, "sample", func(o any) {
				o.(*pipeline.SampleOptions).Depth, o.(*pipeline.SampleOptions).SnapLen = 100000000, 100000000
			}))
		}, "stage sample (line 9) depth × snaplen:"},
		{"sample depth 10^11", func(t *testing.T, c *Config) {
			c.Stages = append(c.Stages, stage(t, "sample", func(o any) { o.(*pipeline.SampleOptions).Depth = 100000000000 }))
		}, "stage sample (line 9) depth × snaplen:"},
		{"ipfix max_flows 2^40", func(t *testing.T, c *Config) {
			c.Stages = append(c.Stages, stage(t, "ipfix", func(o any) {
				*o.(*pipeline.IPFIXOptions) = pipeline.IPFIXOptions{Collector: "198.18.0.2:4739", MaxFlows: 1 << 40}
			}))
		}, "stage ipfix (line 9) max_flows:"},
		{"pcap buffer 1 TiB", func(t *testing.T, c *Config) {
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
			d, err := open(cfg, quiet(), sys)
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
	s, err := NewStageConfig("sample")
	if err != nil {
		t.Fatal(err)
	}
	o := s.Options.(*pipeline.SampleOptions)
	o.Depth, o.SnapLen = 100, 1000
	for _, c := range []struct {
		name                  string
		cfg                   Config
		ifaces, queues        int
		wantTotal, wantLocked uint64
	}{
		// 4 UMEM frames a ring entry; rings: 16-byte rx and tx
		// descriptors, 8-byte fill and completion entries (2x ring), a
		// page of producer and consumer words each.
		{"default ring, one socket", Config{}, 1, 1, 32<<20 + 144<<10, 32 << 20},
		{"ring 1024, 2 interfaces x 4 queues", Config{Ring: 1024, FrameSize: 2048}, 2, 4, 64<<20 + 8*80<<10, 64 << 20},
		{"a sample stage per worker", Config{Ring: 64, Stages: []StageConfig{s}}, 1, 3, 3*256<<12 + 3*(64*64+4<<12) + 3*100*1000, 3 * 256 << 12},
	} {
		total, locked := xsk.Sum(c.cfg.MemoryCosts(c.ifaces, c.queues))
		if total != c.wantTotal || locked != c.wantLocked {
			t.Errorf("%s: total %d locked %d, want %d and %d", c.name, total, locked, c.wantTotal, c.wantLocked)
		}
	}
}
