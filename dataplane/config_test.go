package dataplane

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/pipeline"
)

func TestConfigParse(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`
interfaces: [eth0]
queues: [0, 2]
poll: wait
coalesce: 20us
drain: 50us
stages:
  - count
  - rewrite: {dst_mac: "02:00:00:00:00:01", push_vlan: 100, pcp: 3, dscp: 46}
  - pcap: {path: /tmp/x.pcap, snaplen: 128, max_bytes: 1000000}
  - sample: {every: 100}
  - macswap
`), 0o644)
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Stages) != 5 || c.Stages[1].Kind != "rewrite" || *c.Stages[1].Options.(*pipeline.RewriteOptions).PushVLAN != 100 ||
		c.Stages[2].Options.(*pipeline.PcapStageOptions).SnapLen != 128 ||
		c.Drain.Duration != 50*time.Microsecond || c.Poll != "wait" || c.Queues != "0,2" ||
		c.Coalesce.Duration != 20*time.Microsecond || !c.Coalesce.Set {
		t.Fatalf("parsed %+v", c)
	}
	for name, body := range map[string]string{
		"unknown stage":     "stages: [count, frobnicate]",
		"unknown option":    "stages: [{pcap: {path: x, colour: red}}]",
		"unknown key":       "interfacez: [eth0]",
		"bad duration":      "drain: soon",
		"negative interval": "interval: -1s",
		"negative drain":    "drain: -5us",
	} {
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadConfig(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if q, err := ParseQueues("all", 4); err != nil || len(q) != 4 {
		t.Errorf("all: %v %v", q, err)
	}
	if q, err := ParseQueues("[0, 2-3]", 4); err != nil || len(q) != 3 || q[2] != 3 {
		t.Errorf("list: %v %v", q, err)
	}
	for _, bad := range []string{"4", "1,1", "x", "3-1"} {
		if _, err := ParseQueues(bad, 4); err == nil {
			t.Errorf("queues %q accepted", bad)
		}
	}
}
