package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/dataplane/config"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// runFlags are `xdpipe run`'s flags; set ones override the config file.
type runFlags struct {
	config   string
	check    bool
	duration time.Duration
	cfg      config.File
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
			"per queue each interval. SIGHUP reloads steering rules, stages and the interval\n"+
			"without closing the sockets; a file that changes any other setting is refused,\n"+
			"naming it (it needs a restart). SIGINT/SIGTERM stop and account for every frame.\n"+
			"Stages: "+pipeline.StageNames()+".\n\n")
		fs.PrintDefaults()
	}
	var ifaces string
	fs.StringVar(&f.config, "config", "", "YAML configuration file (flags override it)")
	fs.BoolVar(&f.check, "check", false, "validate everything that can be checked without attaching (config, interfaces,\n"+
		"rules, CPUs, capture paths, the memory the configuration costs) and exit: 0, or 1 with the error")
	fs.StringVar(&ifaces, "iface", "", "interfaces, comma-separated")
	fs.StringVar((*string)(&f.cfg.Queues), "queues", "", `queues: "all" (default) or a list "0,1" / "0-3"`)
	fs.StringVar(&f.stages, "stages", "", "stages in order, comma-separated (options need the config file)")
	fs.StringVar(&f.cfg.Poll, "poll", "", "spin (default) or wakeup")
	fs.DurationVar(&f.cfg.Coalesce.Duration, "coalesce", 0, "wakeup mode: longest nap while frames keep coming, instead of poll(2)\n(default 200µs; 0: always poll)")
	fs.BoolVar(&f.cfg.BusyPoll, "busy-poll", false, "socket busy polling (SO_PREFER_BUSY_POLL)")
	fs.StringVar(&f.cfg.CPUs, "cpus", "", `CPU list, one CPU per worker in queue order ("0-3")`)
	fs.BoolVar(&f.cfg.RxDelay, "rx-delay", false, "stamp frames at the XDP hook and export the delay to the stage chain\n(xdpipe_rx_delay_seconds); a stamp costs the XDP program a clock read")
	fs.IntVar(&f.cfg.RxDelaySample, "rx-delay-sample", 0, "with --rx-delay, stamp one frame in N on each CPU (a power of two; default 64; 1: every frame)")
	fs.BoolVar(&f.cfg.RxMetadata, "rx-metadata", false, "have the XDP program read the driver's RX hash and timestamp into the packets\n(the start line's xdp-rx-metadata says which the NIC offers); driver mode only")
	fs.StringVar(&f.cfg.Metrics, "metrics", "", `Prometheus /metrics address (default 127.0.0.1:9464; "off")`)
	fs.StringVar(&f.cfg.Pprof, "pprof", "", "serve Go's /debug/pprof here (default: nowhere): CPU and heap profiles,\ngoroutine dumps and the command line to whoever reaches it")
	fs.StringVar(&f.cfg.Rules, "rules", "", "steering rules file (default: redirect every frame)")
	fs.StringVar(&f.cfg.PinDir, "pin-dir", "", "bpffs directory for the rule maps' pins, one per interface, for `xdpipe rules`\n(default "+bpf.DefaultPinPath+")")
	fs.StringVar(&f.cfg.Bind, "bind", "", "AF_XDP bind mode: auto, copy or zerocopy")
	fs.StringVar(&f.cfg.Attach, "attach", "", "XDP attach mode: auto, driver or generic")
	fs.StringVar(&f.cfg.Umem, "umem", "", "per-queue or shared")
	fs.StringVar(&f.cfg.Default, "default", "", "verdict for undecided frames: drop or transmit")
	fs.IntVar(&f.cfg.Burst, "burst", 0, "RX burst size (default 64)")
	var ring uint
	fs.UintVar(&ring, "ring", 0, "RX/TX ring entries (default 2048)")
	var fillLow uint
	fs.UintVar(&fillLow, "fill-low", 0, "spin mode: frames kept on each fill ring while traffic is light (default: the\nwhole ring); fewer stay cached, for lower latency, but a stall loses what comes beyond them")
	fs.DurationVar(&f.cfg.Interval.Duration, "interval", 0, "rate line interval (default 1s)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	for name, d := range map[string]time.Duration{"interval": f.cfg.Interval.Duration, "duration": f.duration} {
		if d < 0 {
			return nil, fmt.Errorf("--%s %v: must not be negative", name, d)
		}
	}
	for name, v := range map[string]uint{"ring": ring, "fill-low": fillLow} {
		if v > math.MaxUint32 {
			return nil, fmt.Errorf("--%s %d: more entries than a ring can have (2^32)", name, v)
		}
	}
	f.cfg.Ring, f.cfg.FillLow = uint32(ring), uint32(fillLow)
	if ifaces != "" {
		f.cfg.Interfaces = strings.Split(ifaces, ",")
	}
	if f.set["interval"] {
		f.cfg.Interval.Set = true
	}
	return f, nil
}

// load reads the config file (if any) and applies the flags set on top.
func (f *runFlags) load() (config.File, error) {
	c := &config.File{}
	if f.config != "" {
		var err error
		if c, err = config.Load(f.config); err != nil {
			return config.File{}, err
		}
	}
	o := &f.cfg
	setIf(f.set, "iface", &c.Interfaces, o.Interfaces)
	setIf(f.set, "queues", &c.Queues, o.Queues)
	setIf(f.set, "poll", &c.Poll, o.Poll)
	if f.set["coalesce"] {
		c.Coalesce = config.Duration{Duration: o.Coalesce.Duration, Set: true}
	}
	setIf(f.set, "busy-poll", &c.BusyPoll, o.BusyPoll)
	setIf(f.set, "rx-delay", &c.RxDelay, o.RxDelay)
	setIf(f.set, "rx-delay-sample", &c.RxDelaySample, o.RxDelaySample)
	setIf(f.set, "rx-metadata", &c.RxMetadata, o.RxMetadata)
	setIf(f.set, "cpus", &c.CPUs, o.CPUs)
	setIf(f.set, "metrics", &c.Metrics, o.Metrics)
	setIf(f.set, "pprof", &c.Pprof, o.Pprof)
	setIf(f.set, "rules", &c.Rules, o.Rules)
	setIf(f.set, "pin-dir", &c.PinDir, o.PinDir)
	setIf(f.set, "bind", &c.Bind, o.Bind)
	setIf(f.set, "attach", &c.Attach, o.Attach)
	setIf(f.set, "umem", &c.Umem, o.Umem)
	setIf(f.set, "default", &c.Default, o.Default)
	setIf(f.set, "burst", &c.Burst, o.Burst)
	setIf(f.set, "ring", &c.Ring, o.Ring)
	setIf(f.set, "fill-low", &c.FillLow, o.FillLow)
	setIf(f.set, "interval", &c.Interval, o.Interval)
	if f.set["stages"] {
		c.Stages = nil
		for _, name := range strings.Split(f.stages, ",") {
			s, err := dataplane.NewStage(strings.TrimSpace(name))
			if err != nil {
				return config.File{}, err
			}
			s.Where = "--stages; options need the config file"
			c.Stages = append(c.Stages, config.Stage(s))
		}
	}
	return c.WithDefaults(), nil
}

func runRun(ctx context.Context, args []string) error {
	f, err := parseRunFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	if f.check {
		return checkRun(f, os.Stdout)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	return runDaemon(ctx, f, log, os.Stdout)
}

// checkRun is `xdpipe run --check`.
func checkRun(f *runFlags, stdout io.Writer) error {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	opts, err := cfg.Options()
	if err != nil {
		return err
	}
	lns, err := listen(cfg)
	if err != nil {
		return err
	}
	lns.close()
	mem, err := dataplane.Check(opts)
	if err != nil {
		return withSettings(err)
	}
	fmt.Fprintf(stdout, "run: configuration OK: %s on %s, stages %s; memory %s (UMEM %s, locked)\n", cmp.Or(f.config, "flags"),
		strings.Join(cfg.Interfaces, ","), dataplane.StageList(opts.Stages), xsk.Bytes(mem.Total), xsk.Bytes(mem.Locked))
	return nil
}

// runDaemon opens the daemon, runs it until ctx ends or the duration
// passes, reloads on SIGHUP, prints rate lines, the summary and the frame
// accounting.
func runDaemon(ctx context.Context, f *runFlags, log *slog.Logger, stdout io.Writer) (err error) {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	opts, err := cfg.Options()
	if err != nil {
		return err
	}
	lns, err := listen(cfg)
	if err != nil {
		return err
	}
	defer lns.close()
	d, err := dataplane.Open(ctx, opts, log)
	if err != nil {
		return withSettings(err)
	}
	defer func() {
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}()
	defer lns.serve(d.Collector())()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	// A SIGHUP since the process started, while it was starting, is
	// waiting in hup: it reloads once the daemon runs.
	hup := reloadRequests(ctx)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	delay := ""
	if cfg.RxDelay {
		delay = fmt.Sprintf(", rx delay of one frame in %d per CPU (xdpipe_rx_delay_seconds)", cmp.Or(cfg.RxDelaySample, dataplane.DefaultRxDelaySample))
	}
	fmt.Fprintf(stdout, "run: ready: %d queues %v on %s, stages %s, metrics %s%s\n", len(d.Queues()), d.Queues(),
		strings.Join(cfg.Interfaces, ","), dataplane.StageList(opts.Stages), cfg.Metrics, delay)
	for _, pi := range d.Ports() {
		fmt.Fprintf(stdout, "run: %s: %s, AF_XDP %s\n", pi.Name, pi.XDP, pi.Mode)
	}
	if err := notifyReady(); err != nil {
		log.Warn("systemd was not told the service is ready", "err", err)
	}

	rates := newRates(d)
	var ticker *time.Ticker
	var tick <-chan time.Time
	interval := func(iv time.Duration) { // the rate lines' interval, from the start or a reload
		if ticker != nil {
			ticker.Stop()
		}
		ticker, tick = nil, nil
		if iv > 0 {
			ticker = time.NewTicker(iv)
			tick = ticker.C
		}
	}
	interval(cfg.Interval.Duration)
	defer func() { interval(0) }()
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case <-hup:
			next, err := reload(d, f, cfg)
			if err != nil {
				log.Error("reload failed; the previous rules and stages keep running", "err", explain(err))
				continue
			}
			if next.Interval.Duration != cfg.Interval.Duration {
				interval(next.Interval.Duration)
			}
			cfg = next
			fmt.Fprintln(stdout, "run: reloaded")
		case now := <-tick:
			for _, line := range rates.lines(now) {
				fmt.Fprintln(stdout, line)
			}
			ifs, err := d.Unbound()
			if err != nil {
				log.Warn("reading the unbound queues' counts", "err", err)
			}
			for _, iu := range ifs {
				fmt.Fprintf(stdout, "%s: unbound %v\n", iu.Iface, iu.Unbound)
			}
		}
	}
	for _, line := range rates.summary() {
		fmt.Fprintln(stdout, line)
	}
	if n := d.RDMADropped(); n > 0 {
		fmt.Fprintf(stdout, "run: rdma outputs: %d frames dropped unsent (waiting for credits when the connection failed, or packets longer than the sink's buffers)\n", n)
	}
	accts, err := d.Account()
	for _, a := range accts {
		fmt.Fprintf(stdout, "run: umem %s: all %d frames accounted for: free %d, fill %d, rx %d, tx %d, completion %d, kernel %d, app %d\n",
			a.Name, a.Total, a.Free, a.Fill, a.RX, a.TX, a.Completion, a.Kernel, a.App)
	}
	return errors.Join(runErr, err)
}

// reload re-reads the config file with the flags on top, swaps the rules
// and stages in, and returns the configuration for the command's own
// settings (the interval); run is the running one.
func reload(d *dataplane.Daemon, f *runFlags, run config.File) (config.File, error) {
	cfg, err := f.load()
	if err != nil {
		return cfg, err
	}
	return cfg, config.Reload(d, &run, &cfg)
}

// withSettings adds to the daemon's error which key or flag sets what it
// misses.
func withSettings(err error) error {
	switch {
	case errors.Is(err, dataplane.ErrNoInterfaces):
		return fmt.Errorf("%w: set interfaces in the config or --iface", err)
	case errors.Is(err, dataplane.ErrNoStages):
		return fmt.Errorf("%w: list them in the config or with --stages", err)
	}
	return err
}

// listeners are the command's HTTP listeners: /metrics, and /debug/pprof
// only when asked for.
type listeners struct{ metrics, pprof net.Listener }

// listen opens cfg's metrics and pprof addresses (none for "off" and
// unset), or says which is taken; it is run's and --check's one probe.
func listen(cfg config.File) (*listeners, error) {
	var lns listeners
	var err error
	if m := cfg.WithDefaults().Metrics; m != "off" {
		if lns.metrics, err = net.Listen("tcp", m); err != nil {
			return nil, fmt.Errorf("metrics address %s: %w (choose another with --metrics, or \"off\")", m, err)
		}
	}
	if cfg.Pprof != "" {
		if lns.pprof, err = net.Listen("tcp", cfg.Pprof); err != nil {
			lns.close()
			return nil, fmt.Errorf("pprof address %s: %w (choose another with --pprof)", cfg.Pprof, err)
		}
	}
	return &lns, nil
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.metrics, l.pprof} {
		if ln != nil {
			ln.Close()
		}
	}
}

// serve serves c on /metrics, with the Go runtime's and the process's
// metrics, and pprof on its own address; the function it returns stops
// both.
func (l *listeners) serve(c prometheus.Collector) (stop func()) {
	var srvs []*http.Server
	start := func(ln net.Listener, h http.Handler) {
		if ln != nil {
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
			go srv.Serve(ln)
			srvs = append(srvs, srv)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	start(l.metrics, metrics)
	prof := http.NewServeMux()
	prof.HandleFunc("/debug/pprof/", pprof.Index)
	prof.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	prof.HandleFunc("/debug/pprof/profile", pprof.Profile)
	prof.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	prof.HandleFunc("/debug/pprof/trace", pprof.Trace)
	start(l.pprof, prof)
	return func() {
		for _, srv := range srvs {
			srv.Close()
		}
	}
}

// rates turns the daemon's counters into per-queue rate lines.
type rates struct {
	d    *dataplane.Daemon
	last time.Time
	prev []dataplane.QueueCounts
}

func newRates(d *dataplane.Daemon) *rates {
	return &rates{d: d, last: time.Now(), prev: make([]dataplane.QueueCounts, len(d.Queues()))}
}

func (r *rates) lines(now time.Time) []string {
	dt := now.Sub(r.last).Seconds()
	r.last = now
	var out []string
	for i, s := range r.d.Counts() {
		p := r.prev[i]
		r.prev[i] = s
		out = append(out, fmt.Sprintf("queue %d: rx %s (%.1f Mbit/s) tx %s dropped %s kernel-dropped %s; total rx %d tx %d dropped %d kernel-dropped %d",
			s.Queue, fmtRate(float64(s.RX-p.RX)/dt), float64(s.RXBytes-p.RXBytes)*8/dt/1e6,
			fmtRate(float64(s.TX-p.TX)/dt), fmtRate(float64(s.Dropped()-p.Dropped())/dt), fmtRate(float64(s.Kernel()-p.Kernel())/dt),
			s.RX, s.TX, s.Dropped(), s.Kernel()))
	}
	return out
}

func (r *rates) summary() []string {
	var out []string
	for _, s := range r.d.Counts() {
		out = append(out, fmt.Sprintf("run: queue %d: received %d, transmitted %d, dropped %d (verdict %d, tx ring full %d, bad output %d); "+
			"kernel dropped %d before the worker (rx ring full %d, rx_dropped %d)",
			s.Queue, s.RX, s.TX, s.Dropped(), s.Verdict, s.TXRingFull, s.BadOutput, s.Kernel(), s.RingFull, s.KernelOther))
	}
	ifs, err := r.d.Unbound()
	if err != nil {
		out = append(out, "run: unbound queues: "+err.Error())
	}
	for _, iu := range ifs {
		out = append(out, fmt.Sprintf("run: %s: %d frames on RX queues without a socket went to the kernel stack: %v", iu.Iface, iu.Total(), iu.Unbound))
	}
	return out
}

// setIf sets *dst to v when flag was given on the command line: flags
// override the configuration file's settings.
func setIf[T any](set map[string]bool, flag string, dst *T, v T) {
	if set[flag] {
		*dst = v
	}
}
