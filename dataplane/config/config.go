// Package config is `xdpipe run`'s configuration file: YAML parsed into a
// File, whose Options are the dataplane.Options the daemon takes, beside
// the command's own settings (the metrics and pprof addresses, the rate
// lines' interval). Each setting's range is checked by the package that
// owns it (dataplane, pipeline, xsk); this package checks the file's
// words and says where they are: one line per error, with the file, the
// line and the key.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// File is `xdpipe run`'s configuration file (Load): the daemon's
// dataplane.Options in the file's words, each key the field of the same
// name, and the command's own settings (Metrics, Pprof, Interval). Zero
// values take the defaults.
type File struct {
	// Interfaces are the ports: one AF_XDP socket per interface and queue.
	Interfaces []string `yaml:"interfaces"`
	// Queues: "all" (default) or a list such as [0, 1] or "0,1".
	Queues QueueList `yaml:"queues"`
	// Umem: "per-queue" (default: one UMEM per worker, shared by its
	// interfaces so forwarding copies nothing) or "shared" (one for all).
	Umem string `yaml:"umem"`
	// Ring is the RX, TX and fill ring size (default 2048); completion
	// rings get twice as many entries, and each socket 4x ring frames.
	Ring uint32 `yaml:"ring"`
	// FillLow lets a spinning worker keep as few as this many frames on
	// each fill ring while traffic is light (default: the whole ring): lower
	// latency, but a stall loses what arrives beyond them.
	FillLow uint32 `yaml:"fill_low"`
	// FrameSize is the UMEM frame size: 2048 or 4096 (default).
	FrameSize uint32 `yaml:"frame_size"`
	// Bind: auto (default), copy or zerocopy.
	Bind string `yaml:"bind"`
	// Attach: auto (default), driver or generic.
	Attach string `yaml:"attach"`
	// Poll: spin (default) or wakeup (pipeline.ParsePollMode).
	Poll string `yaml:"poll"`
	// Coalesce is wakeup mode's longest nap while frames keep coming,
	// instead of sleeping in poll(2) (default xsk.DefaultCoalesce; 0:
	// always poll). See xsk.Idler.
	Coalesce Duration `yaml:"coalesce"`
	// BusyPoll turns on socket busy polling (SO_PREFER_BUSY_POLL): the
	// kernel's NAPI runs in the worker's context on each kick.
	BusyPoll bool `yaml:"busy_poll"`
	// CPUs lists one CPU per worker, in queue order ("0-3", "2,3"); empty:
	// no pinning.
	CPUs string `yaml:"cpus"`
	// Burst is the RX burst size (default 64); TXBatch the TX buffer.
	Burst   int `yaml:"burst"`
	TXBatch int `yaml:"tx_batch"`
	// Drain lets partial TX batches wait up to this long for more packets
	// (default 0: they go out as soon as the burst that filled them is
	// processed).
	Drain Duration `yaml:"drain"`
	// Default is the verdict for frames no stage decided: drop (default)
	// or transmit.
	Default string `yaml:"default"`
	// Rules is a steering rules file (package rules' YAML): the steering
	// program is attached and only frames its rules redirect reach the
	// sockets. Empty: the redirect program sends every frame.
	Rules string `yaml:"rules"`
	// PinDir is the bpffs directory under which the steering program's
	// rule maps are pinned, one subdirectory per interface named by its
	// namespace and index (bpf.PinPathFor), for `xdpipe rules --iface
	// IFACE --pin-dir PINDIR` (default /sys/fs/bpf/xdpipe). Only the maps
	// are pinned, and only while the daemon runs.
	PinDir string `yaml:"pin_dir"`
	// RxDelay has the XDP program stamp frames it redirects with the time
	// and the workers count, per queue, how long they took from the XDP
	// hook to the stage chain: xdpipe_rx_delay_seconds. A stamp costs the
	// program a clock read, so it stamps one frame in RxDelaySample on each
	// CPU (a power of two up to 65536; default
	// dataplane.DefaultRxDelaySample; 1: every frame).
	RxDelay       bool `yaml:"rx_delay"`
	RxDelaySample int  `yaml:"rx_delay_sample"`
	// RxMetadata has each interface's XDP program read the driver's RX
	// hash and timestamp (the XDP metadata kfuncs) into the packets'
	// RxHash and RxTimestamp, for the stages: the program is then bound to
	// its interface and attached in driver mode. An interface whose driver
	// offers none (the start line's xdp-rx-metadata) gets the plain
	// program, with a warning.
	RxMetadata bool `yaml:"rx_metadata"`
	// Metrics is the Prometheus /metrics address the command serves
	// (default 127.0.0.1:9464; "off" disables).
	Metrics string `yaml:"metrics"`
	// Pprof, if set, is an address serving Go's /debug/pprof: CPU and
	// heap profiles, goroutine dumps and the command line, to whoever
	// reaches it; profiling also takes CPU from the data path. Off by
	// default; for debugging, on 127.0.0.1.
	Pprof string `yaml:"pprof"`
	// RuleSeries is how many steering rules, those with the most hits,
	// get a hits series each (default dataplane.DefaultRuleSeries; -1:
	// every rule);
	// the others' hits add up in one series.
	RuleSeries int `yaml:"rule_series"`
	// Interval between rate lines (default 1s; 0s: none; else at least
	// MinInterval). The daemon does not print; the command does.
	Interval Duration `yaml:"interval"`
	// Stages in order; see Stage.
	Stages []Stage `yaml:"stages"`
}

// DefaultMetrics is the metrics address when File.Metrics is empty.
const DefaultMetrics = "127.0.0.1:9464"

// MinInterval is the shortest interval between rate lines, other than 0
// (none): each line reads every socket's statistics, and a hundred a
// second is more than a person or a script watching them needs.
const MinInterval = 10 * time.Millisecond

// WithDefaults fills the defaults of the settings a command prints or
// acts on itself (Metrics, Interval); the daemon applies the rest.
func (c File) WithDefaults() File {
	if c.Metrics == "" {
		c.Metrics = DefaultMetrics
	}
	if !c.Interval.Set {
		c.Interval = Duration{time.Second, true}
	}
	return c
}

// Options is the daemon's part of c: the lists and names parsed, the
// rules file loaded. The ranges are checked by dataplane's Open and
// Check; Interval, the command's, here.
func (c *File) Options() (dataplane.Options, error) {
	o := dataplane.Options{Interfaces: c.Interfaces, Ring: c.Ring, FillLow: c.FillLow, FrameSize: c.FrameSize, BusyPoll: c.BusyPoll,
		Burst: c.Burst, TXBatch: c.TXBatch, Drain: c.Drain.Duration, PinDir: c.PinDir,
		RxDelay: c.RxDelay, RxDelaySample: c.RxDelaySample, RxMetadata: c.RxMetadata, RuleSeries: c.RuleSeries}
	var err error
	if o.Queues, err = parseQueues(string(c.Queues)); err != nil {
		return o, err
	}
	if o.Umem, err = dataplane.ParseUmemMode(c.Umem); err != nil {
		return o, err
	}
	if o.Bind, err = xsk.ParseBindMode(c.Bind); err != nil {
		return o, err
	}
	if o.Attach, err = bpf.ParseAttachMode(c.Attach); err != nil {
		return o, err
	}
	if o.Poll, err = pipeline.ParsePollMode(c.Poll); err != nil {
		return o, err
	}
	if o.Coalesce, err = ParseCoalesce(c.Coalesce); err != nil {
		return o, err
	}
	if o.CPUs, err = pipeline.ParseCPUList(c.CPUs); err != nil {
		return o, fmt.Errorf("cpus: %w", err)
	}
	switch c.Default {
	case "", "drop":
		o.Default = pipeline.VerdictDrop
	case "transmit", "tx":
		o.Default = pipeline.VerdictTransmit
	default:
		return o, fmt.Errorf("default verdict %q: want drop or transmit", c.Default)
	}
	if d := c.Interval.Duration; d > 0 && d < MinInterval {
		return o, fmt.Errorf("interval %v: want 0 (no rate lines) or at least %v", d, MinInterval)
	}
	if c.Rules != "" {
		if o.Rules, _, err = rules.LoadFile(c.Rules); err != nil {
			return o, fmt.Errorf("steering rules: %w", err)
		}
	}
	for _, s := range c.Stages {
		o.Stages = append(o.Stages, dataplane.Stage(s))
	}
	return o, nil
}

// ParseCoalesce is the coalesce setting of every command, 0 to
// dataplane.MaxCoalesce, as pipeline.WorkerConfig, xsk.Idler and Options
// take it: a file's or flag's 0 (always poll) is negative there, and
// unset is xsk.DefaultCoalesce.
func ParseCoalesce(d Duration) (time.Duration, error) {
	switch co := d.Duration; {
	case co < 0:
		return 0, fmt.Errorf("coalesce %v: want 0 to %v", co, dataplane.MaxCoalesce)
	case !d.Set:
		return xsk.DefaultCoalesce, nil
	case co == 0:
		return -1, nil
	default:
		return co, dataplane.CheckCoalesce(co)
	}
}

// ParseQueues parses "all" or a list "0,2" / "0-3" against n queues.
func ParseQueues(s string, n int) ([]int, error) {
	q, err := parseQueues(s)
	if err != nil {
		return nil, err
	}
	return dataplane.ResolveQueues(q, n)
}

// maxQueue bounds the queue numbers a list may hold: a typo in a range
// must not make a list of billions.
const maxQueue = 1<<16 - 1

// parseQueues parses "all" (nil) or a list "0,2" / "0-3".
func parseQueues(s string) ([]int, error) {
	s = strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "[]"))
	if s == "" || s == "all" {
		return nil, nil
	}
	out := []int{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("queues %q: bad queue %q", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("queues %q: bad range %q", s, part)
			}
		}
		if a < 0 || b > maxQueue {
			return nil, fmt.Errorf("queues %q: queue numbers go from 0 to %d", s, maxQueue)
		}
		for q := a; q <= b; q++ {
			out = append(out, q)
		}
	}
	return out, nil
}

// Reload applies next, the file read again, to d, which runs run: its
// rules, stages and rule series (Interval is the command's to apply). A
// file that changes a setting only a restart applies is refused with a
// *dataplane.RestartError naming every such key, and nothing is
// reloaded.
func Reload(d *dataplane.Daemon, run, next *File) error {
	o, err := next.Options()
	if err != nil {
		return err
	}
	// The command's listeners are made once too.
	var keys []string
	r, n := run.WithDefaults(), next.WithDefaults()
	if r.Metrics != n.Metrics {
		keys = append(keys, "metrics")
	}
	if r.Pprof != n.Pprof {
		keys = append(keys, "pprof")
	}
	if len(keys) > 0 {
		err = d.CheckReload(o)
	} else {
		err = d.Reload(o)
	}
	var re *dataplane.RestartError
	if errors.As(err, &re) {
		keys = append(fileKeys(re.Settings), keys...)
	} else if err != nil {
		return err
	}
	if len(keys) > 0 {
		return &dataplane.RestartError{Settings: keys}
	}
	return nil
}

// fileKeys names Options fields by the file's keys: the key of the File
// field of the same name.
func fileKeys(fields []string) []string {
	t := reflect.TypeFor[File]()
	keys := make([]string, len(fields))
	for i, name := range fields {
		keys[i] = name
		if f, ok := t.FieldByName(name); ok {
			keys[i] = yamlKey(f)
		}
	}
	return keys
}
