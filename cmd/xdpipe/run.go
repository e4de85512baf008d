package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// runFlags are `xdpipe run`'s flags; set ones override the config file.
type runFlags struct {
	config   string
	duration time.Duration
	cfg      runConfig
	stages   string
	set      map[string]bool
}

func parseRunFlags(args []string, stderr io.Writer) (*runFlags, error) {
	f := &runFlags{set: map[string]bool{}}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xdpipe run [--config FILE] [flags]\n\n"+
			"Runs the burst pipeline: AF_XDP sockets on each interface and queue, one\n"+
			"run-to-completion worker per queue, the stages in order. Prints a rate line\n"+
			"per queue each interval; SIGHUP reloads steering rules and stage settings\n"+
			"without closing the sockets; SIGINT/SIGTERM stop and account for every frame.\n"+
			"Stages: "+stageNames()+".\n\n")
		fs.PrintDefaults()
	}
	var ifaces string
	fs.StringVar(&f.config, "config", "", "YAML configuration file (flags override it)")
	fs.StringVar(&ifaces, "iface", "", "interfaces, comma-separated")
	fs.StringVar((*string)(&f.cfg.Queues), "queues", "", `queues: "all" (default) or a list "0,1" / "0-3"`)
	fs.StringVar(&f.stages, "stages", "", "stages in order, comma-separated (options need the config file)")
	fs.StringVar(&f.cfg.Poll, "poll", "", "spin (default) or wait")
	fs.DurationVar(&f.cfg.Coalesce.Duration, "coalesce", 0, "wait mode: longest nap while frames keep coming, instead of poll(2)\n(default 50µs; 0: always poll)")
	fs.BoolVar(&f.cfg.BusyPoll, "busy-poll", false, "socket busy polling (SO_PREFER_BUSY_POLL)")
	fs.StringVar(&f.cfg.CPUs, "cpus", "", `CPU list, one CPU per worker in queue order ("0-3")`)
	fs.StringVar(&f.cfg.Metrics, "metrics", "", `metrics and pprof address (default 127.0.0.1:9464; "off")`)
	fs.StringVar(&f.cfg.Rules, "rules", "", "steering rules file (default: redirect every frame)")
	fs.StringVar(&f.cfg.PinDir, "pin-dir", "", "bpffs directory for the rule maps' pins, one per interface, for `xdpipe rules`\n(default "+bpf.DefaultPinPath+")")
	fs.StringVar(&f.cfg.Bind, "bind", "", "AF_XDP bind mode: auto, copy or zerocopy")
	fs.StringVar(&f.cfg.Attach, "attach", "", "XDP attach mode: auto, driver or generic")
	fs.StringVar(&f.cfg.Umem, "umem", "", "per-queue or shared")
	fs.StringVar(&f.cfg.Default, "default", "", "verdict for undecided frames: drop or transmit")
	fs.IntVar(&f.cfg.Burst, "burst", 0, "RX burst size (default 64)")
	var ring uint
	fs.UintVar(&ring, "ring", 0, "RX/TX ring entries (default 2048)")
	fs.DurationVar(&f.cfg.Interval.Duration, "interval", 0, "rate line interval (default 1s)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	f.cfg.Ring = uint32(ring)
	if ifaces != "" {
		f.cfg.Interfaces = strings.Split(ifaces, ",")
	}
	if f.set["interval"] {
		f.cfg.Interval.set = true
	}
	return f, nil
}

// load reads the config file (if any) and applies the flags set on top.
func (f *runFlags) load() (*runConfig, error) {
	c := &runConfig{}
	if f.config != "" {
		var err error
		if c, err = loadRunConfig(f.config); err != nil {
			return nil, err
		}
	}
	o := &f.cfg
	over := func(flag string, dst *string, v string) {
		if f.set[flag] {
			*dst = v
		}
	}
	if f.set["iface"] {
		c.Interfaces = o.Interfaces
	}
	if f.set["queues"] {
		c.Queues = o.Queues
	}
	over("poll", &c.Poll, o.Poll)
	if f.set["coalesce"] {
		c.Coalesce = duration{o.Coalesce.Duration, true}
	}
	if f.set["busy-poll"] {
		c.BusyPoll = o.BusyPoll
	}
	over("cpus", &c.CPUs, o.CPUs)
	over("metrics", &c.Metrics, o.Metrics)
	over("rules", &c.Rules, o.Rules)
	over("pin-dir", &c.PinDir, o.PinDir)
	over("bind", &c.Bind, o.Bind)
	over("attach", &c.Attach, o.Attach)
	over("umem", &c.Umem, o.Umem)
	over("default", &c.Default, o.Default)
	if f.set["burst"] {
		c.Burst = o.Burst
	}
	if f.set["ring"] {
		c.Ring = o.Ring
	}
	if f.set["interval"] {
		c.Interval = o.Interval
	}
	if f.set["stages"] {
		c.Stages = nil
		for _, name := range strings.Split(f.stages, ",") {
			name = strings.TrimSpace(name)
			if _, ok := stageKinds[name]; !ok {
				return nil, fmt.Errorf("unknown stage %q (known: %s)", name, stageNames())
			}
			if len(stageKinds[name]) > 0 && name != "sample" {
				return nil, fmt.Errorf("stage %s needs options: put it in the --config file", name)
			}
			c.Stages = append(c.Stages, stageConfig{Kind: name})
		}
	}
	if c.Metrics == "" {
		c.Metrics = "127.0.0.1:9464"
	}
	if !c.Interval.set {
		c.Interval.Duration = time.Second
	}
	return c, nil
}

// daemon is a running `xdpipe run`: its sockets, programs and workers.
type daemon struct {
	mu       sync.Mutex // steer and redirect, against metrics scrapes
	log      *slog.Logger
	r        *resolved
	umems    []*xsk.Umem
	umemName map[string]*xsk.Umem
	socks    [][]*xsk.Socket // [worker][iface]
	redirect []*bpf.Redirect // per interface, without steering rules
	steer    []*bpf.Steer    // per interface, with steering rules
	senders  []*rdma.Sender  // per worker, with an rdma stage
	rdmaOut  []*rdmaPort     // their output ports
	workers  []*pipeline.Worker
	chains   *chainSet
	xdp      []string // per interface: its XDP features, for the ready line
}

func runRun(ctx context.Context, args []string) error {
	f, err := parseRunFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	return runDaemon(ctx, f, log, os.Stdout)
}

func runDaemon(ctx context.Context, f *runFlags, log *slog.Logger, stdout io.Writer) (err error) {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	// Everything that can be checked is checked before anything is
	// attached: config, interfaces, CPUs, rules, stage options and files,
	// the metrics address.
	r, err := resolve(cfg)
	if err != nil {
		return err
	}
	frameSize := cmp.Or(cfg.FrameSize, xsk.DefaultFrameSize)
	for _, ifc := range r.ifaces {
		if needsMultiBuffer(ifc.MTU, frameSize) {
			log.Warn("frames larger than a UMEM frame are dropped: the pipeline does not take multi-buffer packets yet; "+
				"the kernel counts them in rx_dropped (kernel-dropped on the rate line)",
				"interface", ifc.Name, "mtu", ifc.MTU, "frame_size", frameSize)
		}
	}
	chains, err := buildChains(r)
	if err != nil {
		return err
	}
	d := &daemon{log: log, r: r, chains: chains, umemName: map[string]*xsk.Umem{}}
	defer func() {
		if cerr := d.close(); err == nil {
			err = cerr
		}
	}()
	var ln net.Listener
	if cfg.Metrics != "off" {
		if ln, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return fmt.Errorf("metrics address %s: %w (choose another with --metrics, or \"off\")", cfg.Metrics, err)
		}
		defer ln.Close()
	}
	if err := d.open(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	umems := map[string]pipeline.Accounted{}
	for n, u := range d.umemName {
		umems[n] = u
	}
	coll := pipeline.NewCollector(d.workers, umems)
	coll.AddFunc(d.steerMetrics)
	reg.MustRegister(coll, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}

	wctx, stopWorkers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range d.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(wctx); err != nil {
				log.Error("worker failed", "queue", w.Queue(), "err", err)
			}
		}()
	}
	for _, s := range d.chains.samples {
		go slowPath(log, s)
	}
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fmt.Fprintf(stdout, "run: ready: %d queues %v on %s, stages %s, metrics %s\n", len(r.queues), r.queues,
		strings.Join(cfg.Interfaces, ","), stageList(cfg.Stages), cfg.Metrics)
	for i, ifc := range r.ifaces {
		fmt.Fprintf(stdout, "run: %s: %s, AF_XDP %s\n", ifc.Name, d.xdp[i], modeText(d.socks[0][i]))
	}
	log.Info("running", "queues", r.queues, "interfaces", cfg.Interfaces, "poll", r.poll.String(), "cpus", r.cpus,
		"umem", map[bool]string{true: "shared", false: "per-queue"}[r.sharedMem], "steering", cfg.Rules != "")

	rates := newRates(d.workers, d.socks)
	var tick <-chan time.Time
	if cfg.Interval.Duration > 0 {
		t := time.NewTicker(cfg.Interval.Duration)
		defer t.Stop()
		tick = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			if err := d.reload(ctx, f); err != nil {
				log.Error("reload failed; the previous rules and stages keep running", "err", err)
			} else {
				fmt.Fprintln(stdout, "run: reloaded")
			}
		case now := <-tick:
			for _, line := range rates.lines(now) {
				fmt.Fprintln(stdout, line)
			}
		}
	}
	// Stop: detach the programs first, so nothing new arrives, then stop
	// the workers (they flush TX and wait for completions), then account.
	d.detach()
	stopWorkers()
	wg.Wait()
	for _, line := range rates.summary() {
		fmt.Fprintln(stdout, line)
	}
	for i, p := range d.rdmaOut {
		if n := p.Dropped.Load(); n > 0 {
			fmt.Fprintf(stdout, "run: rdma output %d: %d frames waiting for credits dropped when the connection failed\n", i, n)
		}
	}
	return d.account(stdout)
}

func stageList(s []stageConfig) string {
	n := make([]string, len(s))
	for i, st := range s {
		n[i] = st.Kind
	}
	return strings.Join(n, ",")
}

// open makes the UMEMs and sockets, attaches the XDP programs and registers
// the sockets, and builds the workers. Sockets are filled before they are
// registered (see pipeline's package doc). On error, close undoes it all.
func (d *daemon) open() error {
	r := d.r
	ring := r.cfg.Ring
	nIf := len(r.ifaces)
	perSocket := 4 * ring // fill (2x ring) + TX ring + what is in flight
	socketOpts := xsk.SocketOptions{RXSize: ring, TXSize: ring, Bind: r.bind, BusyPoll: r.cfg.BusyPoll}
	umemOpts := func(sockets int) xsk.UmemOptions {
		return xsk.UmemOptions{NumFrames: uint32(sockets) * perSocket, FrameSize: r.cfg.FrameSize,
			FillSize: 2 * ring, CompletionSize: 2 * ring}
	}
	drivers := make([]xsk.Driver, nIf)
	for i, ifc := range r.ifaces {
		dev, text := netdev.Describe(ifc.Index)
		drivers[i] = dev.XSK()
		d.log.Info("interface", "iface", ifc.Name, "driver", dev.Driver, "xdp", text)
		d.xdp = append(d.xdp, text)
	}
	var shared *xsk.Umem
	if r.sharedMem {
		u, err := xsk.NewUmem(umemOpts(nIf * len(r.queues)))
		if err != nil {
			return fmt.Errorf("umem: %w", err)
		}
		shared = u
		d.umems = append(d.umems, u)
		d.umemName["shared"] = u
	}
	for wi, q := range r.queues {
		u := shared
		if u == nil {
			var err error
			if u, err = xsk.NewUmem(umemOpts(nIf)); err != nil {
				return fmt.Errorf("umem queue %d: %w", q, err)
			}
			d.umems = append(d.umems, u)
			d.umemName[fmt.Sprintf("q%d", q)] = u
		}
		var ports []pipeline.NamedPort
		var socks []*xsk.Socket
		for i, ifc := range r.ifaces {
			so := socketOpts
			so.Driver = drivers[i]
			s, err := xsk.NewSocket(u, ifc.Index, q, so)
			if err != nil {
				d.socks = append(d.socks, socks)
				return explainSocket(fmt.Errorf("socket %s queue %d: %w", ifc.Name, q, err))
			}
			s.Refill()
			socks = append(socks, s)
			ports = append(ports, pipeline.NamedPort{Name: ifc.Name, Port: s})
		}
		d.socks = append(d.socks, socks)
		if r.rdmaSink != "" {
			p, err := d.dialRDMA(u)
			if err != nil {
				return err
			}
			ports = append(ports, pipeline.NamedPort{Name: rdmaOutput, Port: p})
		}
		cpu := -1
		if len(r.cpus) > 0 {
			cpu = r.cpus[wi]
		}
		w, err := pipeline.NewWorker(pipeline.WorkerConfig{Queue: q, Ports: ports, Mem: u, Stages: d.chains.chains[wi],
			BurstSize: r.cfg.Burst, TXBatch: r.cfg.TXBatch, DrainInterval: r.cfg.Drain.Duration, Default: r.def,
			Poll: r.poll, Coalesce: r.coalesce, RXRing: int(ring), CPU: cpu, Logger: d.log})
		if err != nil {
			return err
		}
		d.workers = append(d.workers, w)
	}
	for i, ifc := range r.ifaces {
		var register func(queue, fd int) error
		if r.steer != nil {
			// The rule maps are pinned (not the link) so `xdpipe rules`
			// can change this instance's rules while it runs; the pins
			// go on a clean stop.
			pinDir := r.cfg.PinDir
			if pinDir == "" {
				pinDir = bpf.DefaultPinPath
			}
			s, err := bpf.LoadSteer(bpf.SteerOptions{PinPath: filepath.Join(pinDir, ifc.Name), MapsOnly: true})
			if err != nil {
				return err
			}
			d.steer = append(d.steer, s)
			if err := s.Apply(r.steer); err != nil {
				return fmt.Errorf("steering rules: %w", err)
			}
			mode, err := s.Attach(ifc.Index, r.attach)
			if err != nil {
				return err
			}
			d.log.Info("steering program attached", "iface", ifc.Name, "mode", mode.String(), "rules", len(r.steer.Rules))
			register = s.Register
		} else {
			p, err := bpf.LoadRedirect()
			if err != nil {
				return err
			}
			d.redirect = append(d.redirect, p)
			mode, err := p.Attach(ifc.Index, r.attach)
			if err != nil {
				return err
			}
			d.log.Info("redirect program attached", "iface", ifc.Name, "mode", mode.String())
			register = p.Register
		}
		for wi, q := range r.queues {
			s := d.socks[wi][i]
			if err := register(q, s.FD()); err != nil {
				return err
			}
			d.log.Info("socket registered", "iface", ifc.Name, "queue", q, "bind", modeText(s))
		}
	}
	return nil
}

// rdmaOutput is the name of a worker's RDMA output port.
const rdmaOutput = "rdma"

// dialRDMA connects one worker's RDMA output to the sink, registering the
// worker's UMEM so frames ship from it without a copy.
func (d *daemon) dialRDMA(u *xsk.Umem) (*rdmaPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := rdma.Dial(ctx, d.r.rdmaSink, u.Region(), rdma.DialOptions{})
	if err != nil {
		return nil, fmt.Errorf("rdma stage: connect to %s: %w", d.r.rdmaSink, err)
	}
	d.senders = append(d.senders, s)
	batch := d.r.cfg.TXBatch
	if batch <= 0 {
		batch = pipeline.DefaultBurstSize
	}
	// Frames wait for the sink's credits up to a ring's worth, as many as
	// the socket's TX ring would hold.
	p := newRDMAPort(s, u, batch, int(d.r.cfg.Ring), d.log)
	d.rdmaOut = append(d.rdmaOut, p)
	return p, nil
}

// reload re-reads the config (stage settings) and the steering rules, and
// swaps them in without closing a socket. A bad config changes nothing.
func (d *daemon) reload(ctx context.Context, f *runFlags) error {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	// Interfaces, queues, CPUs, rings and modes need new sockets: only
	// stages and rules change at run time.
	cfg.Interfaces, cfg.Queues, cfg.CPUs, cfg.Ring = d.r.cfg.Interfaces, d.r.cfg.Queues, d.r.cfg.CPUs, d.r.cfg.Ring
	r, err := resolve(cfg)
	if err != nil {
		return err
	}
	if (r.steer == nil) != (d.r.steer == nil) {
		return errors.New("switching between steering rules and the redirect program needs a restart")
	}
	chains, err := buildChains(r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	steer := d.steer
	d.mu.Unlock()
	for _, s := range steer {
		if err := s.Apply(r.steer); err != nil {
			chains.close()
			return fmt.Errorf("steering rules: %w", err)
		}
	}
	for i, w := range d.workers {
		old, err := w.SetStages(ctx, chains.chains[i])
		if err != nil {
			chains.close()
			return fmt.Errorf("queue %d: %w", w.Queue(), err)
		}
		if err := pipeline.CloseStages(old); err != nil {
			d.log.Warn("closing old stages", "queue", w.Queue(), "err", err)
		}
	}
	for _, s := range chains.samples {
		go slowPath(d.log, s)
	}
	d.chains = chains
	d.r.steer = r.steer
	d.log.Info("reloaded", "stages", stageList(cfg.Stages), "steering_rules", cfg.Rules)
	return nil
}

// detach removes the XDP programs (no new frames reach the sockets).
func (d *daemon) detach() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.redirect {
		p.Close()
	}
	d.redirect = nil
	for _, s := range d.steer {
		if err := s.Unpin(); err != nil {
			d.log.Warn("removing the steering maps' pins", "err", err)
		}
		s.Close()
	}
	d.steer = nil
}

// account checks every UMEM's frame accounting after the workers stopped
// and prints where the frames are.
func (d *daemon) account(stdout io.Writer) error {
	var errs []error
	for name, u := range d.umemName {
		var a xsk.Accounting
		var err error
		for i := 0; i < 50; i++ { // the kernel may still be completing TX
			if a = u.Accounting(); a.Check() == nil && a.TX == 0 && a.Kernel == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err = a.Check(); err != nil {
			errs = append(errs, fmt.Errorf("umem %s: %w", name, err))
			continue
		}
		fmt.Fprintf(stdout, "run: umem %s: all %d frames accounted for: free %d, fill %d, rx %d, tx %d, completion %d, kernel %d, app %d\n",
			name, a.Total, a.Free, a.Fill, a.RX, a.TX, a.Completion, a.Kernel, a.App)
	}
	return errors.Join(errs...)
}

func (d *daemon) close() error {
	d.detach()
	// The workers have stopped and waited for their sends: disconnect
	// before the UMEMs (the senders' registered regions) go.
	for _, s := range d.senders {
		s.Close()
	}
	for _, socks := range d.socks {
		for _, s := range socks {
			s.Close()
		}
	}
	var errs []error
	for _, u := range d.umems {
		if err := u.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.chains != nil {
		// Stage failures (a full disk under pcap) were reported and counted
		// while running; closing them is not a reason to fail the stop.
		if err := d.chains.close2(); err != nil {
			d.log.Warn("closing stages", "err", err)
		}
	}
	return errors.Join(errs...)
}

// steerMetrics exports the steering program's per-rule hits.
func (d *daemon) steerMetrics(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, s := range d.steer {
		stats, err := s.RuleStats()
		if err != nil {
			continue
		}
		iface := d.r.ifaces[i].Name
		for _, rs := range stats {
			name := rs.Rule.Name
			if name == "" {
				name = fmt.Sprintf("prio-%d", rs.Rule.Priority)
			}
			ch <- prometheus.MustNewConstMetric(steerHits, prometheus.CounterValue, float64(rs.Packets), iface, name, rs.Rule.Action.String())
		}
	}
}

var steerHits = prometheus.NewDesc("xdpipe_steer_rule_hits_total", "Frames matched by each steering rule in the XDP program.",
	[]string{"iface", "rule", "action"}, nil)

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

// rates turns worker counters and the sockets' XDP statistics into
// per-queue rate lines.
type rates struct {
	workers []*pipeline.Worker
	socks   [][]*xsk.Socket // [worker][iface]
	last    time.Time
	prev    []snapshot
	start   time.Time
}

// snapshot is one queue's counts. kernel are the frames the kernel dropped
// before the worker saw them: RX ring full (the worker is behind) and
// rx_dropped (no fill-ring frame, too large).
type snapshot struct{ rx, tx, rxBytes, drops, ringFull, kernelOther uint64 }

func (s snapshot) kernel() uint64 { return s.ringFull + s.kernelOther }

func newRates(ws []*pipeline.Worker, socks [][]*xsk.Socket) *rates {
	return &rates{workers: ws, socks: socks, start: time.Now(), last: time.Now(), prev: make([]snapshot, len(ws))}
}

func (r *rates) snap(i int) snapshot {
	w := r.workers[i]
	var s snapshot
	for _, sk := range r.socks[i] {
		if st, err := sk.Stats(); err == nil {
			s.ringFull += st.RxRingFull
			s.kernelOther += st.RxDropped
		}
	}
	for i := range w.PortNames() {
		ps := w.PortStats(i)
		s.rx += ps.RxPackets.Load()
		s.rxBytes += ps.RxBytes.Load()
		s.tx += ps.TxPackets.Load()
		s.drops += ps.TxRingFull.Load()
	}
	ws := w.Stats()
	s.drops += ws.Dropped.Load() + ws.BadOutput.Load()
	return s
}

func (r *rates) lines(now time.Time) []string {
	dt := now.Sub(r.last).Seconds()
	r.last = now
	var out []string
	for i, w := range r.workers {
		s := r.snap(i)
		p := r.prev[i]
		r.prev[i] = s
		out = append(out, fmt.Sprintf("queue %d: rx %s (%.1f Mbit/s) tx %s dropped %s kernel-dropped %s; total rx %d tx %d dropped %d kernel-dropped %d",
			w.Queue(), fmtRate(float64(s.rx-p.rx)/dt), float64(s.rxBytes-p.rxBytes)*8/dt/1e6,
			fmtRate(float64(s.tx-p.tx)/dt), fmtRate(float64(s.drops-p.drops)/dt), fmtRate(float64(s.kernel()-p.kernel())/dt),
			s.rx, s.tx, s.drops, s.kernel()))
	}
	return out
}

func (r *rates) summary() []string {
	var out []string
	for i, w := range r.workers {
		s := r.snap(i)
		st := w.Stats()
		var txFull uint64
		for i := range w.PortNames() {
			txFull += w.PortStats(i).TxRingFull.Load()
		}
		out = append(out, fmt.Sprintf("run: queue %d: received %d, transmitted %d, dropped %d (verdict %d, tx ring full %d, bad output %d); "+
			"kernel dropped %d before the worker (rx ring full %d, rx_dropped %d)",
			w.Queue(), s.rx, s.tx, s.drops, st.Dropped.Load(), txFull, st.BadOutput.Load(), s.kernel(), s.ringFull, s.kernelOther))
	}
	return out
}
