package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/ifname"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// plan is validated Options, ready to be wired.
type plan struct {
	// opts are the Options with the defaults filled in (Ring, PinDir,
	// the stages' options), their slices and rules the daemon's own.
	opts   Options
	ifaces []*net.Interface
	queues []int
	def    pipeline.Verdict // VerdictDrop or VerdictTransmit
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
// attached: interfaces, queues, CPUs, modes, rules, the memory it costs.
// Stage options are checked by building the chains (buildChains).
func resolve(o Options, sys system) (*plan, error) {
	r, err := resolveSettings(o, sys)
	if err != nil {
		return nil, err
	}
	costs, err := r.opts.MemoryCosts(len(r.ifaces), len(r.queues), r.possibleCPUs)
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

// ResolveQueues is the queues Options.Queues serves on interfaces with n
// RX queues: every one for none, else the list, checked.
func ResolveQueues(queues []int, n int) ([]int, error) {
	if len(queues) == 0 {
		q := make([]int, n)
		for i := range q {
			q[i] = i
		}
		return q, nil
	}
	for i, q := range queues {
		if q < 0 || q >= n {
			return nil, fmt.Errorf("queue %d: the interfaces have %d RX queues (0 to %d); see `ethtool -l`", q, n, n-1)
		}
		if slices.Contains(queues[:i], q) {
			return nil, fmt.Errorf("queue %d listed twice", q)
		}
	}
	return slices.Clone(queues), nil
}

// resolveSettings is resolve but for the memory check.
func resolveSettings(o Options, sys system) (*plan, error) {
	o.Ring = cmp.Or(o.Ring, DefaultRing)
	o.PinDir = cmp.Or(o.PinDir, bpf.DefaultPinPath)
	o.Interfaces = slices.Clone(o.Interfaces)
	o.CPUs = slices.Clone(o.CPUs)
	r := &plan{opts: o}
	if len(o.Interfaces) == 0 {
		return nil, ErrNoInterfaces
	}
	if err := sys.caps(o.Rules != nil); err != nil {
		return nil, err
	}
	nq := -1
	for i, name := range o.Interfaces {
		if slices.Contains(o.Interfaces[:i], name) {
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
	if r.queues, err = ResolveQueues(o.Queues, nq); err != nil {
		return nil, err
	}
	if len(o.CPUs) > 0 && len(o.CPUs) < len(r.queues) {
		return nil, fmt.Errorf("cpus %v: %d CPUs for %d workers (one per queue)", o.CPUs, len(o.CPUs), len(r.queues))
	}
	for i, c := range o.CPUs {
		if c < 0 || slices.Contains(o.CPUs[:i], c) {
			return nil, fmt.Errorf("cpus %v: cpu %d negative or listed twice", o.CPUs, c)
		}
	}
	if err := CheckCoalesce(o.Coalesce); err != nil {
		return nil, err
	}
	switch o.Default {
	case pipeline.VerdictKeep, pipeline.VerdictDrop:
		r.def = pipeline.VerdictDrop
	case pipeline.VerdictTransmit:
		r.def = pipeline.VerdictTransmit
	default:
		return nil, fmt.Errorf("default verdict %v: want drop or transmit", o.Default)
	}
	if o.Umem != UmemPerQueue && o.Umem != UmemShared {
		return nil, fmt.Errorf("umem mode %v unknown", o.Umem)
	}
	if xsk.CheckRingSize(uint64(o.Ring)) != nil || o.Ring < 64 {
		return nil, fmt.Errorf("ring %d: want a power of two >= 64", o.Ring)
	}
	if o.FillLow > o.Ring {
		return nil, fmt.Errorf("fill_low %d: want at most the ring's %d entries", o.FillLow, o.Ring)
	}
	if o.FillLow > 0 && o.Poll == pipeline.PollWakeup {
		return nil, errors.New("fill_low needs poll: spin: a worker in wakeup mode naps while frames come, and they need the whole fill ring")
	}
	if err := pipeline.CheckBurst(o.Burst, o.TXBatch); err != nil {
		return nil, err
	}
	if o.Burst > int(o.Ring) {
		return nil, fmt.Errorf("burst %d larger than the ring (%d)", o.Burst, o.Ring)
	}
	if o.Drain < 0 {
		return nil, fmt.Errorf("drain %v: must not be negative", o.Drain)
	}
	if s := o.RxDelaySample; s < 0 || s > 1<<16 || s&(s-1) != 0 {
		return nil, fmt.Errorf("rx_delay_sample %d: want a power of two from 1 (every frame) to 65536", s)
	}
	if o.RuleSeries < -1 {
		return nil, fmt.Errorf("rule_series %d: want the number of rules with a series of their own, or -1 for every rule", o.RuleSeries)
	}
	if err := xsk.CheckFrameSize(o.FrameSize); err != nil {
		return nil, err
	}
	if o.Rules != nil {
		// The daemon's own copy: resolving and sorting change the set.
		set := *o.Rules
		set.Rules = slices.Clone(set.Rules)
		if err := set.ResolveIfaces(ifname.Index); err != nil {
			return nil, fmt.Errorf("steering rules: %w", err)
		}
		if err := set.Normalize(); err != nil {
			return nil, fmt.Errorf("steering rules: %w", err)
		}
		r.opts.Rules = &set
	}
	if len(o.Stages) == 0 {
		return nil, ErrNoStages
	}
	r.transmits = r.def == pipeline.VerdictTransmit
	r.opts.Stages = make([]Stage, len(o.Stages))
	for i, s := range o.Stages {
		s, k, err := s.resolved()
		if err != nil {
			return nil, err
		}
		r.opts.Stages[i] = s
		r.transmits = r.transmits || k.Sends
		ro, ok := s.Options.(*pipeline.RDMAOptions)
		if !ok {
			continue
		}
		if r.rdmaSink != "" && ro.Connect != r.rdmaSink {
			return nil, fmt.Errorf("%s: a second sink %s; one rdma sink per instance (%s)", s.where(), ro.Connect, r.rdmaSink)
		}
		r.rdmaSink = ro.Connect
		if err := sys.rdma(); err != nil {
			r.noRDMA = fmt.Errorf("%s: %w", s.where(), err)
		}
	}
	for _, ifc := range r.ifaces {
		po := PortOptions{Iface: ifc.Name, Socket: xsk.SocketOptions{Bind: o.Bind}, Rules: r.opts.Rules, PinDir: o.PinDir}
		if err := sys.checkPort(ifc, po, o.FrameSize); err != nil {
			return nil, err
		}
	}
	for _, ifc := range r.ifaces {
		segs := xsk.Segments(ifc.MTU, o.FrameSize)
		// A VLAN-tagged frame of the MTU is 4 bytes longer.
		r.rdmaSegs = max(r.rdmaSegs, xsk.Segments(ifc.MTU+4, o.FrameSize))
		r.rdmaPacket = max(r.rdmaPacket, ifc.MTU+18)
		if segs == 1 {
			continue
		}
		r.multiBuffer = true
		if burst := cmp.Or(o.Burst, pipeline.DefaultBurstSize); burst < segs {
			return nil, fmt.Errorf("burst %d: a packet of %s (MTU %d) takes %d UMEM frames of %d bytes, more than a burst holds; raise burst to %d or more",
				burst, ifc.Name, ifc.MTU, segs, cmp.Or(o.FrameSize, xsk.DefaultFrameSize), segs)
		}
	}
	if r.possibleCPUs, err = ebpf.PossibleCPU(); err != nil {
		return nil, fmt.Errorf("possible CPUs: %w", err)
	}
	return r, nil
}

// restartSettings names the Options fields in which next differs from
// run, the running plan, that only a restart applies: the sockets, UMEMs,
// workers, program attachment and pins are made once. A reload applies
// the rules, the stages and RuleSeries.
func restartSettings(run, next *plan) []string {
	var out []string
	differ := func(name string, d bool) {
		if d {
			out = append(out, name)
		}
	}
	ro, no := run.opts, next.opts
	burst := func(o Options) int { return cmp.Or(o.Burst, pipeline.DefaultBurstSize) }
	coalesce := func(o Options) time.Duration { return cmp.Or(max(o.Coalesce, -1), xsk.DefaultCoalesce) }
	differ("Interfaces", !slices.Equal(ro.Interfaces, no.Interfaces))
	differ("Queues", !slices.Equal(run.queues, next.queues))
	differ("Umem", ro.Umem != no.Umem)
	differ("Ring", ro.Ring != no.Ring)
	differ("FillLow", ro.FillLow != no.FillLow)
	differ("FrameSize", cmp.Or(ro.FrameSize, xsk.DefaultFrameSize) != cmp.Or(no.FrameSize, xsk.DefaultFrameSize))
	differ("Bind", ro.Bind != no.Bind)
	differ("Attach", ro.Attach != no.Attach)
	differ("Poll", ro.Poll != no.Poll)
	differ("Coalesce", coalesce(ro) != coalesce(no))
	differ("BusyPoll", ro.BusyPoll != no.BusyPoll)
	differ("CPUs", !slices.Equal(ro.CPUs, no.CPUs))
	differ("Burst", burst(ro) != burst(no))
	differ("TXBatch", ro.TXBatch != no.TXBatch && cmp.Or(ro.TXBatch, burst(ro)) != cmp.Or(no.TXBatch, burst(no)))
	differ("Drain", ro.Drain != no.Drain)
	differ("Default", run.def != next.def)
	differ("PinDir", ro.PinDir != no.PinDir)
	differ("RxDelay", ro.RxDelay != no.RxDelay)
	differ("RxDelaySample", ro.RxDelaySample != no.RxDelaySample) // the programs stamp or not
	differ("RxMetadata", ro.RxMetadata != no.RxMetadata)          // bound programs
	return out
}

// chains are the stage chains, one per worker. Files (pcap) are opened
// here, so an unwritable path fails before anything is attached.
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
		for _, s := range r.opts.Stages {
			st, err := s.build(env)
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

// build makes a resolved stage for one worker.
func (s Stage) build(env pipeline.StageEnv) (pipeline.Stage, error) {
	if s.New != nil {
		return s.New(env)
	}
	k, ok := pipeline.LookupStage(s.Kind)
	if !ok {
		return nil, fmt.Errorf("unknown stage %q (known: %s)", s.Kind, pipeline.StageNames())
	}
	return k.New(s.Options, env)
}

// ruleCount is how many rules set holds (nil: none).
func ruleCount(set *rules.Set) int {
	if set == nil {
		return 0
	}
	return len(set.Rules)
}
