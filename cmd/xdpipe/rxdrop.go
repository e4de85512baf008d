package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/dataplane/config"
	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/caps"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// rxdropOptions are rxdrop's flags.
type rxdropOptions struct {
	iface    string
	queue    int
	bind     xsk.BindMode
	poll     pipeline.PollMode
	coalesce time.Duration // for xsk.Idler: negative means never nap
	attach   bpf.AttachMode
	duration time.Duration
	interval time.Duration
	frames   uint
	frameSz  uint
	ring     uint
	batch    uint
	cpu      pipeline.CPU
	busyPoll bool
	track    bool
	rules    *rules.Set
	pinDir   string
	profile  string
}

func parseRxdrop(args []string, stderr io.Writer) (rxdropOptions, error) {
	o := rxdropOptions{}
	fs := flag.NewFlagSet("rxdrop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xdpipe rxdrop --iface IF [flags]\n\n"+
			"Attaches the redirect XDP program to IF, binds an AF_XDP socket to one RX\n"+
			"queue, receives and drops every frame, and prints rates each interval.\n\n")
		fs.PrintDefaults()
	}
	var bind, poll, attach, rulesFile string
	var cpu int
	var coalesce config.Duration
	fs.StringVar(&o.iface, "iface", "", "interface to receive on (required)")
	fs.IntVar(&o.queue, "queue", 0, "RX queue to bind")
	fs.StringVar(&bind, "bind", "auto", "AF_XDP bind mode: copy, zerocopy or auto (zero-copy, else copy)")
	fs.StringVar(&poll, "poll", "spin", "spin (busy loop, one whole core) or wakeup (sleep when the RX ring is empty)")
	fs.DurationVar(&coalesce.Duration, "coalesce", xsk.DefaultCoalesce, "wakeup mode: while frames come fast enough, nap this long at most (never long\nenough to fill half the RX ring) and drain what gathered, instead of a wakeup in\npoll(2) per NAPI poll; the most latency it adds; 0: always poll(2)")
	fs.StringVar(&attach, "attach", "auto", "XDP attach mode: driver, generic or auto (driver, else generic)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until SIGINT or SIGTERM)")
	fs.DurationVar(&o.interval, "interval", time.Second, "rate line interval")
	fs.UintVar(&o.frames, "frames", 4*xsk.DefaultRingSize, "UMEM frames (at least twice --ring)")
	fs.UintVar(&o.frameSz, "frame-size", 0, "UMEM frame size: 2048 or 4096; 0: 2048 when a frame of the interface's MTU fits in\none (the kernel's writes then span half the pages), else 4096")
	fs.UintVar(&o.ring, "ring", xsk.DefaultRingSize, "entries in the RX ring and the fill ring (power of two): the frames the kernel\nwrites into in turn, and what a descheduled receiver can absorb")
	fs.UintVar(&o.batch, "batch", 64, "frames taken from the RX ring per burst")
	fs.IntVar(&cpu, "cpu", -1, "pin the receive loop to this CPU (-1: no pinning)")
	fs.BoolVar(&o.busyPoll, "busy-poll", false, "enable socket busy polling (SO_PREFER_BUSY_POLL)")
	fs.StringVar(&rulesFile, "rules", "", "steer with the rules in this YAML file instead of redirecting every frame\n(frames the rules redirect reach the socket; see `xdpipe rules`)")
	fs.StringVar(&o.pinDir, "pin-dir", bpf.DefaultPinPath, "with --rules: bpffs directory under which the rule maps are pinned (one directory per\ninterface) while rxdrop runs, for `xdpipe rules`; empty: no pins")
	fs.BoolVar(&o.track, "track", true, "account generated frames (xdpipe gen): loss, duplicates, reordering, latency;\nwithout --rules the XDP program counts them and the loop samples latency (one frame a burst)")
	fs.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	var err error
	if o.iface == "" {
		return o, errors.New("--iface is required (the interface to receive on)")
	}
	if o.bind, err = xsk.ParseBindMode(bind); err != nil {
		return o, err
	}
	fs.Visit(func(f *flag.Flag) { coalesce.Set = coalesce.Set || f.Name == "coalesce" })
	if o.poll, err = pipeline.ParsePollMode(poll); err != nil {
		return o, fmt.Errorf("--poll: %w", err)
	}
	if o.coalesce, err = config.ParseCoalesce(coalesce); err != nil {
		return o, fmt.Errorf("--coalesce: %w", err)
	}
	if o.attach, err = bpf.ParseAttachMode(attach); err != nil {
		return o, err
	}
	if rulesFile != "" {
		if o.rules, _, err = rules.LoadFile(rulesFile); err != nil {
			return o, err
		}
	}
	switch {
	case o.ring < 64 || xsk.CheckRingSize(uint64(o.ring)) != nil:
		return o, fmt.Errorf("--ring %d: want a power of two from 64 to %d", o.ring, uint64(xsk.MaxRingSize))
	case o.queue < 0:
		return o, fmt.Errorf("--queue %d: must be 0 or more", o.queue)
	case o.batch == 0 || o.batch > o.ring:
		return o, fmt.Errorf("--batch %d: must be between 1 and --ring (%d)", o.batch, o.ring)
	case o.frames < 2*o.ring:
		return o, fmt.Errorf("--frames %d: need at least %d, the fill ring and the RX ring of --ring %d each", o.frames, 2*o.ring, o.ring)
	case o.frames > math.MaxUint32:
		return o, fmt.Errorf("--frames %d: more frames than a UMEM can count", o.frames)
	case o.interval <= 0:
		return o, fmt.Errorf("--interval %v: must be positive", o.interval)
	case o.duration < 0:
		return o, fmt.Errorf("--duration %v: must not be negative", o.duration)
	}
	// Clamped, so that no value wraps around to a valid size.
	if err := xsk.CheckFrameSize(uint32(min(o.frameSz, math.MaxUint32))); err != nil {
		return o, fmt.Errorf("--frame-size: %w", err)
	}
	if cpu >= 0 {
		// The CPUs this process may run on (taskset), not only those the
		// machine has.
		if _, err := pipeline.ParseCPUList(strconv.Itoa(cpu)); err != nil {
			return o, fmt.Errorf("--cpu: %w", err)
		}
		o.cpu = pipeline.OnCPU(cpu)
	}
	return o, nil
}

func runRxdrop(ctx context.Context, args []string) (err error) {
	o, err := parseRxdrop(args, os.Stderr)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(o.profile)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopProfile()) }()

	if err := dataplane.CheckCaps(o.rules != nil); err != nil {
		return err
	}
	ifc, _, err := dataplane.CheckInterface(o.iface, o.queue)
	if err != nil {
		return err
	}
	if o.frameSz == 0 {
		o.frameSz = 4096
		if xsk.Segments(ifc.MTU, 2048) == 1 {
			o.frameSz = 2048
		}
	}
	uo := xsk.UmemOptions{NumFrames: uint32(o.frames), FrameSize: uint32(o.frameSz), FillSize: uint32(o.ring)}
	so := xsk.SocketOptions{RXSize: uint32(o.ring), Bind: o.bind, BusyPoll: o.busyPoll}
	// Before anything is allocated: no size may bring on the OOM killer.
	lim, err := xsk.ReadMemoryLimits()
	if err != nil {
		return err
	}
	if err := xsk.CheckMemory([]xsk.Cost{uo.Cost("--frames"), so.Cost("--ring", uo)}, lim); err != nil {
		return err
	}
	umem, err := xsk.NewUmem(uo)
	if err != nil {
		return err
	}
	defer umem.Close()
	// Without rules the redirect program counts the generated frames and
	// the loop samples their latency; the steering program does not count
	// them, and the loop does. So does it without CAP_PERFMON, which the
	// counting program's verification needs (bpf/track.c).
	hookTracks := o.track && o.rules == nil && caps.Have(caps.Perfmon)
	port, err := dataplane.OpenPort(dataplane.PortOptions{
		Iface: o.iface, Queues: []int{o.queue}, Umems: []*xsk.Umem{umem},
		Socket:           so,
		TakesMultiBuffer: true, Rules: o.rules, Attach: o.attach, PinDir: o.pinDir,
		Track: hookTracks, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer port.Close()
	sock := port.Sockets[0]
	prog := "redirect"
	switch {
	case hookTracks:
		prog = "redirect, counting generated frames"
	case o.track && o.rules == nil:
		prog = "redirect (generated frames counted in the loop: counting them in XDP needs CAP_PERFMON)"
	}
	if o.rules != nil {
		prog = fmt.Sprintf("steer with %d rules", len(o.rules.Rules))
	}
	poll := o.poll.String()
	switch {
	case o.poll == pipeline.PollWakeup && o.coalesce > 0:
		poll += fmt.Sprintf(" (naps up to %v while busy)", o.coalesce)
	case o.poll == pipeline.PollWakeup:
		poll += " (poll only)"
	}
	fmt.Printf("rxdrop: %s queue %d, %s, XDP %s (%s mode), AF_XDP %s, %s polling, burst %d, %d frames of %d bytes in rotation\n",
		o.iface, o.queue, port.XDP, prog, port.Attached, dataplane.ModeText(sock), poll, o.batch, o.ring, o.frameSz)

	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var (
		counts dataplane.DropCounters
		wg     sync.WaitGroup
		loop   error
		tr     *gen.Tracker
		loopTr dataplane.Tracker // nil, not a nil *gen.Tracker, without tracking
	)
	if o.track {
		tr = gen.NewTracker()
		loopTr = tr
	}
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		loop = dataplane.Drop(loopCtx, sock, &counts, loopTr, dataplane.DropOptions{
			Batch: int(o.batch), CPU: o.cpu, Poll: o.poll, Coalesce: o.coalesce, Ring: int(o.ring), BusyPoll: o.busyPoll,
			SampleLatency: hookTracks})
	}()

	// The generated frames received so far: counted by the tracking
	// program, or by the loop.
	var generated func() (uint64, error)
	switch {
	case hookTracks:
		generated = port.TrackedReceived
	case tr != nil:
		generated = func() (uint64, error) { return counts.Generated.Load(), nil }
	}
	rep := newRateReporter(port, &counts, generated)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	var lost error
	// Frames on queues without this socket: said once a queue, whatever
	// the rate line's interval.
	wctx, stopWarn := context.WithCancel(ctx)
	var warned sync.WaitGroup
	warned.Go(func() {
		dataplane.WarnUnbound(wctx, func() ([]dataplane.IfaceUnbound, error) {
			u, err := port.Unbound()
			return []dataplane.IfaceUnbound{{Iface: o.iface, Unbound: u}}, err
		}, func(h string) { fmt.Fprintln(os.Stderr, "rxdrop: warning:", h) })
	})
	warned.Go(func() {
		dataplane.WarnMTU(wctx, port.Sockets, func(h string) { fmt.Fprintln(os.Stderr, "rxdrop: warning:", h) })
	})
	if o.busyPoll {
		warned.Go(func() {
			dataplane.WarnIdleBusyPoll(wctx, port.Sockets, counts.Packets.Load, func(h string) { fmt.Fprintln(os.Stderr, "rxdrop: warning:", h) })
		})
	}
	defer func() { stopWarn(); warned.Wait() }()
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case ev := <-port.Faults():
			lost = fmt.Errorf("%w: %s", dataplane.ErrDataPathLost, ev)
			break wait
		case <-tick.C:
			fmt.Println(rep.line())
		}
	}
	stopLoop()
	wg.Wait()
	fmt.Println(rep.summary())
	var terr error
	if tr != nil {
		// The loop has stopped: its tracker can be read.
		var dropped uint64
		if hookTracks {
			var states []bpf.TrackState
			states, dropped, terr = port.Tracked()
			mergeHookCounts(tr, states)
		}
		if terr == nil {
			fmt.Println("generated:", tr.Stats(0).LessDropped(dropped))
		}
	}
	return errors.Join(lost, loop, terr)
}

// mergeHookCounts adds what the tracking program counted at the hook, on
// each CPU, into tr.
func mergeHookCounts(tr *gen.Tracker, states []bpf.TrackState) {
	for i := range states {
		s := &states[i]
		tr.MergeCounts(&gen.Counts{
			Received: s.Received, Unique: s.Unique, Duplicates: s.Dups, Reordered: s.Reordered,
			Late: s.Late, Others: s.Others, Bytes: s.Bytes, MaxSeq: s.MaxSeq, AnySeen: s.AnySeen != 0,
		})
	}
}
