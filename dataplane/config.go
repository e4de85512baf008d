package dataplane

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// Config is `xdpipe run`'s configuration file (LoadConfig): the daemon's
// Options in the file's words, and the command's own settings (Metrics,
// Pprof, Interval). Zero values take the defaults.
type Config struct {
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
	// FrameSize is the UMEM frame size: 2048 or 4096 (default).
	FrameSize uint32 `yaml:"frame_size"`
	// Bind: auto (default), copy or zerocopy.
	Bind string `yaml:"bind"`
	// Attach: auto (default), driver or generic.
	Attach string `yaml:"attach"`
	// Poll: spin (default) or wakeup (pipeline.ParsePollMode).
	Poll string `yaml:"poll"`
	// Coalesce is wakeup mode's longest nap while frames keep coming,
	// instead of sleeping in poll(2) (default 50us; 0: always poll). See
	// xsk.Idler.
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
	// (default 0: they go out at the end of the pass that filled them).
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
	// CPU (a power of two up to 65536; default DefaultRxDelaySample; 1:
	// every frame).
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
	// get a hits series each (default DefaultRuleSeries; -1: every rule);
	// the others' hits add up in one series.
	RuleSeries int `yaml:"rule_series"`
	// Interval between rate lines (default 1s; 0s: none; else at least
	// MinInterval). The daemon does not print; the command does.
	Interval Duration `yaml:"interval"`
	// Stages in order; see StageConfig.
	Stages []StageConfig `yaml:"stages"`
}

// DefaultMetrics is the metrics address when Config.Metrics is empty.
const DefaultMetrics = "127.0.0.1:9464"

// MinInterval is the shortest interval between rate lines, other than 0
// (none): each line reads every socket's statistics, and a hundred a
// second is more than a person or a script watching them needs.
const MinInterval = 10 * time.Millisecond

// WithDefaults fills the defaults of the settings a command prints or
// acts on itself (Metrics, Interval); the daemon applies the rest.
func (c Config) WithDefaults() Config {
	if c.Metrics == "" {
		c.Metrics = DefaultMetrics
	}
	if !c.Interval.Set {
		c.Interval = Duration{time.Second, true}
	}
	return c
}

// QueueList is "all", "0,1", "0-3" or a YAML sequence of queue numbers.
type QueueList string

func (q *QueueList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		parts := make([]string, len(n.Content))
		for i, c := range n.Content {
			parts[i] = c.Value
		}
		*q = QueueList(strings.Join(parts, ","))
		return nil
	}
	*q = QueueList(n.Value)
	return nil
}

// Duration is a time.Duration in YAML ("100us", "1s"); Set says it was
// given (0 can mean something else than unset).
type Duration struct {
	time.Duration
	Set bool
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %s: must not be negative", n.Line, n.Value)
	}
	d.Duration, d.Set = v, true
	return nil
}

// StageConfig is one stage: a bare name ("macswap") or a one-key mapping
// from the name to its options ({pcap: {path: x.pcap, snaplen: 128}}).
type StageConfig struct {
	// Kind is the stage's name in pipeline's registry.
	Kind string
	// Line is where the stage is in the config file (0: from --stages).
	Line int
	// Options is the kind's options value (pipeline.StageKind.Options),
	// decoded from the file.
	Options any
}

// NewStageConfig is a stage of kind with no options set (--stages).
func NewStageConfig(kind string) (StageConfig, error) {
	s, err := NewStage(kind)
	return StageConfig{Kind: s.Kind, Options: s.Options}, err
}

// stage is s as the daemon takes it.
func (s StageConfig) stage() Stage {
	where := "--stages; options need the config file"
	if s.Line > 0 {
		where = fmt.Sprintf("line %d", s.Line)
	}
	return Stage{Kind: s.Kind, Options: s.Options, Where: where}
}

func (s *StageConfig) UnmarshalYAML(n *yaml.Node) error {
	var opts *yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		s.Kind = n.Value
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return fmt.Errorf("line %d: a stage is a name or a mapping of one name to its options", n.Line)
		}
		s.Kind = n.Content[0].Value
		opts = n.Content[1]
	default:
		return fmt.Errorf("line %d: a stage is a name or a mapping of one name to its options", n.Line)
	}
	c, err := NewStageConfig(s.Kind)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	c.Line = n.Line
	*s = c
	switch {
	case opts == nil || opts.Kind == yaml.ScalarNode && opts.Value == "":
		return nil
	case opts.Kind != yaml.MappingNode:
		return fmt.Errorf("line %d: options of stage %s must be a mapping", opts.Line, s.Kind)
	}
	allowed := optionNames(s.Options)
	for i := 0; i < len(opts.Content); i += 2 {
		if k := opts.Content[i].Value; !slices.Contains(allowed, k) {
			return fmt.Errorf("line %d: stage %s has no option %q (options: %s)", opts.Content[i].Line, s.Kind, k, strings.Join(allowed, ", "))
		}
	}
	return opts.Decode(s.Options)
}

// optionNames lists the yaml names of an options struct's fields.
func optionNames(opts any) []string {
	t := reflect.TypeOf(opts).Elem()
	var names []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// LoadConfig reads a config file; unknown keys are errors.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a config file's contents; unknown keys are errors.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(b, err)
	}
	return &c, nil
}

var (
	yamlTypeErr  = regexp.MustCompile("^line ([0-9]+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	yamlFieldErr = regexp.MustCompile(`^line ([0-9]+): field (\S+) not found in type \S+$`)
)

// yamlError puts a decoding error on one line, each problem with its line
// and key and what the key wants, in the words of the file rather than Go's
// type names ("line 2: ring: `abc` is not a whole number").
func yamlError(b []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(b, &doc)
	type at struct {
		line  int
		value string
	}
	keys := map[at]string{} // a value where it is: its key
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				keys[at{n.Content[i+1].Line, n.Content[i+1].Value}] = n.Content[i].Value
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	msgs := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		if m := yamlFieldErr.FindStringSubmatch(e); m != nil {
			msgs[i] = fmt.Sprintf("line %s: unknown key %s", m[1], m[2])
			continue
		}
		m := yamlTypeErr.FindStringSubmatch(e)
		if m == nil {
			msgs[i] = e
			continue
		}
		line, _ := strconv.Atoi(m[1])
		key := ""
		if k, ok := keys[at{line, m[3]}]; ok {
			key = k + ": "
		}
		what := "`" + m[3] + "`"
		switch m[2] {
		case "seq":
			what = "a list"
		case "map":
			what = "a mapping"
		}
		msgs[i] = fmt.Sprintf("line %d: %s%s is not %s", line, key, what, yamlWants(m[4]))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// yamlWants says what a Go type holds, in a config file's words.
func yamlWants(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration with its unit (15s, 1m)"
	case strings.HasPrefix(goType, "uint"):
		return "a whole number, 0 or more"
	case strings.HasPrefix(goType, "int"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a mapping of options" // a struct
}

// Options is the daemon's part of c: the lists and names parsed, the
// rules file loaded. The ranges are checked by Open and Check; Interval,
// the command's, here.
func (c *Config) Options() (Options, error) {
	o := Options{Interfaces: c.Interfaces, Ring: c.Ring, FrameSize: c.FrameSize, BusyPoll: c.BusyPoll,
		Burst: c.Burst, TXBatch: c.TXBatch, Drain: c.Drain.Duration, PinDir: c.PinDir,
		RxDelay: c.RxDelay, RxDelaySample: c.RxDelaySample, RxMetadata: c.RxMetadata, RuleSeries: c.RuleSeries}
	var err error
	if o.Queues, err = parseQueues(string(c.Queues)); err != nil {
		return o, err
	}
	if o.Umem, err = ParseUmemMode(c.Umem); err != nil {
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
		o.Stages = append(o.Stages, s.stage())
	}
	return o, nil
}

// ParseCoalesce is the coalesce setting of every command, 0 to
// MaxCoalesce, as pipeline.WorkerConfig, xsk.Idler and Options take it: a
// file's or flag's 0 (always poll) is negative there, and unset is
// xsk.DefaultCoalesce.
func ParseCoalesce(d Duration) (time.Duration, error) {
	switch co := d.Duration; {
	case co < 0:
		return 0, fmt.Errorf("coalesce %v: want 0 to %v", co, MaxCoalesce)
	case !d.Set:
		return xsk.DefaultCoalesce, nil
	case co == 0:
		return -1, nil
	default:
		return co, CheckCoalesce(co)
	}
}

// ParseQueues parses "all" or a list "0,2" / "0-3" against n queues.
func ParseQueues(s string, n int) ([]int, error) {
	q, err := parseQueues(s)
	if err != nil {
		return nil, err
	}
	return ResolveQueues(q, n)
}

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
		for q := a; q <= b; q++ {
			out = append(out, q)
		}
	}
	return out, nil
}

// ReloadFile applies next, the file read again, to d, which runs run:
// its rules, stages and rule series (Interval is the command's to apply).
// A file that changes a setting only a restart applies is refused in one
// line naming every such key, and nothing is reloaded.
func ReloadFile(d *Daemon, run, next *Config) error {
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
	var re *RestartError
	if errors.As(err, &re) {
		keys = append(fileKeys(re.Settings), keys...)
	} else if err != nil {
		return err
	}
	if len(keys) > 0 {
		return &RestartError{Settings: keys}
	}
	return nil
}

// fileKeys names Options fields by the file's keys: the key of the
// Config field of the same name.
func fileKeys(fields []string) []string {
	t := reflect.TypeFor[Config]()
	keys := make([]string, len(fields))
	for i, name := range fields {
		keys[i] = name
		if f, ok := t.FieldByName(name); ok {
			keys[i], _, _ = strings.Cut(f.Tag.Get("yaml"), ",")
		}
	}
	return keys
}
