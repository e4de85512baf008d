package dataplane

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/pipeline"
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
