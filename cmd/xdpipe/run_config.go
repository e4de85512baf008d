package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// runConfig is `xdpipe run`'s configuration: a YAML file (--config) with
// flags for the common settings on top. Zero values take the defaults.
type runConfig struct {
	// Interfaces are the ports: one AF_XDP socket per interface and queue.
	Interfaces []string `yaml:"interfaces"`
	// Queues: "all" (default) or a list such as [0, 1] or "0,1".
	Queues queueList `yaml:"queues"`
	// Umem: "per-queue" (default: one UMEM per worker, shared by its
	// interfaces so forwarding copies nothing) or "shared" (one for all).
	Umem string `yaml:"umem"`
	// Ring is the RX and TX ring size (default 2048); fill and completion
	// rings get twice as many entries, and each socket 4x ring frames.
	Ring uint32 `yaml:"ring"`
	// FrameSize is the UMEM frame size: 2048 or 4096 (default).
	FrameSize uint32 `yaml:"frame_size"`
	// Bind: auto (default), copy or zerocopy.
	Bind string `yaml:"bind"`
	// Attach: auto (default), driver or generic.
	Attach string `yaml:"attach"`
	// Poll: spin (default) or wait.
	Poll string `yaml:"poll"`
	// Coalesce is wait mode's longest nap while frames keep coming, instead
	// of sleeping in poll(2) (default 50us; 0: always poll). See xsk.Idler.
	Coalesce duration `yaml:"coalesce"`
	// BusyPoll turns on socket busy polling (SO_PREFER_BUSY_POLL): the
	// kernel's NAPI runs in the worker's context on each kick.
	BusyPoll bool `yaml:"busy_poll"`
	// CPUs lists one CPU per worker, in queue order ("0-3", "2,3"); empty:
	// no pinning.
	CPUs string `yaml:"cpus"`
	// Burst is the RX burst size (default 64); TXBatch the TX buffer.
	Burst   int `yaml:"burst"`
	TXBatch int `yaml:"tx_batch"`
	// Drain flushes partial TX batches after this long (default 100us).
	Drain duration `yaml:"drain"`
	// Default is the verdict for frames no stage decided: drop (default)
	// or transmit.
	Default string `yaml:"default"`
	// Rules is a steering rules file (package rules' YAML): the steering
	// program is attached and only frames its rules redirect reach the
	// sockets. Empty: the redirect program sends every frame.
	Rules string `yaml:"rules"`
	// PinDir is the bpffs directory under which the steering program's
	// rule maps are pinned, one subdirectory per interface, for `xdpipe
	// rules --pin PINDIR/IFACE` (default /sys/fs/bpf/xdpipe). Only the maps
	// are pinned, and only while the instance runs.
	PinDir string `yaml:"pin_dir"`
	// Metrics is the Prometheus /metrics and /debug/pprof address
	// (default 127.0.0.1:9464; "off" disables).
	Metrics string `yaml:"metrics"`
	// Interval between rate lines (default 1s; 0s: none).
	Interval duration `yaml:"interval"`
	// Stages in order; see stageConfig.
	Stages []stageConfig `yaml:"stages"`
}

// queueList is "all", "0,1", "0-3" or a YAML sequence of queue numbers.
type queueList string

func (q *queueList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		parts := make([]string, len(n.Content))
		for i, c := range n.Content {
			parts[i] = c.Value
		}
		*q = queueList(strings.Join(parts, ","))
		return nil
	}
	*q = queueList(n.Value)
	return nil
}

// duration is a time.Duration in YAML ("100us", "1s").
type duration struct {
	time.Duration
	set bool
}

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.Duration, d.set = v, true
	return nil
}

// stageKinds are the stage names and the options each accepts.
var stageKinds = map[string][]string{
	"count":   nil,
	"drop":    nil,
	"macswap": nil,
	"forward": {"to"},
	"filter":  {"rules"},
	"rewrite": {"src_mac", "dst_mac", "push_vlan", "pcp", "pop_vlan", "dec_ttl", "ttl", "dscp"},
	"pcap":    {"path", "snaplen", "max_bytes", "buffer"},
	"sample":  {"every", "depth", "snaplen"},
	"rdma":    {"connect"},
}

func stageNames() string {
	n := make([]string, 0, len(stageKinds))
	for k := range stageKinds {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// stageConfig is one stage: a bare name ("macswap") or a one-key mapping
// from the name to its options ({pcap: {path: x.pcap, snaplen: 128}}).
type stageConfig struct {
	Kind string
	Line int
	// forward
	To string `yaml:"to"`
	// filter
	Rules string `yaml:"rules"`
	// pcap, sample
	Path     string `yaml:"path"`
	SnapLen  int    `yaml:"snaplen"`
	MaxBytes int64  `yaml:"max_bytes"`
	Buffer   int    `yaml:"buffer"`
	Every    int    `yaml:"every"`
	Depth    int    `yaml:"depth"`
	// rdma: the sink's address (host:port), see `xdpipe rdma-sink`
	Connect string `yaml:"connect"`
	// rewrite
	SrcMAC   string `yaml:"src_mac"`
	DstMAC   string `yaml:"dst_mac"`
	PushVLAN *int   `yaml:"push_vlan"`
	PCP      int    `yaml:"pcp"`
	PopVLAN  bool   `yaml:"pop_vlan"`
	DecTTL   bool   `yaml:"dec_ttl"`
	TTL      int    `yaml:"ttl"`
	DSCP     *int   `yaml:"dscp"`
}

func (s *stageConfig) UnmarshalYAML(n *yaml.Node) error {
	s.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		s.Kind = n.Value
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return fmt.Errorf("line %d: a stage is a name or a mapping of one name to its options", n.Line)
		}
		s.Kind = n.Content[0].Value
		opts := n.Content[1]
		if opts.Kind == yaml.MappingNode {
			allowed := stageKinds[s.Kind]
			for i := 0; i < len(opts.Content); i += 2 {
				k := opts.Content[i].Value
				if !contains(allowed, k) {
					return fmt.Errorf("line %d: stage %s has no option %q (options: %s)", opts.Content[i].Line, s.Kind, k, strings.Join(allowed, ", "))
				}
			}
			type plain stageConfig
			p := (*plain)(s)
			if err := opts.Decode(p); err != nil {
				return err
			}
		} else if opts.Kind != yaml.ScalarNode || opts.Value != "" {
			return fmt.Errorf("line %d: options of stage %s must be a mapping", opts.Line, s.Kind)
		}
	default:
		return fmt.Errorf("line %d: a stage is a name or a mapping of one name to its options", n.Line)
	}
	if _, ok := stageKinds[s.Kind]; !ok {
		return fmt.Errorf("line %d: unknown stage %q (known: %s)", n.Line, s.Kind, stageNames())
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// loadRunConfig reads a config file; unknown top-level keys are errors.
func loadRunConfig(path string) (*runConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c runConfig
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// resolved is a validated configuration, ready to be wired.
type resolved struct {
	cfg       *runConfig
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
	rdmaSink  string // the rdma stage's sink address, or ""
}

// resolve validates everything that can be checked before anything is
// attached: interfaces, queues, CPUs, modes, rules, stage options.
func resolve(c *runConfig) (*resolved, error) {
	r := &resolved{cfg: c}
	if len(c.Interfaces) == 0 {
		return nil, errors.New("no interfaces: set interfaces in the config or --iface")
	}
	seen := map[string]bool{}
	for _, name := range c.Interfaces {
		if seen[name] {
			return nil, fmt.Errorf("interface %s listed twice", name)
		}
		seen[name] = true
		ifc, err := checkInterface(name, 0)
		if err != nil {
			return nil, err
		}
		r.ifaces = append(r.ifaces, ifc)
	}
	nq := -1
	for _, ifc := range r.ifaces {
		n := rxQueues(ifc.Name)
		if nq < 0 || n < nq {
			nq = n
		}
	}
	var err error
	if r.queues, err = parseQueues(string(c.Queues), nq); err != nil {
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
	switch co := c.Coalesce.Duration; {
	case co < 0 || co > time.Second:
		return nil, fmt.Errorf("coalesce %v: want 0 to 1s", co)
	case !c.Coalesce.set:
		r.coalesce = xsk.DefaultCoalesce
	case co == 0:
		r.coalesce = -1 // never nap
	default:
		r.coalesce = co
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
	if c.Ring == 0 {
		c.Ring = 2048
	}
	if c.Ring&(c.Ring-1) != 0 || c.Ring < 64 {
		return nil, fmt.Errorf("ring %d: want a power of two >= 64", c.Ring)
	}
	if c.Burst > int(c.Ring) {
		return nil, fmt.Errorf("burst %d larger than the ring (%d)", c.Burst, c.Ring)
	}
	if c.Rules != "" {
		set, _, err := rules.LoadFile(c.Rules)
		if err != nil {
			return nil, fmt.Errorf("steering rules: %w", err)
		}
		if err := set.ResolveIfaces(ifindexOf); err != nil {
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
	for _, s := range c.Stages {
		switch {
		case s.Kind == "forward" && !seen[s.To]:
			return nil, fmt.Errorf("stage forward (line %d): output %q is not one of the interfaces %v", s.Line, s.To, c.Interfaces)
		case s.Kind == "rdma" && s.Connect == "":
			return nil, fmt.Errorf("stage rdma (line %d): needs connect: the sink's host:port (xdpipe rdma-sink --listen)", s.Line)
		case s.Kind == "rdma" && r.rdmaSink != "" && s.Connect != r.rdmaSink:
			return nil, fmt.Errorf("stage rdma (line %d): a second sink %s; one rdma sink per instance (%s)", s.Line, s.Connect, r.rdmaSink)
		case s.Kind == "rdma":
			if _, _, err := net.SplitHostPort(s.Connect); err != nil {
				return nil, fmt.Errorf("stage rdma (line %d): connect %q: %w", s.Line, s.Connect, err)
			}
			r.rdmaSink = s.Connect
		}
	}
	return r, nil
}

func ifindexOf(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifc.Index, nil
}

// rxQueues counts an interface's RX queues (1 if sysfs does not say).
func rxQueues(name string) int {
	q, _ := filepath.Glob(filepath.Join("/sys/class/net", name, "queues", "rx-*"))
	if len(q) == 0 {
		return 1
	}
	return len(q)
}

// parseQueues parses "all" or a list "0,2" / "0-3" against n queues.
func parseQueues(s string, n int) ([]int, error) {
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
			if contains(intStrings(out), strconv.Itoa(q)) {
				return nil, fmt.Errorf("queues %q: queue %d listed twice", s, q)
			}
			out = append(out, q)
		}
	}
	return out, nil
}

func intStrings(v []int) []string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return s
}

// stageBuild makes the stage chains, one per worker. Files (pcap) are
// opened here, so an unwritable path fails before anything is attached.
// With several queues each worker captures to its own file (cap.q1.pcap).
type chainSet struct {
	chains  [][]pipeline.Stage
	samples []*pipeline.Sample
}

func (cs *chainSet) close() { _ = cs.close2() }

func (cs *chainSet) close2() error {
	var errs []error
	for _, c := range cs.chains {
		errs = append(errs, pipeline.CloseStages(c))
	}
	return errors.Join(errs...)
}

func buildChains(r *resolved) (_ *chainSet, err error) {
	cs := &chainSet{}
	defer func() {
		if err != nil {
			cs.close()
		}
	}()
	ifindexes := make([]uint32, len(r.ifaces))
	for i, ifc := range r.ifaces {
		ifindexes[i] = uint32(ifc.Index)
	}
	filterSets := map[string]*rules.Set{}
	for _, q := range r.queues {
		var chain []pipeline.Stage
		for _, s := range r.cfg.Stages {
			st, err := buildStage(s, q, len(r.queues) > 1, ifindexes, filterSets)
			if err != nil {
				cs.chains = append(cs.chains, chain)
				return nil, fmt.Errorf("stage %s (line %d): %w", s.Kind, s.Line, err)
			}
			if smp, ok := st.(*pipeline.Sample); ok {
				cs.samples = append(cs.samples, smp)
			}
			chain = append(chain, st)
		}
		cs.chains = append(cs.chains, chain)
	}
	return cs, nil
}

func buildStage(s stageConfig, queue int, perQueue bool, ifindexes []uint32, filterSets map[string]*rules.Set) (pipeline.Stage, error) {
	switch s.Kind {
	case "count":
		return &pipeline.Count{}, nil
	case "drop":
		return &pipeline.Drop{}, nil
	case "macswap":
		return &pipeline.MacSwap{}, nil
	case "forward":
		return &pipeline.Forward{To: s.To}, nil
	case "rdma":
		// Frames go to the worker's rdma output port (an rdmaPort).
		return &pipeline.Forward{To: rdmaOutput}, nil
	case "filter":
		if s.Rules == "" {
			return nil, errors.New("needs rules: a rules file")
		}
		set, ok := filterSets[s.Rules]
		if !ok {
			var err error
			if set, _, err = rules.LoadFile(s.Rules); err != nil {
				return nil, err
			}
			if err := set.ResolveIfaces(ifindexOf); err != nil {
				return nil, err
			}
			filterSets[s.Rules] = set
		}
		m, err := pipeline.NewRuleMatcher(set)
		if err != nil {
			return nil, err
		}
		f, err := pipeline.NewFilter(m)
		if err != nil {
			return nil, err
		}
		f.Ifindexes = ifindexes
		return f, nil
	case "rewrite":
		rw := &pipeline.Rewrite{PopVLAN: s.PopVLAN, DecTTL: s.DecTTL}
		var err error
		if s.SrcMAC != "" {
			if rw.SrcMAC, err = net.ParseMAC(s.SrcMAC); err != nil {
				return nil, err
			}
		}
		if s.DstMAC != "" {
			if rw.DstMAC, err = net.ParseMAC(s.DstMAC); err != nil {
				return nil, err
			}
		}
		if s.PushVLAN != nil {
			if *s.PushVLAN < 1 || *s.PushVLAN > 4094 || s.PCP < 0 || s.PCP > 7 {
				return nil, fmt.Errorf("push_vlan %d pcp %d: want VLAN 1..4094, PCP 0..7", *s.PushVLAN, s.PCP)
			}
			rw.PushVLAN, rw.VLANTCI = true, uint16(s.PCP)<<13|uint16(*s.PushVLAN)
		}
		if s.TTL < 0 || s.TTL > 255 {
			return nil, fmt.Errorf("ttl %d: want 1..255", s.TTL)
		}
		rw.SetTTL = uint8(s.TTL)
		if s.DSCP != nil {
			if *s.DSCP < 0 || *s.DSCP > 63 {
				return nil, fmt.Errorf("dscp %d: want 0..63", *s.DSCP)
			}
			rw.SetDSCP, rw.DSCP = true, uint8(*s.DSCP)
		}
		return rw, rw.Validate()
	case "pcap":
		if s.Path == "" {
			return nil, errors.New("needs path")
		}
		path := s.Path
		if perQueue {
			ext := filepath.Ext(path)
			path = fmt.Sprintf("%s.q%d%s", strings.TrimSuffix(path, ext), queue, ext)
		}
		if s.SnapLen < 0 || s.MaxBytes < 0 || s.Buffer < 0 {
			return nil, errors.New("snaplen, max_bytes and buffer must not be negative")
		}
		return pipeline.NewPcap(pipeline.PcapOptions{Path: path, SnapLen: uint32(s.SnapLen), MaxBytes: s.MaxBytes, BufferSize: s.Buffer})
	case "sample":
		every := s.Every
		if every == 0 {
			every = 1000
		}
		return pipeline.NewSample(every, s.Depth, s.SnapLen)
	}
	return nil, fmt.Errorf("unknown stage %q (known: %s)", s.Kind, stageNames())
}
