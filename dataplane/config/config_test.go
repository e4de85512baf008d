package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
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
	c, err := Load(good)
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
		if _, err := Load(p); err == nil {
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
	for _, bad := range []string{"4", "1,1", "x", "3-1", "0-4294967296"} {
		if _, err := ParseQueues(bad, 4); err == nil {
			t.Errorf("queues %q accepted", bad)
		}
	}
}

// TestConfigErrorsOnOneLine: a config file's decoding errors fit on one
// line, each with its line and key, and no Go type names; an empty file
// and a valid one decode.
func TestConfigErrorsOnOneLine(t *testing.T) {
	for body, want := range map[string]string{
		"interfaces: [eth0]\nring: abc\nstages:\n  - pcap: {path: x, snaplen: big}\n": "line 2: ring: `abc` is not a whole number, 0 or more; line 4: snaplen: `big` is not a whole number",
		"interfaces: eth0\n":                                       "line 1: interfaces: `eth0` is not a list",
		"interfacez: [eth0]\n":                                     "line 1: unknown key interfacez",
		"burst: [1]\n":                                             "line 1: burst: a list is not a whole number",
		"stages:\n  - pcap: {path: x, mode: rw}\n":                 "line 2: mode: `rw` is not a whole number, 0 or more",
		"stages:\n  - ipfix: {collector: x, idle_timeout: 15}\n":   "line 2: idle_timeout: `15` is not a duration with its unit",
		"interfaces: [eth0]\nbusy_poll: {a: 1}\nrx_delay: maybe\n": "line 2: busy_poll: a mapping is not true or false; line 3: rx_delay: `maybe` is not true or false",
		"":           "",
		"ring: 64\n": "",
	} {
		if want == "" {
			if _, err := Parse([]byte(body)); err != nil {
				t.Errorf("%q: %v", body, err)
			}
			continue
		}
		_, err := Parse([]byte(body))
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") ||
			strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "int") && !strings.Contains(err.Error(), "interface") {
			t.Errorf("%q: %v, want one line starting %q", body, err, want)
		}
	}
}

// TestEveryKeyIsAnOptionOrTheCommands: each key of the file is the
// dataplane.Options field of the same name (a refused reload names them
// by key), or one of the command's own settings; every Options field has
// a key; and a file that sets every key reaches every Options field.
func TestEveryKeyIsAnOptionOrTheCommands(t *testing.T) {
	opts, file := reflect.TypeFor[dataplane.Options](), reflect.TypeFor[File]()
	command := []string{"Metrics", "Pprof", "Interval"}
	for _, f := range reflect.VisibleFields(file) {
		if _, ok := opts.FieldByName(f.Name); !ok && !slices.Contains(command, f.Name) {
			t.Errorf("key %s: no Options field %s, and not the command's", f.Tag.Get("yaml"), f.Name)
		}
	}
	for _, f := range reflect.VisibleFields(opts) {
		if _, ok := file.FieldByName(f.Name); !ok {
			t.Errorf("Options.%s has no key in the file", f.Name)
		}
	}
	if got := fileKeys([]string{"FrameSize", "BusyPoll", "Ring"}); !slices.Equal(got, []string{"frame_size", "busy_poll", "ring"}) {
		t.Errorf("keys of FrameSize, BusyPoll, Ring: %v", got)
	}
	dir := t.TempDir()
	steer := filepath.Join(dir, "steer.yaml")
	if err := os.WriteFile(steer, []byte("rules: [{priority: 1, proto: udp, action: redirect}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(`
interfaces: [xa]
queues: [1]
umem: shared
ring: 128
fill_low: 64
frame_size: 2048
bind: copy
attach: generic
poll: wakeup
coalesce: 10us
busy_poll: true
cpus: "0"
burst: 32
tx_batch: 16
drain: 5us
default: transmit
rules: ` + steer + `
pin_dir: /sys/fs/bpf/x
rx_delay: true
rx_delay_sample: 8
rx_metadata: true
rule_series: 5
stages: [count]
`))
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(o)
	for _, f := range reflect.VisibleFields(opts) {
		if v.FieldByIndex(f.Index).IsZero() {
			t.Errorf("Options.%s is zero from a file that sets its key", f.Name)
		}
	}
	if o.Stages[0].Where != "line 24" {
		t.Errorf("the stage's place %q, want line 24", o.Stages[0].Where)
	}
}

// TestCoalesceInTheFilesWords: unset is the default nap, 0 never naps
// (negative for the daemon), and the range is the daemon's.
func TestCoalesceInTheFilesWords(t *testing.T) {
	for _, c := range []struct {
		in   Duration
		want time.Duration
		err  string
	}{
		{Duration{}, xsk.DefaultCoalesce, ""},
		{Duration{0, true}, -1, ""},
		{Duration{time.Millisecond, true}, time.Millisecond, ""},
		{Duration{2 * time.Second, true}, 0, "coalesce 2s: want 0 to 1s"},
		{Duration{-time.Millisecond, true}, 0, "coalesce -1ms: want 0 to 1s"},
	} {
		got, err := ParseCoalesce(c.in)
		if c.err != "" && (err == nil || err.Error() != c.err) || c.err == "" && (err != nil || got != c.want) {
			t.Errorf("%+v: %v, %v; want %v, %q", c.in, got, err, c.want, c.err)
		}
	}
}
