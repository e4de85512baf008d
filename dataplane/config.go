package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"gopkg.in/yaml.v3"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/ifname"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// Config is a daemon's configuration: a YAML file (LoadConfig), with
// `xdpipe run`'s flags for the common settings on top. Zero values take
// the defaults.
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
	// Metrics is the Prometheus /metrics address (default
	// 127.0.0.1:9464; "off" disables).
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
	// MinInterval). The daemon does not print; the command that runs it
	// does.
	Interval Duration `yaml:"interval"`
	// Stages in order; see StageConfig.
	Stages []StageConfig `yaml:"stages"`
}

// DefaultRxDelaySample is Config.RxDelaySample's default: one frame in 64
// stamped, on each CPU.
const DefaultRxDelaySample = 64

// rxStamp is the XDP programs' stamp setting for c (bpf.RedirectOptions).
func (c Config) rxStamp() uint32 {
	if !c.RxDelay {
		return 0
	}
	return uint32(cmp.Or(c.RxDelaySample, DefaultRxDelaySample))
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
	k, ok := pipeline.LookupStage(kind)
	if !ok {
		return StageConfig{}, fmt.Errorf("unknown stage %q (known: %s)", kind, pipeline.StageNames())
	}
	return StageConfig{Kind: kind, Options: k.Options()}, nil
}

// where names the stage in errors.
func (s StageConfig) where() string {
	if s.Line == 0 {
		return fmt.Sprintf("stage %s (--stages; options need the config file)", s.Kind)
	}
	return fmt.Sprintf("stage %s (line %d)", s.Kind, s.Line)
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

// ParseCoalesce is the one check of every command's coalesce setting,
// wakeup mode's longest nap: 0 to 1s (unset: xsk.DefaultCoalesce). It
// returns what pipeline.WorkerConfig and xsk.Idler take: negative means
// never nap.
func ParseCoalesce(d Duration) (time.Duration, error) {
	switch co := d.Duration; {
	case co < 0 || co > time.Second:
		return 0, fmt.Errorf("coalesce %v: want 0 to 1s", co)
	case !d.Set:
		return xsk.DefaultCoalesce, nil
	case co == 0:
		return -1, nil
	default:
		return co, nil
	}
}

// plan is a validated configuration, ready to be wired.
type plan struct {
	cfg       Config
	ifaces    []*net.Interface
	queues    []int
	cpus      []int // one per worker, or nil
	bind      xsk.BindMode
	attach    bpf.AttachMode
	poll      pipeline.PollMode
	coalesce  time.Duration // for pipeline.WorkerConfig: negative means never nap
	def       pipeline.Verdict
	steer     *rules.Set // nil: redirect program
	sharedMem bool
	// multiBuffer: an interface's MTU needs packets larger than a UMEM
	// frame, so every socket binds with XDP_USE_SG (the sockets of one
	// worker share a UMEM and must agree).
	multiBuffer bool
	rdmaSink    string // the rdma stage's sink address, or ""
	// noRDMA refuses the rdma stage where no RDMA connection can be made
	// (system.rdma), once its options passed (buildChains).
	noRDMA error
	// rdmaSegs and rdmaPacket are the most UMEM frames and bytes of a
	// packet the rdma stage may ship (the largest MTU's frame with a VLAN
	// tag): the sender's DialOptions.MaxSegments and MaxMessage.
	rdmaSegs, rdmaPacket int
	// transmits: the chain may send packets out of the interfaces (a
	// stage that sends, or the default verdict transmit).
	transmits bool
	checkOnly bool // Check: chains for validation, creating nothing

	// possibleCPUs: the machine's possible CPUs, of which a per-CPU BPF
	// map holds a value each (MemoryCosts).
	possibleCPUs int
}

// resolve validates everything that can be checked before anything is
// attached: interfaces, queues, CPUs, modes, rules, the memory it costs. Stage options are
// checked by building the chains (buildChains).
func resolve(c Config, sys system) (*plan, error) {
	r, err := resolveSettings(c, sys)
	if err != nil {
		return nil, err
	}
	costs, err := r.cfg.MemoryCosts(len(r.ifaces), len(r.queues), r.possibleCPUs)
	if err != nil {
		return nil, err
	}
	if err := checkMemory(sys, costs); err != nil {
		return nil, err
	}
	return r, nil
}

// checkMemory holds costs against what the system allows. Last, once
// every size is known, and before anything is allocated: a typo in a size
// must not bring on the OOM killer.
func checkMemory(sys system, costs []xsk.Cost) error {
	lim, err := sys.memoryLimits()
	if err != nil {
		return err
	}
	return xsk.CheckMemory(costs, lim)
}

// resolveSettings is resolve but for the memory check.
func resolveSettings(c Config, sys system) (*plan, error) {
	if c.Ring == 0 {
		c.Ring = DefaultRing
	}
	if c.PinDir == "" {
		c.PinDir = bpf.DefaultPinPath
	}
	r := &plan{cfg: c}
	if len(c.Interfaces) == 0 {
		return nil, errors.New("no interfaces: set interfaces in the config or --iface")
	}
	if err := sys.caps(c.Rules != ""); err != nil {
		return nil, err
	}
	nq := -1
	for i, name := range c.Interfaces {
		if slices.Contains(c.Interfaces[:i], name) {
			return nil, fmt.Errorf("interface %s listed twice", name)
		}
		ifc, n, err := sys.iface(name)
		if err != nil {
			return nil, err
		}
		r.ifaces = append(r.ifaces, ifc)
		if nq < 0 || n < nq {
			nq = n
		}
	}
	var err error
	if r.queues, err = ParseQueues(string(c.Queues), nq); err != nil {
		return nil, err
	}
	if r.cpus, err = pipeline.ParseCPUList(c.CPUs); err != nil {
		return nil, fmt.Errorf("cpus: %w", err)
	}
	if len(r.cpus) > 0 && len(r.cpus) < len(r.queues) {
		return nil, fmt.Errorf("cpus %q: %d CPUs for %d workers (one per queue)", c.CPUs, len(r.cpus), len(r.queues))
	}
	if r.bind, err = xsk.ParseBindMode(c.Bind); err != nil {
		return nil, err
	}
	if r.attach, err = bpf.ParseAttachMode(c.Attach); err != nil {
		return nil, err
	}
	if r.poll, err = pipeline.ParsePollMode(c.Poll); err != nil {
		return nil, err
	}
	if r.coalesce, err = ParseCoalesce(c.Coalesce); err != nil {
		return nil, err
	}
	switch c.Default {
	case "", "drop":
		r.def = pipeline.VerdictDrop
	case "transmit", "tx":
		r.def = pipeline.VerdictTransmit
	default:
		return nil, fmt.Errorf("default verdict %q: want drop or transmit", c.Default)
	}
	switch c.Umem {
	case "", "per-queue":
	case "shared":
		r.sharedMem = true
	default:
		return nil, fmt.Errorf("umem %q: want per-queue or shared", c.Umem)
	}
	if xsk.CheckRingSize(uint64(c.Ring)) != nil || c.Ring < 64 {
		return nil, fmt.Errorf("ring %d: want a power of two >= 64", c.Ring)
	}
	if err := pipeline.CheckBurst(c.Burst, c.TXBatch); err != nil {
		return nil, err
	}
	if c.Burst > int(c.Ring) {
		return nil, fmt.Errorf("burst %d larger than the ring (%d)", c.Burst, c.Ring)
	}
	if s := c.RxDelaySample; s < 0 || s > 1<<16 || s&(s-1) != 0 {
		return nil, fmt.Errorf("rx_delay_sample %d: want a power of two from 1 (every frame) to 65536", s)
	}
	if c.RuleSeries < -1 {
		return nil, fmt.Errorf("rule_series %d: want the number of rules with a series of their own, or -1 for every rule", c.RuleSeries)
	}
	if err := xsk.CheckFrameSize(c.FrameSize); err != nil {
		return nil, err
	}
	if d := c.Interval.Duration; d > 0 && d < MinInterval {
		return nil, fmt.Errorf("interval %v: want 0 (no rate lines) or at least %v", d, MinInterval)
	}
	if c.Rules != "" {
		set, _, err := rules.LoadFile(c.Rules)
		if err != nil {
			return nil, fmt.Errorf("steering rules: %w", err)
		}
		if err := set.ResolveIfaces(ifname.Index); err != nil {
			return nil, fmt.Errorf("steering rules: %w", err)
		}
		if err := set.Normalize(); err != nil {
			return nil, fmt.Errorf("steering rules %s: %w", c.Rules, err)
		}
		r.steer = set
	}
	if len(c.Stages) == 0 {
		return nil, errors.New("no stages: list them in the config or with --stages")
	}
	r.transmits = r.def == pipeline.VerdictTransmit
	for _, s := range c.Stages {
		if k, _ := pipeline.LookupStage(s.Kind); k.Sends {
			r.transmits = true
		}
		o, ok := s.Options.(*pipeline.RDMAOptions)
		if !ok {
			continue
		}
		if r.rdmaSink != "" && o.Connect != r.rdmaSink {
			return nil, fmt.Errorf("%s: a second sink %s; one rdma sink per instance (%s)", s.where(), o.Connect, r.rdmaSink)
		}
		r.rdmaSink = o.Connect
		if err := sys.rdma(); err != nil {
			r.noRDMA = fmt.Errorf("%s: %w", s.where(), err)
		}
	}
	for _, ifc := range r.ifaces {
		o := PortOptions{Iface: ifc.Name, Socket: xsk.SocketOptions{Bind: r.bind}, Rules: r.steer, PinDir: c.PinDir}
		if err := sys.checkPort(ifc, o, c.FrameSize); err != nil {
			return nil, err
		}
	}
	for _, ifc := range r.ifaces {
		segs := xsk.Segments(ifc.MTU, c.FrameSize)
		// A VLAN-tagged frame of the MTU is 4 bytes longer.
		r.rdmaSegs = max(r.rdmaSegs, xsk.Segments(ifc.MTU+4, c.FrameSize))
		r.rdmaPacket = max(r.rdmaPacket, ifc.MTU+18)
		if segs == 1 {
			continue
		}
		r.multiBuffer = true
		if burst := cmp.Or(c.Burst, pipeline.DefaultBurstSize); burst < segs {
			return nil, fmt.Errorf("burst %d: a packet of %s (MTU %d) takes %d UMEM frames of %d bytes, more than a burst holds; raise burst to %d or more",
				burst, ifc.Name, ifc.MTU, segs, cmp.Or(c.FrameSize, xsk.DefaultFrameSize), segs)
		}
	}
	if r.possibleCPUs, err = ebpf.PossibleCPU(); err != nil {
		return nil, fmt.Errorf("possible CPUs: %w", err)
	}
	return r, nil
}

// restartSettings names, as the file does, the settings in which next
// differs from run, the running plan, that only a restart applies: the
// sockets, UMEMs, workers, program attachment, pins and metrics listener
// are made once. A reload applies the rules, the stages and (the
// command's) interval.
func restartSettings(run, next *plan) []string {
	var out []string
	differ := func(name string, d bool) {
		if d {
			out = append(out, name)
		}
	}
	rc, nc := run.cfg, next.cfg
	burst := func(c Config) int { return cmp.Or(c.Burst, pipeline.DefaultBurstSize) }
	differ("interfaces", !slices.Equal(rc.Interfaces, nc.Interfaces))
	differ("queues", !slices.Equal(run.queues, next.queues))
	differ("umem", run.sharedMem != next.sharedMem)
	differ("ring", rc.Ring != nc.Ring)
	differ("frame_size", cmp.Or(rc.FrameSize, xsk.DefaultFrameSize) != cmp.Or(nc.FrameSize, xsk.DefaultFrameSize))
	differ("bind", run.bind != next.bind)
	differ("attach", run.attach != next.attach)
	differ("poll", run.poll != next.poll)
	differ("coalesce", run.coalesce != next.coalesce)
	differ("busy_poll", rc.BusyPoll != nc.BusyPoll)
	differ("cpus", !slices.Equal(run.cpus, next.cpus))
	differ("burst", burst(rc) != burst(nc))
	differ("tx_batch", rc.TXBatch != nc.TXBatch && cmp.Or(rc.TXBatch, burst(rc)) != cmp.Or(nc.TXBatch, burst(nc)))
	differ("drain", rc.Drain.Duration != nc.Drain.Duration)
	differ("default", run.def != next.def)
	differ("pin_dir", rc.PinDir != nc.PinDir)
	differ("metrics", rc.WithDefaults().Metrics != nc.WithDefaults().Metrics)
	differ("pprof", rc.Pprof != nc.Pprof)
	differ("rx_delay", rc.RxDelay != nc.RxDelay)
	differ("rx_delay_sample", rc.RxDelaySample != nc.RxDelaySample) // the programs stamp or not
	differ("rx_metadata", rc.RxMetadata != nc.RxMetadata)           // bound programs
	return out
}

// ParseQueues parses "all" or a list "0,2" / "0-3" against n queues.
func ParseQueues(s string, n int) ([]int, error) {
	s = strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "[]"))
	if s == "" || s == "all" {
		q := make([]int, n)
		for i := range q {
			q[i] = i
		}
		return q, nil
	}
	var out []int
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
			if q < 0 || q >= n {
				return nil, fmt.Errorf("queue %d: the interfaces have %d RX queues (0 to %d); see `ethtool -l`", q, n, n-1)
			}
			if slices.Contains(out, q) {
				return nil, fmt.Errorf("queues %q: queue %d listed twice", s, q)
			}
			out = append(out, q)
		}
	}
	return out, nil
}

// chains are the stage chains, one per worker, built from the registry.
// Files (pcap) are opened here, so an unwritable path fails before
// anything is attached.
type chains struct {
	chains  [][]pipeline.Stage
	samples []*pipeline.Sample
}

// close closes the stages that hold resources (pcap files).
func (cs *chains) close() error {
	var errs []error
	for _, c := range cs.chains {
		errs = append(errs, pipeline.CloseStages(c))
	}
	return errors.Join(errs...)
}

func buildChains(r *plan) (_ *chains, err error) {
	cs := &chains{}
	defer func() {
		if err != nil {
			_ = cs.close()
		}
	}()
	env := pipeline.StageEnv{PerQueue: len(r.queues) > 1, CheckOnly: r.checkOnly}
	for _, ifc := range r.ifaces {
		env.Ports = append(env.Ports, ifc.Name)
		env.Ifindexes = append(env.Ifindexes, uint32(ifc.Index))
	}
	for _, q := range r.queues {
		env.Queue = q
		var chain []pipeline.Stage
		for _, s := range r.cfg.Stages {
			k, ok := pipeline.LookupStage(s.Kind)
			if !ok {
				return nil, fmt.Errorf("unknown stage %q (known: %s)", s.Kind, pipeline.StageNames())
			}
			st, err := k.New(s.Options, env)
			if err != nil {
				cs.chains = append(cs.chains, chain)
				return nil, fmt.Errorf("%s: %w", s.where(), err)
			}
			if st == nil { // CheckOnly
				continue
			}
			if smp, ok := st.(*pipeline.Sample); ok {
				cs.samples = append(cs.samples, smp)
			}
			chain = append(chain, st)
		}
		cs.chains = append(cs.chains, chain)
	}
	if r.noRDMA != nil {
		return nil, r.noRDMA
	}
	return cs, nil
}

// StageList names the stages, comma-separated.
func StageList(s []StageConfig) string {
	n := make([]string, len(s))
	for i, st := range s {
		n[i] = st.Kind
	}
	return strings.Join(n, ",")
}
