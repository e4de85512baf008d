package dataplane

import (
	"os"
	"path/filepath"
	"strings"
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
  - ipfix: {collector: "198.18.0.2:4739", active_timeout: 90s, idle_timeout: 5s, max_flows: 1000}
`), 0o644)
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Stages[5].Options.(*pipeline.IPFIXOptions); o.ActiveTimeout != 90*time.Second || o.IdleTimeout != 5*time.Second ||
		o.MaxFlows != 1000 || o.Collector != "198.18.0.2:4739" {
		t.Errorf("ipfix options %+v", o)
	}
	if len(c.Stages) != 6 || c.Stages[1].Kind != "rewrite" || *c.Stages[1].Options.(*pipeline.RewriteOptions).PushVLAN != 100 ||
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
		"ipfix bare number": "stages: [{ipfix: {collector: \"198.18.0.2:4739\", max_flows: 10, idle_timeout: 15}}]",
	} {
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadConfig(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "ipfix bare number" && !strings.Contains(err.Error(), "idle_timeout: `15` is not a duration with its unit") {
			t.Errorf("%s: %v", name, err)
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

// TestConfigErrorsOnOneLine: a config file's decoding errors fit on one
// line, each with its line and key, and no Go type names.
func TestConfigErrorsOnOneLine(t *testing.T) {
	for body, want := range map[string]string{
		"interfaces: [eth0]\nring: abc\nstages:\n  - pcap: {path: x, snaplen: big}\n": "line 2: ring: `abc` is not a whole number, 0 or more; line 4: snaplen: `big` is not a whole number",
		"interfaces: eth0\n":   "line 1: interfaces: `eth0` is not a list",
		"interfacez: [eth0]\n": "line 1: unknown key interfacez",
		"burst: [1]\n":         "line 1: burst: a list is not a whole number",
	} {
		_, err := ParseConfig([]byte(body))
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") ||
			strings.Contains(err.Error(), "dataplane.") || strings.Contains(err.Error(), "int") && !strings.Contains(err.Error(), "interface") {
			t.Errorf("%q: %v, want one line starting %q", body, err, want)
		}
	}
}
