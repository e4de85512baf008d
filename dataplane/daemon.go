package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// Daemon is a running pipeline: per interface an XDP program and one
// AF_XDP socket per queue, per queue a UMEM (or one shared) and a worker
// that runs the stage chain. Open makes it, Run drives it until its
// context ends, Reload swaps rules and stages under traffic, Collector
// exports its metrics for the caller to serve, Account checks where every
// frame is, Close releases it all. It opens no listener and parses no
// configuration file: the caller does both.
type Daemon struct {
	log *slog.Logger
	sys system

	reload sync.Mutex // one Reload at a time
	mu     sync.Mutex // p.opts.Rules and RuleSeries, chains and the ports' programs: Reload, detach, scrapes
	p      *plan
	chains *chains

	umems   []umem
	names   []string // umems[i]'s name: "shared" or "q<queue>"
	ports   []port   // per interface
	socks   [][]socket
	conns   []rdmaConn // per worker, with an rdma stage
	rdma    []*rdmaPort
	workers []*pipeline.Worker
	// scrape is steerMetrics' buffers, one scrape at a time.
	scrapeMu sync.Mutex
	scrape   struct {
		stats []bpf.RuleStat
		top   []int
	}
	closed bool
}

// Open validates o (interfaces, queues, CPUs, rules, stage options and
// files, the memory it costs) before it attaches anything, then makes the
// UMEMs, opens a Port per interface and builds the workers; log (nil:
// slog.Default()) gets what they report. ctx bounds the opening (the rdma
// stage's connections), not the daemon: Run runs it, Close releases it.
// On error everything it made is undone.
func Open(ctx context.Context, o Options, log *slog.Logger) (*Daemon, error) {
	return open(ctx, o, log, kernel{})
}

func open(ctx context.Context, o Options, log *slog.Logger, sys system) (_ *Daemon, err error) {
	if log == nil {
		log = slog.Default()
	}
	p, err := resolve(o, sys)
	if err != nil {
		return nil, err
	}
	cs, err := buildChains(p)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, sys: sys, p: p, chains: cs}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := d.open(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// open makes the UMEMs, connects the RDMA outputs, opens the ports and
// builds the workers.
func (d *Daemon) open(ctx context.Context) error {
	p := d.p
	ring := p.opts.Ring
	// Frames per socket: the fill ring, the RX ring, the TX ring and what
	// the stages hold. The fill ring is no deeper than the RX ring: the
	// kernel writes into the frames it holds in turn, and the fewer they
	// are, the more of them the caches keep; more than the RX ring can
	// take would buy no burst the RX ring could absorb.
	perSocket := 4 * ring
	umemOpts := func(sockets int) xsk.UmemOptions {
		return xsk.UmemOptions{NumFrames: uint32(sockets) * perSocket, FrameSize: p.opts.FrameSize,
			FillSize: ring, CompletionSize: 2 * ring}
	}
	mems := make([]umem, len(p.queues)) // per worker
	for wi, q := range p.queues {
		if p.opts.Umem == UmemShared && wi > 0 {
			mems[wi] = mems[0]
			continue
		}
		n, name := len(p.ifaces), fmt.Sprintf("q%d", q)
		if p.opts.Umem == UmemShared {
			n, name = len(p.ifaces)*len(p.queues), "shared"
		}
		u, err := d.sys.umem(umemOpts(n))
		if err != nil {
			return fmt.Errorf("umem %s: %w", name, err)
		}
		d.umems, d.names = append(d.umems, u), append(d.names, name)
		mems[wi] = u
	}
	if p.rdmaSink != "" {
		for _, u := range mems {
			if err := d.dialRDMA(ctx, u); err != nil {
				return err
			}
		}
	}
	d.socks = make([][]socket, len(p.queues))
	for _, ifc := range p.ifaces {
		pt, err := d.sys.openPort(PortOptions{
			Iface: ifc.Name, Queues: p.queues,
			Socket: xsk.SocketOptions{RXSize: ring, TXSize: ring, Bind: p.opts.Bind, BusyPoll: p.opts.BusyPoll,
				MultiBuffer: p.multiBuffer, FillLow: p.opts.FillLow},
			TakesMultiBuffer: true, Transmits: p.transmits,
			Rules: p.opts.Rules, RxStamp: p.opts.rxStamp(), RxMetadata: p.opts.RxMetadata, Attach: p.opts.Attach, PinDir: p.opts.PinDir, Log: d.log,
		}, mems)
		if err != nil {
			return err
		}
		d.ports = append(d.ports, pt)
		for wi, s := range pt.sockets() {
			d.socks[wi] = append(d.socks[wi], s)
		}
	}
	for wi, q := range p.queues {
		var ports []pipeline.NamedPort
		for i, ifc := range p.ifaces {
			ports = append(ports, pipeline.NamedPort{Name: ifc.Name, Port: d.socks[wi][i]})
		}
		if d.rdma != nil {
			ports = append(ports, pipeline.NamedPort{Name: pipeline.RDMAOutput, Port: d.rdma[wi]})
		}
		var cpu pipeline.CPU
		if len(p.opts.CPUs) > 0 {
			cpu = pipeline.OnCPU(p.opts.CPUs[wi])
		}
		w, err := pipeline.NewWorker(pipeline.WorkerConfig{Queue: q, Ports: ports, Mem: mems[wi], Stages: d.chains.chains[wi],
			BurstSize: p.opts.Burst, TXBatch: p.opts.TXBatch, DrainInterval: p.opts.Drain, Default: p.def,
			Poll: p.opts.Poll, Coalesce: p.opts.Coalesce, RXRing: int(ring), CPU: cpu, RxDelay: p.opts.RxDelay, RxMetadata: p.opts.RxMetadata, Logger: d.log})
		if err != nil {
			return err
		}
		d.workers = append(d.workers, w)
	}
	return nil
}

// dialRDMA connects one worker's RDMA output to the sink, registering the
// worker's UMEM so frames ship from it without a copy. A connection
// takes at most rdmaDialTimeout.
func (d *Daemon) dialRDMA(ctx context.Context, u umem) error {
	ctx, cancel := context.WithTimeout(ctx, rdmaDialTimeout)
	defer cancel()
	c, err := d.sys.dialRDMA(ctx, d.p.rdmaSink, u, rdma.DialOptions{MaxSegments: d.p.rdmaSegs, MaxMessage: d.p.rdmaPacket})
	if err != nil {
		return fmt.Errorf("rdma stage: connect to %s: %w", d.p.rdmaSink, err)
	}
	d.conns = append(d.conns, c)
	batch := d.p.opts.TXBatch
	if batch <= 0 {
		batch = pipeline.DefaultBurstSize
	}
	batch = max(batch, d.p.rdmaSegs) // room for a whole packet
	// Frames wait for the sink's credits up to a ring's worth, as many as
	// the socket's TX ring would hold.
	d.rdma = append(d.rdma, newRDMAPort(c, u, batch, int(d.p.opts.Ring), d.log))
	return nil
}

// rdmaDialTimeout bounds one RDMA connection's setup.
const rdmaDialTimeout = 10 * time.Second

// Queues are the queues the daemon serves, one worker each.
func (d *Daemon) Queues() []int { return slices.Clone(d.p.queues) }

// PortInfo describes an open interface for a start line.
type PortInfo struct {
	// Name is the interface; XDP its driver's XDP features (Port.XDP);
	// Mode its sockets' bind mode with why auto bound copy mode
	// (ModeText of the first queue's socket).
	Name, XDP, Mode string
}

// Ports describes the open interfaces, in Options.Interfaces order.
func (d *Daemon) Ports() []PortInfo {
	out := make([]PortInfo, len(d.ports))
	for i, pt := range d.ports {
		out[i] = pt.info()
		out[i].Name = d.p.ifaces[i].Name
	}
	return out
}

// Run runs the workers and the sample stages' slow paths until ctx ends;
// then it detaches the XDP programs (nothing new arrives) and stops the
// workers, which flush TX and wait for completions.
// It returns the workers' errors (a CPU that cannot be pinned). It also
// stops, with an error wrapping ErrDataPathLost, when an interface is
// deleted or its XDP program removed or replaced: it never runs on
// silently.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	for _, s := range d.chains.samples {
		go slowPath(d.log, s)
	}
	steering := d.p.opts.Rules != nil // a Reload may change the rules
	d.mu.Unlock()
	uctx, stopUnbound := context.WithCancel(ctx)
	var uwg sync.WaitGroup
	uwg.Go(func() { WarnUnbound(uctx, d.Unbound, func(h string) { d.log.Warn(h) }) })
	var xs []*xsk.Socket
	for _, s := range slices.Concat(d.socks...) {
		if x, ok := s.(*xsk.Socket); ok {
			xs = append(xs, x)
		}
	}
	uwg.Go(func() { WarnMTU(uctx, xs, func(h string) { d.log.Warn(h) }) })
	if d.p.opts.BusyPoll {
		uwg.Go(func() {
			WarnIdleBusyPoll(uctx, xs, func() (n uint64) {
				for _, c := range d.Counts() {
					n += c.RX
				}
				return n
			}, func(h string) { d.log.Warn(h) })
		})
	}
	defer func() { stopUnbound(); uwg.Wait() }()
	d.log.Info("running", "queues", d.p.queues, "interfaces", d.p.opts.Interfaces, "poll", d.p.opts.Poll.String(), "cpus", d.p.opts.CPUs,
		"umem", d.p.opts.Umem.String(), "steering", steering, "rx_delay", d.p.opts.RxDelay,
		"rx_metadata", d.p.opts.RxMetadata)
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	errs := make([]error, len(d.workers))
	var wg sync.WaitGroup
	for i, w := range d.workers {
		wg.Go(func() {
			if errs[i] = w.Run(wctx); errs[i] != nil {
				d.log.Error("worker failed", "queue", w.Queue(), "err", errs[i])
			}
		})
	}
	fault := make(chan netdev.LinkEvent, len(d.ports))
	for _, pt := range d.ports {
		if c := pt.faults(); c != nil {
			go func() {
				if ev, ok := <-c; ok {
					fault <- ev
				}
			}()
		}
	}
	var lost error
	select {
	case <-ctx.Done():
	case ev := <-fault:
		lost = fmt.Errorf("%w: %s", ErrDataPathLost, ev)
		d.log.Error("stopping", "err", lost)
	}
	d.detach()
	stop()
	wg.Wait()
	return errors.Join(append(errs, lost)...)
}

// ErrDataPathLost: Run stopped because an interface was deleted, or its XDP
// program replaced or removed by someone else (Port.Faults).
var ErrDataPathLost = errors.New("data path lost")

// Reload swaps in o's steering rules, stages and RuleSeries without
// closing a socket; the workers keep running. It returns once every
// worker runs the new chain (at its next pass) or has stopped. o is
// validated as Open and Check validate it; the memory check prices what
// the reload allocates, the new stages, against the memory left beside
// what runs. Every other setting needs new sockets, UMEMs, workers or
// attachments: an o that changes one is refused with a *RestartError
// naming them. A refused o changes nothing: the previous rules and stages
// keep running.
func (d *Daemon) Reload(o Options) error {
	d.reload.Lock()
	defer d.reload.Unlock()
	p, err := d.checkReload(o)
	if err != nil {
		return err
	}
	cs, err := buildChains(p)
	if err != nil {
		return err
	}
	d.mu.Lock()
	var dropped []string // rules added at run time that the file replaces
	for _, pt := range d.ports {
		if st := pt.steer(); st != nil {
			dropped = append(dropped, addedAtRunTime(st, d.p.opts.Rules)...)
			if err := st.Apply(p.opts.Rules); err != nil {
				d.mu.Unlock()
				_ = cs.close()
				return fmt.Errorf("steering rules: %w", err)
			}
		}
	}
	d.p.opts.Rules = p.opts.Rules
	d.p.opts.RuleSeries = p.opts.RuleSeries
	d.mu.Unlock()
	// Without d.mu: the swap waits for each worker's next pass, and a stop
	// (detach) must not wait for it. It is not cancelled: a worker takes
	// a chain it was handed at its next pass. The chains were built for
	// the same outputs, so binding them does not fail.
	var swapErr error
	swapped := 0
	for i, w := range d.workers {
		old, err := w.SetStages(context.Background(), cs.chains[i])
		if err != nil {
			swapErr = fmt.Errorf("queue %d: %w", w.Queue(), err)
			break
		}
		swapped++
		if err := pipeline.CloseStages(old); err != nil {
			d.log.Warn("closing old stages", "queue", w.Queue(), "err", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Workers that did not swap keep their chains; the new ones they did
	// not take are closed.
	for i := swapped; i < len(cs.chains); i++ {
		_ = pipeline.CloseStages(cs.chains[i])
		cs.chains[i] = d.chains.chains[i]
	}
	for _, s := range cs.samples {
		go slowPath(d.log, s)
	}
	d.chains = cs
	if swapErr != nil {
		return swapErr
	}
	if len(dropped) > 0 {
		d.log.Warn("reloaded: the new rules replaced rules added at run time through the pinned maps; add them to the new rules to keep them",
			"stages", StageList(o.Stages), "steering_rules", ruleCount(o.Rules), "replaced", slices.Compact(dropped))
	} else {
		d.log.Info("reloaded", "stages", StageList(o.Stages), "steering_rules", ruleCount(o.Rules))
	}
	return nil
}

// CheckReload says whether Reload would take o, changing nothing: nil, a
// *RestartError, or what is wrong with o.
func (d *Daemon) CheckReload(o Options) error {
	_, err := d.checkReload(o)
	return err
}

// checkReload validates o for Reload: what Open would refuse, the
// settings only a restart applies, the memory the new stages take.
func (d *Daemon) checkReload(o Options) (*plan, error) {
	p, err := resolveSettings(o, d.sys)
	if err != nil {
		return nil, err
	}
	if s := restartSettings(d.p, p); len(s) > 0 {
		return nil, &RestartError{Settings: s}
	}
	if err := checkMemory(d.sys, p.opts.stageCosts(len(p.queues))); err != nil {
		return nil, err
	}
	if (p.opts.Rules == nil) != (d.p.opts.Rules == nil) {
		return nil, errors.New("switching between steering rules and the redirect program needs a restart")
	}
	if p.rdmaSink != d.p.rdmaSink {
		return nil, errors.New("adding, removing or changing the rdma stage's sink needs a restart")
	}
	return p, nil
}

// addedAtRunTime names the rules running in st that file, the rules
// applied last, does not have: added or changed through the pinned maps.
func addedAtRunTime(st steerer, file *rules.Set) []string {
	stats, err := st.RuleStatsInto(nil)
	if err != nil || file == nil {
		return nil
	}
	var out []string
	for _, rs := range stats {
		if !slices.ContainsFunc(file.Rules, func(r rules.Rule) bool { return r.Priority == rs.Rule.Priority && r.Name == rs.Rule.Name }) {
			out = append(out, ruleName(rs.Rule))
		}
	}
	return out
}

// detach removes the XDP programs (no new frames reach the sockets) and
// the rule maps' pins.
func (d *Daemon) detach() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, pt := range d.ports {
		if err := pt.detach(); err != nil {
			d.log.Warn("detaching", "err", err)
		}
	}
}

// UmemAccount is where one UMEM's frames are.
type UmemAccount struct {
	// Name is "shared" or "q<queue>".
	Name string
	xsk.Accounting
}

// Account checks every UMEM's frame accounting once the workers have
// stopped (Run returned), giving the kernel up to half a second to
// complete what is in flight. The error names each UMEM whose frames do
// not add up.
func (d *Daemon) Account() ([]UmemAccount, error) {
	var out []UmemAccount
	var errs []error
	for i, u := range d.umems {
		var a xsk.Accounting
		for range 50 { // the kernel may still be completing TX
			if a = u.Accounting(); a.Check() == nil && a.TX == 0 && a.Kernel == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := a.Check(); err != nil {
			errs = append(errs, fmt.Errorf("umem %s: %w", d.names[i], err))
			continue
		}
		out = append(out, UmemAccount{d.names[i], a})
	}
	return out, errors.Join(errs...)
}

// RDMADropped counts frames the RDMA outputs dropped: waiting for credits
// when their connection failed, or of packets longer than the sink's
// buffers.
func (d *Daemon) RDMADropped() uint64 {
	var n uint64
	for _, p := range d.rdma {
		n += p.Dropped.Load()
	}
	return n
}

// Close detaches the programs and releases the connections, sockets,
// UMEMs and stages. Call it after Run has returned; idempotent.
func (d *Daemon) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	d.detach()
	var errs []error
	// The workers have stopped and waited for their sends: disconnect
	// before the UMEMs (the connections' registered regions) go.
	for _, c := range d.conns {
		errs = append(errs, c.Close())
	}
	for _, pt := range d.ports {
		errs = append(errs, pt.close())
	}
	for _, u := range d.umems {
		errs = append(errs, u.Close())
	}
	// Stage failures (a full disk under pcap) were reported and counted
	// while running; closing them is not a reason to fail the stop.
	if err := d.chains.close(); err != nil {
		d.log.Warn("closing stages", "err", err)
	}
	return errors.Join(errs...)
}

// slowPath consumes a sample stage's channel: one structured log line per
// sample, then the buffer goes back.
func slowPath(log *slog.Logger, s *pipeline.Sample) {
	for x := range s.C() {
		var h pipeline.Headers
		err := h.Parse(x.Data)
		log.Debug("sample", "queue", x.Queue, "len", x.Length, "src", h.Src, "dst", h.Dst, "proto", rules.ProtoName(h.Proto),
			"sport", h.SrcPort, "dport", h.DstPort, "parse_err", err)
		s.Release(x)
	}
}

// QueueCounts are one queue's counters, summed over its ports.
type QueueCounts struct {
	Queue int
	// RX, RXBytes and TX are frames received, bytes received and frames
	// transmitted.
	RX, RXBytes, TX uint64
	// Verdict, TXRingFull and BadOutput are the worker's drops: by
	// verdict, because a TX ring was full, to an output that does not
	// exist.
	Verdict, TXRingFull, BadOutput uint64
	// RingFull and KernelOther are frames the kernel dropped before the
	// worker saw them: RX ring full (the worker is behind), and
	// rx_dropped (no fill-ring frame, too large).
	RingFull, KernelOther uint64
}

// Dropped are the worker's drops.
func (c QueueCounts) Dropped() uint64 { return c.Verdict + c.TXRingFull + c.BadOutput }

// Kernel are the kernel's drops before the worker.
func (c QueueCounts) Kernel() uint64 { return c.RingFull + c.KernelOther }

// Counts reads every queue's counters; safe while Run runs.
func (d *Daemon) Counts() []QueueCounts {
	out := make([]QueueCounts, len(d.workers))
	for i, w := range d.workers {
		c := &out[i]
		c.Queue = w.Queue()
		for _, s := range d.socks[i] {
			if st, err := s.Stats(); err == nil {
				c.RingFull += st.RxRingFull
				c.KernelOther += st.RxDropped
			}
		}
		for pi := range w.PortNames() {
			ps := w.PortStats(pi)
			c.RX += ps.RxPackets.Load()
			c.RXBytes += ps.RxBytes.Load()
			c.TX += ps.TxPackets.Load()
			c.TXRingFull += ps.TxRingFull.Load()
		}
		ws := w.Stats()
		c.Verdict, c.BadOutput = ws.Dropped.Load(), ws.BadOutput.Load()
	}
	return out
}

// IfaceUnbound is what Unbound reports for one interface.
type IfaceUnbound struct {
	Iface string
	bpf.Unbound
}

// Unbound reads, per interface, the frames that arrived on RX queues
// without a socket (Port.Unbound): the kernel stack got them, not the
// workers. Interfaces without such frames are left out. Safe while Run
// runs, and after it, when it gives the counts at detach.
func (d *Daemon) Unbound() ([]IfaceUnbound, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []IfaceUnbound
	for i, pt := range d.ports {
		u, err := pt.unbound()
		if err != nil {
			return out, fmt.Errorf("%s: %w", d.p.ifaces[i].Name, err)
		}
		if len(u) > 0 {
			out = append(out, IfaceUnbound{Iface: d.p.ifaces[i].Name, Unbound: u})
		}
	}
	return out, nil
}

// system is where a daemon gets its interfaces, memory, ports and RDMA
// connections: the kernel's, or a test's fakes.
type system interface {
	// caps refuses a process without the capabilities the ports need
	// (CheckCaps).
	caps(steering bool) error
	// iface checks an interface and returns it and its RX queue count.
	iface(name string) (*net.Interface, int, error)
	// checkPort refuses what opening o on ifc with UMEM frames of
	// frameSize would, before anything is made (checkPort).
	checkPort(ifc *net.Interface, o PortOptions, frameSize uint32) error
	umem(o xsk.UmemOptions) (umem, error)
	// openPort opens o with mems[i] the UMEM of o.Queues[i].
	openPort(o PortOptions, mems []umem) (port, error)
	// rdma refuses RDMA connections where they cannot be made: a build
	// without verbs (rdma.ErrNotSupported).
	rdma() error
	// dialRDMA connects to an RDMA sink, registering mem.
	dialRDMA(ctx context.Context, addr string, mem umem, o rdma.DialOptions) (rdmaConn, error)
	// memoryLimits is what the system allows a configuration: the
	// memory available, and the bound on what its UMEMs may lock.
	memoryLimits() (xsk.MemoryLimits, error)
}

// umem is a UMEM (*xsk.Umem).
type umem interface {
	pipeline.Memory
	pipeline.Accounted
	Close() error
}

// socket is an AF_XDP socket (*xsk.Socket).
type socket interface {
	pipeline.Port
	Stats() (xsk.Statistics, error)
}

// port is an open Port.
type port interface {
	sockets() []socket
	// info describes the port (PortInfo without the name).
	info() PortInfo
	// steer is the steering program, or nil (redirect program, detached).
	steer() steerer
	// faults delivers what stops the port (Port.Faults); nil: nothing.
	faults() <-chan netdev.LinkEvent
	// unbound counts the frames that found no socket (Port.Unbound).
	unbound() (bpf.Unbound, error)
	detach() error
	close() error
}

// steerer is the steering program (*bpf.Steer).
type steerer interface {
	Apply(set *rules.Set) error
	RuleStatsInto(out []bpf.RuleStat) ([]bpf.RuleStat, error)
	CacheMisses() (bpf.Counter, error)
}
